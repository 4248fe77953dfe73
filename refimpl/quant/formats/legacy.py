"""The original ggml block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (32 weights per block, one F16 scale).

``_0`` formats are symmetric (``x = d * (q - offset)``), ``_1`` formats store a minimum too (``x = d * q + m``).
Q8_0 and Q8_1 are also what mul_mat quantizes activations to (the ``vec_dot_type`` of the other four).

Without an importance matrix ggml quantizes with the ``quantize_row_*_ref`` functions (a single pass from the
block's extreme value); with one, Q4_0/Q5_0 search the scale with ``make_qx_quants`` and Q4_1/Q5_1 scale and
minimum with ``make_qkx3_quants`` (Q8_0 ignores the imatrix).  Q8_1 has no ``to_float`` and is not accepted by
``ggml_quantize_chunk``: refimpl quantizes it with ``quantize_row_q8_1_ref`` only.

Float-to-integer casts go through ``c_float_to_int32`` because ggml relies on ``(int8_t)(x + 8.5f)``-style
truncating casts, whose out-of-range results (NaN or Inf after ``1/d`` overflows) are the x86 ones.
"""
from __future__ import annotations

import numpy as np

from ..._jit import dot32_i8, dot32_nibbles, dot32_q5, f32, roundf
from ...floats import F16_TO_F32, fp32_to_fp16
from ..intdot import block_int_dot
from ..registry import QuantFormat
from ..kquant_search import make_qkx3_quants, make_qx_quants
from .common import (add_nan_first, c_float_to_int32, mul_nan_first, njit, to_int8)

U15, U4 = np.uint8(0x0F), np.uint8(4)   # uint8 nibble masks: the lanes stay narrow, so LLVM vectorizes

QK = 32  # QK4_0 == QK4_1 == QK5_0 == QK5_1 == QK8_0 == QK8_1

