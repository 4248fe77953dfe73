"""``TextModel``: what convert_hf_to_gguf.py's ``ModelBase`` / ``TextModel`` (conversion/base.py) do for every
architecture — tensor naming, the hyperparameters every text model writes, and the tensor plan.

A tensor is planned before it is read: ``plan(hf_name, shape)`` returns the output tensors it becomes, each with
its GGUF name, shape and a function turning the stored data into the output data.  The writer calls those
functions one tensor at a time, so memory stays near one tensor, as the script's lazy tensors do.
"""
from __future__ import annotations

import re
from typing import Callable, NamedTuple

import numpy as np

from ..checkpoint import Checkpoint
from .. import vocab as vocab_mod


class Planned(NamedTuple):
    gguf_name: str
    shape: tuple[int, ...]
    transform: Callable[[np.ndarray], np.ndarray]   # stored data (float32/float16) -> output data


def identity(x):
    return x


#: name prefixes and fragments the script's TextModel.filter_tensors skips (multimodal parts of a checkpoint)
_SKIP_PREFIXES = ("mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
                  "sound_projection.", "speech_embeddings.")
_SKIP_FRAGMENTS = ("visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.", "code2wav.",
                   "projector.", "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed",
                   "patch_embedding", "patch_merger.", "patch_merge_mlp.", "model.connector.")
#: buffers the script drops in prepare_tensors
_UNNEEDED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")


