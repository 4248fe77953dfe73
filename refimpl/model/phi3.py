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
from dataclasses import dataclass

import numpy as np

from . import Model, ModelFile, register
from .gemma3 import rope_freq_scale
from .layers import ROPE_NEOX, rms_norm, rope, swiglu

F32 = np.float32


@dataclass
class Phi3Hparams:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rms_eps: float
    n_rot: int
    rope_freq_base: float
    rope_freq_scale: float
    rope_attn_factor: float
    n_ctx_train: int
    n_ctx_orig: int

    @classmethod
    def from_gguf(cls, mf: ModelFile, n_vocab: int) -> "Phi3Hparams":
        n_embd = int(mf.get("{arch}.embedding_length"))
        n_head = int(mf.get("{arch}.attention.head_count"))
        head_dim = n_embd // n_head                     # phi3's wo is {n_embd, n_embd}
        if int(mf.get("{arch}.attention.key_length", head_dim)) != head_dim:
            raise ValueError(f"{mf.path}: phi3 needs head_dim == n_embd / n_head")
        scaling = mf.get("{arch}.rope.scaling.type", "linear")
        if scaling == "longrope":     # LongRoPE is the factor tensors; no YaRN ramp (ext_factor 0)
            freq_scale = F32(1.0)
        else:
            freq_scale = rope_freq_scale(mf)
        n_ctx_train = int(mf.get("{arch}.context_length"))
        return cls(
            n_vocab=n_vocab, n_embd=n_embd, n_layer=int(mf.get("{arch}.block_count")), n_head=n_head,
            n_head_kv=int(mf.get("{arch}.attention.head_count_kv", n_head)), head_dim=head_dim,
            n_ff=int(mf.get("{arch}.feed_forward_length")),
            rms_eps=F32(mf.get("{arch}.attention.layer_norm_rms_epsilon")),
            n_rot=int(mf.get("{arch}.rope.dimension_count", head_dim)),
            rope_freq_base=F32(mf.get("{arch}.rope.freq_base", 10000.0)),
            rope_freq_scale=freq_scale,
            # llama_context: yarn_attn_factor (1.0) *= hparams.rope_attn_factor
            rope_attn_factor=F32(mf.get("{arch}.rope.scaling.attn_factor", 1.0)),
            n_ctx_train=n_ctx_train,
            n_ctx_orig=int(mf.get("{arch}.rope.scaling.original_context_length", n_ctx_train)),
        )


class Phi3Layer:
    def __init__(self, mf: ModelFile, i: int):
        p = f"blk.{i}."
        self.attn_norm = mf.vector(p + "attn_norm.weight")
        self.wqkv = mf.weight(p + "attn_qkv.weight")
        self.wo = mf.weight(p + "attn_output.weight")
        self.ffn_norm = mf.vector(p + "ffn_norm.weight")
        self.ffn_up = mf.weight(p + "ffn_up.weight")      # [gate; up], 2 * n_ff rows
        self.ffn_down = mf.weight(p + "ffn_down.weight")


@register("phi3")
class Phi3(Model):
    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.tok_embd = mf.weight("token_embd.weight")
        hp = self.hp = Phi3Hparams.from_gguf(mf, self.tok_embd.shape[0])
        self.n_vocab = hp.n_vocab
        self.n_layer, self.n_head_kv = hp.n_layer, hp.n_head_kv
        self.head_dim_k = self.head_dim_v = hp.head_dim
        self.n_ctx_train = hp.n_ctx_train
        self.output_norm = mf.vector("output_norm.weight")
        self.output = mf.weight("output.weight", required=False) or self.tok_embd
        self.rope_long = mf.vector("rope_factors_long.weight", required=False)
        self.rope_short = mf.vector("rope_factors_short.weight", required=False)
        self.layers = [Phi3Layer(mf, i) for i in range(hp.n_layer)]
        self.q_scale = F32(1.0) / F32(math.sqrt(F32(hp.head_dim)))

    def rope_factors(self):
        """llama_model::get_rope_factors: long factors when n_ctx_seq (the context size) > n_ctx_orig_yarn."""
        return self.rope_long if self.cache.size > self.hp.n_ctx_orig else self.rope_short

    def forward(self, tokens, positions):
        hp = self.hp
        n_tok = tokens.size
        nq, nkv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
        factors = self.rope_factors()
        x = self.tok_embd.rows(tokens)
        for il, L in enumerate(self.layers):
            cur = rms_norm(x, hp.rms_eps) * L.attn_norm
            qkv = L.wqkv.mm(cur)
            q = qkv[:, :nq].reshape(n_tok, hp.n_head, hp.head_dim)
            k = qkv[:, nq:nq + nkv].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            v = qkv[:, nq + nkv:nq + 2 * nkv].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            q = rope(q, positions, hp.n_rot, ROPE_NEOX, hp.rope_freq_base, hp.rope_freq_scale,
                     freq_factors=factors, attn_factor=hp.rope_attn_factor, n_ctx_orig=hp.n_ctx_orig)
            k = rope(k, positions, hp.n_rot, ROPE_NEOX, hp.rope_freq_base, hp.rope_freq_scale,
                     freq_factors=factors, attn_factor=hp.rope_attn_factor, n_ctx_orig=hp.n_ctx_orig)
            q = q * self.q_scale                                        # ggml_scale(Qcur, 1/sqrtf(n_embd_head))
            a = self.attend(il, q, k, v, positions, F32(1.0))
            x = L.wo.mm(a.reshape(n_tok, -1)) + x
            cur = rms_norm(x, hp.rms_eps) * L.ffn_norm
            up = L.ffn_up.mm(cur)
            cur = L.ffn_down.mm(swiglu(up[:, :hp.n_ff], up[:, hp.n_ff:]))   # ggml_swiglu: silu(1st half) * 2nd
            x = x + cur                                                 # ggml_add(residual, cur)
        x = x[self.output_rows]                                          # inp_out_ids
        x = rms_norm(x, hp.rms_eps) * self.output_norm
        return self.output.mm(x)
