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

from ..._jit import f32, roundf
from ...floats import F16_TO_F32, fp32_to_fp16
from ..kquant_search import make_qkx3_quants, make_qx_quants
from ..registry import QuantFormat
from .common import add_nan_first, c_float_to_int32, mul_nan_first, njit, to_int8, validate_d_f16, validate_dm_f16

i64 = np.int64  # widen a loaded byte before arithmetic (numba keeps uint8 arithmetic in uint8/uint64)

QK = 32  # QK4_0 == QK4_1 == QK5_0 == QK5_1 == QK8_0 == QK8_1

BLOCK_Q4_0 = np.dtype([("d", "<u2"), ("qs", "u1", (QK // 2,))])
BLOCK_Q4_1 = np.dtype([("d", "<u2"), ("m", "<u2"), ("qs", "u1", (QK // 2,))])
BLOCK_Q5_0 = np.dtype([("d", "<u2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
BLOCK_Q5_1 = np.dtype([("d", "<u2"), ("m", "<u2"), ("qh", "u1", (4,)), ("qs", "u1", (QK // 2,))])
BLOCK_Q8_0 = np.dtype([("d", "<u2"), ("qs", "i1", (QK,))])
BLOCK_Q8_1 = np.dtype([("d", "<u2"), ("s", "<u2"), ("qs", "i1", (QK,))])

FLT_MAX = f32(3.4028234663852886e38)

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
    _store_qh(qh_bytes, qh)


@njit
def _store_qh(qh_bytes, qh):
    # memcpy(&y[i].qh, &qh, sizeof(qh)) on a little-endian machine
    for b in range(4):
        qh_bytes[b] = (qh >> (8 * b)) & 0xFF


@njit
def _load_qh(qh_bytes):
    # memcpy(&qh, x[i].qh, sizeof(qh)) on a little-endian machine
    return int(qh_bytes[0]) | (int(qh_bytes[1]) << 8) | (int(qh_bytes[2]) << 16) | (int(qh_bytes[3]) << 24)


# ----------------------------------------------------------------------------------------------------- Q4_0

@njit
def quantize_row_q4_0_ref(x, y):
    """quantize_row_q4_0_ref (ggml-quants.c): d = (the value of largest magnitude) / -8, levels x/d + 8 in 0..15."""
    qk = QK
    for i in range(y.shape[0]):
        amax = f32(0.0)  # absolute max
        mx = f32(0.0)
        for j in range(qk):
            v = x[i * qk + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / f32(-8.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        for j in range(qk // 2):
            x0 = x[i * qk + j] * iv
            x1 = x[i * qk + qk // 2 + j] * iv
            # (uint8_t) MIN(15, (int8_t)(x0 + 8.5f)): a truncating cast, then a negative int8 wraps as a byte
            xi0 = min(15, to_int8(c_float_to_int32(x0 + f32(8.5)))) & 0xFF
            xi1 = min(15, to_int8(c_float_to_int32(x1 + f32(8.5)))) & 0xFF
            y[i]["qs"][j] = (xi0 | (xi1 << 4)) & 0xFF


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
    """dequantize_row_q4_0 (ggml-quants.c): y = (level - 8) * d, low nibbles first, then high nibbles."""
    qk = QK
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        for j in range(qk // 2):
            x0 = (i64(x[i]["qs"][j]) & 0x0F) - 8
            x1 = (i64(x[i]["qs"][j]) >> 4) - 8
            y[i * qk + j] = f32(x0) * d
            y[i * qk + j + qk // 2] = f32(x1) * d


# ----------------------------------------------------------------------------------------------------- Q4_1

@njit
def quantize_row_q4_1_ref(x, y):
    """quantize_row_q4_1_ref (ggml-quants.c): m = min, d = (max - min) / 15, levels (x - m)/d in 0..15."""
    qk = QK
    for i in range(y.shape[0]):
        mn = FLT_MAX
        mx = -FLT_MAX
        for j in range(qk):
            v = x[i * qk + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / f32(15.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        for j in range(qk // 2):
            x0 = (x[i * qk + j] - mn) * iv
            x1 = (x[i * qk + qk // 2 + j] - mn) * iv
            xi0 = min(15, to_int8(c_float_to_int32(x0 + f32(0.5)))) & 0xFF   # MIN(15, (int8_t)(x0 + 0.5f))
            xi1 = min(15, to_int8(c_float_to_int32(x1 + f32(0.5)))) & 0xFF
            y[i]["qs"][j] = (xi0 | (xi1 << 4)) & 0xFF


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
    """dequantize_row_q4_1 (ggml-quants.c): y = level * d + m, two float roundings (no FMA in the scalar build)."""
    qk = QK
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        m = F16_TO_F32[x[i]["m"]]
        for j in range(qk // 2):
            x0 = i64(x[i]["qs"][j]) & 0x0F
            x1 = i64(x[i]["qs"][j]) >> 4
            y[i * qk + j] = f32(x0) * d + m
            y[i * qk + j + qk // 2] = f32(x1) * d + m


# ----------------------------------------------------------------------------------------------------- Q5_0

@njit
def quantize_row_q5_0_ref(x, y):
    """quantize_row_q5_0_ref (ggml-quants.c): d = (the value of largest magnitude) / -16, levels x/d + 16 in 0..31;
    the low 4 bits in qs, the fifth bits in the 32-bit qh."""
    qk = QK
    for i in range(y.shape[0]):
        amax = f32(0.0)  # absolute max
        mx = f32(0.0)
        for j in range(qk):
            v = x[i * qk + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / f32(-16.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        qh = 0
        for j in range(qk // 2):
            x0 = x[i * qk + j] * iv
            x1 = x[i * qk + qk // 2 + j] * iv
            xi0 = min(31, to_int8(c_float_to_int32(x0 + f32(16.5)))) & 0xFF   # (uint8_t) MIN(31, (int8_t)(...))
            xi1 = min(31, to_int8(c_float_to_int32(x1 + f32(16.5)))) & 0xFF
            y[i]["qs"][j] = ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4)) & 0xFF
            # the fifth bit of each level, at bit j / j + 16 of qh
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + qk // 2)
        _store_qh(y[i]["qh"], qh)


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
    """quantize_row_q5_1_ref (ggml-quants.c): m = min, d = (max - min) / 31, levels (x - m)/d in 0..31."""
    qk = QK
    for i in range(y.shape[0]):
        mn = FLT_MAX
        mx = -FLT_MAX
        for j in range(qk):
            v = x[i * qk + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / f32(31.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        qh = 0
        for j in range(qk // 2):
            x0 = (x[i * qk + j] - mn) * iv
            x1 = (x[i * qk + qk // 2 + j] - mn) * iv
            # (uint8_t)(x0 + 0.5f): no clamp; the low 8 bits of the truncating cast
            xi0 = c_float_to_int32(x0 + f32(0.5)) & 0xFF
            xi1 = c_float_to_int32(x1 + f32(0.5)) & 0xFF
            y[i]["qs"][j] = ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4)) & 0xFF
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + qk // 2)
        _store_qh(y[i]["qh"], qh)


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
    """dequantize_row_q8_0 (ggml-quants.c): y = level * d."""
    qk = QK
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        for j in range(qk):
            y[i * qk + j] = f32(x[i]["qs"][j]) * d


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
# the F16 scales already converted (x.m, y.s unused by the symmetric formats): "sumf + term" with the accumulator
# as the first operand (add_nan_first).  The fast layer (refimpl/kernels/legacy.py) calls the same terms and steps.

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


# The reference vec_dots add every block's term with add_nan_first, the C's operand order (see above).

@njit
def vec_dot_q4_0_q8_0(n, x, y):
    """ggml_vec_dot_q4_0_q8_0_generic (ggml-cpu/quants.c): per block an integer sum of (level - 8) * q8, then
    sumf += sumi * x.d * y.d."""
    qk = QK
    nb = n // qk
    sumf = f32(0.0)
    for ib in range(nb):
        sumi0 = 0
        sumi1 = 0
        for j in range(qk // 2):
            v0 = (i64(x[ib]["qs"][j]) & 0x0F) - 8
            v1 = (i64(x[ib]["qs"][j]) >> 4) - 8
            sumi0 += v0 * i64(y[ib]["qs"][j])
            sumi1 += v1 * i64(y[ib]["qs"][j + qk // 2])
        sumi = sumi0 + sumi1
        sumf = _step_q4_0(sumf, _d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
    return sumf


@njit
def vec_dot_q4_1_q8_1(n, x, y):
    """ggml_vec_dot_q4_1_q8_1_generic (ggml-cpu/quants.c): sumf += (x.d*y.d)*sumi + x.m*y.s per block."""
    qk = QK
    nb = n // qk
    sumf = f32(0.0)
    for ib in range(nb):
        sumi0 = 0
        sumi1 = 0
        for j in range(qk // 2):
            v0 = i64(x[ib]["qs"][j]) & 0x0F
            v1 = i64(x[ib]["qs"][j]) >> 4
            sumi0 += v0 * i64(y[ib]["qs"][j])
            sumi1 += v1 * i64(y[ib]["qs"][j + qk // 2])
        sumi = sumi0 + sumi1
        sumf = _step_q4_1_q5_1(sumf, _d(x[ib]), F16_TO_F32[x[ib]["m"]], _d(y[ib]), F16_TO_F32[y[ib]["s"]], sumi)
    return sumf


@njit
def vec_dot_q5_0_q8_0(n, x, y):
    """ggml_vec_dot_q5_0_q8_0_generic (ggml-cpu/quants.c): level j = (nibble | bit j of qh << 4) - 16."""
    qk = QK
    nb = n // qk
    sumf = f32(0.0)
    for ib in range(nb):
        qh = _load_qh(x[ib]["qh"])
        sumi0 = 0
        sumi1 = 0
        for j in range(qk // 2):
            xh_0 = ((qh & (1 << j)) >> j) << 4
            xh_1 = (qh & (1 << (j + 16))) >> (j + 12)
            x0 = ((i64(x[ib]["qs"][j]) & 0x0F) | xh_0) - 16
            x1 = ((i64(x[ib]["qs"][j]) >> 4) | xh_1) - 16
            sumi0 += x0 * i64(y[ib]["qs"][j])
            sumi1 += x1 * i64(y[ib]["qs"][j + qk // 2])
        sumi = sumi0 + sumi1
        sumf = _step_q5_0(sumf, _d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
    return sumf


@njit
def vec_dot_q5_1_q8_1(n, x, y):
    """ggml_vec_dot_q5_1_q8_1_generic (ggml-cpu/quants.c): Q4_1's float step with 5-bit levels."""
    qk = QK
    nb = n // qk
    sumf = f32(0.0)
    for ib in range(nb):
        qh = _load_qh(x[ib]["qh"])
        sumi0 = 0
        sumi1 = 0
        for j in range(qk // 2):
            xh_0 = ((qh >> j) << 4) & 0x10
            xh_1 = (qh >> (j + 12)) & 0x10
            x0 = (i64(x[ib]["qs"][j]) & 0x0F) | xh_0
            x1 = (i64(x[ib]["qs"][j]) >> 4) | xh_1
            sumi0 += x0 * i64(y[ib]["qs"][j])
            sumi1 += x1 * i64(y[ib]["qs"][j + qk // 2])
        sumi = sumi0 + sumi1
        sumf = _step_q4_1_q5_1(sumf, _d(x[ib]), F16_TO_F32[x[ib]["m"]], _d(y[ib]), F16_TO_F32[y[ib]["s"]], sumi)
    return sumf


@njit
def vec_dot_q8_0_q8_0(n, x, y):
    """ggml_vec_dot_q8_0_q8_0_generic (ggml-cpu/quants.c): sumf += sumi * (x.d*y.d) per block."""
    qk = QK
    nb = n // qk
    sumf = f32(0.0)
    for ib in range(nb):
        sumi = 0
        for j in range(qk):
            sumi += i64(x[ib]["qs"][j]) * i64(y[ib]["qs"][j])
        sumf = _step_q8_0(sumf, _d(x[ib]), f32(0.0), _d(y[ib]), f32(0.0), sumi)
    return sumf


# ----------------------------------------------------------------------------------------------------- validate

def _validate_q8_1(blocks) -> bool:
    # ggml_validate_row_data has no case for Q8_1: it falls to "invalid type" and rejects every row
    return False


FORMATS = [
    QuantFormat("Q4_0", 2, QK, BLOCK_Q4_0, "Q8_0",
                quantize=quantize_q4_0, quantize_ref=quantize_row_q4_0_ref, dequantize=dequantize_row_q4_0,
                validate=validate_d_f16, from_float=quantize_row_q4_0_ref, vec_dot=vec_dot_q4_0_q8_0,
                doc="4-bit symmetric, F16 scale: x = d * (q - 8)"),
    QuantFormat("Q4_1", 3, QK, BLOCK_Q4_1, "Q8_1",
                quantize=quantize_q4_1, quantize_ref=quantize_row_q4_1_ref, dequantize=dequantize_row_q4_1,
                validate=validate_dm_f16("m"), from_float=quantize_row_q4_1_ref, vec_dot=vec_dot_q4_1_q8_1,
                doc="4-bit with minimum, F16 scale and min: x = d * q + m"),
    QuantFormat("Q5_0", 6, QK, BLOCK_Q5_0, "Q8_0",
                quantize=quantize_q5_0, quantize_ref=quantize_row_q5_0_ref, dequantize=dequantize_row_q5_0,
                validate=validate_d_f16, from_float=quantize_row_q5_0_ref, vec_dot=vec_dot_q5_0_q8_0,
                doc="5-bit symmetric, F16 scale: x = d * (q - 16)"),
    QuantFormat("Q5_1", 7, QK, BLOCK_Q5_1, "Q8_1",
                quantize=quantize_q5_1, quantize_ref=quantize_row_q5_1_ref, dequantize=dequantize_row_q5_1,
                validate=validate_dm_f16("m"), from_float=quantize_row_q5_1_ref, vec_dot=vec_dot_q5_1_q8_1,
                doc="5-bit with minimum, F16 scale and min: x = d * q + m"),
    QuantFormat("Q8_0", 8, QK, BLOCK_Q8_0, "Q8_0",
                quantize=quantize_q8_0, quantize_ref=quantize_row_q8_0_ref, dequantize=dequantize_row_q8_0,
                validate=validate_d_f16, from_float=quantize_row_q8_0_ref, vec_dot=vec_dot_q8_0_q8_0,
                doc="8-bit symmetric, F16 scale: x = d * q"),
    # ggml-cpu has no vec_dot for Q8_1 (it is only ever the activation side)
    QuantFormat("Q8_1", 9, QK, BLOCK_Q8_1, "Q8_1",
                quantize_ref=quantize_row_q8_1_ref, validate=_validate_q8_1, from_float=quantize_row_q8_1_ref,
                doc="8-bit symmetric with F16 scale and F16 d*sum(q); activation format for Q4_1/Q5_1"),
]
