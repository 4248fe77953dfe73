"""Phi-3: llama_model_phi3::graph (src/models/phi3.cpp).

Differences from llama: one fused qkv matmul (rows [q | k | v], split by views); one fused gate-up matmul whose
first n_ff outputs are the gate and last n_ff the up projection (ggml_swiglu on the concatenated row); NEOX RoPE
with LongRoPE frequency factors — rope_factors_long when the context (n_ctx_seq) exceeds
rope.scaling.original_context_length, else rope_factors_short (llama_model::get_rope_factors) — and the RoPE
magnitude scaled by rope.scaling.attn_factor; q scaled by 1/sqrtf(head_dim) before the KQ product (kq_scale 1).
llama.cpp disables Phi-3's sliding window (it warns and ignores attention.sliding_window); so does refimpl.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import Layer, Model, ModelFile
from .hparams import Hparams
from .layers import ROPE_NEOX, swiglu

F32 = np.float32
MATRIX, VECTOR = "matrix", "vector"


class Phi3Hparams(Hparams):
    @classmethod
    def read(cls, mf: ModelFile, n_vocab: int) -> dict:
        kw = super().read(mf, n_vocab)
        if kw["head_dim"] != kw["n_embd"] // kw["n_head"]:       # phi3's wo is {n_embd, n_embd}
            raise ValueError(f"{mf.path}: phi3 needs head_dim == n_embd / n_head")
        return kw


class Phi3Layer(Layer):
    TENSORS = {
        "attn_norm": ("attn_norm.weight", VECTOR, True),
        "wqkv": ("attn_qkv.weight", MATRIX, True),
        "wo": ("attn_output.weight", MATRIX, True),
        "ffn_norm": ("ffn_norm.weight", VECTOR, True),
        "ffn_up": ("ffn_up.weight", MATRIX, True),      # [gate; up], 2 * n_ff rows
        "ffn_down": ("ffn_down.weight", MATRIX, True),
    }


@register("phi3")
class Phi3(Model):
    hparams_class = Phi3Hparams
    layer_class = Phi3Layer
    rope_mode = ROPE_NEOX
    ffn_inp_name = None                 # phi3's graph leaves the attention residual sum unnamed

    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.rope_long = mf.vector("rope_factors_long.weight", required=False)
        self.rope_short = mf.vector("rope_factors_short.weight", required=False)
        self.kq_scale = F32(1.0)                                            # q is scaled instead
        self.q_scale = F32(1.0) / F32(math.sqrt(F32(self.hp.head_dim)))

    def rope_factors(self, il):
        """llama_model::get_rope_factors: long factors when n_ctx_seq (the context size) > n_ctx_orig_yarn."""
        return self.rope_long if self.cache.size > self.hp.n_ctx_orig else self.rope_short

    def position_qk(self, il, layer, q, k, positions):
        q, k = super().position_qk(il, layer, q, k, positions)
        q = q * self.q_scale                                   # ggml_scale(Qcur, 1/sqrtf(n_embd_head))
        if self.tracing:
            self.emit("Qcur", il, q)
        return q, k

    def feed_forward(self, il, layer, cur):
        """build_ffn, LLM_FFN_SWIGLU, no separate gate: down(swiglu(up(x))), silu of the first half times the
        second."""
        up = self._linear(layer.ffn_up, None, cur, "ffn_up", il)
        n_ff = self.hp.n_ff
        cur = swiglu(up[:, :n_ff], up[:, n_ff:])               # ggml_swiglu on the [gate | up] row
        if self.tracing:
            self.emit("ffn_swiglu", il, cur)
        return self.ffn_down(il, layer, cur)
