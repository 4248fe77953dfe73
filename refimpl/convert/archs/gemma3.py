"""Gemma 3, text only (conversion/gemma.py ``Gemma3Model``): RMS norm weights stored as ``w`` with the model
computing ``x * (1 + w)``, so the converter writes ``w + 1``; embedding rows past the tokenizer's vocabulary cut."""
from __future__ import annotations

import json

from . import register
from .base import Planned, TextModel
from .. import vocab as vocab_mod

GEMMA3_TENSORS = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "model.layers.{bid}.input_layernorm": "blk.{bid}.attn_norm",
    "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
    "model.layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
    "model.layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
    "model.layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
    "model.layers.{bid}.self_attn.q_norm": "blk.{bid}.attn_q_norm",
    "model.layers.{bid}.self_attn.k_norm": "blk.{bid}.attn_k_norm",
    "model.layers.{bid}.post_attention_layernorm": "blk.{bid}.post_attention_norm",
    "model.layers.{bid}.pre_feedforward_layernorm": "blk.{bid}.ffn_norm",
    "model.layers.{bid}.post_feedforward_layernorm": "blk.{bid}.post_ffw_norm",
    "model.layers.{bid}.mlp.gate_proj": "blk.{bid}.ffn_gate",
    "model.layers.{bid}.mlp.up_proj": "blk.{bid}.ffn_up",
    "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
}


@register("Gemma3ForCausalLM")
class Gemma3Model(TextModel):
    arch = "gemma3"
    tensor_map = GEMMA3_TENSORS

    def set_vocab(self, w) -> None:
        if self.ckpt.file("tokenizer.model").is_file():
            vocab_mod.set_vocab_sentencepiece(self, w)
            w.add_bool("tokenizer.ggml.add_space_prefix", False)
        else:
            vocab_mod.set_vocab_gpt2(self, w)

    def set_gguf_parameters(self, w) -> None:
        super().set_gguf_parameters(w)
        hp = self.hparams
        w.add_uint32("{arch}.context_length", hp.get("max_position_embeddings", 131072))
        w.add_uint32("{arch}.attention.head_count", hp.get("num_attention_heads", 8))
        w.add_float32("{arch}.attention.layer_norm_rms_epsilon", hp.get("rms_norm_eps", 1e-6))
        w.add_uint32("{arch}.attention.key_length", hp.get("head_dim", 256))
        w.add_uint32("{arch}.attention.value_length", hp.get("head_dim", 256))
        w.add_float32("{arch}.rope.freq_base",
                      self.rope_parameters.get("full_attention", self.rope_parameters).get("rope_theta", 1_000_000.0))
        if hp.get("attn_logit_softcapping") is not None:
            raise ValueError(f"{self.dir}: attn_logit_softcapping is set, which Gemma 3 does not have")
        if final := hp.get("final_logit_softcapping"):
            w.add_float32("{arch}.final_logit_softcapping", final)
        if hp.get("sliding_window_pattern") != 1:
            w.add_uint32("{arch}.attention.sliding_window", hp["sliding_window"])
        w.add_uint32("{arch}.attention.head_count_kv", hp.get("num_key_value_heads", 4))

    def n_vocab_real(self) -> int:
        if self.ckpt.file("tokenizer.model").is_file():
            return len(vocab_mod.sentencepiece_vocab(self)[0])
        with open(self.ckpt.file("tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        return len(tj["model"]["vocab"]) + len(tj["added_tokens"])

    def plan(self, name, shape, bid):
        p = super().plan(name, shape, bid)[0]
        fn, out_shape = p.transform, p.shape
        if "embed_tokens.weight" in name:
            n = self.n_vocab_real()
            out_shape = (min(n, shape[0]) if n >= 0 else shape[0] + n,) + tuple(shape[1:])
            fn = lambda x, n=n: x[:n]                                      # noqa: E731
        if name.endswith("norm.weight"):
            # data + 1.0 in the tensor's dtype (float32, or float16 for an F16 checkpoint), as torch does
            fn = lambda x: x + x.dtype.type(1.0)                           # noqa: E731
        return [Planned(p.gguf_name, out_shape, fn)]