BLOCK_Q4_0 = np.dtype([("d", "<u2"), ("qs", "u1", (QK // 2,))])
BLOCK_Q4_1 = np.dtype([("d", "<u2"), ("m", "<u2"), ("qs", "u1", (QK // 2,))])
BLOCK_Q5_0 = np.dtype([("d", "<u2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
BLOCK_Q5_1 = np.dtype([("d", "<u2"), ("m", "<u2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
BLOCK_Q8_0 = np.dtype([("d", "<u2"), ("qs", "i1", (QK,))])
BLOCK_Q8_1 = np.dtype([("d", "<u2"), ("s", "<u2"), ("qs", "i1", (QK,))])

FLT_MAX = f32(3.4028234663852886e38)

# _RUNTIME_QK: dequantize_row_q8_0 takes the block length from the array sizes instead of the constant QK.  With
# a constant trip count of 32 LLVM fully unrolls the inner loop and then cannot vectorize it (numba gives it no
# noalias information about x and y); with a runtime trip count the loop vectorizer emits its own overlap check
# and vectorizes (3x faster).  The 4/5-bit kernels are faster fully unrolled (constant shifts), so they keep QK.
# Results are identical either way: each element is computed on its own.


# ----------------------------------------------------------------------------------------------- small helpers

@njit
def _sum_sq(x):
    # the sigma2 numerator of the *_impl quantizers: float accumulation in row order
    s = f32(0.0)
    for j in range(x.size):
        s += x[j] * x[j]
    return s


@njit
def _imatrix_weights(xb, qw, sigma2, weight):
    # weight[j] = qw[j] * sqrtf(sigma2 + xb[j]*xb[j]) (every legacy *_impl); sqrtf is correctly rounded
    for j in range(QK):
        weight[j] = qw[j] * f32(np.sqrt(sigma2 + xb[j] * xb[j]))


@njit(inline="always")  # numba-IR inlining: as a call it is not faster than the scalar loop (measured)
def _block_codes(x, o, n, offset, scale, bias, hi, L):
    """``L[j] = (uint8_t) MIN(hi, (int8_t)((x[o+j] - offset)*scale + bias))`` for j < n: the truncating casts of
    the reference quantizers (Q4_0: offset 0 and bias 8.5; ``x - 0.0f == x`` bit for bit, so this is ``x*id + 8.5f``).

    The first loop is the fast path: for values in (-129, 128) the int8 cast is a plain truncation, so it clamps
    into that range (which also maps NaN somewhere harmless) and converts with a 32-bit truncation that LLVM
    vectorizes (``n`` comes from the array sizes at run time; a constant 32 gets fully unrolled, unvectorized).
    If any value was outside the range (NaN, Inf, 1/d overflow) the block is redone with the exact C cast."""
    ok = True
    for j in range(n):
        v = (x[o + j] - offset) * scale + bias
        ok &= (v > f32(-129.0)) & (v < f32(128.0))
        c = v if v > f32(-129.0) else f32(-129.0)
        c = c if c < f32(128.0) else f32(128.0)
        L[j] = np.uint8(min(np.int32(hi), np.int32(c)) & np.int32(0xFF))
    if not ok:
        for j in range(n):
            v = (x[o + j] - offset) * scale + bias
            L[j] = min(hi, to_int8(c_float_to_int32(v))) & 0xFF


@njit
def _store_q5_nibbles(qs, qh_bytes, L):
    # the low 4 bits of L[j], L[j+16] share qs[j]; the 5th bits go to bit j / j+16 of the little-endian qh word
    qh = 0
    for j in range(QK // 2):
        xi0 = int(L[j]) & 0xFF
        xi1 = int(L[j + QK // 2]) & 0xFF
        qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
        qh |= ((xi0 & 0x10) >> 4) << j
        qh |= ((xi1 & 0x10) >> 4) << (j + QK // 2)
    for b in range(4):
        qh_bytes[b] = (qh >> (8 * b)) & 0xFF


@njit
def _load_qh(qh_bytes):
    # memcpy(&qh, x[i].qh, sizeof(qh)) on a little-endian machine
    return int(qh_bytes[0]) | (int(qh_bytes[1]) << 8) | (int(qh_bytes[2]) << 16) | (int(qh_bytes[3]) << 24)


# ----------------------------------------------------------------------------------------------------- Q4_0

@njit
def quantize_row_q4_0_ref(x, y):
    # mirrors quantize_row_q4_0_ref (ggml-quants.c)
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]  # == QK, at run time (see _block_codes)
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        amax = f32(0.0)
        mx = f32(0.0)
        for j in range(QK):
            v = x[o + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / f32(-8.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        # MIN(15, (int8_t)(x*id + 8.5f)) stored through uint8_t: a negative int8 would wrap to a large byte
        _block_codes(x, o, qk, f32(0.0), iv, f32(8.5), 15, L)
        qs = y[i]["qs"]
        half = qk // 2
        for j in range(half):
            qs[j] = L[j] | np.uint8(L[j + half] << U4)


@njit
def _quantize_row_q4_0_impl(x, y, qw, weight, L):
    # mirrors quantize_row_q4_0_impl (ggml-quants.c), imatrix path
    n = x.size
    sigma2 = _sum_sq(x) / f32(n)
    for ib in range(n // QK):
        xb = x[ib * QK:(ib + 1) * QK]
        _imatrix_weights(xb, qw[ib * QK:(ib + 1) * QK], sigma2, weight)
        d = make_qx_quants(QK, 8, xb, L, 1, weight)
        y[ib]["d"] = fp32_to_fp16(d)
        qs = y[ib]["qs"]
        for j in range(QK // 2):
            qs[j] = (int(L[j]) | (int(L[j + 16]) << 4)) & 0xFF


@njit
def quantize_q4_0(x, imatrix, blocks):
    # mirrors quantize_q4_0: without imatrix the reference quantizer, with it the weighted search per row
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q4_0_ref(x[r], blocks[r])
        return
    weight = np.empty(QK, dtype=np.float32)
    L = np.empty(QK, dtype=np.int8)
    for r in range(x.shape[0]):
        _quantize_row_q4_0_impl(x[r], blocks[r], imatrix, weight, L)


@njit
def dequantize_row_q4_0(x, y):
    # mirrors dequantize_row_q4_0 (ggml-quants.c).  (float)(q - 8) is computed as (float)q - 8.0f: both exact.
    # Slices, a run-time half-block length and uint8 masks let LLVM vectorize (a constant 16 would be unrolled).
    if x.shape[0] == 0:
        return
    half = y.size // x.shape[0] // 2
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        qs = x[i]["qs"]
        lo = y[2 * half * i:2 * half * i + half]
        hi = y[2 * half * i + half:2 * half * (i + 1)]
        for j in range(half):
            q = qs[j]
            lo[j] = (f32(q & U15) - f32(8.0)) * d
            hi[j] = (f32(q >> U4) - f32(8.0)) * d


# ----------------------------------------------------------------------------------------------------- Q4_1

@njit
def quantize_row_q4_1_ref(x, y):
    # mirrors quantize_row_q4_1_ref (ggml-quants.c)
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]  # == QK, at run time (see _block_codes)
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        mn = FLT_MAX
        mx = -FLT_MAX
        for j in range(QK):
            v = x[o + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / f32(15.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        # MIN(15, (int8_t)((x - min)*id + 0.5f))
        _block_codes(x, o, qk, mn, iv, f32(0.5), 15, L)
        qs = y[i]["qs"]
        half = qk // 2
        for j in range(half):
            qs[j] = L[j] | np.uint8(L[j + half] << U4)


@njit
def _quantize_row_q4_1_impl(x, y, qw, weight, L, Laux):
    # mirrors quantize_row_q4_1_impl (ggml-quants.c), imatrix path
    n = x.size
    sigma2 = _sum_sq(x) / f32(n)
    for ib in range(n // QK):
        xb = x[ib * QK:(ib + 1) * QK]
        _imatrix_weights(xb, qw[ib * QK:(ib + 1) * QK], sigma2, weight)
        d, the_min = make_qkx3_quants(QK, 15, xb, weight, L, Laux, f32(-0.9), f32(0.05), 36, False)
        y[ib]["d"] = fp32_to_fp16(d)
        y[ib]["m"] = fp32_to_fp16(-the_min)
        qs = y[ib]["qs"]
        for j in range(QK // 2):
            qs[j] = (int(L[j]) | (int(L[j + 16]) << 4)) & 0xFF


@njit
def quantize_q4_1(x, imatrix, blocks):
    # mirrors quantize_q4_1
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q4_1_ref(x[r], blocks[r])
        return
    weight = np.empty(QK, dtype=np.float32)
    L = np.empty(QK, dtype=np.uint8)
    Laux = np.empty(QK, dtype=np.uint8)
    for r in range(x.shape[0]):
        _quantize_row_q4_1_impl(x[r], blocks[r], imatrix, weight, L, Laux)


@njit
def dequantize_row_q4_1(x, y):
    # mirrors dequantize_row_q4_1 (ggml-quants.c): x*d + m, two float roundings (no FMA in the scalar build)
    if x.shape[0] == 0:
        return
    half = y.size // x.shape[0] // 2
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        m = F16_TO_F32[x[i]["m"]]
        qs = x[i]["qs"]
        lo = y[2 * half * i:2 * half * i + half]
        hi = y[2 * half * i + half:2 * half * (i + 1)]
        for j in range(half):
            q = qs[j]
            lo[j] = f32(q & U15) * d + m
            hi[j] = f32(q >> U4) * d + m


# ----------------------------------------------------------------------------------------------------- Q5_0

@njit
def quantize_row_q5_0_ref(x, y):
    # mirrors quantize_row_q5_0_ref (ggml-quants.c)
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]  # == QK, at run time (see _block_codes)
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        amax = f32(0.0)
        mx = f32(0.0)
        for j in range(QK):
            v = x[o + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / f32(-16.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        # (uint8_t) MIN(31, (int8_t)(x*id + 16.5f))
        _block_codes(x, o, qk, f32(0.0), iv, f32(16.5), 31, L)
        _store_q5_nibbles(y[i]["qs"], y[i]["qh"], L)


@njit
def _quantize_row_q5_0_impl(x, y, qw, weight, L):
    # mirrors quantize_row_q5_0_impl (ggml-quants.c), imatrix path
    n = x.size
    sigma2 = _sum_sq(x) / f32(n)
    for ib in range(n // QK):
        xb = x[ib * QK:(ib + 1) * QK]
        _imatrix_weights(xb, qw[ib * QK:(ib + 1) * QK], sigma2, weight)
        d = make_qx_quants(QK, 16, xb, L, 1, weight)
        y[ib]["d"] = fp32_to_fp16(d)
        _store_q5_nibbles(y[ib]["qs"], y[ib]["qh"], L)


@njit
def quantize_q5_0(x, imatrix, blocks):
    # mirrors quantize_q5_0
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q5_0_ref(x[r], blocks[r])
        return
    weight = np.empty(QK, dtype=np.float32)
    L = np.empty(QK, dtype=np.int8)
    for r in range(x.shape[0]):
        _quantize_row_q5_0_impl(x[r], blocks[r], imatrix, weight, L)


@njit
def dequantize_row_q5_0(x, y):
    # mirrors dequantize_row_q5_0 (ggml-quants.c)
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        qh = _load_qh(x[i]["qh"])
        qs = x[i]["qs"]
        o = i * QK
        for j in range(QK // 2):
            xh_0 = ((qh >> j) << 4) & 0x10
            xh_1 = (qh >> (j + 12)) & 0x10
            q = int(qs[j])
            y[o + j] = f32(((q & 0x0F) | xh_0) - 16) * d
            y[o + j + QK // 2] = f32(((q >> 4) | xh_1) - 16) * d


# ----------------------------------------------------------------------------------------------------- Q5_1

@njit
def quantize_row_q5_1_ref(x, y):
    # mirrors quantize_row_q5_1_ref (ggml-quants.c)
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]  # == QK, at run time (see _block_codes)
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        mn = FLT_MAX
        mx = -FLT_MAX
        for j in range(QK):
            v = x[o + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / f32(31.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        # (uint8_t)((x - min)*id + 0.5f): no clamp in the C (hi = 255 makes the MIN a no-op; the low 8 bits of the
        # int8 cast equal those of the uint8 cast)
        _block_codes(x, o, qk, mn, iv, f32(0.5), 255, L)
        _store_q5_nibbles(y[i]["qs"], y[i]["qh"], L)


@njit
def _quantize_row_q5_1_impl(x, y, qw, weight, L, Laux):
    # mirrors quantize_row_q5_1_impl (ggml-quants.c), imatrix path
    n = x.size
    sigma2 = _sum_sq(x) / f32(n)
    for ib in range(n // QK):
        xb = x[ib * QK:(ib + 1) * QK]
        _imatrix_weights(xb, qw[ib * QK:(ib + 1) * QK], sigma2, weight)
        d, the_min = make_qkx3_quants(QK, 31, xb, weight, L, Laux, f32(-0.9), f32(0.05), 36, False)
        y[ib]["d"] = fp32_to_fp16(d)
        y[ib]["m"] = fp32_to_fp16(-the_min)
        _store_q5_nibbles(y[ib]["qs"], y[ib]["qh"], L)


@njit
def quantize_q5_1(x, imatrix, blocks):
    # mirrors quantize_q5_1
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q5_1_ref(x[r], blocks[r])
        return
    weight = np.empty(QK, dtype=np.float32)
    L = np.empty(QK, dtype=np.uint8)
    Laux = np.empty(QK, dtype=np.uint8)
    for r in range(x.shape[0]):
        _quantize_row_q5_1_impl(x[r], blocks[r], imatrix, weight, L, Laux)


@njit
def dequantize_row_q5_1(x, y):
    # mirrors dequantize_row_q5_1 (ggml-quants.c)
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        m = F16_TO_F32[x[i]["m"]]
        qh = _load_qh(x[i]["qh"])
        qs = x[i]["qs"]
        o = i * QK
        for j in range(QK // 2):
            xh_0 = ((qh >> j) << 4) & 0x10
            xh_1 = (qh >> (j + 12)) & 0x10
            q = int(qs[j])
            y[o + j] = f32((q & 0x0F) | xh_0) * d + m
            y[o + j + QK // 2] = f32((q >> 4) | xh_1) * d + m


# ----------------------------------------------------------------------------------------------------- Q8_0

@njit
def _amax(x, o):
    # amax = MAX(amax, fabsf(v)) with MAX(a, b) = a > b ? a : b (a NaN v wins; a NaN amax is then replaced)
    amax = f32(0.0)
    for j in range(QK):
        av = abs(x[o + j])
        amax = amax if amax > av else av
    return amax


@njit
def quantize_row_q8_0_ref(x, y):
    # mirrors quantize_row_q8_0_ref (ggml-quants.c)
    for i in range(y.shape[0]):
        o = i * QK
        amax = _amax(x, o)
        d = amax / f32(127.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        qs = y[i]["qs"]
        for j in range(QK):
            qs[j] = to_int8(c_float_to_int32(roundf(x[o + j] * iv)))  # int8_t = roundf(x): truncating cast


@njit
def quantize_q8_0(x, imatrix, blocks):
    # mirrors quantize_q8_0: the imatrix is ignored
    for r in range(x.shape[0]):
        quantize_row_q8_0_ref(x[r], blocks[r])


@njit
def dequantize_row_q8_0(x, y):
    # mirrors dequantize_row_q8_0 (ggml-quants.c)
    if x.shape[0] == 0:
        return
    qk = y.size // x.shape[0]  # == QK, at run time
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        qs = x[i]["qs"]
        yb = y[qk * i:qk * (i + 1)]
        for j in range(qk):
            yb[j] = f32(qs[j]) * d


# ----------------------------------------------------------------------------------------------------- Q8_1

@njit
def quantize_row_q8_1_ref(x, y):
    # mirrors quantize_row_q8_1_ref (ggml-quants.c): Q8_0 plus s = d * sum(qs)
    for i in range(y.shape[0]):
        o = i * QK
        amax = _amax(x, o)
        d = amax / f32(127.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        qs = y[i]["qs"]
        total = 0
        for j in range(QK // 2):
            q0 = to_int8(c_float_to_int32(roundf(x[o + j] * iv)))
            q1 = to_int8(c_float_to_int32(roundf(x[o + QK // 2 + j] * iv)))
            qs[j] = q0
            qs[QK // 2 + j] = q1
            total += q0 + q1
        y[i]["s"] = fp32_to_fp16(f32(total) * d)


# ----------------------------------------------------------------------------- CPU side: from_float, vec_dot
# type_traits_cpu (ggml-cpu.c): from_float of Q4_0..Q5_1 is quantize_row_<t>, which calls the _ref function;
# Q8_0/Q8_1 use quantize_row_q8_0/q8_1 whose scalar x86 build also calls the _ref function.  So from_float is
# quantize_ref for every legacy type (the registry default).  vec_dot mirrors the *_generic functions of
# ggml-cpu/quants.c (what the non-SIMD x86 build runs): an exact int32 sum per block, then one float32 multiply-
# add per block into a float32 accumulator, in the C's operand order.  Where two NaN scales can meet, the operand
# whose payload survives is pinned with mul_nan_first/add_nan_first to what the oracle's compiled code does
# (probed with distinct NaN payloads: gcc computes x.d*y.d as y.d first and x.m*y.s as y.s first, except in
# q4_0 where sumi*x.d*y.d keeps the left-to-right order; the accumulator is always the first operand).

# The float part of each vec_dot is one "step" per block: (sumf, x.d, x.m, y.d, y.s, integer sum) -> sumf, with
# the F16 scales already converted (x.m, y.s unused by the symmetric formats).  The BLAS path's folds
# (refimpl.quant.intdot) call the same steps, so both paths run the same float code.

# Each step is "sumf + term" with the accumulator as the first operand (add_nan_first), as the BLAS path's folds
# use it; the vec_dots add the same term and return at the first NaN sum (see "A NaN sum" below), which gives the
# same bits with the NaN test off the add chain.

@njit
def _term_q4_0(xd, xm, yd, ys, sumi):
    # sumi*GGML_CPU_FP16_TO_FP32(x.d)*GGML_CPU_FP16_TO_FP32(y.d): left to right
    return mul_nan_first(f32(sumi) * xd, yd)


@njit
def _term_q4_1_q5_1(xd, xm, yd, ys, sumi):
    # (x.d*y.d)*sumi + x.m*y.s: two products rounded separately, then the sum (no FMA in the scalar build)
    dd = mul_nan_first(yd, xd)
    ms = mul_nan_first(ys, xm)
    return add_nan_first(dd * f32(sumi), ms)


@njit
def _term_q5_0(xd, xm, yd, ys, sumi):
    return mul_nan_first(yd, xd) * f32(sumi)


@njit
def _term_q8_0(xd, xm, yd, ys, sumi):
    # sumi*(x.d*y.d)
    return f32(sumi) * mul_nan_first(yd, xd)


@njit
def _step_q4_0(sumf, xd, xm, yd, ys, sumi):
    return add_nan_first(sumf, _term_q4_0(xd, xm, yd, ys, sumi))


@njit
def _step_q4_1_q5_1(sumf, xd, xm, yd, ys, sumi):
    return add_nan_first(sumf, _term_q4_1_q5_1(xd, xm, yd, ys, sumi))


@njit
def _step_q5_0(sumf, xd, xm, yd, ys, sumi):
    return add_nan_first(sumf, _term_q5_0(xd, xm, yd, ys, sumi))


@njit
def _step_q8_0(sumf, xd, xm, yd, ys, sumi):
    return add_nan_first(sumf, _term_q8_0(xd, xm, yd, ys, sumi))


@njit
def _d(block):
    return F16_TO_F32[block["d"]]


# Speed (what a decode step spends its time in).  Each block's integer sum -- 32 int8 x int8 products, the C's
# sumi -- is one vector operation (refimpl._jit.dot32_i8 / dot32_nibbles / dot32_q5): written as a loop, numba
# would widen the small integers to int64 and LLVM would unroll the constant-length loop into scalar code.  It is
# an integer sum, so its order does not matter.  The F16 scales are read through F16_TO_F32, the table the scalar
# C build reads too.
#
# A NaN sum: the C adds every block's term to sumf with sumf as the first operand, and x86 returns the first
# operand's NaN when both are NaN, so once sumf is NaN every later add returns it unchanged: it is the result.  The
# add that makes sumf NaN has at most one NaN operand (sumf was not NaN), and then the result is that operand's NaN
# (quieted) or the default NaN whatever the operand order.  So the vec_dots add plainly and return at the first NaN
# sum: the same bits as add_nan_first at every step, without the NaN test on the loop's add chain.

@njit
def vec_dot_q4_0_q8_0(n, x, y):
    # mirrors ggml_vec_dot_q4_0_q8_0_generic (ggml-cpu/quants.c); ggml's blocks are 32 levels (QK4_0 == QK8_0)
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_nibbles(x[ib]["qs"], y[ib]["qs"], 8)
        sumf = sumf + _term_q4_0(_d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


@njit
def vec_dot_q4_1_q8_1(n, x, y):
    # mirrors ggml_vec_dot_q4_1_q8_1_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_nibbles(x[ib]["qs"], y[ib]["qs"], 0)
        sumf = sumf + _term_q4_1_q5_1(_d(x[ib]), F16_TO_F32[x[ib]["m"]], _d(y[ib]), F16_TO_F32[y[ib]["s"]], sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


@njit
def vec_dot_q5_0_q8_0(n, x, y):
    # mirrors ggml_vec_dot_q5_0_q8_0_generic (ggml-cpu/quants.c): level j = (nibble | bit j of qh << 4) - 16
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_q5(x[ib]["qs"], np.uint32(_load_qh(x[ib]["qh"])), y[ib]["qs"], 16)
        sumf = sumf + _term_q5_0(_d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


@njit
def vec_dot_q5_1_q8_1(n, x, y):
    # mirrors ggml_vec_dot_q5_1_q8_1_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_q5(x[ib]["qs"], np.uint32(_load_qh(x[ib]["qh"])), y[ib]["qs"], 0)
        sumf = sumf + _term_q4_1_q5_1(_d(x[ib]), F16_TO_F32[x[ib]["m"]], _d(y[ib]), F16_TO_F32[y[ib]["s"]], sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


@njit
def vec_dot_q8_0_q8_0(n, x, y):
    # mirrors ggml_vec_dot_q8_0_q8_0_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_i8(x[ib]["qs"], y[ib]["qs"])
        sumf = sumf + _term_q8_0(_d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


# ------------------------------------------------------------------------- the BLAS path (refimpl.quant.intdot)
# One group per block, K = 32 integers in the order of y.qs.  Bound: |weight level| <= 31, |q8| <= 128, so every
# partial sum is at most 32 * 31 * 128 < 2^17, exact in float32.

@njit(nogil=True)
def _levels_q4(blocks, offset, out):
    # out[ib, r, j] = the level that meets y.qs[j]: low nibbles for j < 16, high nibbles for j >= 16, minus offset
    for r in range(blocks.shape[0]):
        for ib in range(blocks.shape[1]):
            qs = blocks[r, ib]["qs"]
            for j in range(QK // 2):
                out[ib, r, j] = f32((qs[j] & 0x0F) - offset)
                out[ib, r, j + QK // 2] = f32((qs[j] >> 4) - offset)


@njit(nogil=True)
def _levels_q5(blocks, offset, out):
    # as _levels_q4 plus the fifth bit: bit j of qh for level j
    for r in range(blocks.shape[0]):
        for ib in range(blocks.shape[1]):
            qs = blocks[r, ib]["qs"]
            qh = _load_qh(blocks[r, ib]["qh"])
            for j in range(QK // 2):
                out[ib, r, j] = f32(((qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - offset)
                out[ib, r, j + QK // 2] = f32(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset)


def _levels(kernel, offset):
    def get(blocks):
        out = np.empty((blocks.shape[1], blocks.shape[0], QK), np.float32)
        kernel(np.ascontiguousarray(blocks), offset, out)
        return out
    return get


INT_DOT_Q4_0 = block_int_dot(_levels(_levels_q4, 8), ("d",), ("d",), _step_q4_0)
INT_DOT_Q4_1 = block_int_dot(_levels(_levels_q4, 0), ("d", "m"), ("d", "s"), _step_q4_1_q5_1)
INT_DOT_Q5_0 = block_int_dot(_levels(_levels_q5, 16), ("d",), ("d",), _step_q5_0)
INT_DOT_Q5_1 = block_int_dot(_levels(_levels_q5, 0), ("d", "m"), ("d", "s"), _step_q4_1_q5_1)
INT_DOT_Q8_0 = block_int_dot(lambda b: np.moveaxis(b["qs"], 1, 0), ("d",), ("d",), _step_q8_0)


# ----------------------------------------------------------------------------------------------------- validate

def _validate_d(blocks) -> bool:
    # VALIDATE_ROW_DATA_D_F16_IMPL: the F16 scale d must be finite
    return not np.any((blocks["d"] & 0x7C00) == 0x7C00)


def _validate_dm(blocks) -> bool:
    # VALIDATE_ROW_DATA_DM_F16_IMPL(..., d, m): d and m must be finite
    return not (np.any((blocks["d"] & 0x7C00) == 0x7C00) or np.any((blocks["m"] & 0x7C00) == 0x7C00))


def _validate_q8_1(blocks) -> bool:
    # ggml_validate_row_data has no case for Q8_1: it falls to "invalid type" and rejects every row
    return False


FORMATS = [
    QuantFormat("Q4_0", 2, QK, BLOCK_Q4_0, "Q8_0",
                quantize=quantize_q4_0, quantize_ref=quantize_row_q4_0_ref, dequantize=dequantize_row_q4_0,
                validate=_validate_d, from_float=quantize_row_q4_0_ref, vec_dot=vec_dot_q4_0_q8_0, int_dot=INT_DOT_Q4_0,
                doc="4-bit symmetric, F16 scale: x = d * (q - 8)"),
    QuantFormat("Q4_1", 3, QK, BLOCK_Q4_1, "Q8_1",
                quantize=quantize_q4_1, quantize_ref=quantize_row_q4_1_ref, dequantize=dequantize_row_q4_1,
                validate=_validate_dm, from_float=quantize_row_q4_1_ref, vec_dot=vec_dot_q4_1_q8_1, int_dot=INT_DOT_Q4_1,
                doc="4-bit with minimum, F16 scale and min: x = d * q + m"),
    QuantFormat("Q5_0", 6, QK, BLOCK_Q5_0, "Q8_0",
                quantize=quantize_q5_0, quantize_ref=quantize_row_q5_0_ref, dequantize=dequantize_row_q5_0,
                validate=_validate_d, from_float=quantize_row_q5_0_ref, vec_dot=vec_dot_q5_0_q8_0, int_dot=INT_DOT_Q5_0,
                doc="5-bit symmetric, F16 scale: x = d * (q - 16)"),
    QuantFormat("Q5_1", 7, QK, BLOCK_Q5_1, "Q8_1",
                quantize=quantize_q5_1, quantize_ref=quantize_row_q5_1_ref, dequantize=dequantize_row_q5_1,
                validate=_validate_dm, from_float=quantize_row_q5_1_ref, vec_dot=vec_dot_q5_1_q8_1, int_dot=INT_DOT_Q5_1,
                doc="5-bit with minimum, F16 scale and min: x = d * q + m"),
    QuantFormat("Q8_0", 8, QK, BLOCK_Q8_0, "Q8_0",
                quantize=quantize_q8_0, quantize_ref=quantize_row_q8_0_ref, dequantize=dequantize_row_q8_0,
                validate=_validate_d, from_float=quantize_row_q8_0_ref, vec_dot=vec_dot_q8_0_q8_0, int_dot=INT_DOT_Q8_0,
                doc="8-bit symmetric, F16 scale: x = d * q"),
    # ggml-cpu has no vec_dot for Q8_1 (it is only ever the activation side)
    QuantFormat("Q8_1", 9, QK, BLOCK_Q8_1, "Q8_1",
                quantize_ref=quantize_row_q8_1_ref, validate=_validate_q8_1, from_float=quantize_row_q8_1_ref,
                doc="8-bit symmetric with F16 scale and F16 d*sum(q); activation format for Q4_1/Q5_1"),
]
