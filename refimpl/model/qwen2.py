"""Qwen2: llama's graph with q/k/v biases and NEOX RoPE (llama_model_qwen2::graph)."""
from __future__ import annotations

from . import ModelFile, register
from .layers import ROPE_NEOX
from .llama import Llama, LlamaLayer


class Qwen2Layer(LlamaLayer):
    def __init__(self, mf: ModelFile, i: int):
        super().__init__(mf, i)
        for name in ("attn_q.bias", "attn_k.bias", "attn_v.bias"):     # required for qwen2
            mf.weight(f"blk.{i}.{name}")


@register("qwen2")
class Qwen2(Llama):
    rope_mode = ROPE_NEOX
    layer_class = Qwen2Layer
