"""IEEE half (F16) and bfloat16 (BF16) conversions exactly as ggml does them.

ggml converts with integer bit tricks rather than hardware instructions in the scalar build
(``ggml_compute_fp32_to_fp16`` and friends in ggml-impl.h, after Maratyszcza/FP16).  These functions are the
per-element building blocks every quantized format uses for its scales; the ``*_row`` functions are the
public array API (``ggml_fp32_to_fp16_row`` etc.).
"""
from __future__ import annotations

import numpy as np

from ._jit import f32, f32_from_bits, f32_to_bits, njit


@njit
def fp16_to_fp32(h):
    """ggml_compute_fp16_to_fp32: exact widening; NaN payloads keep their bits (quiet bit set by the multiply)."""
    w = np.uint32(h) << np.uint32(16)
    sign = w & np.uint32(0x80000000)
    two_w = (w + w) & np.uint32(0xFFFFFFFF)
    exp_offset = np.uint32(0xE0) << np.uint32(23)
    exp_scale = f32(2.0**-112)
    normalized_value = f32_from_bits((two_w >> np.uint32(4)) + exp_offset) * exp_scale
    magic_mask = np.uint32(126) << np.uint32(23)
    denormalized_value = f32_from_bits((two_w >> np.uint32(17)) | magic_mask) - f32(0.5)
    denormalized_cutoff = np.uint32(1) << np.uint32(27)
    if two_w < denormalized_cutoff:
        bits = f32_to_bits(denormalized_value)
    else:
        bits = f32_to_bits(normalized_value)
    return f32_from_bits(sign | bits)


def _fp16_to_fp32_table() -> np.ndarray:
    # ggml_compute_fp16_to_fp32 for all 65536 halves at once, in numpy float32 (the multiply quiets NaNs as the
    # scalar one does); tests/test_floats.py checks it against fp16_to_fp32 bit for bit
    w = np.arange(65536, dtype=np.uint32) << np.uint32(16)
    sign = w & np.uint32(0x80000000)
    two_w = w + w
    with np.errstate(invalid="ignore"):
        normalized = ((two_w >> np.uint32(4)) + np.uint32(0xE0 << 23)).view(np.float32) * np.float32(2.0**-112)
        denormalized = ((two_w >> np.uint32(17)) | np.uint32(126 << 23)).view(np.float32) - np.float32(0.5)
        bits = np.where(two_w < np.uint32(1 << 27), denormalized.view(np.uint32), normalized.view(np.uint32))
    return (sign | bits).view(np.float32)


# ggml_table_f32_f16: what GGML_CPU_FP16_TO_FP32 reads in ggml's scalar CPU build (ggml_lookup_fp16_to_fp32).
# Kernels in hot loops index it (F16_TO_F32[h]) instead of calling fp16_to_fp32: the same float, a third of the time.
F16_TO_F32 = _fp16_to_fp32_table()
F16_TO_F32.flags.writeable = False


@njit
def fp32_to_fp16(f):
    """ggml_compute_fp32_to_fp16: round to nearest even, overflow to Inf, every NaN to 0x7E00 with its sign."""
    f = f32(f)
    base = (abs(f) * f32(2.0**112)) * f32(2.0**-110)
    w = f32_to_bits(f)
    shl1_w = (w + w) & np.uint32(0xFFFFFFFF)
    sign = w & np.uint32(0x80000000)
    bias = shl1_w & np.uint32(0xFF000000)
    if bias < np.uint32(0x71000000):
        bias = np.uint32(0x71000000)
    base = f32_from_bits((bias >> np.uint32(1)) + np.uint32(0x07800000)) + base
    bits = f32_to_bits(base)
    exp_bits = (bits >> np.uint32(13)) & np.uint32(0x00007C00)
    mantissa_bits = bits & np.uint32(0x00000FFF)
    nonsign = exp_bits + mantissa_bits
    if shl1_w > np.uint32(0xFF000000):
        nonsign = np.uint32(0x7E00)
    return np.uint16((sign >> np.uint32(16)) | nonsign)


@njit
def bf16_to_fp32(h):
    """ggml_compute_bf16_to_fp32: the 16 bits become the top half of a float32."""
    return f32_from_bits(np.uint32(h) << np.uint32(16))


@njit
def fp32_to_bf16(f):
    """ggml_compute_fp32_to_bf16: round to nearest even; NaN keeps its top bits and is forced quiet."""
    u = f32_to_bits(f32(f))
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16((u >> np.uint32(16)) | np.uint32(64))
    rounded = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFFFFFF)
    return np.uint16(rounded >> np.uint32(16))


@njit
def _fp16_to_fp32_loop(src, dst):
    for i in range(src.size):
        dst[i] = fp16_to_fp32(src[i])


@njit
def _fp32_to_fp16_loop(src, dst):
    for i in range(src.size):
        dst[i] = fp32_to_fp16(src[i])


@njit
def _bf16_to_fp32_loop(src, dst):
    for i in range(src.size):
        dst[i] = bf16_to_fp32(src[i])


@njit
def _fp32_to_bf16_loop(src, dst):
    for i in range(src.size):
        dst[i] = fp32_to_bf16(src[i])


def _convert(x, in_dtype, out_dtype, loop, what):
    x = np.asarray(x)
    if x.dtype != in_dtype:
        raise ValueError(f"{what} expects an array of {np.dtype(in_dtype).name}, got {x.dtype}")
    src = np.ascontiguousarray(x).reshape(-1)
    dst = np.empty(src.size, dtype=out_dtype)
    with np.errstate(over="ignore"):  # uint32 wrap-around is intended; only the interpreter fallback warns
        loop(src, dst)
    return dst.reshape(x.shape)


def fp32_to_fp16_row(x) -> np.ndarray:
    """float32 array -> uint16 array of F16 bit patterns (ggml_fp32_to_fp16_row)."""
    return _convert(x, np.float32, np.uint16, _fp32_to_fp16_loop, "fp32_to_fp16_row")


def fp16_to_fp32_row(h) -> np.ndarray:
    """uint16 array of F16 bit patterns -> float32 array (ggml_fp16_to_fp32_row)."""
    return _convert(h, np.uint16, np.float32, _fp16_to_fp32_loop, "fp16_to_fp32_row")


def fp32_to_bf16_row(x) -> np.ndarray:
    """float32 array -> uint16 array of BF16 bit patterns (ggml_fp32_to_bf16_row_ref)."""
    return _convert(x, np.float32, np.uint16, _fp32_to_bf16_loop, "fp32_to_bf16_row")


def bf16_to_fp32_row(h) -> np.ndarray:
    """uint16 array of BF16 bit patterns -> float32 array (ggml_bf16_to_fp32_row)."""
    return _convert(h, np.uint16, np.float32, _bf16_to_fp32_loop, "bf16_to_fp32_row")
