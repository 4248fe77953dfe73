"""A conformance kit for other implementations of GGUF and the ggml formats (spec/conformance.md).

* ``python -m refimpl.conformance export DIR`` — llama.cpp's committed answers (golden/) as language-neutral
  vectors: raw little-endian ``.bin`` files and one ``manifest.json`` (``export.py``; format in ``vectors.py``).
* ``python -m refimpl.conformance run --impl "CMD ..."`` — runs any program through a command-line protocol and
  reports pass / fail / unsupported per type and operation, with the first difference decoded field by field
  (``runner.py``, ``explain.py``).

Adapters for implementations refimpl did not write are in ``tools/conformance/``; what they showed is in
``docs/conformance-findings.md``.
"""
from .export import FAMILIES, export
from .runner import OPS, run
from .vectors import Vectors, VectorsError

__all__ = ["FAMILIES", "OPS", "Vectors", "VectorsError", "export", "run"]
