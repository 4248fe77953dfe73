"""MLX's affine quantization as a refimpl plugin: ``mx.quantize(w, group_size, bits)`` / ``mx.dequantize``.

    python -m refimpl.quantize --plugin examples/plugins/mlx_affine.py IN.gguf OUT.gguf mlx-q4-g64

MLX (ml-explore/mlx, ``mode="affine"``, its default) quantizes each group of ``group_size`` consecutive weights of
a row to ``bits``-bit codes ``q`` with one scale and one bias per group: ``w ≈ scale * q + bias``.  It stores three
arrays: the codes packed into uint32 words (element k of a word in bits ``[k*bits, (k+1)*bits)``), and the scales
and the biases in the weight's dtype.  A GGUF tensor is one array, so here each group is one block holding its
words, its scale and its bias, each encoded exactly as MLX stores them.

Types (names ``mlx-q{bits}-g{group}[-{dtype}]``): bits 4 and 8, groups 32, 64 and 128, and the weight dtype the
model is in: float16 (no suffix, what ``mlx_lm.convert`` writes by default), ``-bf16`` and ``-f32``.  The input
rows are float32; they are first rounded to that dtype, as the MLX model's weights would be.

Followed to the bit (mlx 0.32, https://github.com/ml-explore/mlx):
* quantize: ``quantize<T, uint32_t>`` in mlx/backend/cpu/quantized.cpp (the CPU kernel of ``fast::Quantize``):
  min/max of the group in float32; the scale ``max((max - min) / n_bins, 1e-7)``, negated unless |min| > |max|;
  the edge (min or max, the larger in magnitude) made exactly representable: ``q0 = rint(edge / scale)``, and if
  ``q0 != 0``: ``scale = edge / q0``, ``bias = edge``, else ``bias = 0``; codes ``clip(rint((w - bias) / scale),
  0, n_bins)``; scale and bias rounded to the weight dtype when stored.
* dequantize: ``affine_dequantize``'s CPU path in mlx/ops.cpp: ``codes * scales + biases`` as two element-wise
  ops in the weight dtype (uint32 codes promote to it), i.e. each op computed in float32 and rounded to the dtype.

The importance matrix is ignored: MLX's affine quantization has no weighted search.  tests/test_plugins_mlx.py
checks codes, scales, biases and dequantized values bit for bit against ``mx.quantize`` / ``mx.dequantize`` when
the ``mlx`` package is installed (``pip install 'refimpl[mlx]'``; on Linux it brings ``mlx-cpu``).
"""
from __future__ import annotations

import numpy as np

from refimpl.quant import QuantFormat

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)
# weight dtype -> (name suffix, how a scale/bias is stored: numpy dtype of its bits)
DTYPES = {"float16": ("", "<f2"), "bfloat16": ("-bf16", "<u2"), "float32": ("-f32", "<f4")}


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN -> 0x7FC0 (mlx/types/bf16.h)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def to_weight_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values -> their storage in ``dtype`` (float16 / bfloat16 bits / float32)."""
    if dtype == "float16":
        return x.astype(np.float16)
    if dtype == "bfloat16":
        return _round_bf16(x)
    return x.astype(np.float32)


def from_weight_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    return _bf16_to_f32(x) if dtype == "bfloat16" else x.astype(np.float32)


def _block_dtype(bits: int, group_size: int, dtype: str) -> np.dtype:
    return np.dtype([("q", "<u4", (group_size * bits // 32,)), ("scale", DTYPES[dtype][1]),
                     ("bias", DTYPES[dtype][1])])


def make_format(bits: int, group_size: int, dtype: str = "float16") -> QuantFormat:
    n_bins = np.float32((1 << bits) - 1)
    eps = np.float32(1e-7)
    per_word = 32 // bits
    shifts = (np.arange(per_word, dtype=np.uint32) * np.uint32(bits))
    mask = np.uint32((1 << bits) - 1)
    block = _block_dtype(bits, group_size, dtype)

    def quantize(x, imatrix, blocks):
        # the weights as the MLX model holds them (rounded to its dtype), then in float32 like the C++ kernel
        w = from_weight_dtype(to_weight_dtype(x, dtype), dtype).reshape(-1, group_size)
        w_max = w.max(axis=1)
        w_min = w.min(axis=1)
        neg_edge = np.abs(w_min) > np.abs(w_max)
        scale = np.maximum((w_max - w_min) / n_bins, eps)
        scale = np.where(neg_edge, scale, -scale)
        edge = np.where(neg_edge, w_min, w_max)
        q0 = np.rint(edge / scale)
        exact = q0 != 0
        scale = np.where(exact, edge / np.where(exact, q0, np.float32(1)), scale).astype(np.float32)
        bias = np.where(exact, edge, np.float32(0)).astype(np.float32)
        codes = np.clip(np.rint((w - bias[:, None]) / scale[:, None]), 0, n_bins).astype(np.uint32)
        words = (codes.reshape(len(w), -1, per_word) << shifts).sum(axis=2, dtype=np.uint32)
        out = np.empty(blocks.shape, dtype=block)
        out["q"] = words.reshape(blocks.shape + (-1,))
        out["scale"] = to_weight_dtype(scale, dtype).reshape(blocks.shape)
        out["bias"] = to_weight_dtype(bias, dtype).reshape(blocks.shape)
        return out

    def dequantize(blocks, y):
        codes = ((blocks["q"][:, :, None] >> shifts) & mask).reshape(len(blocks), group_size)
        scale = from_weight_dtype(blocks["scale"], dtype)[:, None]
        bias = from_weight_dtype(blocks["bias"], dtype)[:, None]
        # two element-wise ops in the weight dtype, each rounded to it (float16/bfloat16 arithmetic on a CPU
        # without native half floats is float32 arithmetic rounded back; exact here, see the module docstring)
        product = from_weight_dtype(to_weight_dtype(codes.astype(np.float32) * scale, dtype), dtype)
        return from_weight_dtype(to_weight_dtype(product + bias, dtype), dtype).reshape(-1)

    suffix = DTYPES[dtype][0]
    return QuantFormat(name=f"mlx-q{bits}-g{group_size}{suffix}", type_id=None, block_size=group_size,
                       block_dtype=block, vec_dot_type=None, quantize=quantize, dequantize=dequantize,
                       doc=f"MLX affine {bits}-bit, groups of {group_size}, {dtype} scale and bias")


FORMATS = [make_format(bits, group, dtype) for dtype in DTYPES for bits in BITS for group in GROUP_SIZES]
