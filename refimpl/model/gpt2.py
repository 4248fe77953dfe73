"""GPT-2: llama_model_gpt2::graph (src/models/gpt2.cpp).

Learned absolute positions (position_embd rows added to the token embeddings, no RoPE); LayerNorm with weight and
bias (ggml_norm, ggml_mul, ggml_add); one fused qkv matmul plus bias, split into q | k | v; attention with
kq_scale 1/sqrtf(head_dim); output projection and FFN (up, GELU, down) all with biases; tied or untied output.
"""
from __future__ import annotations

from . import register
from .base import Layer, Model, ModelFile
from .hparams import Hparams
from .layers import gelu

MATRIX, VECTOR = "matrix", "vector"


class GPT2Hparams(Hparams):
    EPS_KEY = "attention.layer_norm_epsilon"


class GPT2Layer(Layer):
    TENSORS = {
        "attn_norm": ("attn_norm.weight", VECTOR, True),
        "attn_norm_b": ("attn_norm.bias", VECTOR, True),
        "wqkv": ("attn_qkv.weight", MATRIX, True),
        "bqkv": ("attn_qkv.bias", VECTOR, True),
        "wo": ("attn_output.weight", MATRIX, True),
        "bo": ("attn_output.bias", VECTOR, True),
        "ffn_norm": ("ffn_norm.weight", VECTOR, True),
        "ffn_norm_b": ("ffn_norm.bias", VECTOR, True),
        "ffn_up": ("ffn_up.weight", MATRIX, True),
        "ffn_up_b": ("ffn_up.bias", VECTOR, True),
        "ffn_down": ("ffn_down.weight", MATRIX, True),
        "ffn_down_b": ("ffn_down.bias", VECTOR, True),
    }


@register("gpt2")
class GPT2(Model):
    hparams_class = GPT2Hparams
    layer_class = GPT2Layer
    norm_type = "layer"

    def __init__(self, mf: ModelFile):
        super().__init__(mf)
        self.pos_embd = mf.weight("position_embd.weight")
        self.output_norm_b = mf.vector("output_norm.bias")        # required for gpt2

    def embed(self, tokens, positions):
        """Token rows + position rows (two ggml_get_rows, ggml_add)."""
        if int(positions[-1]) >= self.pos_embd.shape[0]:
            raise ValueError(f"gpt2: position {int(positions[-1])} is beyond the {self.pos_embd.shape[0]} learned "
                             f"positions (context_length)")
        x = super().embed(tokens, positions)
        pos = self.pos_embd.rows(positions)
        if self.tracing:
            self.emit("pos_embd", -1, pos)
        x = x + pos
        if self.tracing:
            self.emit("inpL", -1, x)
        return x

    def position_qk(self, il, layer, q, k, positions):
        return q, k                                             # no RoPE: positions are in the embeddings

    def feed_forward(self, il, layer, cur):
        """build_ffn, LLM_FFN_GELU, LLM_FFN_SEQ without a gate: down(gelu(up(x) + b) ) + b."""
        cur = self._linear(layer.ffn_up, layer.ffn_up_b, cur, "ffn_up", il)
        cur = gelu(cur)
        if self.tracing:
            self.emit("ffn_gelu", il, cur)
        return self.ffn_down(il, layer, cur)
