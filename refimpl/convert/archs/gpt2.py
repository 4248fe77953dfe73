"""GPT-2 (conversion/gpt2.py ``GPT2Model``): Conv1D weights stored (in, out) are transposed to (out, in)."""
from __future__ import annotations

from . import register
from .base import Planned, TextModel

GPT2_TENSORS = {}
for _prefix in ("transformer.", ""):
    GPT2_TENSORS.update({
        _prefix + "wte": "token_embd",
        _prefix + "wpe": "position_embd",
        _prefix + "ln_f": "output_norm",
        _prefix + "h.{bid}.ln_1": "blk.{bid}.attn_norm",
        _prefix + "h.{bid}.attn.c_attn": "blk.{bid}.attn_qkv",
        _prefix + "h.{bid}.attn.c_proj": "blk.{bid}.attn_output",
        _prefix + "h.{bid}.ln_2": "blk.{bid}.ffn_norm",
        _prefix + "h.{bid}.mlp.c_fc": "blk.{bid}.ffn_up",
        _prefix + "h.{bid}.mlp.c_proj": "blk.{bid}.ffn_down",
    })
GPT2_TENSORS["lm_head"] = "output"


@register("GPT2LMHeadModel")
class GPT2Model(TextModel):
    arch = "gpt2"
    tensor_map = GPT2_TENSORS

    def set_gguf_parameters(self, w) -> None:
        hp = self.hparams
        for key in ("n_ctx", "n_embd", "n_head", "layer_norm_epsilon"):
            if key not in hp:
                raise ValueError(f"{self.dir}/config.json: GPT-2 needs {key!r}")
        w.add_uint32("{arch}.block_count", self.block_count)
        w.add_uint32("{arch}.context_length", hp["n_ctx"])
        w.add_uint32("{arch}.embedding_length", hp["n_embd"])
        w.add_uint32("{arch}.feed_forward_length", 4 * hp["n_embd"])
        w.add_uint32("{arch}.attention.head_count", hp["n_head"])
        w.add_float32("{arch}.attention.layer_norm_epsilon", hp["layer_norm_epsilon"])
        w.add_uint32("general.file_type", self.file_type)

    def expected_shapes(self):
        hp = self.hparams
        n = hp.get("n_embd")
        ff = hp.get("n_inner") or 4 * (n or 0)   # the file says 4 * n_embd regardless, as the script writes it
        if n is None:
            return {}
        return {"attn_norm.weight": (n,), "attn_norm.bias": (n,), "ffn_norm.weight": (n,), "ffn_norm.bias": (n,),
                "output_norm.weight": (n,), "output_norm.bias": (n,), "attn_qkv.weight": (3 * n, n),
                "attn_qkv.bias": (3 * n,), "attn_output.weight": (n, n), "attn_output.bias": (n,),
                "ffn_up.weight": (ff, n), "ffn_up.bias": (ff,), "ffn_down.weight": (n, ff), "ffn_down.bias": (n,),
                "position_embd.weight": (hp.get("n_positions", 1024), n), "token_embd.weight": (hp["vocab_size"], n)}

    def plan(self, name, shape, bid):
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            return super().plan(name, shape, bid)
        p = super().plan(name, shape, bid)[0]
        if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            return [Planned(p.gguf_name, (shape[1], shape[0]), lambda x: x.T)]
        return [p]
