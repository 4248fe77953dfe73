"""Gemma 3: llama_model_gemma3::graph (src/models/gemma3.cpp).

Differences from llama: the token embeddings are scaled by sqrtf(n_embd); RMSNorm weights are used as stored
(convert_hf_to_gguf.py already added Gemma's "1 +"); per-head RMSNorm of q and k before NEOX RoPE; q is scaled by
f_attention_scale before the KQ product (build_attn then uses kq_scale 1.0); RMSNorm after attention and after the
FFN ("post-norms") before each residual add; FFN gelu(gate) * up (ggml_geglu_split, the f16-table GELU); sliding
window attention on the layers the pattern marks, with their own RoPE base (rope.freq_base_swa) and no frequency
scaling; optional final logit soft-capping cap * tanh(logits / cap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import Model, ModelFile, register
from .._jit import njit
from .layers import ROPE_NEOX, geglu, rms_norm, rope

F32 = np.float32


@njit
def _softcap_rows(x, cap, out):
    # ggml_scale(x, 1/cap) (ggml_vec_scale_f32), ggml_tanh (ggml_vec_tanh_f32: libm tanhf), ggml_scale(cap)
    inv = F32(1.0) / cap
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = F32(math.tanh(x[r, i] * inv)) * cap


def softcap(x: np.ndarray, cap) -> np.ndarray:
    """Final logit soft-capping cap * tanh(x / cap) with libm's tanhf (numpy's float32 tanh is not tanhf)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _softcap_rows(x, F32(cap), out)
    return out


def rope_freq_scale(mf: ModelFile) -> float:
    """llama_model_base::load_hparams: rope_freq_scale_train = 1/rope.scaling.factor (0 or absent: 1); a
    scaling type "none" means no scaling (llama_context)."""
    scaling = mf.get("{arch}.rope.scaling.type", "linear")
    if scaling not in ("none", "linear"):
        raise ValueError(f"{mf.path}: rope scaling type {scaling!r} is not supported for {mf.arch}")
    factor = F32(mf.get("{arch}.rope.scaling.factor", mf.get("{arch}.rope.scale_linear", 0.0)))
    if scaling == "none" or factor == 0:
        return F32(1.0)
    return F32(1.0) / factor


