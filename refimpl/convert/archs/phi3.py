"""Phi-3 (conversion/phi.py ``Phi3MiniModel``): fused QKV and gate/up projections as stored; LongRoPE factors as
``rope_factors_long`` / ``rope_factors_short`` tensors."""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import TextModel
from .. import vocab as vocab_mod

PHI3_TENSORS = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "model.layers.{bid}.input_layernorm": "blk.{bid}.attn_norm",
    "model.layers.{bid}.self_attn.qkv_proj": "blk.{bid}.attn_qkv",
    "model.layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
    "model.layers.{bid}.post_attention_layernorm": "blk.{bid}.ffn_norm",
    "model.layers.{bid}.mlp.gate_up_proj": "blk.{bid}.ffn_up",
    "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
}


@register("Phi3ForCausalLM")
class Phi3Model(TextModel):
    arch = "phi3"
    tensor_map = PHI3_TENSORS

    def set_vocab(self, w) -> None:
        cfg = self.ckpt.json("tokenizer_config.json")
        if cfg is not None:
            if "tokenizer_class" not in cfg:
                raise ValueError(f"{self.dir}/tokenizer_config.json: no tokenizer_class (the script requires it "
                                 f"for Phi-3)")
            if cfg["tokenizer_class"] == "GPT2Tokenizer":
                return vocab_mod.set_vocab_gpt2(self, w)
        if not self.ckpt.file("tokenizer.model").is_file():
            raise ValueError(f"{self.dir}: missing tokenizer.model (Phi-3 needs its SentencePiece model)")
        vocab_mod.set_vocab_phi3(self, w)

    def expected_shapes(self):
        shapes = dict(super().expected_shapes())
        if shapes:
            n_embd, n_ff = self.hparams["hidden_size"], self.hparams["intermediate_size"]
            q, kv = shapes["attn_q.weight"][0], shapes["attn_k.weight"][0]
            shapes.update({"attn_qkv.weight": (q + 2 * kv, n_embd), "ffn_up.weight": (2 * n_ff, n_embd)})
        return shapes

    def _rope_dims(self):
        n_embd = self.find_hparam(["hidden_size", "n_embd"])
        n_head = self.find_hparam(["num_attention_heads", "n_head"])
        return int(self.rope_parameters.get("partial_rotary_factor", 1.0) * n_embd) // n_head

    def set_gguf_parameters(self, w) -> None:
        n_embd = self.find_hparam(["hidden_size", "n_embd"])
        n_head = self.find_hparam(["num_attention_heads", "n_head"])
        n_head_kv = self.find_hparam(["num_key_value_heads", "n_head_kv"])
        rms_eps = self.find_hparam(["rms_norm_eps"])
        max_pos = self.find_hparam(["n_positions", "max_position_embeddings"])
        if "original_max_position_embeddings" not in self.rope_parameters:
            raise ValueError(f"{self.dir}/config.json: Phi-3 needs original_max_position_embeddings")
        w.add_uint32("{arch}.context_length", max_pos)
        w.add_uint32("{arch}.rope.scaling.original_context_length",
                     self.rope_parameters["original_max_position_embeddings"])
        w.add_uint32("{arch}.embedding_length", n_embd)
        w.add_uint32("{arch}.feed_forward_length", self.find_hparam(["intermediate_size"]))
        w.add_uint32("{arch}.block_count", self.block_count)
        w.add_uint32("{arch}.attention.head_count", n_head)
        w.add_uint32("{arch}.attention.head_count_kv", n_head_kv)
        w.add_float32("{arch}.attention.layer_norm_rms_epsilon", rms_eps)
        w.add_uint32("{arch}.rope.dimension_count", self._rope_dims())
        w.add_float32("{arch}.rope.freq_base", self.rope_parameters.get("full_attention", self.rope_parameters)["rope_theta"])
        w.add_uint32("general.file_type", self.file_type)
        w.add_uint32("{arch}.attention.sliding_window", self.hparams.get("sliding_window") or 0)

    def extra_tensors(self, w):
        long_factors = self.rope_parameters.get("long_factor")
        short_factors = self.rope_parameters.get("short_factor")
        if not long_factors:
            return []
        max_pos = self.find_hparam(["n_positions", "max_position_embeddings"])
        orig = self.rope_parameters["original_max_position_embeddings"]
        scale = max_pos / orig
        kind = self.rope_parameters.get("rope_type", "").lower()
        if kind in ("su", "longrope"):
            self.attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
        elif kind == "yarn":
            self.attn_factor = 0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0
        else:
            raise ValueError(f"{self.dir}: rope scaling type {kind!r} is not supported for Phi-3")
        w.add_float32("{arch}.rope.scaling.attn_factor", self.attn_factor)   # written while tensors are prepared
        if short_factors is None or len(long_factors) != len(short_factors) or len(long_factors) != self._rope_dims() / 2:
            raise ValueError(f"{self.dir}: rope long/short factors must both have {self._rope_dims() / 2} entries")
        return [("rope_factors_long.weight", np.array(long_factors, dtype=np.float32)),
                ("rope_factors_short.weight", np.array(short_factors, dtype=np.float32))]
