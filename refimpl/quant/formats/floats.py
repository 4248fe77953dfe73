"""The plain element types: F32, F16, BF16 (floats ggml computes with) and F64, I8, I16, I32, I64 (storage only).

Block size 1, ``block_dtype`` a scalar dtype; F16 and BF16 elements are raw ``uint16`` bit patterns converted with
``refimpl.floats`` (ggml's bit-trick conversions).  What ggml offers, and what refimpl does where it offers nothing:

====  ===========================  ===========================  ==================================================
type  quantize (quantize_chunk)    quantize_ref (from_float_ref) dequantize (to_float)
====  ===========================  ===========================  ==================================================
F32   memcpy; imatrix ignored      none in ggml -> ValueError   none in ggml; refimpl: identity copy (F32 needs no
                                                                conversion, and mul_mat reads it as is)
F16   ggml_fp32_to_fp16_row        ggml_fp32_to_fp16_row        ggml_fp16_to_fp32_row
BF16  ggml_fp32_to_bf16_row_ref    ggml_fp32_to_bf16_row_ref    ggml_bf16_to_fp32_row
F64,  ggml asserts -> ValueError   none -> ValueError           none -> ValueError
I*
====  ===========================  ===========================  ==================================================

``ggml_quantize_chunk`` accepts an imatrix for F32/F16/BF16 and ignores it; refimpl does the same.
Validation (``ggml_validate_row_data``): F32 rejects Inf/NaN, F64 rejects Inf/NaN *after conversion to float32* (so |x| > FLT_MAX too), F16 rejects exponent 0x1F, BF16 rejects
``(h & 0x7fff) >= 0x7f80``, integer types accept everything.
"""
from __future__ import annotations

import numpy as np

from ...floats import F16_TO_F32, bf16_to_fp32, fp32_to_bf16, fp32_to_fp16
from ..registry import QuantFormat
from .common import mul_nan_first, njit


# ------------------------------------------------------------------------------------------------------ F32

@njit
def quantize_f32(x, imatrix, blocks):
    # mirrors ggml_quantize_chunk's GGML_TYPE_F32 case: a memcpy
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            blocks[r, j] = x[r, j]


@njit
def dequantize_f32(x, y):
    # not a ggml trait (ggml has no to_float for F32): the identity, what mul_mat does with an F32 operand
    for i in range(x.size):
        y[i] = x[i]


def validate_f32(values) -> bool:
    # ggml_validate_row_data, GGML_TYPE_F32: no Inf, no NaN
    return bool(np.all(np.isfinite(values)))


# ------------------------------------------------------------------------------------------------------ F16

@njit
def quantize_row_f16(x, y):
    # mirrors ggml_fp32_to_fp16_row (ggml.c): GGML_FP32_TO_FP16 per element
    for i in range(x.size):
        y[i] = fp32_to_fp16(x[i])


@njit
def quantize_f16(x, imatrix, blocks):
    # mirrors ggml_quantize_chunk's GGML_TYPE_F16 case (imatrix ignored)
    for r in range(x.shape[0]):
        quantize_row_f16(x[r], blocks[r])


@njit
def dequantize_row_f16(x, y):
    # mirrors ggml_fp16_to_fp32_row (ggml.c)
    for i in range(x.size):
        y[i] = F16_TO_F32[x[i]]


def validate_f16(h) -> bool:
    # ggml_validate_row_data, GGML_TYPE_F16: isinf_fp16 / isnan_fp16 = exponent bits all ones
    return not np.any((h & 0x7C00) == 0x7C00)


# ----------------------------------------------------------------------------------------------------- BF16

@njit
def quantize_row_bf16(x, y):
    # mirrors ggml_fp32_to_bf16_row_ref (ggml.c): ggml_compute_fp32_to_bf16 per element
    for i in range(x.size):
        y[i] = fp32_to_bf16(x[i])


@njit
def quantize_bf16(x, imatrix, blocks):
    # mirrors ggml_quantize_chunk's GGML_TYPE_BF16 case (imatrix ignored)
    for r in range(x.shape[0]):
        quantize_row_bf16(x[r], blocks[r])


@njit
def dequantize_row_bf16(x, y):
    # mirrors ggml_bf16_to_fp32_row (ggml.c)
    for i in range(x.size):
        y[i] = bf16_to_fp32(x[i])


def validate_bf16(h) -> bool:
    # ggml_validate_row_data, GGML_TYPE_BF16: (h & 0x7fff) > 0x7f80 is NaN, == 0x7f80 is Inf
    return not np.any((h & 0x7FFF) >= 0x7F80)