@dataclass
class Gemma3Hparams:
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
    rope_freq_base_swa: float
    n_swa: int
    is_swa: list
    final_softcap: float
    attention_scale: float
    n_ctx_train: int

    @classmethod
    def from_gguf(cls, mf: ModelFile, n_vocab: int) -> "Gemma3Hparams":
        n_embd = int(mf.get("{arch}.embedding_length"))
        n_layer = int(mf.get("{arch}.block_count"))
        n_head = int(mf.get("{arch}.attention.head_count"))
        head_dim = int(mf.get("{arch}.attention.key_length", n_embd // n_head))
        if int(mf.get("{arch}.attention.value_length", head_dim)) != head_dim:
            raise ValueError(f"{mf.path}: key_length != value_length is not supported for gemma3")
        n_swa = int(mf.get("{arch}.attention.sliding_window", 0))
        if n_swa > 0:
            # load_swa_pattern(ml, 6): a per-layer array, else a period n (layer il is SWA unless il % n == n-1;
            # n = 0: every layer)
            pattern = mf.get("{arch}.attention.sliding_window_pattern", 6)
            if isinstance(pattern, (int, np.integer)):
                n = int(pattern)
                is_swa = [n == 0 or (il % n < n - 1) for il in range(n_layer)]
            else:
                is_swa = [bool(x) for x in list(pattern)[:n_layer]]
                if len(is_swa) != n_layer:
                    raise ValueError(f"{mf.path}: sliding_window_pattern has {len(is_swa)} entries for {n_layer} layers")
        else:
            is_swa = [False] * n_layer
        # gemma_pytorch: the 27B model (62 layers) scales queries by 1/sqrt(n_embd/n_head), the others by
        # 1/sqrt(head_dim) (llama_model_gemma3::load_arch_hparams)
        q_dim = n_embd // n_head if n_layer == 62 else head_dim
        n_ctx_train = int(mf.get("{arch}.context_length"))
        return cls(
            n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            n_head_kv=int(mf.get("{arch}.attention.head_count_kv", n_head)), head_dim=head_dim,
            n_ff=int(mf.get("{arch}.feed_forward_length")),
            rms_eps=F32(mf.get("{arch}.attention.layer_norm_rms_epsilon")),
            n_rot=int(mf.get("{arch}.rope.dimension_count", head_dim)),
            rope_freq_base=F32(mf.get("{arch}.rope.freq_base", 10000.0)),
            rope_freq_scale=rope_freq_scale(mf),
            rope_freq_base_swa=F32(mf.get("{arch}.rope.freq_base_swa", 10000.0)),
            n_swa=n_swa, is_swa=is_swa,
            final_softcap=F32(mf.get("{arch}.final_logit_softcapping", 0.0)),
            attention_scale=F32(1.0) / F32(math.sqrt(F32(q_dim))),
            n_ctx_train=n_ctx_train,
        )


class Gemma3Layer:
    def __init__(self, mf: ModelFile, i: int):
        p = f"blk.{i}."
        self.attn_norm = mf.vector(p + "attn_norm.weight")
        self.wq = mf.weight(p + "attn_q.weight")
        self.wk = mf.weight(p + "attn_k.weight")
        self.wv = mf.weight(p + "attn_v.weight")
        self.wo = mf.weight(p + "attn_output.weight")
        self.q_norm = mf.vector(p + "attn_q_norm.weight")
        self.k_norm = mf.vector(p + "attn_k_norm.weight")
        self.attn_post_norm = mf.vector(p + "post_attention_norm.weight")
        self.ffn_norm = mf.vector(p + "ffn_norm.weight")
        self.ffn_gate = mf.weight(p + "ffn_gate.weight")
        self.ffn_up = mf.weight(p + "ffn_up.weight")
        self.ffn_down = mf.weight(p + "ffn_down.weight")
        self.ffn_post_norm = mf.vector(p + "post_ffw_norm.weight")


@register("gemma3")
class Gemma3(Model):
    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.tok_embd = mf.weight("token_embd.weight")
        hp = self.hp = Gemma3Hparams.from_gguf(mf, self.tok_embd.shape[0])
        self.n_vocab = hp.n_vocab
        self.n_layer, self.n_head_kv = hp.n_layer, hp.n_head_kv
        self.head_dim_k = self.head_dim_v = hp.head_dim
        self.n_ctx_train = hp.n_ctx_train
        self.output_norm = mf.vector("output_norm.weight")
        self.output = mf.weight("output.weight", required=False) or self.tok_embd
        self.layers = [Gemma3Layer(mf, i) for i in range(hp.n_layer)]
        self.embd_scale = F32(math.sqrt(F32(hp.n_embd)))          # sqrtf(n_embd)

    def forward(self, tokens, positions):
        hp = self.hp
        n_tok = tokens.size
        x = self.tok_embd.rows(tokens) * self.embd_scale            # ggml_get_rows, ggml_scale
        for il, L in enumerate(self.layers):
            swa = hp.is_swa[il]
            # llama_model::get_rope_freq_base/scale: SWA layers use freq_base_swa and rope_freq_scale_train_swa (1)
            base = hp.rope_freq_base_swa if swa else hp.rope_freq_base
            scale = F32(1.0) if swa else hp.rope_freq_scale
            cur = rms_norm(x, hp.rms_eps) * L.attn_norm
            q = L.wq.mm(cur).reshape(n_tok, hp.n_head, hp.head_dim)
            k = L.wk.mm(cur).reshape(n_tok, hp.n_head_kv, hp.head_dim)
            v = L.wv.mm(cur).reshape(n_tok, hp.n_head_kv, hp.head_dim)
            q = rms_norm(q, hp.rms_eps) * L.q_norm
            q = rope(q, positions, hp.n_rot, ROPE_NEOX, base, scale)
            k = rms_norm(k, hp.rms_eps) * L.k_norm
            k = rope(k, positions, hp.n_rot, ROPE_NEOX, base, scale)
            q = q * hp.attention_scale                                  # ggml_scale(Qcur, f_attention_scale)
            a = self.attend(il, q, k, v, positions, F32(1.0), window=hp.n_swa if swa else 0)
            cur = L.wo.mm(a.reshape(n_tok, -1))
            cur = rms_norm(cur, hp.rms_eps) * L.attn_post_norm
            sa_out = cur + x
            cur = rms_norm(sa_out, hp.rms_eps) * L.ffn_norm
            cur = L.ffn_down.mm(geglu(L.ffn_gate.mm(cur), L.ffn_up.mm(cur)))
            cur = rms_norm(cur, hp.rms_eps) * L.ffn_post_norm
            x = cur + sa_out
        x = x[self.output_rows]                                          # inp_out_ids
        x = rms_norm(x, hp.rms_eps) * self.output_norm
        logits = self.output.mm(x)
        if hp.final_softcap != 0:
            logits = softcap(logits, hp.final_softcap)
        return logits
