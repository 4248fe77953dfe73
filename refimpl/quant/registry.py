"""The type registry: one table from ggml type names and ids to block formats.

Each format lives in one module under ``refimpl/quant/formats/`` that builds ``QuantFormat`` descriptors and
lists them in a module-level ``FORMATS``.  The registry imports every module in that package, so a new scheme
is added by writing one module — nothing else is edited.

The kernels named here are the **reference layer**: numba ``@njit`` functions written as the plain scalar loops of
ggml's generic C (see ``refimpl/_jit.py``).  Faster kernels with the same bits live in ``refimpl/kernels/`` (the
fast layer), looked up by type name; a descriptor never names them.  Conventions:

* ``quantize(x, imatrix, blocks)`` — ``ggml_quantize_chunk``: ``x`` float32 ``(nrows, n_per_row)``,
  ``imatrix`` float32 ``(n_per_row,)`` or size 0 for "no importance matrix", ``blocks`` the output as a
  structured array ``(nrows, n_per_row // block_size)`` of ``block_dtype``.
* ``quantize_ref(x, blocks)`` — ``quantize_row_*_ref`` (type_traits.from_float_ref): ``x`` float32 ``(k,)``,
  ``blocks`` ``(k // block_size,)``.
* ``dequantize(blocks, y)`` — ``dequantize_row_*`` (type_traits.to_float): ``blocks`` ``(nb,)``, ``y`` float32
  ``(nb * block_size,)``.
* ``validate(blocks) -> bool`` — the type's case in ``ggml_validate_row_data`` (may be plain numpy).
* ``from_float(x, blocks)`` — type_traits_cpu.from_float (how mul_mat quantizes activations); defaults to
  ``quantize_ref``.
* ``vec_dot(n, x_blocks, y_blocks) -> float32`` — type_traits_cpu.vec_dot against ``vec_dot_type``.  Optional:
  ``matmul`` multiplies a format without one through its ``dequantize`` in float32 (not a ggml path).

For the plain float/int types (F32, F16, BF16, F64, I8…I64) ``block_dtype`` is a scalar dtype and the kernels
take plain arrays of it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class QuantFormat:
    name: str                    # ggml's name, upper case: "Q4_K"
    type_id: int                 # enum ggml_type value, as stored in GGUF tensor infos
    block_size: int              # elements per block (1 for plain float/int types)
    block_dtype: np.dtype        # the block layout; itemsize is the bytes per block
    vec_dot_type: Optional[str]  # the type activations are quantized to for the dot product
    is_quantized: bool = True
    requires_imatrix: bool = False     # ggml_quantize_requires_imatrix
    quantize: Optional[Callable] = field(default=None, repr=False)
    quantize_ref: Optional[Callable] = field(default=None, repr=False)
    dequantize: Optional[Callable] = field(default=None, repr=False)
    validate: Optional[Callable] = field(default=None, repr=False)
    from_float: Optional[Callable] = field(default=None, repr=False)
    vec_dot: Optional[Callable] = field(default=None, repr=False)
    doc: str = ""                # one line: what the format is

    @property
    def type_size(self) -> int:
        """Bytes per block (ggml's type_size)."""
        return int(np.dtype(self.block_dtype).itemsize)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.block_size

    def row_size(self, n: int) -> int:
        """Bytes of one row of ``n`` elements (ggml_row_size); ``n`` must be a multiple of the block size."""
        if n % self.block_size:
            raise ValueError(f"{self.name}: row length must be a multiple of {self.block_size}, got {n}")
        return n // self.block_size * self.type_size


class _Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, QuantFormat] = {}
        self._by_id: dict[int, QuantFormat] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from . import formats

        for mod in sorted(pkgutil.iter_modules(formats.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{formats.__name__}.{mod.name}")
            for fmt in getattr(module, "FORMATS", ()):
                self.register(fmt)

    def register(self, fmt: QuantFormat) -> None:
        # names are looked up case-insensitively: ggml's are upper case, a plugin's keep the case it gave
        # (refimpl.quant.plugins.register: "mlx-q4-g64")
        if fmt.name.upper() in self._by_name or fmt.type_id in self._by_id:
            raise ValueError(f"ggml type {fmt.name} (id {fmt.type_id}) is registered twice")
        self._by_name[fmt.name.upper()] = fmt
        self._by_id[fmt.type_id] = fmt

    def get(self, key) -> QuantFormat:
        self._load()
        if isinstance(key, QuantFormat):
            return key
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            fmt = self._by_id.get(int(key))
        elif isinstance(key, str):
            fmt = self._by_name.get(key.upper())
        else:
            raise ValueError(f"a ggml type is named by str or int id, got {type(key).__name__}")
        if fmt is None:
            raise ValueError(f"unknown ggml type {key!r}; known: {', '.join(self.names())}")
        return fmt

    def names(self) -> list[str]:
        self._load()
        return [f.name for f in sorted(self._by_id.values(), key=lambda f: f.type_id)]

    def __getitem__(self, key) -> QuantFormat:
        try:
            return self.get(key)
        except ValueError as e:
            raise KeyError(str(e)) from None

    def __contains__(self, key) -> bool:
        try:
            self.get(key)
            return True
        except ValueError:
            return False

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._by_name)

    def items(self):
        return [(n, self._by_name[n.upper()]) for n in self.names()]

    def values(self):
        return [self._by_name[n.upper()] for n in self.names()]

    def keys(self):
        return self.names()


#: name (or id) -> QuantFormat for every ggml type refimpl implements.
TYPES = _Registry()
