"""Qwen2: llama's graph with q/k/v biases and NEOX RoPE (llama_model_qwen2::graph, src/models/qwen2.cpp)."""
from __future__ import annotations

from . import register
from .layers import ROPE_NEOX
from .llama import VECTOR, Llama, LlamaLayer


class Qwen2Layer(LlamaLayer):
    TENSORS = {**LlamaLayer.TENSORS,
               "bq": ("attn_q.bias", VECTOR, True), "bk": ("attn_k.bias", VECTOR, True),
               "bv": ("attn_v.bias", VECTOR, True)}


@register("qwen2")
class Qwen2(Llama):
    rope_mode = ROPE_NEOX
    layer_class = Qwen2Layer
    attn_out_name = None
