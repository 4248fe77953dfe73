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
from dataclasses import dataclass, field

import numpy as np

from . import register
from .base import Layer, Model, ModelFile
from .hparams import Hparams
from .layers import ROPE_NEOX, geglu, softcap

F32 = np.float32
MATRIX, VECTOR = "matrix", "vector"


@dataclass
class Gemma3Hparams(Hparams):
    rope_freq_base_swa: np.float32 = F32(10000.0)   # {arch}.rope.freq_base_swa
    n_swa: int = 0                                  # {arch}.attention.sliding_window (0: none)
    is_swa: list = field(default_factory=list)      # per layer: sliding-window attention
    final_softcap: np.float32 = F32(0.0)            # {arch}.final_logit_softcapping (0: none)
    attention_scale: np.float32 = F32(1.0)          # f_attention_scale, applied to q

    @classmethod
    def read(cls, mf: ModelFile, n_vocab: int) -> dict:
        kw = super().read(mf, n_vocab)
        n_layer, n_embd, n_head = kw["n_layer"], kw["n_embd"], kw["n_head"]
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
        q_dim = n_embd // n_head if n_layer == 62 else kw["head_dim"]
        kw.update(
            rope_freq_base_swa=F32(mf.get("{arch}.rope.freq_base_swa", 10000.0)),
            n_swa=n_swa, is_swa=is_swa,
            final_softcap=F32(mf.get("{arch}.final_logit_softcapping", 0.0)),
            attention_scale=F32(1.0) / F32(math.sqrt(F32(q_dim))),
        )
        return kw


class Gemma3Layer(Layer):
    TENSORS = {
        "attn_norm": ("attn_norm.weight", VECTOR, True),
        "wq": ("attn_q.weight", MATRIX, True),
        "wk": ("attn_k.weight", MATRIX, True),
        "wv": ("attn_v.weight", MATRIX, True),
        "wo": ("attn_output.weight", MATRIX, True),
        "q_norm": ("attn_q_norm.weight", VECTOR, True),
        "k_norm": ("attn_k_norm.weight", VECTOR, True),
        "attn_post_norm": ("post_attention_norm.weight", VECTOR, True),
        "ffn_norm": ("ffn_norm.weight", VECTOR, True),
        "ffn_gate": ("ffn_gate.weight", MATRIX, True),
        "ffn_up": ("ffn_up.weight", MATRIX, True),
        "ffn_down": ("ffn_down.weight", MATRIX, True),
        "ffn_post_norm": ("post_ffw_norm.weight", VECTOR, True),
    }


@register("gemma3")
class Gemma3(Model):
    hparams_class = Gemma3Hparams
    layer_class = Gemma3Layer
    rope_mode = ROPE_NEOX

    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.kq_scale = F32(1.0)                                  # q is scaled instead (position_qk)
        self.embd_scale = F32(math.sqrt(F32(self.hp.n_embd)))     # sqrtf(n_embd)

    def embed(self, tokens, positions):
        x = super().embed(tokens, positions) * self.embd_scale    # ggml_scale
        if self.tracing:
            self.emit("inp_scaled", -1, x)
        return x

    def window(self, il):
        return self.hp.n_swa if self.hp.is_swa[il] else 0

    def rope_base_scale(self, il):
        # llama_model::get_rope_freq_base/scale: SWA layers use freq_base_swa and rope_freq_scale_train_swa (1)
        hp = self.hp
        return (hp.rope_freq_base_swa, F32(1.0)) if hp.is_swa[il] else (hp.rope_freq_base, hp.rope_freq_scale)

    def position_qk(self, il, layer, q, k, positions):
        q, k = super().position_qk(il, layer, q, k, positions)
        return q * self.hp.attention_scale, k                      # ggml_scale(Qcur, f_attention_scale)

    def layer_block(self, il, layer, x, positions, out_rows):
        """Post-norms: x + norm(attention(norm(x))), then + norm(feed_forward(norm(.)))."""
        cur = self.norm(x, layer.attn_norm, None, "attn_norm", il)
        cur = self.attention(il, layer, cur, positions)
        if out_rows is not None:
            cur, x = cur[out_rows], x[out_rows]
        cur = self.norm(cur, layer.attn_post_norm, None, "attn_post_norm", il)
        sa_out = cur + x
        if self.tracing:
            self.emit("sa_out", il, sa_out)
        cur = self.norm(sa_out, layer.ffn_norm, None, "ffn_norm", il)
        cur = self.feed_forward(il, layer, cur)
        if self.tracing:
            self.emit("ffn_out", il, cur)
        cur = self.norm(cur, layer.ffn_post_norm, None, "ffn_post_norm", il, norm_il=-1)   # build_norm(..., -1)
        x = cur + sa_out
        if self.tracing:
            self.emit("l_out", il, x)
        return x

    def feed_forward(self, il, layer, cur):
        """build_ffn, LLM_FFN_GELU, LLM_FFN_PAR: down(gelu(gate(x)) * up(x))."""
        up = self._linear(layer.ffn_up, None, cur, "ffn_up", il)
        gate = self._linear(layer.ffn_gate, None, cur, "ffn_gate", il)
        cur = geglu(gate, up)                                       # ggml_geglu_split
        if self.tracing:
            self.emit("ffn_geglu", il, cur)
        return self.ffn_down(il, layer, cur)

    def logits(self, x):
        logits = super().logits(x)
        if self.hp.final_softcap != 0:
            logits = softcap(logits, self.hp.final_softcap)
        return logits
