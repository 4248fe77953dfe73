"""Shared test helpers: where the goldens are and how to read them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden"


def golden_path(rel: str) -> Path:
    p = GOLDEN / rel
    if not p.exists():
        raise FileNotFoundError(f"golden file {rel} is missing; regenerate with tools/make_golden.py")
    return p


def load_golden(rel: str) -> dict[str, np.ndarray]:
    with np.load(golden_path(rel), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_golden_json(rel: str):
    return json.loads(golden_path(rel).read_text())


def assert_bits_equal(ours: np.ndarray, theirs: np.ndarray, what: str = "") -> None:
    """Bit-for-bit equality: bytes for integer data, IEEE bit patterns for floats (NaN payloads included)."""
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
    a = np.ascontiguousarray(ours).reshape(-1).view(np.uint8)
    b = np.ascontiguousarray(theirs).reshape(-1).view(np.uint8)
    if not np.array_equal(a, b):
        isz = ours.dtype.itemsize
        bad = np.flatnonzero((a != b).reshape(-1, isz).any(axis=1)) if isz > 1 else np.flatnonzero(a != b)
        i = int(bad[0])
        raise AssertionError(
            f"{what}: {bad.size} of {ours.size} elements differ; first at flat index {i}: "
            f"ours={ours.reshape(-1)[i]!r} theirs={theirs.reshape(-1)[i]!r}"
        )


KERNEL_LAYERS = ("reference", "fast")


@pytest.fixture
def kernel_layer(request):
    """Run the test under one kernel layer (parametrize it with ``indirect=["kernel_layer"]``), then restore."""
    from refimpl import quant

    layer = getattr(request, "param", "fast")
    before = quant.get_kernels()
    quant.set_kernels(layer)
    try:
        yield layer
    finally:
        quant.set_kernels(before)


def reference_matmul(raw, qtype: str, x):
    """``quant.matmul(raw, qtype, x)`` on the reference kernel layer (the layer in use is restored)."""
    from refimpl import quant

    before = quant.get_kernels()
    quant.set_kernels("reference")
    try:
        return quant.matmul(raw, qtype, x)
    finally:
        quant.set_kernels(before)


def layers_for(name: str, *ops: str) -> tuple[str, ...]:
    """The kernel layers a golden test of type ``name`` runs under: both when the fast layer has its own kernel for
    one of ``ops`` ("quantize", "dequantize", "vec_dot", …), else "fast" alone — the fast layer then calls the
    reference kernel, so a second run would execute the same code (and CI time is counted)."""
    from refimpl import kernels

    fk = kernels.get(name)
    if fk is not None and any(getattr(fk, op) is not None for op in ops):
        return KERNEL_LAYERS
    return ("fast",)


def with_layers(params, *ops: str) -> list:
    """``params`` (tuples whose last element is the type name) extended by each kernel layer of ``layers_for``."""
    return [pytest.param(*p, layer, id="-".join(map(str, p + (layer,))))
            for p in params for layer in layers_for(p[-1], *ops)]


@pytest.fixture(scope="session")
def manifest():
    return json.loads((GOLDEN / "MANIFEST.json").read_text())
