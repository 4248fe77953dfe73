"""4-bit non-linear i-quants: IQ4_NL (4.5 bpw, blocks of 32) and IQ4_XS (4.25 bpw, super-blocks of 256).

Both store 4-bit indices into the same 16-entry non-uniform code book ``kvalues_iq4nl`` (-127 ... 113, denser
near zero, shaped for Gaussian-like weights) times a scale.  IQ4_NL has one F16 scale per 32 weights; IQ4_XS has
one F16 super-scale per 256 weights and a 6-bit signed sub-scale per 32 weights.

Both are quantized by ``quantize_row_iq4_nl_impl`` (ggml-quants.c): per 32-block, pick the index of the nearest
code-book value for ``x/d`` (``best_index_int8``, a binary search), then try 15 scales around ``max/values[0]`` and
keep the best weighted least-squares fit.  Neither needs an importance matrix.
"""
from __future__ import annotations

import numpy as np

from ..._jit import f32, nearest_int
from ...floats import F16_TO_F32, fp32_to_fp16
from ..iq_tables import KVALUES_IQ4NL
from ..registry import QuantFormat
from ..kquant_search import GROUP_MAX_EPS
from .common import add_nan_first, mul_nan_first, njit, validate_d_f16

i64 = np.int64
QK4_NL = 32
QK_K = 256

