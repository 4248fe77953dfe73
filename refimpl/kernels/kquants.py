"""Fast kernels of the K-quants (Q3_K, Q4_K, Q5_K, Q6_K): the same bits as refimpl/quant/formats/kquants.py.

* vec_dot: the levels unpacked in the C's int8 width, and the eight int32 lanes of the integer sums (the
  reference's aux16/aux32 loops) as one vector step per group of levels sharing a scale
  (refimpl.kernels.lanes.lanes8_madd2/4, lanes8_madd4_nibbles); the float part is the reference's own
  _lanes_step/_q45_K_step/_q*_K_final.  Scratch arrays come from _work_k, one set per thread in matmul.
* intdot: the BLAS integer path (refimpl.kernels.intdot) for Q4_K, Q5_K, Q6_K.
"""
from __future__ import annotations

import numpy as np

from .._jit import add_nan_first, f32, mul_nan_first, njit
from ..floats import F16_TO_F32, fp16_to_fp32, fp16_to_fp32_row
from ..quant.formats import kquants as ref
from ..quant.kquant_search import get_scale_min_k4
from . import FastKernels
from .intdot import IntDot
from .jitcache import cached_closure
from .lanes import (LANE_ORDER, lanes8_axpy_nan_first, lanes8_madd2, lanes8_madd4, lanes8_madd4_nibbles,
                    q4_K_block_ints, q6_K_block_ints)

QK_K = ref.QK_K
u8, i8 = np.uint8, np.int8   # the C's widths
i64 = np.int64


# Speed of the vec_dot kernels below (what a decode step spends its time in).  numba types arithmetic on small
# integers as int64, so level arithmetic is cast back to the C's widths, and inner loop lengths come from a
# run-time value (the scratch arrays' sizes): a constant length such as 32 gets fully unrolled into scalar code
# instead of vectorized.  The eight lanes of the integer sums are one vector step each
# (refimpl.kernels.lanes.lanes8_madd*).  Scratch arrays come from _work_k (one set per thread in matmul, see
# FastKernels.make_work), not from an allocation per call.

