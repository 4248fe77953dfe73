"""Qwen3: llama's graph with per-head RMSNorm of q and k before RoPE, NEOX RoPE (llama_model_qwen3::graph)."""
from __future__ import annotations

from . import ModelFile, register
from .layers import ROPE_NEOX
from .llama import Llama, LlamaLayer


class Qwen3Layer(LlamaLayer):
    def __init__(self, mf: ModelFile, i: int):
        super().__init__(mf, i)
        for name in ("attn_q_norm.weight", "attn_k_norm.weight"):     # required for qwen3
            mf.weight(f"blk.{i}.{name}")


@register("qwen3")
class Qwen3(Llama):
    rope_mode = ROPE_NEOX
    layer_class = Qwen3Layer
