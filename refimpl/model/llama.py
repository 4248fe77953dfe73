"""Llama (2, 3 with rope_freqs, Mistral, TinyLlama, SmolLM): llama_model_llama::graph (src/models/llama.cpp).

The shared blocks of ``Model`` are llama's graph; this file only names the tensors a llama layer has, checks
llama.cpp's shape assertion and supplies the llama3 frequency factors.  qwen2 and qwen3 derive from it.
"""
from __future__ import annotations

from . import register
from .base import Layer, Model, ModelFile
from .layers import ROPE_NORMAL

MATRIX, VECTOR = "matrix", "vector"


class LlamaLayer(Layer):
    TENSORS = {
        "attn_norm": ("attn_norm.weight", VECTOR, True),
        "wq": ("attn_q.weight", MATRIX, True),
        "wk": ("attn_k.weight", MATRIX, True),
        "wv": ("attn_v.weight", MATRIX, True),
        "wo": ("attn_output.weight", MATRIX, True),
        "bq": ("attn_q.bias", VECTOR, False),
        "bk": ("attn_k.bias", VECTOR, False),
        "bv": ("attn_v.bias", VECTOR, False),
        "bo": ("attn_output.bias", VECTOR, False),
        "q_norm": ("attn_q_norm.weight", VECTOR, False),
        "k_norm": ("attn_k_norm.weight", VECTOR, False),
        "ffn_norm": ("ffn_norm.weight", VECTOR, True),
        "ffn_gate": ("ffn_gate.weight", MATRIX, True),
        "ffn_up": ("ffn_up.weight", MATRIX, True),
        "ffn_down": ("ffn_down.weight", MATRIX, True),
        "ffn_gate_b": ("ffn_gate.bias", VECTOR, False),
        "ffn_up_b": ("ffn_up.bias", VECTOR, False),
        "ffn_down_b": ("ffn_down.bias", VECTOR, False),
    }


@register("llama")
class Llama(Model):
    rope_mode = ROPE_NORMAL
    layer_class = LlamaLayer
    attn_out_name = "attn_out"          # llama.cpp's llama graph names the output projection; qwen2/qwen3 do not

    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        hp = self.hp
        if hp.n_rot != hp.head_dim:      # GGML_ASSERT(n_embd_head == n_rot)
            raise ValueError(f"{mf.path}: {mf.arch} needs rope.dimension_count == head_dim "
                             f"({hp.n_rot} != {hp.head_dim})")
        self.rope_freqs = mf.vector("rope_freqs.weight", required=False)     # llama3 frequency factors

    def rope_factors(self, il):
        return self.rope_freqs