# ----------------------------------------------------------------------------- CPU side: from_float, vec_dot
# ggml-cpu's scalar build (no GGML_SIMD: x86 without SSE3) computes every float dot product as float32 products
# accumulated in a double (ggml_float), rounded to float32 once at the end (ggml-cpu/vec.cpp).
# NaN payloads (probed on the oracle with distinct NaNs): the F32 product keeps x's NaN, the F16/BF16 products
# keep y's (gcc's operand order), and once the double accumulator is NaN it stays that NaN (it is the first
# operand of every later add), which the kernels express by not adding to a NaN sum.

@njit
def from_float_f32(x, y):
    # mirrors ggml_cpu_fp32_to_fp32 (ggml-cpu.c): memcpy
    for i in range(x.size):
        y[i] = x[i]


@njit
def vec_dot_f32(n, x, y):
    # mirrors ggml_vec_dot_f32 (ggml-cpu/vec.cpp), the !GGML_SIMD branch: sumf += (ggml_float)(x[i]*y[i])
    sumf = 0.0
    for i in range(n):
        if sumf == sumf:
            sumf += np.float64(mul_nan_first(x[i], y[i]))
    return np.float32(sumf)


@njit
def vec_dot_f16(n, x, y):
    # mirrors ggml_vec_dot_f16 (ggml-cpu/vec.cpp), !GGML_SIMD: float product of the widened halves, double sum
    # (GGML_CPU_FP16_TO_FP32 is a table lookup there, equal to the exact widening fp16_to_fp32)
    sumf = 0.0
    for i in range(n):
        if sumf == sumf:
            sumf += np.float64(mul_nan_first(F16_TO_F32[y[i]], F16_TO_F32[x[i]]))
    return np.float32(sumf)


@njit
def vec_dot_bf16(n, x, y):
    # mirrors ggml_vec_dot_bf16 (ggml-cpu/vec.cpp), the scalar tail loop: float product, double sum
    sumf = 0.0
    for i in range(n):
        if sumf == sumf:
            sumf += np.float64(mul_nan_first(bf16_to_fp32(y[i]), bf16_to_fp32(x[i])))
    return np.float32(sumf)


# ----------------------------------------------------------------------------------------------- F64, I*

def validate_f64(values) -> bool:
    # ggml_validate_row_data, GGML_TYPE_F64 calls validate_float(float f, ...) on each double: the value is first
    # converted to float32, so a finite double beyond the float32 range becomes Inf and the row is rejected too
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64).astype(np.float32))))


def validate_int(values) -> bool:
    # ggml_validate_row_data, GGML_TYPE_I8..I64: "nothing to validate"
    return True


FORMATS = [
    QuantFormat("F32", 0, 1, np.dtype("<f4"), "F32", is_quantized=False,
                quantize=quantize_f32, dequantize=dequantize_f32, validate=validate_f32,
                from_float=from_float_f32, vec_dot=vec_dot_f32,
                doc="IEEE binary32"),
    QuantFormat("F16", 1, 1, np.dtype("<u2"), "F16", is_quantized=False,
                quantize=quantize_f16, quantize_ref=quantize_row_f16, dequantize=dequantize_row_f16,
                validate=validate_f16, from_float=quantize_row_f16, vec_dot=vec_dot_f16, doc="IEEE binary16 (raw bits)"),
    QuantFormat("BF16", 30, 1, np.dtype("<u2"), "BF16", is_quantized=False,
                quantize=quantize_bf16, quantize_ref=quantize_row_bf16, dequantize=dequantize_row_bf16,
                validate=validate_bf16, from_float=quantize_row_bf16, vec_dot=vec_dot_bf16,
                doc="bfloat16: the top 16 bits of a binary32 (raw bits)"),
    QuantFormat("F64", 28, 1, np.dtype("<f8"), None, is_quantized=False, validate=validate_f64,
                doc="IEEE binary64 (storage only: ggml converts it to nothing)"),
    QuantFormat("I8", 24, 1, np.dtype("i1"), None, is_quantized=False, validate=validate_int,
                doc="int8 (storage only)"),
    QuantFormat("I16", 25, 1, np.dtype("<i2"), None, is_quantized=False, validate=validate_int,
                doc="int16 (storage only)"),
    QuantFormat("I32", 26, 1, np.dtype("<i4"), None, is_quantized=False, validate=validate_int,
                doc="int32 (storage only)"),
    QuantFormat("I64", 27, 1, np.dtype("<i8"), None, is_quantized=False, validate=validate_int,
                doc="int64 (storage only)"),
]
