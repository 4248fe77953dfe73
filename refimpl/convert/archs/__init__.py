"""Architecture registry: one module per supported Hugging Face architecture family, each registering the
``config.json`` ``architectures[0]`` names it converts (as convert_hf_to_gguf.py's ``@ModelBase.register``).

A new architecture is one new file here, listed in ``_MODULES``, defining a ``TextModel`` subclass with
``@register("HFName", ...)``.
"""
from __future__ import annotations

import importlib

REGISTRY: dict[str, type] = {}
_MODULES = ("llama", "qwen", "gemma3", "phi3", "gpt2")


def register(*hf_names: str):
    def deco(cls):
        for n in hf_names:
            REGISTRY[n] = cls
        return cls
    return deco


def model_class(hf_arch: str):
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    cls = REGISTRY.get(hf_arch)
    if cls is None:
        raise ValueError(f"Model architecture {hf_arch!r} is not supported by refimpl.convert; supported: "
                         f"{', '.join(sorted(REGISTRY))}")
    return cls


def supported() -> list[str]:
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return sorted(REGISTRY)
