"""Every ggml block format: quantize, dequantize, validate, bit-exact with llama.cpp's scalar path.

    >>> from refimpl import quant
    >>> raw = quant.quantize(x, "Q4_K")            # uint8 (..., row_bytes), exactly ggml_quantize_chunk
    >>> y = quant.dequantize(raw, "Q4_K")          # float32 (..., n), exactly type_traits.to_float

Arrays of any leading shape are accepted; the last axis is the row.

Every operation runs in one of two kernel layers with the same bits: ``set_kernels("reference")`` runs the
reference layer (refimpl/quant/formats/, ggml's generic C as plain loops), ``set_kernels("fast")`` (the default,
or ``REFIMPL_KERNELS``) the fast layer (refimpl/kernels/).  See refimpl/quant/layer.py.
"""
from __future__ import annotations

import numpy as np

from .layer import get_kernels, kernel, set_kernels
from .matmul import (WeightMatrix, get_num_threads, matmul, prepare, quantize_activations, set_num_threads,
                     vec_dot)
from .plugins import EXPERIMENTAL_TYPE_BASE, PluginError, load_plugin, load_plugins, register
from .registry import TYPES, QuantFormat

__all__ = [
    "TYPES", "QuantFormat", "get_type", "quantize", "quantize_ref", "dequantize", "validate",
    "requires_imatrix", "row_size", "vec_dot_type", "vec_dot", "matmul", "prepare", "WeightMatrix", "quantize_activations",
    "set_num_threads", "get_num_threads", "set_kernels", "get_kernels",
]

# plugin formats from outside the package (spec/plugins.md)
__all__ += ["register", "load_plugin", "load_plugins", "PluginError", "EXPERIMENTAL_TYPE_BASE"]

_NO_IMATRIX = np.zeros(0, dtype=np.float32)


def get_type(qtype) -> QuantFormat:
    """The format descriptor for a ggml type name ("Q4_K", case-insensitive) or id (12)."""
    return TYPES.get(qtype)


def row_size(qtype, n: int) -> int:
    """Bytes of one row of ``n`` elements (ggml_row_size)."""
    return get_type(qtype).row_size(n)


def requires_imatrix(qtype) -> bool:
    """ggml_quantize_requires_imatrix."""
    return get_type(qtype).requires_imatrix


def vec_dot_type(qtype) -> str | None:
    """The type mul_mat quantizes activations to for this weight type (ggml CPU type traits)."""
    return get_type(qtype).vec_dot_type


def _float_rows(x, fmt: QuantFormat, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{what} expects floating-point input, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{what} expects at least a 1-D array of rows, got a scalar")
    n = x.shape[-1]
    if n == 0 or n % fmt.block_size:
        raise ValueError(f"{what}: {fmt.name} rows must be a positive multiple of {fmt.block_size} elements, "
                         f"got {n}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _raw_rows(raw, fmt: QuantFormat, what: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raise ValueError(f"{what} expects raw bytes as a uint8 array, got dtype {raw.dtype}")
    if raw.ndim == 0 or raw.shape[-1] == 0 or raw.shape[-1] % fmt.type_size:
        got = raw.shape[-1] if raw.ndim else "a scalar"
        raise ValueError(f"{what}: {fmt.name} rows must be a positive multiple of {fmt.type_size} bytes "
                         f"(one block), got {got}")
    return np.ascontiguousarray(raw)


def _blocks(raw_flat: np.ndarray, fmt: QuantFormat) -> np.ndarray:
    return raw_flat.view(fmt.block_dtype)


def quantize(x, qtype, imatrix=None) -> np.ndarray:
    """Rows of float32 -> uint8 ``(..., row_bytes)``, exactly ``ggml_quantize_chunk``.

    With ``imatrix`` (one non-negative weight per column) the weighted search paths run; without it, what ggml
    does without it.  Q8_1 and Q8_K, which ggml_quantize_chunk does not take, use their reference quantizers.
    """
    fmt = get_type(qtype)
    x = _float_rows(x, fmt, "quantize")
    n = x.shape[-1]
    if imatrix is None:
        if fmt.requires_imatrix:
            raise ValueError(f"{fmt.name} requires an importance matrix (imatrix) of {n} weights")
        im = _NO_IMATRIX
    else:
        im = np.asarray(imatrix)
        if im.dtype.kind != "f":
            raise ValueError(f"imatrix must be floating-point, got dtype {im.dtype}")
        if im.shape != (n,):
            raise ValueError(f"imatrix must have shape ({n},) (one weight per column), got {im.shape}")
        im = np.ascontiguousarray(im, dtype=np.float32)
    rows = x.reshape(-1, n)
    out = np.zeros((rows.shape[0], fmt.row_size(n)), dtype=np.uint8)
    if fmt.quantize is not None:
        blocks = out.reshape(-1).view(fmt.block_dtype).reshape(rows.shape[0], -1)
        with np.errstate(all="ignore"):
            kernel(fmt, "quantize")(rows, im, blocks)
    elif fmt.quantize_ref is not None and im.size == 0:
        quantize_row = kernel(fmt, "quantize_ref")
        for r in range(rows.shape[0]):
            with np.errstate(all="ignore"):
                quantize_row(rows[r], _blocks(out[r], fmt))
    else:
        raise ValueError(f"ggml cannot quantize to {fmt.name}" + (" with an imatrix" if im.size else ""))
    return out.reshape(x.shape[:-1] + (out.shape[-1],))


def quantize_ref(x, qtype) -> np.ndarray:
    """Rows of float32 -> uint8 ``(..., row_bytes)``, exactly ``from_float_ref`` (``quantize_row_*_ref``)."""
    fmt = get_type(qtype)
    if fmt.quantize_ref is None:
        raise ValueError(f"ggml has no reference quantizer for {fmt.name}")
    x = _float_rows(x, fmt, "quantize_ref")
    n = x.shape[-1]
    flat = x.reshape(-1)
    out = np.zeros(flat.size // fmt.block_size * fmt.type_size, dtype=np.uint8)
    with np.errstate(all="ignore"):
        kernel(fmt, "quantize_ref")(flat, _blocks(out, fmt))
    return out.reshape(x.shape[:-1] + (fmt.row_size(n),))


def dequantize(raw, qtype) -> np.ndarray:
    """uint8 ``(..., row_bytes)`` -> float32 ``(..., n)``, exactly ``type_traits.to_float``."""
    fmt = get_type(qtype)
    if fmt.dequantize is None:
        raise ValueError(f"ggml has no to_float for {fmt.name}")
    raw = _raw_rows(raw, fmt, "dequantize")
    nb = raw.shape[-1] // fmt.type_size
    flat = raw.reshape(-1)
    y = np.empty(flat.size // fmt.type_size * fmt.block_size, dtype=np.float32)
    with np.errstate(all="ignore"):
        kernel(fmt, "dequantize")(_blocks(flat, fmt), y)
    return y.reshape(raw.shape[:-1] + (nb * fmt.block_size,))


def validate(raw, qtype) -> bool:
    """The verdict of ``ggml_validate_row_data`` on these bytes (False on NaN/Inf scales and the like)."""
    fmt = get_type(qtype)
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raise ValueError(f"validate expects raw bytes as a uint8 array, got dtype {raw.dtype}")
    flat = np.ascontiguousarray(raw).reshape(-1)
    if flat.size % fmt.type_size:
        return False  # ggml: "invalid size" for a partial block
    if fmt.validate is None:
        return True
    with np.errstate(all="ignore"):
        return bool(fmt.validate(_blocks(flat, fmt)))
