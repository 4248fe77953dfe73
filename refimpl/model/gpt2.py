"""GPT-2: llama_model_gpt2::graph (src/models/gpt2.cpp).

Learned absolute positions (position_embd rows added to the token embeddings, no RoPE); LayerNorm with weight and
bias (ggml_norm, ggml_mul, ggml_add); one fused qkv matmul plus bias, split into q | k | v; attention with
kq_scale 1/sqrtf(head_dim); output projection and FFN (up, GELU, down) all with biases; tied or untied output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import Model, ModelFile, register
from .layers import gelu, layer_norm

F32 = np.float32


@dataclass
class GPT2Hparams:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    norm_eps: float
    n_ctx_train: int

    @classmethod
    def from_gguf(cls, mf: ModelFile, n_vocab: int) -> "GPT2Hparams":
        n_embd = int(mf.get("{arch}.embedding_length"))
        n_head = int(mf.get("{arch}.attention.head_count"))
        return cls(
            n_vocab=n_vocab, n_embd=n_embd, n_layer=int(mf.get("{arch}.block_count")), n_head=n_head,
            n_head_kv=int(mf.get("{arch}.attention.head_count_kv", n_head)), head_dim=n_embd // n_head,
            n_ff=int(mf.get("{arch}.feed_forward_length")),
            norm_eps=F32(mf.get("{arch}.attention.layer_norm_epsilon")),
            n_ctx_train=int(mf.get("{arch}.context_length")),
        )


class GPT2Layer:
    def __init__(self, mf: ModelFile, i: int):
        p = f"blk.{i}."
        self.attn_norm = mf.vector(p + "attn_norm.weight")
        self.attn_norm_b = mf.vector(p + "attn_norm.bias")
        self.wqkv = mf.weight(p + "attn_qkv.weight")
        self.bqkv = mf.vector(p + "attn_qkv.bias")
        self.wo = mf.weight(p + "attn_output.weight")
        self.bo = mf.vector(p + "attn_output.bias")
        self.ffn_norm = mf.vector(p + "ffn_norm.weight")
        self.ffn_norm_b = mf.vector(p + "ffn_norm.bias")
        self.ffn_up = mf.weight(p + "ffn_up.weight")
        self.ffn_up_b = mf.vector(p + "ffn_up.bias")
        self.ffn_down = mf.weight(p + "ffn_down.weight")
        self.ffn_down_b = mf.vector(p + "ffn_down.bias")


@register("gpt2")
class GPT2(Model):
    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.tok_embd = mf.weight("token_embd.weight")
        hp = self.hp = GPT2Hparams.from_gguf(mf, self.tok_embd.shape[0])
        self.n_vocab = hp.n_vocab
        self.n_layer, self.n_head_kv = hp.n_layer, hp.n_head_kv
        self.head_dim_k = self.head_dim_v = hp.head_dim
        self.n_ctx_train = hp.n_ctx_train
        self.pos_embd = mf.weight("position_embd.weight")
        self.output_norm = mf.vector("output_norm.weight")
        self.output_norm_b = mf.vector("output_norm.bias")
        self.output = mf.weight("output.weight", required=False) or self.tok_embd
        self.layers = [GPT2Layer(mf, i) for i in range(hp.n_layer)]
        self.kq_scale = F32(1.0) / F32(math.sqrt(F32(hp.head_dim)))

    def forward(self, tokens, positions):
        hp = self.hp
        n_tok = tokens.size
        nq, nkv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
        if int(positions[-1]) >= self.pos_embd.shape[0]:
            raise ValueError(f"gpt2: position {int(positions[-1])} is beyond the {self.pos_embd.shape[0]} learned "
                             f"positions (context_length)")
        x = self.tok_embd.rows(tokens) + self.pos_embd.rows(positions)     # ggml_get_rows x2, ggml_add
        for il, L in enumerate(self.layers):
            cur = layer_norm(x, hp.norm_eps) * L.attn_norm + L.attn_norm_b
            qkv = L.wqkv.mm(cur) + L.bqkv
            q = qkv[:, :nq].reshape(n_tok, hp.n_head, hp.head_dim)
            k = qkv[:, nq:nq + nkv].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            v = qkv[:, nq + nkv:nq + 2 * nkv].reshape(n_tok, hp.n_head_kv, hp.head_dim)
            a = self.attend(il, q, k, v, positions, self.kq_scale)
            ffn_inp = (L.wo.mm(a.reshape(n_tok, -1)) + L.bo) + x
            cur = layer_norm(ffn_inp, hp.norm_eps) * L.ffn_norm + L.ffn_norm_b
            cur = gelu(L.ffn_up.mm(cur) + L.ffn_up_b)
            cur = L.ffn_down.mm(cur) + L.ffn_down_b
            x = cur + ffn_inp
        x = x[self.output_rows]                                          # inp_out_ids
        x = layer_norm(x, hp.norm_eps) * self.output_norm + self.output_norm_b
        return self.output.mm(x)
