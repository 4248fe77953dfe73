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


@pytest.fixture(scope="session")
def manifest():
    return json.loads((GOLDEN / "MANIFEST.json").read_text())