# block_iq4_nl (ggml-common.h): F16 scale, then 16 bytes of two 4-bit indices (low nibble: element j, high
# nibble: element j + 16)
BLOCK_IQ4_NL = np.dtype([("d", "<u2"), ("qs", "u1", (QK4_NL // 2,))])
# block_iq4_xs (ggml-common.h): F16 super-scale, high 2 bits of the 8 sub-scales, low 4 bits of them, then
# 8 x 16 bytes of 4-bit indices laid out like IQ4_NL per 32-block
BLOCK_IQ4_XS = np.dtype([("d", "<u2"), ("scales_h", "<u2"), ("scales_l", "u1", (QK_K // 64,)),
                         ("qs", "u1", (QK_K // 2,))])

# The code book as float32: C compares and subtracts `float x` and `int8_t val[i]` in float arithmetic; in numba an
# int8 operand would promote the float32 to float64 and round differently.
KVALUES_F32 = KVALUES_IQ4NL.astype(np.float32)


@njit
def best_index_int8(values, x):
    """mirrors best_index_int8 (ggml-quants.c): index of the code-book value nearest to ``x``; a tie between two
    neighbours goes to the upper one, NaN gives the last index.

    ggml binary-searches for the bracketing pair ``values[mu-1] <= x < values[mu]``; for strictly increasing values
    that ``mu`` is simply the number of values ``<= x``, which is counted here without branches (same result, and
    faster than the data-dependent branches of the search)."""
    n = values.shape[0]
    if x <= values[0]:
        return 0
    if x >= values[n - 1]:
        return n - 1
    if x != x:
        return n - 1  # C: every `x < val[mav]` is false, the search ends at (n-2, n-1), the final test is false
    mu = 0
    for k in range(n):
        mu += 1 if x >= values[k] else 0
    return mu - 1 if x - values[mu - 1] < values[mu] - x else mu


@njit
def _quantize_iq4_nl_impl(super_block_size, x, xo, q4, scales_l, scales, weight, L, qw, qwo, has_qw, ntry):
    """mirrors quantize_row_iq4_nl_impl (ggml-quants.c) with block_size 32 and values = kvalues_iq4nl.

    ``x[xo:xo+super_block_size]`` is the input, ``qw[qwo:]`` the importance weights if ``has_qw``.  Writes the
    packed indices to ``q4`` and (IQ4_XS) the low sub-scale bits to ``scales_l``; ``L`` keeps its contents between
    calls exactly like the C caller's stack array (the ntry < 0 path can leave a block's indices unset).
    Returns ``(d as F16 bits, scales_h)``."""
    values = KVALUES_F32
    block_size = 32
    sigma2 = f32(0.0)
    for j in range(super_block_size):
        sigma2 += x[xo + j] * x[xo + j]
    sigma2 *= f32(2.0) / f32(super_block_size)

    for j in range(super_block_size // 2):
        q4[j] = 0
    dh = fp32_to_fp16(f32(0.0))
    scales_h = 0

    max_scale = f32(0.0)
    amax_scale = f32(0.0)
    nblocks = super_block_size // block_size
    for ib in range(nblocks):
        xb = xo + ib * block_size
        lb = ib * block_size
        if has_qw:
            for j in range(block_size):
                weight[j] = qw[qwo + ib * block_size + j] * np.sqrt(sigma2 + x[xb + j] * x[xb + j])
        else:
            for j in range(block_size):
                weight[j] = x[xb + j] * x[xb + j]
        amax = f32(0.0)
        mx = f32(0.0)
        for j in range(block_size):
            ax = abs(x[xb + j])
            if ax > amax:
                amax = ax
                mx = x[xb + j]
        if amax < GROUP_MAX_EPS:
            scales[ib] = f32(0.0)
            continue
        d = -mx / values[0] if ntry > 0 else mx / values[0]
        id = f32(1.0) / d
        sumqx = f32(0.0)
        sumq2 = f32(0.0)
        for j in range(block_size):
            al = id * x[xb + j]
            l = best_index_int8(values, al)
            L[lb + j] = l
            q = values[l]
            w = weight[j]
            sumqx += w * q * x[xb + j]
            sumq2 += w * q * q
        d = sumqx / sumq2 if sumq2 > 0 else f32(0.0)
        best = d * sumqx
        for itry in range(-ntry, ntry + 1):
            # C: (itry + values[0])/max -- an int sum converted to float
            id = f32(itry + int(KVALUES_IQ4NL[0])) / mx
            sumqx = f32(0.0)
            sumq2 = f32(0.0)
            for j in range(block_size):
                al = id * x[xb + j]
                l = best_index_int8(values, al)
                q = values[l]
                w = weight[j]
                sumqx += w * q * x[xb + j]
                sumq2 += w * q * q
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                d = sumqx / sumq2
                best = d * sumqx
        scales[ib] = d
        abs_d = abs(d)
        if abs_d > amax_scale:
            amax_scale = abs_d
            max_scale = d

    if nblocks > 1:
        # IQ4_XS: one F16 super-scale, 6-bit signed sub-scales in [-32, 31]
        d = -max_scale / f32(32.0)
        dh = fp32_to_fp16(d)
        id = f32(1.0) / d if d != 0 else f32(0.0)  # C: `d ? 1/d : 0.f` (NaN counts as true)
        for ib in range(nblocks):
            l = nearest_int(id * scales[ib])
            l = max(-32, min(31, l))
            dl = d * f32(l)
            idl = f32(1.0) / dl if dl != 0 else f32(0.0)
            lb = ib * block_size
            xb = xo + ib * block_size
            for j in range(block_size):
                L[lb + j] = best_index_int8(values, idl * x[xb + j])
            l += 32
            l_l = l & 0xF
            l_h = l >> 4
            if ib % 2 == 0:
                scales_l[ib // 2] = l_l
            else:
                scales_l[ib // 2] |= l_l << 4
            scales_h |= l_h << (2 * (ib % 8))
    else:
        dh = fp32_to_fp16(scales[0])
        if ntry > 0:
            id = f32(1.0) / scales[0] if scales[0] != 0 else f32(0.0)
            for j in range(super_block_size):
                L[j] = best_index_int8(values, id * x[xo + j])

    for i in range(super_block_size // 32):
        for j in range(16):
            q4[16 * i + j] = (int(L[32 * i + j]) | (int(L[32 * i + 16 + j]) << 4)) & 0xFF
    return dh, scales_h


@njit
def quantize_iq4_nl(x, imatrix, blocks):
    # mirrors quantize_iq4_nl (ggml-quants.c): ntry = 7, imatrix optional
    has_qw = imatrix.size > 0
    L = np.zeros(QK4_NL, dtype=np.uint8)
    weight = np.empty(QK4_NL, dtype=np.float32)
    scales = np.empty(1, dtype=np.float32)
    unused_l = np.zeros(1, dtype=np.uint8)
    for row in range(x.shape[0]):
        xr = x[row]
        for ibl in range(blocks.shape[1]):
            blk = blocks[row, ibl]
            dh, _ = _quantize_iq4_nl_impl(QK4_NL, xr, QK4_NL * ibl, blk["qs"], unused_l, scales, weight, L,
                                          imatrix, QK4_NL * ibl, has_qw, 7)
            blk["d"] = dh


@njit
def quantize_row_iq4_nl_ref(x, blocks):
    # mirrors quantize_row_iq4_nl_ref (ggml-quants.c): ntry = -1, no scale search.  For an all-zero block
    # (max |x| < 1e-15) C packs the index array L left over from the previous block -- or, for the first block,
    # uninitialised stack memory; refimpl starts from zeros there.  d = 0, so the block dequantizes to zeros anyway.
    L = np.zeros(QK4_NL, dtype=np.uint8)
    weight = np.empty(QK4_NL, dtype=np.float32)
    scales = np.empty(1, dtype=np.float32)
    unused_l = np.zeros(1, dtype=np.uint8)
    empty = np.zeros(0, dtype=np.float32)
    for ibl in range(blocks.shape[0]):
        blk = blocks[ibl]
        dh, _ = _quantize_iq4_nl_impl(QK4_NL, x, QK4_NL * ibl, blk["qs"], unused_l, scales, weight, L,
                                      empty, 0, False, -1)
        blk["d"] = dh


@njit
def quantize_iq4_xs(x, imatrix, blocks):
    # mirrors quantize_iq4_xs (ggml-quants.c): ntry = 7, imatrix optional
    has_qw = imatrix.size > 0
    L = np.zeros(QK_K, dtype=np.uint8)
    weight = np.empty(32, dtype=np.float32)
    scales = np.empty(QK_K // 32, dtype=np.float32)
    for row in range(x.shape[0]):
        xr = x[row]
        for ibl in range(blocks.shape[1]):
            blk = blocks[row, ibl]
            dh, sh = _quantize_iq4_nl_impl(QK_K, xr, QK_K * ibl, blk["qs"], blk["scales_l"], scales, weight, L,
                                           imatrix, QK_K * ibl, has_qw, 7)
            blk["d"] = dh
            blk["scales_h"] = sh


@njit
def quantize_row_iq4_xs_ref(x, blocks):
    # mirrors quantize_row_iq4_xs_ref (ggml-quants.c) = quantize_iq4_xs(x, y, 1, k, NULL)
    quantize_iq4_xs(x.reshape(1, x.shape[0]), np.zeros(0, dtype=np.float32), blocks.reshape(1, blocks.shape[0]))


@njit
def dequantize_row_iq4_nl(blocks, y):
    # mirrors dequantize_row_iq4_nl (ggml-quants.c)
    values = KVALUES_F32
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        o = i * QK4_NL
        for j in range(QK4_NL // 2):
            q = int(qs[j])
            y[o + j] = d * values[q & 0xF]
            y[o + j + QK4_NL // 2] = d * values[q >> 4]


@njit
def dequantize_row_iq4_xs(blocks, y):
    # mirrors dequantize_row_iq4_xs (ggml-quants.c)
    values = KVALUES_F32
    for i in range(blocks.shape[0]):
        blk = blocks[i]
        d = F16_TO_F32[blk["d"]]
        scales_h = int(blk["scales_h"])
        scales_l = blk["scales_l"]
        qs = blk["qs"]
        for ib in range(QK_K // 32):
            ls = ((int(scales_l[ib // 2]) >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4)
            dl = d * f32(ls - 32)
            o = i * QK_K + 32 * ib
            for j in range(16):
                q = int(qs[16 * ib + j])
                y[o + j] = dl * values[q & 0xF]
                y[o + j + 16] = dl * values[q >> 4]




KVALUES_I64 = KVALUES_IQ4NL.astype(np.int64)

# NaN payloads in the dot products: when both operands of an x86 SSE mul/add are NaN, the result is the first
# (destination) operand, quieted, and which operand that is depends on how gcc ordered the commutative operation;
# numba/LLVM does not promise to keep ours.  Measured against the oracle (tools: two blocks / operands carrying
# different NaN payloads): in all four IQ3/IQ4 dot products the weight's scale wins over the activation's
# (even where the C source writes `y.d * x.d`), and the running sum wins over the new term.


@njit
def _term_iq4_nl(xd, yd, sumi):
    # d = GGML_CPU_FP16_TO_FP32(y.d)*GGML_CPU_FP16_TO_FP32(x.d); the term d * (sumi1 + sumi2)
    return mul_nan_first(xd, yd) * f32(sumi)


@njit
def _step_iq4_nl(sumf, xd, xm, yd, ys, sumi):
    return add_nan_first(sumf, _term_iq4_nl(xd, yd, sumi))


@njit
def vec_dot_iq4_nl_q8_0(n, x, y):
    """ggml_vec_dot_iq4_nl_q8_0_generic (ggml-cpu/quants.c): per block sum(q8 * kvalues[nibble]), times x.d*y.d."""
    nb = n // QK4_NL
    sumf = f32(0.0)
    for ib in range(nb):
        sumi1 = 0
        sumi2 = 0
        for j in range(QK4_NL // 2):
            q = i64(x[ib]["qs"][j])
            sumi1 += i64(y[ib]["qs"][j]) * KVALUES_I64[q & 0xF]
            sumi2 += i64(y[ib]["qs"][j + QK4_NL // 2]) * KVALUES_I64[q >> 4]
        sumf = _step_iq4_nl(sumf, F16_TO_F32[x[ib]["d"]], f32(0.0), F16_TO_F32[y[ib]["d"]], f32(0.0), sumi1 + sumi2)
    return sumf


@njit
def _iq4_xs_sub_scale(x, ib):
    # the 6-bit scale of 32-weight sub-block ib (0..7), minus 32: low 4 bits from scales_l, high 2 from scales_h
    # (the C's ls1/ls2, read from h = scales_h shifted as it goes)
    low = (int(x["scales_l"][ib // 2]) >> (4 * (ib % 2))) & 0xF
    high = (int(x["scales_h"]) >> (2 * ib)) & 3
    return (low | (high << 4)) - 32


@njit
def _term_iq4_xs(d4d8, ls, sumi):
    # d1 = d4d8*(ls1 - 32); the term d1 * (sumi1 + sumi2)
    return (d4d8 * f32(ls)) * f32(sumi)


@njit
def _step_iq4_xs(sumf, d4d8, ls, sumi):
    return add_nan_first(sumf, _term_iq4_xs(d4d8, ls, sumi))


@njit
def vec_dot_iq4_xs_q8_K(n, x, y):
    """ggml_vec_dot_iq4_xs_q8_K_generic (ggml-cpu/quants.c): per 32-weight sub-block sum(q8 * kvalues[nibble]),
    times d4d8 * (its 6-bit scale - 32)."""
    nb = n // QK_K
    sumf = f32(0.0)
    for ibl in range(nb):
        d4d8 = mul_nan_first(F16_TO_F32[x[ibl]["d"]], y[ibl]["d"])
        qs = x[ibl]["qs"]
        q8 = y[ibl]["qs"]
        for ib in range(QK_K // 32):
            sumi1 = 0
            sumi2 = 0
            for j in range(16):
                q = i64(qs[16 * ib + j])
                sumi1 += i64(q8[32 * ib + j]) * KVALUES_I64[q & 0xF]
                sumi2 += i64(q8[32 * ib + j + 16]) * KVALUES_I64[q >> 4]
            sumf = _step_iq4_xs(sumf, d4d8, _iq4_xs_sub_scale(x[ibl], ib), sumi1 + sumi2)
    return sumf


FORMATS = [
    QuantFormat(
        name="IQ4_NL", type_id=20, block_size=QK4_NL, block_dtype=BLOCK_IQ4_NL, vec_dot_type="Q8_0",
        quantize=quantize_iq4_nl, quantize_ref=quantize_row_iq4_nl_ref, dequantize=dequantize_row_iq4_nl,
        validate=validate_d_f16, vec_dot=vec_dot_iq4_nl_q8_0,
        doc="4.5 bpw: 32 non-linear 4-bit codes (kvalues_iq4nl) times one F16 scale"),
    QuantFormat(
        name="IQ4_XS", type_id=23, block_size=QK_K, block_dtype=BLOCK_IQ4_XS, vec_dot_type="Q8_K",
        quantize=quantize_iq4_xs, quantize_ref=quantize_row_iq4_xs_ref, dequantize=dequantize_row_iq4_xs,
        validate=validate_d_f16, vec_dot=vec_dot_iq4_xs_q8_K,
        doc="4.25 bpw: super-blocks of 256, non-linear 4-bit codes, 6-bit sub-scales per 32, F16 super-scale"),
]
