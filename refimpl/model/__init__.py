"""The inference engine: GGUF model -> logits, computed the way llama.cpp's CPU backend computes them.

    >>> from refimpl import model
    >>> m = model.load("model.gguf")                  # mmap; weights stay in their ggml type
    >>> logits = m.eval([1, 15043, 3186])              # (n_tokens, n_vocab), every position
    >>> nxt = m.eval([42], n_past=3)                   # incremental decoding through the KV cache
    >>> m.eval([1, 2], n_past=0, trace=lambda name, a: print(name, a.shape))   # every intermediate tensor

Weights never get dequantized for a matmul: ``refimpl.quant.matmul`` quantizes the activations to the weight
type's vec_dot type and runs ggml's vec_dot, as ggml_mul_mat does.  Token embeddings are dequantized row by row
(ggml_get_rows).  The blocks of a forward pass: ``refimpl.model.base.Model``; hyperparameters:
``refimpl.model.hparams``; shared ops: ``refimpl.model.layers``; the KV cache: ``refimpl.model.kv_cache``.

Architectures: every module of this package is imported once, on the first ``load``; a module registers the Model
subclass for a ``general.architecture`` name with ``@register("name")``.  A new architecture is one new file.
See spec/model.md.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

from .base import Layer, Model, ModelFile, Weight
from .hparams import Hparams

__all__ = ["load", "Model", "Layer", "Weight", "ModelFile", "Hparams", "ARCHITECTURES", "register"]

ARCHITECTURES: dict[str, type] = {}


def register(name: str):
    """Class decorator: the Model subclass for GGUF files whose general.architecture is ``name``."""
    def deco(cls):
        if ARCHITECTURES.get(name, cls) is not cls:
            raise ValueError(f"architecture {name!r} is registered twice "
                             f"({ARCHITECTURES[name].__module__} and {cls.__module__})")
        ARCHITECTURES[name] = cls
        cls.arch = name
        return cls
    return deco


_discovered = False


def _import_architectures() -> None:
    """Import every module of refimpl.model (in name order); those that define an architecture register it."""
    global _discovered
    if _discovered:
        return
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    _discovered = True


def architectures() -> dict[str, type]:
    """Every registered architecture name -> its Model class."""
    _import_architectures()
    return dict(ARCHITECTURES)


def model_class(mf: ModelFile) -> type:
    """The Model subclass registered for the file's general.architecture."""
    _import_architectures()
    cls = ARCHITECTURES.get(mf.arch)
    if cls is None:
        raise ValueError(f"{mf.path}: unsupported architecture {mf.arch!r} "
                         f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    return cls


def load(path, n_ctx: int | None = None, type_k: str = "f16", type_v: str = "f16") -> Model:
    """Open a GGUF model (mmap), build the Model for its architecture and give it an empty KV cache of ``n_ctx``
    cells (default: the training context, at most 4096) of types ``type_k``/``type_v`` ("f16", "f32", "q8_0").
    A folder is a Hugging Face checkpoint: converted in memory by refimpl.convert (as convert_hf_to_gguf.py
    --outtype auto would), no file written."""
    if os.path.isdir(path):
        from ..convert import model_file
        mf = model_file(path)
    else:
        mf = ModelFile(path)
    m = model_class(mf)(mf)
    m.new_context(n_ctx, type_k, type_v)
    return m
