"""Qwen3: llama's graph with per-head RMSNorm of q and k before RoPE, NEOX RoPE (llama_model_qwen3::graph,
src/models/qwen3.cpp)."""
from __future__ import annotations

from . import register
from .layers import ROPE_NEOX
from .llama import VECTOR, Llama, LlamaLayer


class Qwen3Layer(LlamaLayer):
    TENSORS = {**LlamaLayer.TENSORS,
               "q_norm": ("attn_q_norm.weight", VECTOR, True), "k_norm": ("attn_k_norm.weight", VECTOR, True)}


@register("qwen3")
class Qwen3(Llama):
    rope_mode = ROPE_NEOX
    layer_class = Qwen3Layer
    attn_out_name = None
