"""Llama 2/3 and Mistral (conversion/llama.py ``LlamaModel``): Q and K rows permuted from Hugging Face's
rotate-half rope layout back to the interleaved layout llama.cpp's LLAMA rope expects; Llama 3's rope scaling
as a ``rope_freqs`` tensor of per-dimension factors."""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import Planned, TextModel
from .. import vocab as vocab_mod

LLAMA_TENSORS = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "model.layers.{bid}.input_layernorm": "blk.{bid}.attn_norm",
    "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
    "model.layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
    "model.layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
    "model.layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
    "model.layers.{bid}.post_attention_layernorm": "blk.{bid}.ffn_norm",
    "model.layers.{bid}.mlp.gate_proj": "blk.{bid}.ffn_gate",
    "model.layers.{bid}.mlp.up_proj": "blk.{bid}.ffn_up",
    "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
}


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """LlamaModel.permute: within each head, rows (first half, second half) -> interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(rope: dict, hparams: dict) -> np.ndarray:
    """LlamaModel.generate_extra_tensors: the script computes the frequencies in torch float32 and the
    wavelengths and smoothing in float32 tensor arithmetic; the same steps in numpy float32 here."""
    base = rope.get("rope_theta", 10000.0)
    dim = hparams.get("head_dim")
    if dim is None:
        dim = hparams["hidden_size"] // hparams["num_attention_heads"]
    freqs = np.float32(1.0) / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor = rope.get("factor", 8.0)
    low_freq_factor = rope.get("low_freq_factor", 1.0)
    high_freq_factor = rope.get("high_freq_factor", 4.0)
    old_context_len = rope.get("original_max_position_embeddings", 8192)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    factors = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq          # python float / 0-d float32 tensor -> float32
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(float(factor))
        else:
            smooth = (np.float32(old_context_len) / wavelen - np.float32(low_freq_factor)) / np.float32(
                high_freq_factor - low_freq_factor)
            factors.append(np.float32(1) / ((np.float32(1) - smooth) / np.float32(factor) + smooth))
    return np.array(factors, dtype=np.float32)


@register("LLaMAForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "LlamaModel")
class LlamaModel(TextModel):
    arch = "llama"
    tensor_map = LLAMA_TENSORS
    undo_permute = True

    def set_vocab(self, w) -> None:
        cfg = self.ckpt.json("tokenizer_config.json")
        if cfg is not None and (add_prefix_space := cfg.get("add_prefix_space")) is not None:
            w.add_bool("tokenizer.ggml.add_space_prefix", add_prefix_space)
        if self.ckpt.file("tokenizer.model").is_file():
            vocab_mod.set_vocab_sentencepiece(self, w)
        else:
            vocab_mod.check_not_llama_hf_spm(self)
            vocab_mod.set_vocab_gpt2(self, w)
        if self.hparams.get("vocab_size", 32000) in (32016, 49152):
            raise ValueError(f"{self.dir}: CodeLlama / Granite vocabularies (vocab_size 32016 / 49152) take special "
                             f"handling refimpl.convert does not implement")

    def set_gguf_parameters(self, w) -> None:
        super().set_gguf_parameters(w)
        w.add_uint32("{arch}.vocab_size", self.hparams["vocab_size"])
        rope_dim = self.hparams.get("head_dim")
        if rope_dim is None:
            rope_dim = self.hparams["hidden_size"] // self.hparams["num_attention_heads"]
        w.add_uint32("{arch}.rope.dimension_count", rope_dim)

    def plan(self, name, shape, bid):
        if self.hf_arch == "LlamaModel":
            name = "model." + name
        n_head = self.find_hparam(["n_heads", "num_attention_heads"])
        n_kv = self.find_hparam(["n_kv_heads", "num_key_value_heads"])
        if "block_sparse_moe.experts" in name:
            raise ValueError(f"{self.dir}: mixture-of-experts checkpoints are not supported by refimpl.convert")
        fn = None
        if self.undo_permute:
            if name.endswith(("q_proj.weight", "q_proj.bias")):
                fn = lambda x, h=n_head: permute(x, h, h)            # noqa: E731
            elif name.endswith(("k_proj.weight", "k_proj.bias")):
                fn = lambda x, h=n_head, kv=n_kv: permute(x, h, kv)  # noqa: E731
            if fn is not None and shape[0] % (2 * (n_kv if name.endswith(("k_proj.weight", "k_proj.bias"))
                                                   and n_kv else n_head)):
                raise ValueError(f"{self.dir}: tensor {name!r} has {shape[0]} rows, not a multiple of twice the "
                                 f"head count in config.json")
        p = super().plan(name, shape, bid)[0]
        return [Planned(p.gguf_name, p.shape, fn or p.transform)]

    def extra_tensors(self, w):
        rope = self.rope_parameters.get("full_attention", self.rope_parameters)
        if rope and rope.get("rope_type", "").lower() == "llama3":
            return [("rope_freqs.weight", llama3_rope_factors(rope, self.hparams))]
        return []
