"""The KV cache of one sequence: what llama.cpp's llama_kv_cache stores, laid out for refimpl's attention.

Cells are filled in position order (cell i holds position i).  Values are kept as float32 holding exactly what the
cache type stores (F16 cells rounded with ggml's fp32->fp16), so one attention kernel serves F16 and F32; Q8_0
keys are kept as raw blocks as well, since ggml dots them against Q8_0-quantized queries.

Layout: K as (n_head_kv, head_dim, cells) and V as (n_head_kv, cells, head_dim) -- the transpose of llama.cpp's
(K per cell, V transposed).  Each attention dot product still adds its terms in ggml's order (over the head
dimension for KQ, over cells for KQV); this layout puts the *independent* dot products side by side in memory,
so the kernel advances all of them at once with vector instructions (refimpl.model.layers._attention_impl).
"""
from __future__ import annotations

import numpy as np

from .. import quant
from .._jit import njit
from ..floats import F16_TO_F32, fp32_to_fp16

CACHE_TYPES = ("f16", "f32", "q8_0")
KV_PAD = 256        # llama_context pads n_ctx to 256; llama_kv_cache::get_n_kv pads the attended cells to 256


def _pad(n: int, m: int) -> int:
    return (n + m - 1) // m * m


class KVCache:
    def __init__(self, n_layer: int, n_head_kv: int, head_dim_k: int, head_dim_v: int, n_ctx: int,
                 type_k: str = "f16", type_v: str = "f16"):
        type_k, type_v = type_k.lower(), type_v.lower()
        for what, t in (("K", type_k), ("V", type_v)):
            if t not in CACHE_TYPES:
                raise ValueError(f"{what} cache type must be one of {', '.join(CACHE_TYPES)}, got {t!r}")
        if type_v == "q8_0":
            # llama_init_from_model: "V cache quantization requires flash_attn"; refimpl reproduces the
            # non-flash-attention graph only
            raise ValueError("a quantized V cache (q8_0) requires flash attention, which refimpl does not implement")
        if type_k == "q8_0" and head_dim_k % 32:
            raise ValueError(f"a q8_0 K cache needs head_dim_k divisible by 32, got {head_dim_k}")
        if n_ctx <= 0:
            raise ValueError(f"context size must be positive, got {n_ctx}")
        self.type_k, self.type_v = type_k, type_v
        self.size = _pad(n_ctx, KV_PAD)
        self.n_head_kv = n_head_kv
        self.k = [np.zeros((n_head_kv, head_dim_k, self.size), np.float32) for _ in range(n_layer)]
        self.v = [np.zeros((n_head_kv, self.size, head_dim_v), np.float32) for _ in range(n_layer)]
        self.k_raw = ([np.zeros((n_head_kv, self.size, quant.row_size("Q8_0", head_dim_k)), np.uint8)
                       for _ in range(n_layer)] if type_k == "q8_0" else None)
        self.used = 0

    def n_kv(self, used: int) -> int:
        """llama_kv_cache::get_n_kv: how many cells the attention ops span (padded; masked cells add zeros)."""
        return min(self.size, max(KV_PAD, _pad(used, KV_PAD)))

    def store(self, il: int, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        """ggml_set_rows of this batch's K (n_tokens, n_head_kv, hd_k) and V into their cells."""
        p0, p1 = int(positions[0]), int(positions[-1]) + 1
        if p1 > self.size:
            raise ValueError(f"context full: position {p1 - 1} does not fit a cache of {self.size} cells")
        if self.type_k == "q8_0":
            raw = quant.quantize_activations(k.reshape(-1, k.shape[-1]), "Q8_0")   # from_float of Q8_0
            self.k_raw[il][:, p0:p1] = raw.reshape(k.shape[0], k.shape[1], -1).transpose(1, 0, 2)
            self.k[il][:, :, p0:p1] = quant.dequantize(raw, "Q8_0").reshape(k.shape).transpose(1, 2, 0)
        else:
            _store_k(self.k[il], p0, np.ascontiguousarray(k, dtype=np.float32), self.type_k == "f16")
        _store_v(self.v[il], p0, np.ascontiguousarray(v, dtype=np.float32), self.type_v == "f16")


# ggml_set_rows into an F16 cache converts with ggml's fp32->fp16; the cache keeps the float32 value of that half.
# One kernel per layout, so a decode step's store is two calls into numba rather than a dozen numpy passes.

@njit
def _store_k(cache, p0, k, f16):
    # cache (n_head_kv, hd, n_cells) <- k (n_tokens, n_head_kv, hd) at cells p0..
    for t in range(k.shape[0]):
        for h in range(k.shape[1]):
            for d in range(k.shape[2]):
                cache[h, d, p0 + t] = F16_TO_F32[fp32_to_fp16(k[t, h, d])] if f16 else k[t, h, d]


@njit
def _store_v(cache, p0, v, f16):
    # cache (n_head_kv, n_cells, hd) <- v (n_tokens, n_head_kv, hd) at cells p0..
    for t in range(v.shape[0]):
        for h in range(v.shape[1]):
            for d in range(v.shape[2]):
                cache[h, p0 + t, d] = F16_TO_F32[fp32_to_fp16(v[t, h, d])] if f16 else v[t, h, d]
