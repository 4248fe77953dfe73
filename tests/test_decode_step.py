"""The one-call-per-layer decode step (refimpl.kernels.decode.layer_step, chosen by Model._decode_plan) gives
layer_block's bits: the logits of every step and the KV cache, on the golden llama models of several weight types,
the shipped model, F16 and F32 caches; and it is used exactly where the layer is the plain llama layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_bits_equal
from refimpl import model, quant

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden" / "model"
TINY = ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf"
LLAMAS = [GOLDEN / f"llama-{t}.gguf" for t in ("Q8_0", "Q4_K", "IQ4_NL", "F16")] + [TINY]


def _run(path, monkeypatch, use_step: bool, cache_type: str = "f16"):
    monkeypatch.setenv("REFIMPL_DECODE_STEP", "1" if use_step else "0")
    m = model.load(path, n_ctx=64)
    m.new_context(64, type_k=cache_type, type_v=cache_type)
    logits = [m.eval([1, 5, 9, 13, 2, 7])]
    for i in range(12):
        logits.append(m.eval([(i * 37 + 3) % m.n_vocab]))
    used = m._decode_plan() is not None
    return np.concatenate([x.reshape(-1) for x in logits]), m.cache, used


@pytest.mark.parametrize("cache_type", ["f16", "f32"])
@pytest.mark.parametrize("path", LLAMAS, ids=lambda p: p.stem)
def test_decode_step_equals_layer_block(path, cache_type, monkeypatch):
    ours, cache, used = _run(path, monkeypatch, True, cache_type)
    ref, ref_cache, ref_used = _run(path, monkeypatch, False, cache_type)
    assert used and not ref_used
    assert_bits_equal(ours, ref, f"{path.stem} logits")
    for il in range(len(cache.k)):
        assert_bits_equal(cache.k[il], ref_cache.k[il], f"{path.stem} K cache, layer {il}")
        assert_bits_equal(cache.v[il], ref_cache.v[il], f"{path.stem} V cache, layer {il}")


@pytest.mark.parametrize("name", ["qwen2-Q8_0", "qwen3-Q8_0", "gemma3-Q8_0", "phi3-Q8_0"])
def test_other_layers_take_layer_block(name, monkeypatch):
    # biases (qwen2), per-head q/k norms (qwen3), overridden blocks (gemma3), fused qkv (phi3)
    path = GOLDEN / f"{name}.gguf"
    monkeypatch.setenv("REFIMPL_DECODE_STEP", "1")
    m = model.load(path, n_ctx=64)
    m.eval([1, 2, 3])
    plan = m._decode_plan()
    assert plan is None or all(p is None for p in plan)


def test_reference_kernels_take_layer_block(monkeypatch):
    monkeypatch.setenv("REFIMPL_DECODE_STEP", "1")
    m = model.load(TINY, n_ctx=64)
    m.eval([1, 2, 3])
    assert m._decode_plan() is not None
    quant.set_kernels("reference")
    try:
        assert m._decode_plan() is None
    finally:
        quant.set_kernels("fast")


def test_full_context_is_refused(monkeypatch):
    monkeypatch.setenv("REFIMPL_DECODE_STEP", "1")
    m = model.load(TINY, n_ctx=8)
    m.new_context(8)
    m.eval(list(range(1, 1 + m.cache.size)))
    with pytest.raises(ValueError, match="context full"):
        m.eval([3])