@njit
def _work_k(n):
    # levels (aux8), per-lane int32 sums (aux32), scales, mins, float lane sums (sums)
    return (np.zeros(QK_K, np.int8), np.zeros(8, np.int32), np.zeros(QK_K // 16, np.int32),
            np.zeros(QK_K // 32, np.int32), np.zeros(8, np.float32))


@njit
def _lane_isums(a, q8, scales, scale_shift, aux32):
    # aux32[l] = sum over the 16-level groups j of scale[j >> scale_shift] * (q8*a)[16j + l] + (q8*a)[16j + 8 + l],
    # l = 0..7: the C's aux16/aux32 loops, eight levels at a time (scale_shift 1: one scale per 32 levels)
    for l in range(8):
        aux32[l] = 0
    if scale_shift == 1:
        for j in range(a.size // 32):
            lanes8_madd4(aux32, a, q8, 32 * j, scales[j])
    else:
        for j in range(a.size // 16):
            lanes8_madd2(aux32, a, q8, 16 * j, scales[j])


@njit
def vec_dot_q3_K_q8_K(n, x, y):
    """Equals refimpl.quant.formats.kquants.vec_dot_q3_K_q8_K."""
    return _vec_dot_q3_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q3_K(n, x, y, work):
    """vec_dot_q3_K_q8_K with the scratch arrays of _work_k passed in (matmul's row driver makes one set per
    thread); equals refimpl.quant.formats.kquants.vec_dot_q3_K_q8_K."""
    # mirrors ggml_vec_dot_q3_K_q8_K_generic: aux8 = the signed 3-bit levels, then per-lane integer sums
    a, aux32, scales, _, sums = work
    m = a.size // 8                                  # 32, at run time
    for l in range(8):
        sums[l] = f32(0.0)
    u1 = np.uint8(1)
    u3 = np.uint8(3)
    for i in range(x.shape[0]):
        q3 = x[i]["qs"]
        hm = x[i]["hmask"]
        _q3_K_unpack_scales(x[i]["scales"], scales)  # the kmask1/kmask2 shuffle
        for j in range(QK_K // 16):
            scales[j] -= 32
        for k in range(8):
            # 32 levels: bits 2g..2g+1 of q3[32h + l], minus 4 unless bit k of hm[l] is set (k = 4h + g)
            h = k >> 2
            shift = np.uint8(2 * (k & 3))
            hshift = np.uint8(k)
            qq = q3[m * h:m * h + m]
            ak = a[m * k:m * k + m]
            for l in range(m):
                ak[l] = i8(i8(((qq[l] >> shift) & u3) | (((hm[l] >> hshift) & u1) << np.uint8(2))) - i8(4))
        _lane_isums(a, y[i]["qs"], scales, 0, aux32)
        ref._lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return ref._lanes_final(sums)


@njit
def _q45_K_levels(q4, qh, a):
    # aux8 of the q4_K / q5_K dot products: sub-block j = nibble (j & 1) of q4[32*(j >> 1) + l], plus 16 if bit j of
    # qh[l] is set (Q5_K; qh of size 0 for Q4_K)
    m = a.size // 8                                  # 32, at run time
    u15 = np.uint8(0xF)
    u4 = np.uint8(4)
    u1 = np.uint8(1)
    for p in range(4):
        qq = q4[m * p:m * p + m]
        a1 = a[2 * m * p:2 * m * p + m]
        a2 = a[2 * m * p + m:2 * m * p + 2 * m]
        for l in range(m):
            a1[l] = qq[l] & u15
            a2[l] = qq[l] >> u4
    if qh.size > 0:
        for j in range(8):
            hs = np.uint8(j)
            aj = a[m * j:m * j + m]
            for l in range(m):
                aj[l] = aj[l] + i8(((qh[l] >> hs) & u1) << u4)


@njit
def _q45_K_block_mins(sc, bsums, scales, mins):
    # the utmp/kmask shuffle of the 12 scale bytes (same values as get_scale_min_k4), then
    # sumi = sum(bsums[j] * mins[j/2])
    for j in range(QK_K // 32):
        scales[j], mins[j] = get_scale_min_k4(j, sc)
    sumi = 0
    for j in range(QK_K // 16):
        sumi += i64(bsums[j]) * mins[j // 2]
    return sumi


@njit
def vec_dot_q4_K_q8_K(n, x, y):
    """Equals refimpl.quant.formats.kquants.vec_dot_q4_K_q8_K."""
    return _vec_dot_q4_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q4_K(n, x, y, work):
    """vec_dot_q4_K_q8_K with the scratch arrays of _work_k passed in (matmul's row driver makes one set per
    thread); equals refimpl.quant.formats.kquants.vec_dot_q4_K_q8_K."""
    # mirrors ggml_vec_dot_q4_K_q8_K_generic
    a, aux32, scales, mins, sums = work
    for l in range(8):
        sums[l] = f32(0.0)
    sumf = f32(0.0)
    for i in range(x.shape[0]):
        sumi = _q45_K_block_mins(x[i]["scales"], y[i]["bsums"], scales, mins)
        # aux8/aux16/aux32 of the C in one step per 32-level sub-block j: nibble (j & 1) of q4[32*(j >> 1) + l]
        q4 = x[i]["qs"]
        q8 = y[i]["qs"]
        for l in range(8):
            aux32[l] = 0
        for j in range(QK_K // 32):
            lanes8_madd4_nibbles(aux32, q4, 32 * (j >> 1), 4 * (j & 1), q8, 32 * j, scales[j])
        sumf = ref._q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return ref._q4_K_final(sums, sumf)


@njit
def pack_q8_K_lanes(blocks):
    """Q8_K activation blocks (tokens, nb), in place: each 32 levels in LANE_ORDER (refimpl.kernels.lanes), the
    layout the matvec kernels read.  d and bsums stay."""
    tmp = np.empty(32, np.int8)
    for t in range(blocks.shape[0]):
        for i in range(blocks.shape[1]):
            qs = blocks[t, i]["qs"]
            for g in range(qs.size // 32):
                for p in range(32):
                    tmp[p] = qs[32 * g + p]
                for p in range(32):
                    qs[32 * g + p] = tmp[LANE_ORDER[p]]


@njit
def matvec_q4_K(n, x, y, work):
    """vec_dot_q4_K_q8_K with y packed by pack_q8_K_lanes: the integer part of a super-block (scales, the eight
    lanes, the mins' sumi) in one vector step (refimpl.kernels.lanes.q4_K_block_ints: pmaddubsw/pmaddwd on x86), the
    float part ref._q45_K_step's with its eight lanes as one vector step (lanes8_axpy_nan_first), then
    ref._q4_K_final; equals refimpl.quant.formats.kquants.vec_dot_q4_K_q8_K.  F16 scales converted by
    fp16_to_fp32 (a table would make the compiled drivers uncacheable: numba does not cache large global arrays)."""
    aux32, sums = work[1], work[4]
    for l in range(8):
        sums[l] = f32(0.0)
    sumf = f32(0.0)
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        sumi = q4_K_block_ints(aux32, xi["qs"], xi["scales"], yi["qs"], yi["bsums"])
        yd = yi["d"]
        lanes8_axpy_nan_first(sums, mul_nan_first(fp16_to_fp32(xi["d"]), yd), aux32)
        sumf = sumf - mul_nan_first(yd, fp16_to_fp32(xi["dmin"])) * f32(sumi)
    return ref._q4_K_final(sums, sumf)


@njit
def vec_dot_q5_K_q8_K(n, x, y):
    """Equals refimpl.quant.formats.kquants.vec_dot_q5_K_q8_K."""
    return _vec_dot_q5_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q5_K(n, x, y, work):
    """vec_dot_q5_K_q8_K with the scratch arrays of _work_k passed in (matmul's row driver makes one set per
    thread); equals refimpl.quant.formats.kquants.vec_dot_q5_K_q8_K."""
    # mirrors ggml_vec_dot_q5_K_q8_K_generic (the Q4_K loop plus the fifth bit from qh)
    a, aux32, scales, mins, sums = work
    for l in range(8):
        sums[l] = f32(0.0)
    sumf = f32(0.0)
    for i in range(x.shape[0]):
        sumi = _q45_K_block_mins(x[i]["scales"], y[i]["bsums"], scales, mins)
        _q45_K_levels(x[i]["qs"], x[i]["qh"], a)
        _lane_isums(a, y[i]["qs"], scales, 1, aux32)
        sumf = ref._q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return ref._q5_K_final(sums, sumf)


# ------------------------------------------------------------------------------ the BLAS path (kernels.intdot)
# Q4_K/Q5_K: 9 groups of K = 32 integers per super-block.  Groups 0-7 are the lanes: aux32[l] = sum over
# sub-blocks j and k = 0..3 of scale_j * a[32j + 8k + l] * q8[32j + 8k + l]; bound scale_j * a <= 63 * 31,
# |q8| <= 128, 32 terms: < 2^23.  Group 8 is sumi = sum_j mins_j * (bsums[2j] + bsums[2j+1]) (8 terms, 24 zeros);
# bound 8 * 63 * 4096 < 2^22.  All exact in float32.

@njit(nogil=True)
def _q45_K_weight_ints_kernel(qs, qh, scales, out):
    # out (nb, 9, rows, 32): groups 0-7 = lane l, element 4j + k = scale_j * a[32j + 8k + l];
    # group 8 = mins_j at element j (8 of 32, the rest stay 0).  qh is (rows, nb, 0) for Q4_K.
    # Each group's 32 elements are written in a row (lane outermost), not 8 groups at a time: 2x faster.
    a = np.zeros(QK_K, np.int8)
    sc = np.zeros(QK_K // 32, np.int32)
    mn = np.zeros(QK_K // 32, np.int32)
    for r in range(qs.shape[0]):
        for i in range(qs.shape[1]):
            _q45_K_levels(qs[r, i], qh[r, i], a)
            for j in range(QK_K // 32):
                sc[j], mn[j] = get_scale_min_k4(j, scales[r, i])
            for l in range(8):
                lane = out[i, l, r]
                for j in range(QK_K // 32):
                    for k in range(4):
                        lane[4 * j + k] = f32(sc[j] * np.int32(a[32 * j + 8 * k + l]))
            mins = out[i, 8, r]
            for j in range(QK_K // 32):
                mins[j] = f32(mn[j])


def _q45_K_weight_ints(blocks):
    rows, nb = blocks.shape
    qh = blocks["qh"] if "qh" in blocks.dtype.names else np.zeros((rows, nb, 0), np.uint8)
    out = np.zeros((nb, 9, rows, 32), np.float32)
    _q45_K_weight_ints_kernel(blocks["qs"], qh, blocks["scales"], out)
    return out.reshape(nb * 9, rows, 32)


def _q8_K_lane_ints(blocks):
    tokens, nb = blocks.shape
    out = np.zeros((nb, 9, 32, tokens), np.float32)
    q = blocks["qs"].reshape(blocks.shape + (8, 4, 8))                      # (tokens, nb, j, k, l)
    out[:, :8] = np.transpose(q, (1, 4, 2, 3, 0)).reshape(nb, 8, 32, tokens)
    bs = blocks["bsums"].astype(np.int32)
    out[:, 8, :8] = np.transpose(bs[..., 0::2] + bs[..., 1::2], (1, 2, 0))
    return out.reshape(nb * 9, 32, tokens)


def _q45_K_weight_scales(blocks):
    return np.stack([fp16_to_fp32_row(blocks["d"]), fp16_to_fp32_row(blocks["dmin"])], axis=-1)


def _q8_K_scales(blocks):
    return np.transpose(blocks["d"][..., None].astype(np.float32), (1, 2, 0))       # (nb, 1, tokens)


def _make_fold_q45_K(final):
    @cached_closure
    def fold(ws, xs, isum, out, acc):
        # ws (nb, 2) = (x.d, x.dmin), xs (nb, 1, tokens) = y.d, isum (9 nb, tokens);
        # acc[l, t] = sums[l] of token t (l < 8), acc[8, t] = its sumf, acc[9] = scratch for d = x.d*y.d.
        # ref._q45_K_step's operations, one accumulator row at a time with tokens innermost: every accumulator
        # still meets the super-blocks in the C's order (the lanes and sumf are separate sums, so doing lane 0 of
        # all tokens before lane 1 changes no bit), and the loops over contiguous tokens vectorize (3x faster
        # than calling the step on strided slices per token)
        n_tok = isum.shape[1]
        d, sumf = acc[9], acc[8]
        for i in range(ws.shape[0]):
            xd, xdmin, yd = ws[i, 0], ws[i, 1], xs[i, 0]
            for t in range(n_tok):
                d[t] = mul_nan_first(xd, yd[t])                        # ref._lanes_step: d = x.d*y.d
            for l in range(8):
                lane, sums = isum[9 * i + l], acc[l]
                for t in range(n_tok):
                    sums[t] = add_nan_first(sums[t], d[t] * lane[t])   # sums[l] += d*aux32[l]
            mins = isum[9 * i + 8]
            for t in range(n_tok):
                sumf[t] = sumf[t] - mul_nan_first(yd[t], xdmin) * mins[t]   # sumf -= dmin*sumi
        for t in range(n_tok):
            out[t] = final(acc[0:8, t], sumf[t])
    return fold


def _intdot_q45_K(final):
    return IntDot(_q45_K_weight_ints, _q8_K_lane_ints, _q45_K_weight_scales, _q8_K_scales, _make_fold_q45_K(final),
                  acc_size=10)


INTDOT_Q4_K = _intdot_q45_K(ref._q4_K_final)
INTDOT_Q5_K = _intdot_q45_K(ref._q5_K_final)


@njit
def _q6_K_levels(ql, qh, a):
    # aux8 of the q6_K dot product: the signed 6-bit levels (4 bits from ql, 2 from qh, minus 32)
    m = a.size // 8                                  # 32, at run time
    u15 = np.uint8(0xF)
    u3 = np.uint8(3)
    u4 = np.uint8(4)
    for h in range(2):
        qa = ql[2 * m * h:2 * m * h + m]
        qb = ql[2 * m * h + m:2 * m * h + 2 * m]
        hh = qh[m * h:m * h + m]
        a0 = a[4 * m * h:4 * m * h + m]
        a1 = a[4 * m * h + m:4 * m * h + 2 * m]
        a2 = a[4 * m * h + 2 * m:4 * m * h + 3 * m]
        a3 = a[4 * m * h + 3 * m:4 * m * h + 4 * m]
        for l in range(m):
            a0[l] = i8(i8((qa[l] & u15) | ((hh[l] & u3) << u4)) - i8(32))
            a1[l] = i8(i8((qb[l] & u15) | (((hh[l] >> np.uint8(2)) & u3) << u4)) - i8(32))
            a2[l] = i8(i8((qa[l] >> u4) | (((hh[l] >> u4) & u3) << u4)) - i8(32))
            a3[l] = i8(i8((qb[l] >> u4) | (((hh[l] >> np.uint8(6)) & u3) << u4)) - i8(32))


@njit
def vec_dot_q6_K_q8_K(n, x, y):
    """Equals refimpl.quant.formats.kquants.vec_dot_q6_K_q8_K."""
    return _vec_dot_q6_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q6_K(n, x, y, work):
    """vec_dot_q6_K_q8_K with the scratch arrays of _work_k passed in (matmul's row driver makes one set per
    thread); equals refimpl.quant.formats.kquants.vec_dot_q6_K_q8_K."""
    # mirrors ggml_vec_dot_q6_K_q8_K_generic: aux8 = the signed 6-bit levels, then per-lane integer sums
    a, aux32, scales, _, sums = work
    for l in range(8):
        sums[l] = f32(0.0)
    for i in range(x.shape[0]):
        sc = x[i]["scales"]
        for j in range(QK_K // 16):
            scales[j] = sc[j]
        _q6_K_levels(x[i]["ql"], x[i]["qh"], a)
        _lane_isums(a, y[i]["qs"], scales, 0, aux32)
        ref._lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return ref._lanes_final(sums)


@njit
def matvec_q6_K(n, x, y, work):
    """vec_dot_q6_K_q8_K with y packed by pack_q8_K_lanes: the integer part of a super-block in one vector step
    (refimpl.kernels.lanes.q6_K_block_ints), the float part ref._lanes_step's as one vector step
    (lanes8_axpy_nan_first), then ref._lanes_final; equals refimpl.quant.formats.kquants.vec_dot_q6_K_q8_K."""
    aux32, sums = work[1], work[4]
    for l in range(8):
        sums[l] = f32(0.0)
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        q6_K_block_ints(aux32, xi["ql"], xi["qh"], xi["scales"], yi["qs"])
        lanes8_axpy_nan_first(sums, mul_nan_first(fp16_to_fp32(xi["d"]), yi["d"]), aux32)
    return ref._lanes_final(sums)


# BLAS path for Q6_K: 8 groups (lanes) per super-block; lane l holds scale_j * a[16j + 8k + l] for sub-blocks
# j = 0..15 and k = 0..1 (the C's aux16/aux32 loops).  Bound: |scale * a| <= 128 * 32, |q8| <= 127, 32 terms:
# < 2^24, exact in float32.

@njit(nogil=True)
def _q6_K_weight_ints_kernel(ql, qh, scales, out):
    # each group's 32 elements written in a row (lane outermost), as in _q45_K_weight_ints_kernel
    a = np.zeros(QK_K, np.int8)
    for r in range(ql.shape[0]):
        for i in range(ql.shape[1]):
            _q6_K_levels(ql[r, i], qh[r, i], a)
            sc = scales[r, i]
            for l in range(8):
                lane = out[i, l, r]
                for j in range(QK_K // 16):
                    for k in range(2):
                        lane[2 * j + k] = f32(np.int32(sc[j]) * np.int32(a[16 * j + 8 * k + l]))


def _q6_K_weight_ints(blocks):
    rows, nb = blocks.shape
    out = np.empty((nb, 8, rows, 32), np.float32)
    _q6_K_weight_ints_kernel(blocks["ql"], blocks["qh"], blocks["scales"], out)
    return out.reshape(nb * 8, rows, 32)


def _q8_K_lanes16(blocks):
    # (tokens, nb) Q8_K -> (nb * 8, 32, tokens): lane l, element 2j + k = q8[16j + 8k + l]
    tokens, nb = blocks.shape
    q = blocks["qs"].reshape(tokens, nb, 16, 2, 8)                         # (tokens, nb, j, k, l)
    return np.transpose(q, (1, 4, 2, 3, 0)).reshape(nb * 8, 32, tokens)


@njit
def _fold_q6_K(ws, xs, isum, out, acc):
    # ws (nb, 1) = x.d, xs (nb, 1, tokens) = y.d, isum (8 nb, tokens); acc[l, t] = sums[l] of token t, acc[8] =
    # scratch for d.  ref._lanes_step's operations with tokens innermost, as in _make_fold_q45_K (same bits)
    n_tok = isum.shape[1]
    d = acc[8]
    for i in range(ws.shape[0]):
        xd, yd = ws[i, 0], xs[i, 0]
        for t in range(n_tok):
            d[t] = mul_nan_first(xd, yd[t])
        for l in range(8):
            lane, sums = isum[8 * i + l], acc[l]
            for t in range(n_tok):
                sums[t] = add_nan_first(sums[t], d[t] * lane[t])
    for t in range(n_tok):
        out[t] = ref._lanes_final(acc[0:8, t])


INTDOT_Q6_K = IntDot(_q6_K_weight_ints, _q8_K_lanes16, lambda b: fp16_to_fp32_row(b["d"])[..., None],
                      _q8_K_scales, _fold_q6_K, acc_size=9)


# ------------------------------------------------------------------------------------------------ dequantizers
# The reference's C loops on sub-views with uint8 arithmetic and run-time inner lengths, so that LLVM vectorizes
# (indices from range() need no wraparound checks; a constant 32 is unrolled, not vectorized).  Each element is
# computed on its own by the same float operations, so the bits are the reference's.

@njit
def _q3_K_unpack_scales(sc, out):
    # dequantize_row_q3_K's kmask shuffle of the 12 scale bytes into 16 int8 scales (before the -32)
    for j in range(QK_K // 16):
        low = (i64(sc[j]) & 0xF) if j < 8 else (i64(sc[j - 8]) >> 4)
        out[j] = low | (((i64(sc[8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)


@njit
def dequantize_row_q2_K(blocks, y):
    """Equals refimpl.quant.formats.kquants.dequantize_row_q2_K."""
    u3 = np.uint8(3)
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        dmin = F16_TO_F32[blocks[i]["dmin"]]
        sc = blocks[i]["scales"]
        q = blocks[i]["qs"]
        yb = y[i * QK_K:(i + 1) * QK_K]
        for k in range(16):
            # sub-block k: 128-half n, shift group g, low or high 16 of the 32 bytes of that half
            n = k >> 3
            g = (k >> 1) & 3
            half = k & 1
            scb = sc[k]
            dl = d * f32(scb & np.uint8(0xF))
            ml = dmin * f32(scb >> np.uint8(4))
            shift = np.uint8(2 * g)
            qq = q[32 * n + 16 * half:32 * n + 16 * half + 16]
            yo = yb[16 * k:16 * k + 16]
            for l in range(16):
                yo[l] = dl * f32((qq[l] >> shift) & u3) - ml


@njit
def dequantize_row_q3_K(blocks, y):
    """Equals refimpl.quant.formats.kquants.dequantize_row_q3_K."""
    scales = np.zeros(QK_K // 16, np.int64)
    u1 = np.uint8(1)
    u3 = np.uint8(3)
    for i in range(blocks.shape[0]):
        d_all = F16_TO_F32[blocks[i]["d"]]
        q = blocks[i]["qs"]
        hm = blocks[i]["hmask"]
        _q3_K_unpack_scales(blocks[i]["scales"], scales)
        yb = y[i * QK_K:(i + 1) * QK_K]
        for k in range(16):
            n = k >> 3
            half = k & 1
            shift = np.uint8(2 * ((k >> 1) & 3))
            hshift = np.uint8(k >> 1)
            dl = d_all * f32(scales[k] - 32)
            qq = q[32 * n + 16 * half:32 * n + 16 * half + 16]
            hh = hm[16 * half:16 * half + 16]
            yo = yb[16 * k:16 * k + 16]
            for l in range(16):
                v = ((qq[l] >> shift) & u3) | (((hh[l] >> hshift) & u1) << np.uint8(2))
                yo[l] = dl * f32(np.int32(v) - np.int32(4))


@njit
def dequantize_row_q4_K(blocks, y):
    """Equals refimpl.quant.formats.kquants.dequantize_row_q4_K."""
    u15 = np.uint8(0xF)
    u240 = np.uint8(0xF0)
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        dmin = F16_TO_F32[blocks[i]["dmin"]]
        sc = blocks[i]["scales"]
        q = blocks[i]["qs"]
        yb = y[i * QK_K:(i + 1) * QK_K]
        for j in range(QK_K // 64):
            s1, m1i = get_scale_min_k4(2 * j, sc)
            s2, m2i = get_scale_min_k4(2 * j + 1, sc)
            d1 = d * f32(s1)
            m1 = dmin * f32(m1i)
            d2 = d * f32(s2)
            m2 = dmin * f32(m2i)
            qq = q[32 * j:32 * j + 32]
            y1 = yb[64 * j:64 * j + 32]
            y2 = yb[64 * j + 32:64 * j + 64]
            for l in range(32):
                v = qq[l]
                y1[l] = d1 * f32(v & u15) - m1
                y2[l] = d2 * (f32(v & u240) * f32(0.0625)) - m2  # (float)(v >> 4), exactly (vectorizes better)


@njit
def dequantize_row_q5_K(blocks, y):
    """Equals refimpl.quant.formats.kquants.dequantize_row_q5_K."""
    u15 = u8(0xF)
    u4 = u8(4)
    u1 = u8(1)
    if blocks.shape[0] == 0:
        return
    m = y.size // blocks.shape[0] // 8             # 32, at run time: a constant length is unrolled, not vectorized
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        dmin = F16_TO_F32[blocks[i]["dmin"]]
        sc = blocks[i]["scales"]
        ql = blocks[i]["qs"]
        qh = blocks[i]["qh"]
        yb = y[8 * m * i:8 * m * (i + 1)]
        for j in range(QK_K // 64):
            s1, m1i = get_scale_min_k4(2 * j, sc)
            s2, m2i = get_scale_min_k4(2 * j + 1, sc)
            d1 = d * f32(s1)
            m1 = dmin * f32(m1i)
            d2 = d * f32(s2)
            m2 = dmin * f32(m2i)
            # (ql & 0xF) + (qh & u1 ? 16 : 0), in uint8 lanes: bit 2j (2j + 1) of qh[l] is the fifth bit
            s1 = u8(2 * j)
            s2 = u8(2 * j + 1)
            qq = ql[m * j:m * j + m]
            y1 = yb[2 * m * j:2 * m * j + m]
            y2 = yb[2 * m * j + m:2 * m * (j + 1)]
            for l in range(m):
                y1[l] = d1 * f32(u8(u8(qq[l] & u15) | u8(u8(u8(qh[l] >> s1) & u1) << u4))) - m1
            for l in range(m):
                y2[l] = d2 * f32(u8(u8(qq[l] >> u4) | u8(u8(u8(qh[l] >> s2) & u1) << u4))) - m2


@njit
def dequantize_row_q6_K(blocks, y):
    """Equals refimpl.quant.formats.kquants.dequantize_row_q6_K."""
    u15 = np.uint8(0xF)
    u3 = np.uint8(3)
    u4 = np.uint8(4)
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        ql = blocks[i]["ql"]
        qh = blocks[i]["qh"]
        sc = blocks[i]["scales"]
        for n in range(QK_K // 128):
            yb = y[i * QK_K + 128 * n:i * QK_K + 128 * n + 128]
            qa = ql[64 * n:64 * n + 32]
            qb = ql[64 * n + 32:64 * n + 64]
            hh = qh[32 * n:32 * n + 32]
            for half in range(2):
                s = 8 * n + half
                ds1 = d * f32(sc[s])
                ds2 = d * f32(sc[s + 2])
                ds3 = d * f32(sc[s + 4])
                ds4 = d * f32(sc[s + 6])
                for l in range(16 * half, 16 * half + 16):
                    a = qa[l]
                    b = qb[l]
                    h = hh[l]
                    q1 = np.int32((a & u15) | ((h & u3) << u4)) - np.int32(32)
                    q2 = np.int32((b & u15) | (((h >> np.uint8(2)) & u3) << u4)) - np.int32(32)
                    q3 = np.int32((a >> u4) | (((h >> u4) & u3) << u4)) - np.int32(32)
                    q4 = np.int32((b >> u4) | (((h >> np.uint8(6)) & u3) << u4)) - np.int32(32)
                    yb[l] = ds1 * f32(q1)
                    yb[l + 32] = ds2 * f32(q2)
                    yb[l + 64] = ds3 * f32(q3)
                    yb[l + 96] = ds4 * f32(q4)


KERNELS = {
    "Q2_K": FastKernels(dequantize=dequantize_row_q2_K),
    "Q3_K": FastKernels(dequantize=dequantize_row_q3_K, vec_dot=vec_dot_q3_K_q8_K, make_work=_work_k,
                        vec_dot_work=_vec_dot_q3_K),
    "Q4_K": FastKernels(dequantize=dequantize_row_q4_K, vec_dot=vec_dot_q4_K_q8_K, make_work=_work_k,
                        pack_acts=pack_q8_K_lanes, matvec=matvec_q4_K,
                        vec_dot_work=_vec_dot_q4_K, intdot=INTDOT_Q4_K),
    "Q5_K": FastKernels(dequantize=dequantize_row_q5_K, vec_dot=vec_dot_q5_K_q8_K, make_work=_work_k,
                        vec_dot_work=_vec_dot_q5_K, intdot=INTDOT_Q5_K),
    "Q6_K": FastKernels(dequantize=dequantize_row_q6_K, vec_dot=vec_dot_q6_K_q8_K, make_work=_work_k,
                        pack_acts=pack_q8_K_lanes, matvec=matvec_q6_K,
                        vec_dot_work=_vec_dot_q6_K, intdot=INTDOT_Q6_K),
}
