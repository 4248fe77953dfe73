"""The fast layer's prompt attention (refimpl.kernels.attention.attention_blocked) against the reference kernel
(refimpl.model.layers._attention_impl) bit for bit: head sizes and cell counts around the 64-, 32- and 8-column
blocks and their one-by-one tails, sliding windows, F16 and F32 caches, precomputed scores, and hostile values
(NaN with different payloads, infinities, denormals, large values that cancel).  The model goldens run both
kernels against llama.cpp's logits (tests/test_model_golden.py under both kernel layers)."""
from __future__ import annotations

import numpy as np
import pytest

from refimpl import quant
from refimpl.kernels.attention import attention_blocked
from refimpl.model import layers


def _hostile(rng, shape, rate):
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(4.0)
    if rate:
        pick = rng.random(shape) < rate
        nans = (np.uint32(0x7F800001) + rng.integers(0, 1 << 22, shape).astype(np.uint32)).view(np.float32)
        specials = np.stack([nans, np.full(shape, np.inf, np.float32), np.full(shape, -np.inf, np.float32),
                             np.full(shape, 1e-42, np.float32), np.full(shape, 3e38, np.float32),
                             np.full(shape, -3e38, np.float32)])
        which = rng.integers(0, len(specials), shape)
        x = np.where(pick, np.take_along_axis(specials, which[None], 0)[0], x)
    return x


def _both(q, k, v, kq, pos, n_kv, window, k_f16, v_f16):
    outs = []
    for kernel in (layers._attention_parallel, attention_blocked):
        out = np.full((q.shape[0], q.shape[1], v.shape[2]), np.nan, np.float32)
        kernel(q, k, v, kq, pos, n_kv, window, np.float32(0.125), k_f16, v_f16, out)
        outs.append(out)
    return outs


@pytest.mark.parametrize("hd", [64, 80, 128, 12, 32, 104])
@pytest.mark.parametrize("n_tok", [1, 7, 45, 70])
@pytest.mark.parametrize("rate", [0.0, 0.02])
def test_blocked_attention_equals_reference(hd, n_tok, rate):
    rng = np.random.default_rng(hd * 1000 + n_tok + int(rate * 100))
    n_head, n_head_kv, n_ctx = 6, 2, 96
    start = 3                                    # cells already in the cache before the batch
    q = _hostile(rng, (n_tok, n_head, hd), rate)
    k = _hostile(rng, (n_head_kv, hd, n_ctx), rate)
    v = _hostile(rng, (n_head_kv, n_ctx, hd), rate)
    pos = np.arange(start, start + n_tok, dtype=np.int64)
    for window in (0, 9, 40):
        for k_f16, v_f16 in ((True, True), (False, False), (True, False)):
            ref, fast = _both(q, k, v, layers._NO_KQ, pos, start + n_tok, window, k_f16, v_f16)
            assert np.array_equal(ref.view(np.uint32), fast.view(np.uint32)), (window, k_f16, v_f16)


def test_blocked_attention_with_precomputed_scores():
    rng = np.random.default_rng(5)
    n_tok, n_head, hd, n_ctx = 41, 4, 64, 64
    q = _hostile(rng, (n_tok, n_head, hd), 0.0)
    k = _hostile(rng, (1, hd, n_ctx), 0.0)
    v = _hostile(rng, (1, n_ctx, hd), 0.01)
    kq = _hostile(rng, (n_tok, n_head, n_ctx), 0.01)
    ref, fast = _both(q, k, v, kq, np.arange(n_tok, dtype=np.int64), n_tok, 0, True, True)
    assert np.array_equal(ref.view(np.uint32), fast.view(np.uint32))


def test_the_fast_layer_takes_the_blocked_kernel_for_batches(monkeypatch):
    rng = np.random.default_rng(9)
    q = rng.standard_normal((5, 4, 64)).astype(np.float32)
    k = rng.standard_normal((2, 64, 16)).astype(np.float32)
    v = rng.standard_normal((2, 16, 64)).astype(np.float32)
    calls = []
    import refimpl.kernels.attention as fast_attention
    original = fast_attention.attention_blocked
    monkeypatch.setattr(fast_attention, "attention_blocked", lambda *a: (calls.append(1), original(*a))[1])
    fast = layers.attention(q, k, v, np.arange(5), 5, 0.125)
    assert calls == [1]
    quant.set_kernels("reference")
    try:
        ref = layers.attention(q, k, v, np.arange(5), 5, 0.125)
    finally:
        quant.set_kernels("fast")
    assert calls == [1] and np.array_equal(ref.view(np.uint32), fast.view(np.uint32))
