"""Llama (2, 3 with rope_freqs, Mistral, TinyLlama, SmolLM): llm_build_llama / llama_model_llama::graph.

Also the base of qwen2 (q/k/v biases, NEOX RoPE) and qwen3 (per-head q/k RMSNorm), which differ only in the
hooks ``rope_mode`` and the optional tensors each layer may carry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import Model, ModelFile, register
from .layers import ROPE_NORMAL, rms_norm, rope, swiglu


@dataclass
class LlamaHparams:
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
    n_ctx_train: int
    n_ctx_orig: int

    @classmethod
    def from_gguf(cls, mf: ModelFile, n_vocab: int) -> "LlamaHparams":
        n_embd = int(mf.get("{arch}.embedding_length"))
        n_head = int(mf.get("{arch}.attention.head_count"))
        head_dim = int(mf.get("{arch}.attention.key_length", n_embd // n_head))
        if int(mf.get("{arch}.attention.value_length", head_dim)) != head_dim:
            raise ValueError(f"{mf.path}: key_length != value_length is not supported for {mf.arch}")
        scaling = mf.get("{arch}.rope.scaling.type", "none")
        factor = float(mf.get("{arch}.rope.scaling.factor", 0.0))
        if scaling not in ("none", "linear") and factor not in (0.0, 1.0):
            raise ValueError(f"{mf.path}: rope scaling type {scaling!r} is not supported for {mf.arch}")
        n_ctx_train = int(mf.get("{arch}.context_length", 4096))
        return cls(
            n_vocab=n_vocab,
            n_embd=n_embd,
            n_layer=int(mf.get("{arch}.block_count")),
            n_head=n_head,
            n_head_kv=int(mf.get("{arch}.attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(mf.get("{arch}.feed_forward_length")),
            rms_eps=float(mf.get("{arch}.attention.layer_norm_rms_epsilon")),
            n_rot=int(mf.get("{arch}.rope.dimension_count", head_dim)),
            rope_freq_base=float(mf.get("{arch}.rope.freq_base", 10000.0)),
            # llama_model_loader: rope_freq_scale = 1/factor for linear scaling (factor 0 means none)
            rope_freq_scale=(1.0 / factor) if factor else 1.0,
            n_ctx_train=n_ctx_train,
            n_ctx_orig=int(mf.get("{arch}.rope.scaling.original_context_length", n_ctx_train)),
        )


class LlamaLayer:
    def __init__(self, mf: ModelFile, i: int):
        p = f"blk.{i}."
        self.attn_norm = mf.vector(p + "attn_norm.weight")
        self.wq = mf.weight(p + "attn_q.weight")
        self.wk = mf.weight(p + "attn_k.weight")
        self.wv = mf.weight(p + "attn_v.weight")
        self.wo = mf.weight(p + "attn_output.weight")
        self.bq = mf.vector(p + "attn_q.bias", required=False)
        self.bk = mf.vector(p + "attn_k.bias", required=False)
        self.bv = mf.vector(p + "attn_v.bias", required=False)
        self.bo = mf.vector(p + "attn_output.bias", required=False)
        self.q_norm = mf.vector(p + "attn_q_norm.weight", required=False)
        self.k_norm = mf.vector(p + "attn_k_norm.weight", required=False)
        self.ffn_norm = mf.vector(p + "ffn_norm.weight")
        self.ffn_gate = mf.weight(p + "ffn_gate.weight")
        self.ffn_up = mf.weight(p + "ffn_up.weight")
        self.ffn_down = mf.weight(p + "ffn_down.weight")
        self.ffn_gate_b = mf.vector(p + "ffn_gate.bias", required=False)
        self.ffn_up_b = mf.vector(p + "ffn_up.bias", required=False)
        self.ffn_down_b = mf.vector(p + "ffn_down.bias", required=False)


def _add(x, b):
    return x if b is None else x + b


@register("llama")
class Llama(Model):
    rope_mode = ROPE_NORMAL
    layer_class = LlamaLayer

    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.tok_embd = mf.weight("token_embd.weight")
        n_vocab = self.tok_embd.shape[0]
        hp = self.hp = LlamaHparams.from_gguf(mf, n_vocab)
        if hp.n_rot != hp.head_dim:
            raise ValueError(f"{mf.path}: {mf.arch} needs rope.dimension_count == head_dim "
                             f"({hp.n_rot} != {hp.head_dim})")
        self.n_vocab = n_vocab
        self.n_layer, self.n_head_kv = hp.n_layer, hp.n_head_kv
        self.head_dim_k = self.head_dim_v = hp.head_dim
        self.n_ctx_train = hp.n_ctx_train
        self.output_norm = mf.vector("output_norm.weight")
        # untied output, or the token embedding reused (TENSOR_DUPLICATED)
        self.output = mf.weight("output.weight", required=False) or self.tok_embd
        self.rope_freqs = mf.vector("rope_freqs.weight", required=False)     # llama3 frequency factors
        self.layers = [self.layer_class(mf, i) for i in range(hp.n_layer)]
        # kq_scale = 1.0f/sqrtf(float(n_embd_head))
        self.kq_scale = np.float32(1.0) / np.float32(math.sqrt(np.float32(hp.head_dim)))

    def rope(self, x, positions):
        hp = self.hp
        return rope(x, positions, hp.n_rot, self.rope_mode, hp.rope_freq_base, hp.rope_freq_scale,
                    freq_factors=self.rope_freqs, n_ctx_orig=hp.n_ctx_orig)

    def forward(self, tokens, positions):
        hp = self.hp
        n_tok = tokens.size
        x = self.tok_embd.rows(tokens)                                   # ggml_get_rows
        for il, L in enumerate(self.layers):
            cur = rms_norm(x, hp.rms_eps) * L.attn_norm
            q = _add(L.wq.mm(cur), L.bq).reshape(n_tok, hp.n_head, hp.head_dim)
            k = _add(L.wk.mm(cur), L.bk).reshape(n_tok, hp.n_head_kv, hp.head_dim)
            v = _add(L.wv.mm(cur), L.bv).reshape(n_tok, hp.n_head_kv, hp.head_dim)
            if L.q_norm is not None:                                     # qwen3: RMSNorm per head
                q = rms_norm(q, hp.rms_eps) * L.q_norm
            if L.k_norm is not None:
                k = rms_norm(k, hp.rms_eps) * L.k_norm
            q = self.rope(q, positions)
            k = self.rope(k, positions)
            a = self.attend(il, q, k, v, positions, self.kq_scale)
            cur = _add(L.wo.mm(a.reshape(n_tok, -1)), L.bo)
            x = cur + x                                                  # ffn_inp = attn_out + inpSA
            cur = rms_norm(x, hp.rms_eps) * L.ffn_norm
            gate = _add(L.ffn_gate.mm(cur), L.ffn_gate_b)
            up = _add(L.ffn_up.mm(cur), L.ffn_up_b)
            cur = _add(L.ffn_down.mm(swiglu(gate, up)), L.ffn_down_b)
            x = cur + x
        x = x[self.output_rows]                                          # inp_out_ids
        x = rms_norm(x, hp.rms_eps) * self.output_norm
        return self.output.mm(x)
