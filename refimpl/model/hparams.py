"""Hyperparameters: one path from GGUF metadata to the numbers a forward pass needs.

``Hparams`` holds what every architecture has (llama_model_base::load_hparams in src/llama-model.cpp reads the
same keys for all of them); an architecture with extras subclasses it, adds fields and extends ``read``:

    @dataclass
    class Gemma3Hparams(Hparams):
        n_swa: int = 0
        ...
        @classmethod
        def read(cls, mf, n_vocab):
            kw = super().read(mf, n_vocab)
            kw.update(n_swa=int(mf.get("{arch}.attention.sliding_window", 0)), ...)
            return kw

Floats are kept as float32, the type llama.cpp stores them in, so that derived values (1/factor, ...) round as in C.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

F32 = np.float32

#: rope.scaling.type values refimpl computes as llama.cpp does.  "yarn" needs YaRN's attention-factor corrections
#: (llama_context's get_mscale) and its ext_factor ramp from the context; refused with a clear error.
ROPE_SCALING_TYPES = ("none", "linear", "longrope")


def rope_scaling(mf) -> tuple[np.float32, np.float32]:
    """The RoPE frequency scale and magnitude factor, as llama.cpp derives them.

    llama_model_base::load_hparams: rope.scaling.type (default "linear"); rope_freq_scale_train = 1.0f/factor
    from rope.scaling.factor (or the old rope.scale_linear), 1 when absent or 0; rope_attn_factor from
    rope.scaling.attn_factor (default 1).  llama_context: scaling type "none" never scales (freq_scale 1);
    yarn_attn_factor (1) *= rope_attn_factor.  LongRoPE is the per-dimension factor tensors, read by the
    architecture (rope_factors_long/short); it scales nothing here beyond what the factor key says."""
    scaling = mf.get("{arch}.rope.scaling.type", "linear")
    if scaling not in ROPE_SCALING_TYPES:
        raise ValueError(f"{mf.path}: rope scaling type {scaling!r} is not supported "
                         f"(supported: {', '.join(ROPE_SCALING_TYPES)})")
    factor = F32(mf.get("{arch}.rope.scaling.factor", mf.get("{arch}.rope.scale_linear", 0.0)))
    freq_scale = F32(1.0) if scaling == "none" or factor == 0 else F32(1.0) / factor
    attn_factor = F32(mf.get("{arch}.rope.scaling.attn_factor", 1.0))
    return freq_scale, attn_factor


@dataclass
class Hparams:
    """The shared hyperparameters (llama_hparams' common part), read from ``{arch}.*`` metadata keys."""
    n_vocab: int                 # rows of token_embd (the tokenizer's size)
    n_embd: int                  # {arch}.embedding_length
    n_layer: int                 # {arch}.block_count
    n_head: int                  # {arch}.attention.head_count
    n_head_kv: int               # {arch}.attention.head_count_kv (default n_head)
    head_dim: int                # {arch}.attention.key_length (= value_length; default n_embd / n_head)
    n_ff: int                    # {arch}.feed_forward_length
    eps: np.float32              # the norm epsilon: EPS_KEY (RMSNorm or LayerNorm, whichever the model uses)
    n_rot: int                   # {arch}.rope.dimension_count (default head_dim)
    rope_freq_base: np.float32   # {arch}.rope.freq_base (default 10000)
    rope_freq_scale: np.float32  # see rope_scaling()
    rope_attn_factor: np.float32  # see rope_scaling()
    n_ctx_train: int             # {arch}.context_length
    n_ctx_orig: int              # {arch}.rope.scaling.original_context_length (default n_ctx_train)

    #: the metadata key of the norm epsilon (suffix after "{arch}.")
    EPS_KEY: ClassVar[str] = "attention.layer_norm_rms_epsilon"

    @classmethod
    def from_gguf(cls, mf, n_vocab: int) -> "Hparams":
        return cls(**cls.read(mf, n_vocab))

    @classmethod
    def read(cls, mf, n_vocab: int) -> dict:
        """The field values from the file's metadata; subclasses extend the dict with their extras."""
        n_embd = int(mf.get("{arch}.embedding_length"))
        n_head = int(mf.get("{arch}.attention.head_count"))
        head_dim = int(mf.get("{arch}.attention.key_length", n_embd // n_head))
        if int(mf.get("{arch}.attention.value_length", head_dim)) != head_dim:
            raise ValueError(f"{mf.path}: key_length != value_length is not supported for {mf.arch}")
        n_ctx_train = int(mf.get("{arch}.context_length"))           # required, as in llama.cpp
        freq_scale, attn_factor = rope_scaling(mf)
        return dict(
            n_vocab=n_vocab,
            n_embd=n_embd,
            n_layer=int(mf.get("{arch}.block_count")),
            n_head=n_head,
            n_head_kv=int(mf.get("{arch}.attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(mf.get("{arch}.feed_forward_length")),
            eps=F32(mf.get("{arch}." + cls.EPS_KEY)),
            n_rot=int(mf.get("{arch}.rope.dimension_count", head_dim)),
            rope_freq_base=F32(mf.get("{arch}.rope.freq_base", 10000.0)),
            rope_freq_scale=freq_scale,
            rope_attn_factor=attn_factor,
            n_ctx_train=n_ctx_train,
            n_ctx_orig=int(mf.get("{arch}.rope.scaling.original_context_length", n_ctx_train)),
        )
