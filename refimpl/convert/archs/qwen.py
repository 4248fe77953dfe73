"""Qwen2 and Qwen3 (conversion/qwen.py ``Qwen2Model``, ``Qwen3Model``): Hugging Face tensor layout as is (no Q/K
permutation: llama.cpp runs them with NEOX-style rope); Qwen3 adds per-head Q/K RMS norms."""
from __future__ import annotations

from . import register
from .base import TextModel
from .llama import LLAMA_TENSORS
from .. import vocab as vocab_mod


@register("Qwen2ForCausalLM", "Qwen2Model")
class Qwen2Model(TextModel):
    arch = "qwen2"
    tensor_map = LLAMA_TENSORS

    def set_vocab(self, w) -> None:
        if self.ckpt.file("tokenizer.model").is_file():
            vocab_mod.set_vocab_sentencepiece(self, w)
        else:
            vocab_mod.set_vocab_gpt2(self, w)

    def set_gguf_parameters(self, w) -> None:
        super().set_gguf_parameters(w)
        if self.ckpt.file("modules.json").is_file():
            raise ValueError(f"{self.dir}: sentence-transformers pooling (modules.json) is not supported")

    def plan(self, name, shape, bid):
        if self.hf_arch == "Qwen2Model":
            name = f"model.{name}"
        return super().plan(name, shape, bid)


@register("Qwen3ForCausalLM", "Qwen3Model")
class Qwen3Model(Qwen2Model):
    arch = "qwen3"
    tensor_map = {**LLAMA_TENSORS,
                  "model.layers.{bid}.self_attn.q_norm": "blk.{bid}.attn_q_norm",
                  "model.layers.{bid}.self_attn.k_norm": "blk.{bid}.attn_k_norm"}

    def __init__(self, ckpt, outtype):
        super().__init__(ckpt, outtype)
        readme = ckpt.file("README.md")
        text = readme.read_text(encoding="utf-8", errors="replace").lower() if readme.is_file() else ""
        hints = [str(self.dir.name), str(self.hparams.get("_name_or_path", "")), str(self.hparams.get("model_type", "")),
                 str(self.hf_arch or "")]
        if ("# qwen3-reranker" in text or "# qwen3-vl-reranker" in text
                or any("qwen3-reranker" in h.lower() or "qwen3-vl-reranker" in h.lower() for h in hints)
                or "sequenceclassification" in (self.hf_arch or "").lower()):
            raise ValueError(f"{self.dir}: Qwen3 reranker checkpoints are not supported by refimpl.convert")