class TextModel:
    #: GGUF general.architecture
    arch: str = ""
    #: HF tensor name (without .weight/.bias, ``{bid}`` for the block number) -> GGUF name
    tensor_map: dict[str, str] = {}

    def __init__(self, ckpt: Checkpoint, outtype: str):
        self.ckpt = ckpt
        self.dir = ckpt.dir
        self.hparams = dict(ckpt.hparams)
        self.hf_arch = (self.hparams.get("architectures") or [None])[0]
        self.outtype = outtype
        if "text_config" in self.hparams:
            self.hparams = {**self.hparams, **self.hparams["text_config"]}
        self.block_count = self.find_hparam(["n_layers", "num_hidden_layers", "n_layer", "num_layers"])
        self._names = self._expand_tensor_map()
        rope = self.hparams.get("rope_parameters", self.hparams.get("rope_scaling")) or {}
        self.rope_parameters = dict(rope)
        rope_theta = self.find_hparam(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta",
                                       "rotary_emb_base"], optional=True)
        local_theta = self.find_hparam(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                                        "rope_local_base_freq"], optional=True)
        partial = self.find_hparam(["partial_rotary_factor", "rope_pct", "rope_percent"], optional=True)
        orig_max = self.find_hparam(["original_max_position_embeddings"], optional=True)
        rp = self.rope_parameters
        if "full_attention" not in rp and "sliding_attention" not in rp:
            if local_theta is not None:
                rp["sliding_attention"] = {"rope_theta": local_theta}
            if "rope_theta" not in rp and rope_theta is not None:
                rp["rope_theta"] = rope_theta
            if "rope_type" not in rp and (rope_type := rp.get("type")) is not None:
                rp["rope_type"] = rope_type
            if "partial_rotary_factor" not in rp and partial is not None:
                rp["partial_rotary_factor"] = partial
            if "original_max_position_embeddings" not in rp and orig_max is not None:
                rp["original_max_position_embeddings"] = orig_max

    # ------------------------------------------------------------------ hparams
    def find_hparam(self, keys, optional: bool = False):
        key = next((k for k in keys if k in self.hparams), None)
        if key is not None:
            return self.hparams[key]
        if optional:
            return None
        raise ValueError(f"{self.dir}/config.json: could not find any of: {list(keys)}")

    # ------------------------------------------------------------------ tensor names
    def _expand_tensor_map(self) -> dict[str, str]:
        names = {}
        for hf, gg in self.tensor_map.items():
            if "{bid}" in hf:
                for b in range(self.block_count):
                    names[hf.format(bid=b)] = gg.format(bid=b)
            else:
                names[hf] = gg
        for gg in list(names.values()):       # the GGUF names map to themselves (TensorNameMap does the same)
            names.setdefault(gg, gg)
        return names

    def map_tensor_name(self, name: str) -> str:
        if name in self._names:
            return self._names[name]
        for suffix in (".weight", ".bias"):
            if name.endswith(suffix) and name[:-len(suffix)] in self._names:
                return self._names[name[:-len(suffix)]] + suffix
        raise ValueError(f"{self.dir}: can not map tensor {name!r} (architecture {self.hf_arch})")

    def filter_tensor_name(self, name: str) -> str | None:
        if name.startswith(_SKIP_PREFIXES) or any(f in name for f in _SKIP_FRAGMENTS):
            return None
        if name.endswith("e_score_correction_bias"):
            name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        return name.replace("language_model.", "")

    # ------------------------------------------------------------------ tensors
    def extra_tensors(self, w) -> list[tuple[str, np.ndarray]]:
        """Tensors the converter generates (``generate_extra_tensors``), written before the checkpoint's; runs
        before any metadata but the architecture is set, as in the script (a key added here comes second)."""
        return []

    def plan(self, name: str, shape: tuple[int, ...], bid: int | None) -> list[Planned]:
        """``modify_tensors``: the output tensors one stored tensor becomes."""
        return [Planned(self.map_tensor_name(name), shape, identity)]

    def check_shape(self, name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
        if tuple(shape) != tuple(expected):
            raise ValueError(f"{self.dir}: tensor {name!r} has shape {tuple(shape)}, but config.json implies "
                             f"{tuple(expected)}")

    def planned_tensors(self, w):
        """(output name, shape, loader, source name) for every output tensor, in the script's order."""
        out = []
        for gname, data in self.extra_tensors(w):
            out.append((gname, data.shape, lambda d=data: d, gname))
        for hf_name, ref in self.ckpt.tensors.items():
            name = self.filter_tensor_name(hf_name)
            if name is None or name.endswith(_UNNEEDED_SUFFIXES):
                continue
            bid = next((int(p) for p in name.split(".") if p.isdecimal()), None)
            self.validate_tensor(name, ref.shape)
            for p in self.plan(name, ref.shape, bid):
                kind = re.sub(r"^blk\.\d+\.", "", p.gguf_name)
                expected = self.expected_shapes().get(kind)
                if expected is not None and tuple(p.shape) != expected:
                    raise ValueError(f"{self.dir}: tensor {hf_name!r} ({p.gguf_name}) has shape {tuple(ref.shape)}, "
                                     f"which does not fit config.json (expected {expected} for {kind})")
                out.append((p.gguf_name, p.shape, (lambda r=ref, f=p.transform: f(_load(r))), hf_name))
        return out

    def validate_tensor(self, name: str, shape: tuple[int, ...]) -> None:
        """A clear error when a stored tensor disagrees with config.json (the script would fail deep inside a
        reshape, or write a file llama.cpp rejects)."""
        hidden = self.find_hparam(["hidden_size", "n_embd", "dim"], optional=True)
        vocab = self.hparams.get("vocab_size")
        if hidden is None:
            return
        if re.search(r"(embed_tokens|wte|lm_head)\.weight$", name) and vocab is not None:
            self.check_shape(name, shape, (vocab, hidden))
        elif re.search(r"(input_layernorm|post_attention_layernorm|ln_1|ln_2|ln_f|model\.norm)\.weight$", name):
            self.check_shape(name, shape, (hidden,))

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape (numpy order) of each per-block tensor kind and of the global tensors, from config.json,
        for the llama-style layout (separate Q/K/V, gated FFN); architectures with another layout override it.
        Tensors not listed are not checked."""
        if getattr(self, "_expected", None) is None:
            hp = self.hparams
            n_embd = self.find_hparam(["hidden_size", "n_embd"], optional=True)
            n_head = self.find_hparam(["num_attention_heads", "n_head"], optional=True)
            n_ff = self.find_hparam(["intermediate_size"], optional=True)
            if None in (n_embd, n_head, n_ff):
                self._expected = {}
                return self._expected
            n_kv = hp.get("num_key_value_heads") or n_head
            hd = hp.get("head_dim") or n_embd // n_head
            q, kv = n_head * hd, n_kv * hd
            self._expected = {
                "attn_norm.weight": (n_embd,), "ffn_norm.weight": (n_embd,), "output_norm.weight": (n_embd,),
                "attn_q.weight": (q, n_embd), "attn_k.weight": (kv, n_embd), "attn_v.weight": (kv, n_embd),
                "attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,),
                "attn_output.weight": (n_embd, q), "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,),
                "ffn_gate.weight": (n_ff, n_embd), "ffn_up.weight": (n_ff, n_embd), "ffn_down.weight": (n_embd, n_ff),
                "output.weight": (hp["vocab_size"], n_embd) if "vocab_size" in hp else None,
            }
            self._expected = {k: v for k, v in self._expected.items() if v is not None}
        return self._expected

    def tensor_is_always_f32(self, gguf_name: str) -> bool:
        return gguf_name in ("position_embd.weight",)

    def tensor_is_embedding_or_output(self, gguf_name: str) -> bool:
        return gguf_name in ("token_embd.weight", "output.weight")

    # ------------------------------------------------------------------ metadata
    def set_gguf_parameters(self, w) -> None:
        """TextModel.set_gguf_parameters (the keys every text model gets, in the script's order)."""
        hp = self.hparams
        w.add_uint32("{arch}.block_count", self.block_count)
        if (n_ctx := self.find_hparam(["max_position_embeddings", "n_ctx", "n_positions", "max_length",
                                       "max_sequence_length", "model_max_length"], optional=True)) is not None:
            w.add_uint32("{arch}.context_length", n_ctx)
        if (n_embd := self.find_hparam(["hidden_size", "n_embd", "dim"], optional=True)) is not None:
            w.add_uint32("{arch}.embedding_length", n_embd)
        if (n_ff := self.find_hparam(["prefix_dense_intermediate_size", "dense_intermediate_size",
                                      "intermediate_size", "n_inner", "hidden_dim"], optional=True)) is not None:
            w.add_uint32("{arch}.feed_forward_length", n_ff)
        if (n_head := self.find_hparam(["num_attention_heads", "n_head", "n_heads"], optional=True)) is not None:
            w.add_uint32("{arch}.attention.head_count", n_head)
        if (n_head_kv := self.find_hparam(["num_key_value_heads", "n_kv_heads"], optional=True)) is not None:
            w.add_uint32("{arch}.attention.head_count_kv", n_head_kv)
        if hp.get("is_causal") is False:
            w.add_bool("{arch}.attention.causal", False)
        rope = self.rope_parameters.get("full_attention", self.rope_parameters)
        if (rope_type := rope.get("rope_type")) is not None:
            factor = rope.get("factor")
            if rope_type == "linear" and factor is not None:
                w.add_string("{arch}.rope.scaling.type", "linear")
                w.add_float32("{arch}.rope.scaling.factor", factor)
            elif rope_type == "yarn" and factor is not None:
                w.add_string("{arch}.rope.scaling.type", "yarn")
                w.add_float32("{arch}.rope.scaling.factor", factor)
                w.add_uint32("{arch}.rope.scaling.original_context_length", rope["original_max_position_embeddings"])
                yarn = (("yarn_ext_factor", rope.get("extrapolation_factor")),
                        ("yarn_attn_factor", rope.get("attention_factor", rope.get("attn_factor"))),
                        ("yarn_beta_fast", rope.get("beta_fast")), ("yarn_beta_slow", rope.get("beta_slow")))
                for key, value in yarn:
                    if value is not None:
                        w.add_float32("{arch}.rope.scaling." + key, value)
            elif rope_type in ("su", "longrope"):
                w.add_string("{arch}.rope.scaling.type", "longrope")
        if "mrope_section" in self.rope_parameters:
            raise ValueError(f"{self.dir}: multimodal rope sections (mrope_section) are not supported")
        if (theta := rope.get("rope_theta")) is not None:
            w.add_float32("{arch}.rope.freq_base", theta)
        if (local := self.rope_parameters.get("sliding_attention", {}).get("rope_theta")) is not None:
            w.add_float32("{arch}.rope.freq_base_swa", local)
        if (eps := self.find_hparam(["rms_norm_eps", "norm_eps"], optional=True)) is not None:
            w.add_float32("{arch}.attention.layer_norm_rms_epsilon", eps)
        if (eps := self.find_hparam(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"], optional=True)) is not None:
            w.add_float32("{arch}.attention.layer_norm_epsilon", eps)
        if self.find_hparam(["num_local_experts", "num_experts", "n_routed_experts"], optional=True) is not None:
            raise ValueError(f"{self.dir}: mixture-of-experts checkpoints are not supported by refimpl.convert")
        if (head_dim := hp.get("head_dim")) is not None:
            w.add_uint32("{arch}.attention.key_length", head_dim)
            w.add_uint32("{arch}.attention.value_length", head_dim)
        w.add_uint32("general.file_type", self.file_type)

    def set_vocab(self, w) -> None:
        vocab_mod.set_vocab_gpt2(self, w)


def _load(ref):
    from ..checkpoint import load_tensor
    return load_tensor(ref)
