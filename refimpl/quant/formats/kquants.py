"""K-quants: 256-element super-blocks made of 16 or 8 sub-blocks, with quantized sub-block scales.

* Q2_K — 16 x 16, 2-bit levels, 4-bit scale + 4-bit min per sub-block, F16 ``d``/``dmin``  (2.625 bpw)
* Q3_K — 16 x 16, 3-bit signed levels (2 low bits in ``qs``, high bit in ``hmask``), 6-bit signed scales (3.4375)
* Q4_K — 8 x 32, 4-bit levels, 6-bit scale + 6-bit min per sub-block packed in 12 bytes (4.5 bpw)
* Q5_K — Q4_K plus a fifth bit per level in ``qh`` (5.5 bpw)
* Q6_K — 16 x 16, 6-bit signed levels (4 bits in ``ql``, 2 in ``qh``), int8 scales (6.5625 bpw)
* Q8_K — activations only: float32 ``d``, 256 int8 levels and 16 int16 partial sums ``bsums``

Each quantizer has the two paths of ggml_quantize_chunk: without an imatrix ``quantize_q*_K`` runs
``quantize_row_q*_K_ref`` (make_qkx2/make_q3/make_qx searches); with one, ``quantize_row_q*_K_impl`` row by row
(weighted make_qkx3/make_qx searches, sub-block scales quantized by make_qp_quants / make_qx_quants).
The searches live in ``refimpl/quant/kquant_search.py``.  Scratch arrays are allocated once per call.
"""
from __future__ import annotations

import numpy as np

from ..._jit import add_nan_from_first as _add_nan_first
from ..._jit import f32, f32_to_bits, lanes8_madd2, lanes8_madd4, lanes8_madd4_nibbles, nearest_int
from ..._jit import mul_nan_from_first as _mul_nan_first
from ...floats import F16_TO_F32, fp16_to_fp32_row, fp32_to_fp16
from ..kquant_search import (GROUP_MAX_EPS, c_int8, get_scale_min_k4, make_q3_quants, make_qkx2_quants,
                             make_qkx3_quants, make_qp_quants, make_qx_quants, nearest_int_clamped,
                             nearest_int_min, njit)
from ..intdot import IntDot
from ..registry import QuantFormat

u8, i8 = np.uint8, np.int8   # the C's widths (see "Speed of the vec_dot kernels")
i64 = np.int64  # widen a loaded byte: numba keeps int(uint8) as uint8 and mixes uint64/int64 into float64

QK_K = 256
K_SCALE_SIZE = 12

# ggml-common.h block_q*_K, field order and names as in C (F16 fields as raw uint16 bits)
BLOCK_Q2_K = np.dtype([("scales", "u1", (QK_K // 16,)), ("qs", "u1", (QK_K // 4,)),
                       ("d", "<u2"), ("dmin", "<u2")])                                             # 84 bytes
BLOCK_Q3_K = np.dtype([("hmask", "u1", (QK_K // 8,)), ("qs", "u1", (QK_K // 4,)),
                       ("scales", "u1", (12,)), ("d", "<u2")])                                     # 110 bytes
BLOCK_Q4_K = np.dtype([("d", "<u2"), ("dmin", "<u2"), ("scales", "u1", (K_SCALE_SIZE,)),
                       ("qs", "u1", (QK_K // 2,))])                                                # 144 bytes
BLOCK_Q5_K = np.dtype([("d", "<u2"), ("dmin", "<u2"), ("scales", "u1", (K_SCALE_SIZE,)),
                       ("qh", "u1", (QK_K // 8,)), ("qs", "u1", (QK_K // 2,))])                    # 176 bytes
BLOCK_Q6_K = np.dtype([("ql", "u1", (QK_K // 2,)), ("qh", "u1", (QK_K // 4,)),
                       ("scales", "i1", (QK_K // 16,)), ("d", "<u2")])                             # 210 bytes
BLOCK_Q8_K = np.dtype([("d", "<f4"), ("qs", "i1", (QK_K,)), ("bsums", "<i2", (QK_K // 16,))])     # 292 bytes



# ---------------------------------------------------------------------------------------------------------------
# shared packing steps

@njit
def _pack_2bit(L, qs):
    # the qs layout of Q2_K / Q3_K: byte j/4 + l of each 128-element half holds elements l, l+32, l+64, l+96
    # in bits 0-1, 2-3, 4-5, 6-7
    for j in range(0, QK_K, 128):
        for l in range(32):
            qs[j // 4 + l] = (i64(L[j + l]) | (i64(L[j + l + 32]) << 2) | (i64(L[j + l + 64]) << 4)
                              | (i64(L[j + l + 96]) << 6)) & 0xFF


@njit
def _pack_scales_k4(sc, j, ls, lm):
    # the 12-byte scale/min packing of quantize_row_q4_K / q5_K (inverse of get_scale_min_k4); uint8 stores
    if j < 4:
        sc[j] = ls & 0xFF
        sc[j + 4] = lm & 0xFF
    else:
        sc[j + 4] = ((ls & 0xF) | ((lm & 0xF) << 4)) & 0xFF
        sc[j - 4] = (i64(sc[j - 4]) | ((ls >> 4) << 6)) & 0xFF
        sc[j] = (i64(sc[j]) | ((lm >> 4) << 6)) & 0xFF


@njit
def _q3_K_scale(sc, j):
    # the signed 6-bit scale of sub-block j of Q3_K (as quantize_row_q3_K_ref re-reads it): low 4 bits in
    # byte j (j < 8) or the high nibble of byte j-8, high 2 bits in byte 8 + j%4 at bit 2*(j/4); minus 32
    low = (i64(sc[j]) & 0xF) if j < 8 else (i64(sc[j - 8]) >> 4)
    return (low | (((i64(sc[8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32


@njit
def _pack_q3_K_scale(sc, j, l):
    # stores the 6-bit value l (0..63) of sub-block j into Q3_K's 12 scale bytes (which start zeroed)
    if j < 8:
        sc[j] = l & 0xF
    else:
        sc[j - 8] = (i64(sc[j - 8]) | ((l & 0xF) << 4)) & 0xFF
    l >>= 4
    sc[j % 4 + 8] = (i64(sc[j % 4 + 8]) | (l << (2 * (j // 4)))) & 0xFF


@njit
def _q3_K_finish(xb, blk, L):
    # the tail shared by quantize_row_q3_K_ref and _impl: requantize with the stored scales, split the 3-bit
    # levels into hmask (bit 2) and qs (bits 0-1)
    sc = blk["scales"]
    d_all = F16_TO_F32[blk["d"]]
    for j in range(QK_K // 16):
        d = d_all * f32(_q3_K_scale(sc, j))
        if d == f32(0.0):  # C: if (!d) continue;  (NaN goes on)
            continue
        xs = xb[16 * j:16 * j + 16]  # sub-views: LLVM vectorizes loops indexed by a bare range() variable
        Ls = L[16 * j:16 * j + 16]
        for ii in range(16):
            Ls[ii] = int(nearest_int_clamped(xs[ii] / d, -4, 3)) + 4
    # C: hmask zeroed; for each j, if L[j] > 3 { hmask[j % 32] |= 1 << (j / 32); L[j] -= 4; }
    # Every L[j] is in 0..7 here, so the test is bit 2 of L[j]; written without branches (they mispredict).
    hmask = blk["hmask"]
    for m in range(QK_K // 8):
        h = 0
        for k in range(8):
            lj = i64(L[32 * k + m])
            h |= (lj >> 2) << k
            L[32 * k + m] = lj & 3
        hmask[m] = h
    _pack_2bit(L, blk["qs"])


@njit
def _q45_K_requantize(xb, blk, L, nmax):
    # requantize each 32-element sub-block with its stored 6-bit scale and min (quantize_row_q4_K/q5_K_*)
    sc = blk["scales"]
    d_all = F16_TO_F32[blk["d"]]
    dmin_all = F16_TO_F32[blk["dmin"]]
    for j in range(QK_K // 32):
        s, m = get_scale_min_k4(j, sc)
        d = d_all * f32(s)
        if d == f32(0.0):
            continue
        dm = dmin_all * f32(m)
        xs = xb[32 * j:32 * j + 32]  # sub-views: LLVM vectorizes loops indexed by a bare range() variable
        Ls = L[32 * j:32 * j + 32]
        for ii in range(32):
            Ls[ii] = int(nearest_int_clamped((xs[ii] + dm) / d, 0, nmax))


@njit
def _pack_q4_K(L, qs):
    # byte 32*(j/64) + l: low nibble element j+l, high nibble element j+l+32
    for j in range(0, QK_K, 64):
        for l in range(32):
            qs[j // 2 + l] = i64(L[j + l]) | (i64(L[j + l + 32]) << 4)


@njit
def _pack_q5_K(L, ql, qh):
    # low 4 bits as in Q4_K; bit 4 of element n+j (n = 64*k) goes to qh[j] bit 2k, of element n+j+32 to bit 2k+1
    # C tests l > 15 and subtracts 16; every L is in 0..31 here, so that is bit 4, written without branches
    for j in range(QK_K // 8):
        qh[j] = 0
    for p in range(QK_K // 64):
        n = 64 * p
        for j in range(32):
            l1 = i64(L[n + j])
            l2 = i64(L[n + j + 32])
            qh[j] = i64(qh[j]) | ((l1 >> 4) << (2 * p)) | ((l2 >> 4) << (2 * p + 1))
            ql[n // 2 + j] = (l1 & 15) | ((l2 & 15) << 4)


@njit
def _q6_K_finish(xb, blk, L, scales, max_scale):
    # the tail shared by quantize_row_q6_K_ref and _impl, after the all-zero check
    iscale = f32(-128.0) / max_scale
    blk["d"] = fp32_to_fp16(f32(1.0) / iscale)
    sc = blk["scales"]
    for ib in range(QK_K // 16):
        sc[ib] = c_int8(min(127, nearest_int(iscale * scales[ib])))
    d_all = F16_TO_F32[blk["d"]]
    for j in range(QK_K // 16):
        d = d_all * f32(sc[j])
        if d == f32(0.0):
            continue
        xs = xb[16 * j:16 * j + 16]  # sub-views: LLVM vectorizes loops indexed by a bare range() variable
        Ls = L[16 * j:16 * j + 16]
        for ii in range(16):
            Ls[ii] = int(nearest_int_clamped(xs[ii] / d, -32, 31)) + 32
    ql = blk["ql"]
    qh = blk["qh"]
    for j in range(0, QK_K, 128):
        for l in range(32):
            a = i64(L[j + l])
            b = i64(L[j + l + 32])
            c = i64(L[j + l + 64])
            e = i64(L[j + l + 96])
            ql[j // 2 + l] = (a & 0xF) | ((c & 0xF) << 4)
            ql[j // 2 + l + 32] = (b & 0xF) | ((e & 0xF) << 4)
            qh[j // 4 + l] = ((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)) & 0xFF


@njit
def _q6_K_zero_block(blk):
    # memset(&y[i], 0, sizeof(block_q6_K)); y[i].d = fp16(0)
    for j in range(QK_K // 2):
        blk["ql"][j] = 0
    for j in range(QK_K // 4):
        blk["qh"][j] = 0
    for j in range(QK_K // 16):
        blk["scales"][j] = 0
    blk["d"] = fp32_to_fp16(f32(0.0))


# ---------------------------------------------------------------------------------------------------------------
# Q2_K

@njit
def _q2_K_ref_blocks(x, blocks, L, Laux, weights, mins, scales):
    # mirrors quantize_row_q2_K_ref (ggml-quants.c)
    q4scale = f32(15.0)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        max_scale = f32(0.0)  # as the min is subtracted, scales are positive
        max_min = f32(0.0)
        for j in range(QK_K // 16):
            xs = xb[16 * j:16 * j + 16]
            for l in range(16):
                weights[l] = abs(xs[l])
            s, m = make_qkx2_quants(16, 3, xs, weights, L[16 * j:16 * j + 16], Laux,
                                    f32(-0.5), f32(0.1), 15, True)
            scales[j] = s
            mins[j] = m
            if s > max_scale:
                max_scale = s
            if m > max_min:
                max_min = m
        blk = blocks[i]
        sc = blk["scales"]
        if max_scale > f32(0.0):
            iscale = q4scale / max_scale
            for j in range(QK_K // 16):
                sc[j] = nearest_int(iscale * scales[j]) & 0xFF
            blk["d"] = fp32_to_fp16(max_scale / q4scale)
        else:
            for j in range(QK_K // 16):
                sc[j] = 0
            blk["d"] = fp32_to_fp16(f32(0.0))
        if max_min > f32(0.0):
            iscale = q4scale / max_min
            for j in range(QK_K // 16):
                sc[j] = (i64(sc[j]) | (nearest_int(iscale * mins[j]) << 4)) & 0xFF
            blk["dmin"] = fp32_to_fp16(max_min / q4scale)
        else:
            blk["dmin"] = fp32_to_fp16(f32(0.0))
        _q2_K_requantize(xb, blk, L)
        _pack_2bit(L, blk["qs"])


@njit
def _q2_K_requantize(xb, blk, L):
    sc = blk["scales"]
    d_all = F16_TO_F32[blk["d"]]
    dmin_all = F16_TO_F32[blk["dmin"]]
    for j in range(QK_K // 16):
        d = d_all * f32(i64(sc[j]) & 0xF)
        if d == f32(0.0):
            continue
        dm = dmin_all * f32(i64(sc[j]) >> 4)
        xs = xb[16 * j:16 * j + 16]  # sub-views: LLVM vectorizes loops indexed by a bare range() variable
        Ls = L[16 * j:16 * j + 16]
        for ii in range(16):
            Ls[ii] = int(nearest_int_clamped((xs[ii] + dm) / d, 0, 3))


@njit
def _q2_K_impl_row(x, blocks, qweights, L, Laux, weight, mins, scales, sw, Ls, Lm):
    # mirrors quantize_row_q2_K_impl (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        for j in range(QK_K // 16):
            sw[j] = f32(0.0)
        sumx2 = f32(0.0)
        for j in range(QK_K):
            sumx2 += xb[j] * xb[j]
        sigma2 = sumx2 / f32(QK_K)
        for j in range(QK_K // 16):
            qw = qweights[QK_K * i + 16 * j:QK_K * i + 16 * j + 16]
            xs = xb[16 * j:16 * j + 16]
            for l in range(16):
                weight[l] = qw[l] * f32(np.sqrt(sigma2 + xs[l] * xs[l]))
            for l in range(16):
                sw[j] += weight[l]
            s, m = make_qkx3_quants(16, 3, xs, weight, L[16 * j:16 * j + 16], Laux,
                                    f32(-0.9), f32(0.05), 36, False)
            scales[j] = s
            mins[j] = m
        dm = make_qp_quants(QK_K // 16, 15, scales, Ls, sw)
        mm = make_qp_quants(QK_K // 16, 15, mins, Lm, sw)
        blk = blocks[i]
        blk["d"] = fp32_to_fp16(dm)
        blk["dmin"] = fp32_to_fp16(mm)
        sc = blk["scales"]
        for j in range(QK_K // 16):
            sc[j] = (i64(Ls[j]) | (i64(Lm[j]) << 4)) & 0xFF
        _q2_K_requantize(xb, blk, L)  # requantize = true in C
        _pack_2bit(L, blk["qs"])


@njit
def quantize_row_q2_K_ref(x, blocks):
    _q2_K_ref_blocks(x, blocks, np.zeros(QK_K, np.uint8), np.zeros(16, np.uint8), np.zeros(16, np.float32),
                     np.zeros(QK_K // 16, np.float32), np.zeros(QK_K // 16, np.float32))


@njit
def quantize_q2_K(x, imatrix, blocks):
    # mirrors quantize_q2_K (ggml-quants.c): the reference quantizer without imatrix, else _impl row by row
    L = np.zeros(QK_K, np.uint8)
    Laux = np.zeros(16, np.uint8)
    weight = np.zeros(16, np.float32)
    mins = np.zeros(QK_K // 16, np.float32)
    scales = np.zeros(QK_K // 16, np.float32)
    sw = np.zeros(QK_K // 16, np.float32)
    Ls = np.zeros(QK_K // 16, np.uint8)
    Lm = np.zeros(QK_K // 16, np.uint8)
    for r in range(x.shape[0]):
        if imatrix.size == 0:
            _q2_K_ref_blocks(x[r], blocks[r], L, Laux, weight, mins, scales)
        else:
            _q2_K_impl_row(x[r], blocks[r], imatrix, L, Laux, weight, mins, scales, sw, Ls, Lm)


@njit
def dequantize_row_q2_K(blocks, y):
    # mirrors dequantize_row_q2_K (ggml-quants.c).  Written on 16-element sub-views with uint8 arithmetic so that
    # LLVM vectorizes the inner loop (indices from range() need no wraparound checks)
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

# ---------------------------------------------------------------------------------------------------------------
# Q3_K

@njit
def _q3_K_ref_blocks(x, blocks, L, scales):
    # mirrors quantize_row_q3_K_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        max_scale = f32(0.0)
        amax = f32(0.0)
        for j in range(QK_K // 16):
            s = make_q3_quants(16, 4, xb[16 * j:16 * j + 16], L[16 * j:16 * j + 16], True)
            scales[j] = s
            a = abs(s)
            if a > amax:
                amax = a
                max_scale = s
        blk = blocks[i]
        sc = blk["scales"]
        for j in range(12):
            sc[j] = 0
        if max_scale != f32(0.0):  # C: if (max_scale)  (NaN is true)
            iscale = f32(-32.0) / max_scale
            for j in range(QK_K // 16):
                l = c_int8(nearest_int(iscale * scales[j]))  # int8_t l = nearest_int(...)
                l = max(-32, min(31, l)) + 32
                _pack_q3_K_scale(sc, j, l)
            blk["d"] = fp32_to_fp16(f32(1.0) / iscale)
        else:
            blk["d"] = fp32_to_fp16(f32(0.0))
        _q3_K_finish(xb, blk, L)


@njit
def _q3_K_impl_row(x, blocks, qweights, L, scales, weight, sw, Ls):
    # mirrors quantize_row_q3_K_impl (ggml-quants.c), called only with quant_weights by quantize_q3_K
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        sumx2 = f32(0.0)
        for j in range(QK_K):
            sumx2 += xb[j] * xb[j]
        sigma2 = f32(2.0) * sumx2 / f32(QK_K)
        for j in range(QK_K // 16):
            qw = qweights[QK_K * i + 16 * j:QK_K * i + 16 * j + 16]
            xs = xb[16 * j:16 * j + 16]
            for l in range(16):
                weight[l] = qw[l] * f32(np.sqrt(sigma2 + xs[l] * xs[l]))
            sumw = f32(0.0)
            for l in range(16):
                sumw += weight[l]
            sw[j] = sumw
            scales[j] = make_qx_quants(16, 4, xs, L[16 * j:16 * j + 16], 1, weight)
        blk = blocks[i]
        sc = blk["scales"]
        for j in range(12):
            sc[j] = 0
        d_block = make_qx_quants(QK_K // 16, 32, scales, Ls, 1, sw)
        for j in range(QK_K // 16):
            _pack_q3_K_scale(sc, j, i64(Ls[j]))
        blk["d"] = fp32_to_fp16(d_block)
        _q3_K_finish(xb, blk, L)


@njit
def quantize_row_q3_K_ref(x, blocks):
    _q3_K_ref_blocks(x, blocks, np.zeros(QK_K, np.int8), np.zeros(QK_K // 16, np.float32))


@njit
def quantize_q3_K(x, imatrix, blocks):
    # mirrors quantize_q3_K (ggml-quants.c)
    L = np.zeros(QK_K, np.int8)
    scales = np.zeros(QK_K // 16, np.float32)
    weight = np.zeros(16, np.float32)
    sw = np.zeros(QK_K // 16, np.float32)
    Ls = np.zeros(QK_K // 16, np.int8)
    for r in range(x.shape[0]):
        if imatrix.size == 0:
            _q3_K_ref_blocks(x[r], blocks[r], L, scales)
        else:
            _q3_K_impl_row(x[r], blocks[r], imatrix, L, scales, weight, sw, Ls)


@njit
def _q3_K_unpack_scales(sc, out):
    # dequantize_row_q3_K's kmask shuffle of the 12 scale bytes into 16 int8 scales (before the -32)
    for j in range(QK_K // 16):
        low = (i64(sc[j]) & 0xF) if j < 8 else (i64(sc[j - 8]) >> 4)
        out[j] = low | (((i64(sc[8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)


@njit
def dequantize_row_q3_K(blocks, y):
    # mirrors dequantize_row_q3_K (ggml-quants.c); sub-block k covers output 16k..16k+15 and reads byte
    # 32*(k >> 3) + 16*(k & 1) + l of qs (2 bits at 2*((k >> 1) & 3)) and byte 16*(k & 1) + l of hmask (bit k >> 1).
    # (L & 3) - (hbit ? 0 : 4) is written ((L & 3) | hbit << 2) - 4.
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

# ---------------------------------------------------------------------------------------------------------------
# Q4_K

@njit
def _q4_K_ref_blocks(x, blocks, L, Laux, weights, mins, scales):
    # mirrors quantize_row_q4_K_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        max_scale = f32(0.0)
        max_min = f32(0.0)
        for j in range(QK_K // 32):
            xs = xb[32 * j:32 * j + 32]
            sum_x2 = f32(0.0)
            for l in range(32):
                sum_x2 += xs[l] * xs[l]
            av_x = f32(np.sqrt(sum_x2 / f32(32.0)))
            for l in range(32):
                weights[l] = av_x + abs(xs[l])
            s, m = make_qkx2_quants(32, 15, xs, weights, L[32 * j:32 * j + 32], Laux,
                                    f32(-1.0), f32(0.1), 20, False)
            scales[j] = s
            mins[j] = m
            if s > max_scale:
                max_scale = s
            if m > max_min:
                max_min = m
        _q45_K_ref_scales(blocks[i], scales, mins, max_scale, max_min)
        _q45_K_requantize(xb, blocks[i], L, 15)
        _pack_q4_K(L, blocks[i]["qs"])


@njit
def _q45_K_ref_scales(blk, scales, mins, max_scale, max_min):
    # the 6-bit scale/min quantization of quantize_row_q4_K_ref / q5_K_ref
    inv_scale = f32(63.0) / max_scale if max_scale > f32(0.0) else f32(0.0)
    inv_min = f32(63.0) / max_min if max_min > f32(0.0) else f32(0.0)
    sc = blk["scales"]
    for j in range(QK_K // 32):
        ls = nearest_int(inv_scale * scales[j]) & 0xFF  # uint8_t ls = nearest_int(...)
        lm = nearest_int(inv_min * mins[j]) & 0xFF
        ls = min(63, ls)
        lm = min(63, lm)
        _pack_scales_k4(sc, j, ls, lm)
    blk["d"] = fp32_to_fp16(max_scale / f32(63.0))
    blk["dmin"] = fp32_to_fp16(max_min / f32(63.0))


@njit
def _q45_K_impl_search(xb, qweights, qoff, nmax, L, Laux, weights, mins, scales, sw, Ls, Lm):
    # the common first half of quantize_row_q4_K_impl / q5_K_impl; returns (d_block, m_block)
    sum_x2 = f32(0.0)
    for l in range(QK_K):
        sum_x2 += xb[l] * xb[l]
    sigma2 = f32(2.0) * sum_x2 / f32(QK_K)
    av_x = f32(np.sqrt(sigma2))
    has_qw = qweights.size > 0
    for j in range(QK_K // 32):
        xs = xb[32 * j:32 * j + 32]
        if has_qw:
            for l in range(32):
                weights[l] = qweights[qoff + 32 * j + l] * f32(np.sqrt(sigma2 + xs[l] * xs[l]))
        else:
            for l in range(32):
                weights[l] = av_x + abs(xs[l])
        sumw = f32(0.0)
        for l in range(32):
            sumw += weights[l]
        sw[j] = sumw
        s, m = make_qkx3_quants(32, nmax, xs, weights, L[32 * j:32 * j + 32], Laux,
                                f32(-0.9), f32(0.05), 36, False)
        scales[j] = s
        mins[j] = m
    d_block = make_qp_quants(QK_K // 32, 63, scales, Ls, sw)
    m_block = make_qp_quants(QK_K // 32, 63, mins, Lm, sw)
    return d_block, m_block


@njit
def _q4_K_impl_row(x, blocks, qweights, L, Laux, weights, mins, scales, sw, Ls, Lm):
    # mirrors quantize_row_q4_K_impl (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        d_block, m_block = _q45_K_impl_search(xb, qweights, QK_K * i, 15, L, Laux, weights, mins, scales, sw,
                                              Ls, Lm)
        blk = blocks[i]
        sc = blk["scales"]
        for j in range(QK_K // 32):
            _pack_scales_k4(sc, j, i64(Ls[j]), i64(Lm[j]))  # no MIN(63, .) here, unlike q5_K
        blk["d"] = fp32_to_fp16(d_block)
        blk["dmin"] = fp32_to_fp16(m_block)
        _q45_K_requantize(xb, blk, L, 15)
        _pack_q4_K(L, blk["qs"])


@njit
def quantize_row_q4_K_ref(x, blocks):
    _q4_K_ref_blocks(x, blocks, np.zeros(QK_K, np.uint8), np.zeros(32, np.uint8), np.zeros(32, np.float32),
                     np.zeros(QK_K // 32, np.float32), np.zeros(QK_K // 32, np.float32))


@njit
def quantize_q4_K(x, imatrix, blocks):
    # mirrors quantize_q4_K (ggml-quants.c)
    L = np.zeros(QK_K, np.uint8)
    Laux = np.zeros(32, np.uint8)
    weights = np.zeros(32, np.float32)
    mins = np.zeros(QK_K // 32, np.float32)
    scales = np.zeros(QK_K // 32, np.float32)
    sw = np.zeros(QK_K // 32, np.float32)
    Ls = np.zeros(QK_K // 32, np.uint8)
    Lm = np.zeros(QK_K // 32, np.uint8)
    for r in range(x.shape[0]):
        if imatrix.size == 0:
            _q4_K_ref_blocks(x[r], blocks[r], L, Laux, weights, mins, scales)
        else:
            _q4_K_impl_row(x[r], blocks[r], imatrix, L, Laux, weights, mins, scales, sw, Ls, Lm)


@njit
def dequantize_row_q4_K(blocks, y):
    # mirrors dequantize_row_q4_K (ggml-quants.c); sub-views + uint8 arithmetic so that LLVM vectorizes
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

# ---------------------------------------------------------------------------------------------------------------
# Q5_K

@njit
def _q5_K_ref_blocks(x, blocks, L, Laux, weights, mins, scales):
    # mirrors quantize_row_q5_K_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        max_scale = f32(0.0)
        max_min = f32(0.0)
        for j in range(QK_K // 32):
            xs = xb[32 * j:32 * j + 32]
            sum_x2 = f32(0.0)
            for l in range(32):
                sum_x2 += xs[l] * xs[l]
            av_x = f32(np.sqrt(sum_x2 / f32(32.0)))
            for l in range(32):
                weights[l] = av_x + abs(xs[l])
            s, m = make_qkx2_quants(32, 31, xs, weights, L[32 * j:32 * j + 32], Laux,
                                    f32(-0.5), f32(0.1), 15, False)
            scales[j] = s
            mins[j] = m
            if s > max_scale:
                max_scale = s
            if m > max_min:
                max_min = m
        _q45_K_ref_scales(blocks[i], scales, mins, max_scale, max_min)
        _q45_K_requantize(xb, blocks[i], L, 31)
        _pack_q5_K(L, blocks[i]["qs"], blocks[i]["qh"])


@njit
def _q5_K_impl_row(x, blocks, qweights, L, Laux, weights, mins, scales, sw, Ls, Lm):
    # mirrors quantize_row_q5_K_impl (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        d_block, m_block = _q45_K_impl_search(xb, qweights, QK_K * i, 31, L, Laux, weights, mins, scales, sw,
                                              Ls, Lm)
        blk = blocks[i]
        sc = blk["scales"]
        for j in range(QK_K // 32):
            _pack_scales_k4(sc, j, min(63, i64(Ls[j])), min(63, i64(Lm[j])))
        blk["d"] = fp32_to_fp16(d_block)
        blk["dmin"] = fp32_to_fp16(m_block)
        _q45_K_requantize(xb, blk, L, 31)
        _pack_q5_K(L, blk["qs"], blk["qh"])


@njit
def quantize_row_q5_K_ref(x, blocks):
    _q5_K_ref_blocks(x, blocks, np.zeros(QK_K, np.uint8), np.zeros(32, np.uint8), np.zeros(32, np.float32),
                     np.zeros(QK_K // 32, np.float32), np.zeros(QK_K // 32, np.float32))


@njit
def quantize_q5_K(x, imatrix, blocks):
    # mirrors quantize_q5_K (ggml-quants.c)
    L = np.zeros(QK_K, np.uint8)
    Laux = np.zeros(32, np.uint8)
    weights = np.zeros(32, np.float32)
    mins = np.zeros(QK_K // 32, np.float32)
    scales = np.zeros(QK_K // 32, np.float32)
    sw = np.zeros(QK_K // 32, np.float32)
    Ls = np.zeros(QK_K // 32, np.uint8)
    Lm = np.zeros(QK_K // 32, np.uint8)
    for r in range(x.shape[0]):
        if imatrix.size == 0:
            _q5_K_ref_blocks(x[r], blocks[r], L, Laux, weights, mins, scales)
        else:
            _q5_K_impl_row(x[r], blocks[r], imatrix, L, Laux, weights, mins, scales, sw, Ls, Lm)


@njit
def dequantize_row_q5_K(blocks, y):
    # mirrors dequantize_row_q5_K (ggml-quants.c), on sub-views with uint8 arithmetic so that LLVM vectorizes
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

# ---------------------------------------------------------------------------------------------------------------
# Q6_K

@njit
def _q6_K_blocks(x, blocks, qweights, L, scales):
    # mirrors quantize_row_q6_K_ref (qweights empty) and quantize_row_q6_K_impl (ggml-quants.c): the only
    # difference is the weight pointer passed to make_qx_quants (NULL = x^2 weights for rmse_type 1)
    has_qw = qweights.size > 0
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        max_scale = f32(0.0)
        max_abs_scale = f32(0.0)
        for ib in range(QK_K // 16):
            qw = qweights[QK_K * i + 16 * ib:QK_K * i + 16 * ib + 16] if has_qw else qweights
            s = make_qx_quants(16, 32, xb[16 * ib:16 * ib + 16], L[16 * ib:16 * ib + 16], 1, qw)
            scales[ib] = s
            a = abs(s)
            if a > max_abs_scale:
                max_abs_scale = a
                max_scale = s
        if max_abs_scale < GROUP_MAX_EPS:
            _q6_K_zero_block(blocks[i])
            continue
        _q6_K_finish(xb, blocks[i], L, scales, max_scale)


@njit
def quantize_row_q6_K_ref(x, blocks):
    _q6_K_blocks(x, blocks, np.zeros(0, np.float32), np.zeros(QK_K, np.int8), np.zeros(QK_K // 16, np.float32))


@njit
def quantize_q6_K(x, imatrix, blocks):
    # mirrors quantize_q6_K (ggml-quants.c)
    L = np.zeros(QK_K, np.int8)
    scales = np.zeros(QK_K // 16, np.float32)
    for r in range(x.shape[0]):
        _q6_K_blocks(x[r], blocks[r], imatrix, L, scales)


@njit
def dequantize_row_q6_K(blocks, y):
    # mirrors dequantize_row_q6_K (ggml-quants.c): y = (d * sc) * q, on sub-views so that LLVM vectorizes
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

# ---------------------------------------------------------------------------------------------------------------
# Q8_K

@njit
def quantize_row_q8_K_ref(x, blocks):
    # mirrors quantize_row_q8_K_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        xb = x[i * QK_K:(i + 1) * QK_K]
        qs = blocks[i]["qs"]
        mx = f32(0.0)
        amax = f32(0.0)
        for j in range(QK_K):
            ax = abs(xb[j])
            if ax > amax:
                amax = ax
                mx = xb[j]
        if amax == f32(0.0):  # C: if (!amax); bsums are left as they were
            blocks[i]["d"] = f32(0.0)
            for j in range(QK_K):
                qs[j] = 0
            continue
        # -127 rather than -128: "we need this change for IQ2_XXS, else the AVX implementation becomes awkward"
        iscale = f32(-127.0) / mx
        for j in range(QK_K):
            qs[j] = c_int8(int(nearest_int_min(iscale * xb[j], 127)))
        bsums = blocks[i]["bsums"]
        for j in range(QK_K // 16):
            total = 0
            for ii in range(16):
                total += i64(qs[16 * j + ii])
            bsums[j] = total
        blocks[i]["d"] = f32(1.0) / iscale


@njit
def dequantize_row_q8_K(blocks, y):
    # mirrors dequantize_row_q8_K (ggml-quants.c)
    for i in range(blocks.shape[0]):
        d = blocks[i]["d"]
        qs = blocks[i]["qs"]
        yb = y[i * QK_K:(i + 1) * QK_K]
        for j in range(QK_K):
            yb[j] = d * f32(qs[j])

# ---------------------------------------------------------------------------------------------------------------
# CPU dot products against Q8_K activations (ggml-cpu/quants.c, the *_generic functions of the scalar build).
# The integer parts are exact (no int32 overflow is reachable: |q8| <= 128, scales <= 63 or int8, bsums int16),
# so only the float operations must follow the C order: the per-block float terms, the 8 float partial sums
# sums[l] (l = element index mod 8) of q3_K..q6_K, and the final sumf += sums[0..7].
#
# NaN payloads: when both operands of an x86 SSE add/mul are NaN, the result is the first (destination) operand,
# quieted.  Which operand that is depends on how the compiler ordered the commutative operation, which numba/LLVM
# does not promise to preserve, so the operations where two NaNs can meet (raw F16 d/dmin times a raw Q8_K d, and
# the float accumulations) are pinned with _mul_nan_first / _add_nan_first, in the operand order read from the
# disassembly of the oracle's libggml-cpu.so (gcc, scalar build).  E.g. q4_K/q5_K compute dmin as y.d * x.dmin
# and gcc commuted one add of the final sum.







@njit
def vec_dot_q2_K_q8_K(n, x, y):
    # mirrors ggml_vec_dot_q2_K_q8_K_generic
    sumf = f32(0.0)
    for i in range(n // QK_K):
        q2 = x[i]["qs"]
        q8 = y[i]["qs"]
        sc = x[i]["scales"]
        bsums = y[i]["bsums"]
        summs = 0
        for j in range(16):
            summs += i64(bsums[j]) * (i64(sc[j]) >> 4)
        yd = y[i]["d"]
        dall = _mul_nan_first(F16_TO_F32[x[i]["d"]], yd)
        dmin = _mul_nan_first(F16_TO_F32[x[i]["dmin"]], yd)
        isum = 0
        s = 0
        q8o = 0
        for k in range(QK_K // 128):
            q2o = 32 * k
            for shift in range(0, 8, 2):
                for half in range(2):
                    d = i64(sc[s]) & 0xF
                    s += 1
                    isuml = 0
                    for l in range(16 * half, 16 * half + 16):
                        isuml += i64(q8[q8o + l]) * ((i64(q2[q2o + l]) >> shift) & 3)
                    isum += d * isuml
                q8o += 32
        sumf = _add_nan_first(sumf, dall * f32(isum) - dmin * f32(summs))
    return sumf


# Speed of the vec_dot kernels below (what a decode step spends its time in).  numba types arithmetic on small
# integers as int64, so level arithmetic is cast back to the C's widths, and inner loop lengths come from a run-time
# value (the scratch arrays' sizes): a constant length such as 32 gets fully unrolled into scalar code instead of
# vectorized.  The eight lanes of the integer sums are one vector step each (refimpl._jit.lanes8_madd*).  Scratch
# arrays come from _work_k (one set per thread in matmul, see QuantFormat.make_work), not from an allocation per call.

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
def _lanes_step(xd, yd, lanes, sums):
    # the float part of a super-block's eight lane sums: sums[l] += (x.d*y.d) * aux32[l] (Q3_K, Q4_K/Q5_K, Q6_K and
    # the BLAS path's folds)
    d = _mul_nan_first(xd, yd)
    for l in range(8):
        sums[l] = _add_nan_first(sums[l], d * f32(lanes[l]))


@njit
def _lanes_final(sums):
    # sumf = sums[0] + ... + sums[7], from 0.0 (Q3_K, Q6_K; Q4_K/Q5_K start from sumf, see _q4_K_final)
    sumf = f32(0.0)
    for l in range(8):
        sumf = _add_nan_first(sumf, sums[l])
    return sumf


@njit
def vec_dot_q3_K_q8_K(n, x, y):
    return _vec_dot_q3_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q3_K(n, x, y, work):
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
        _lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return _lanes_final(sums)


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
def _q45_K_step(sumf, xd, xdmin, yd, lanes, sums, sumi):
    # the float part of one Q4_K/Q5_K super-block from its 8 lane sums (aux32) and sumi = bsums . mins:
    # sums[l] += d*aux32[l]; sumf -= dmin*sumi (shared with the BLAS path's fold)
    _lanes_step(xd, yd, lanes, sums)
    dmin = _mul_nan_first(yd, xdmin)
    return sumf - dmin * f32(sumi)


@njit
def _q4_K_final(sums, sumf):
    sumf = _add_nan_first(sumf, sums[0])
    sumf = _add_nan_first(sums[1], sumf)  # gcc commuted this one add
    for l in range(2, 8):
        sumf = _add_nan_first(sumf, sums[l])
    return sumf


@njit
def _q5_K_final(sums, sumf):
    sumf = _add_nan_first(sums[0], sumf)  # gcc commuted the first add
    for l in range(1, 8):
        sumf = _add_nan_first(sumf, sums[l])
    return sumf


@njit
def vec_dot_q4_K_q8_K(n, x, y):
    return _vec_dot_q4_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q4_K(n, x, y, work):
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
        sumf = _q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return _q4_K_final(sums, sumf)


@njit
def vec_dot_q5_K_q8_K(n, x, y):
    return _vec_dot_q5_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q5_K(n, x, y, work):
    # mirrors ggml_vec_dot_q5_K_q8_K_generic (the Q4_K loop plus the fifth bit from qh)
    a, aux32, scales, mins, sums = work
    for l in range(8):
        sums[l] = f32(0.0)
    sumf = f32(0.0)
    for i in range(x.shape[0]):
        sumi = _q45_K_block_mins(x[i]["scales"], y[i]["bsums"], scales, mins)
        _q45_K_levels(x[i]["qs"], x[i]["qh"], a)
        _lane_isums(a, y[i]["qs"], scales, 1, aux32)
        sumf = _q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return _q5_K_final(sums, sumf)


# ------------------------------------------------------------------------- the BLAS path (refimpl.quant.intdot)
# Q4_K/Q5_K: 9 groups of K = 32 integers per super-block.  Groups 0-7 are the lanes: aux32[l] = sum over
# sub-blocks j and k = 0..3 of scale_j * a[32j + 8k + l] * q8[32j + 8k + l]; bound scale_j * a <= 63 * 31,
# |q8| <= 128, 32 terms: < 2^23.  Group 8 is sumi = sum_j mins_j * (bsums[2j] + bsums[2j+1]) (8 terms, 24 zeros);
# bound 8 * 63 * 4096 < 2^22.  All exact in float32.

@njit(nogil=True)
def _q45_K_weight_ints_kernel(qs, qh, scales, out):
    # out (nb, 9, rows, 32): groups 0-7 = lane l, element 4j + k = scale_j * a[32j + 8k + l];
    # group 8 = mins_j at element j (8 of 32, the rest stay 0).  qh is (rows, nb, 0) for Q4_K.
    a = np.zeros(QK_K, np.int8)
    for r in range(qs.shape[0]):
        for i in range(qs.shape[1]):
            _q45_K_levels(qs[r, i], qh[r, i], a)
            for j in range(QK_K // 32):
                sc, m = get_scale_min_k4(j, scales[r, i])
                for k in range(4):
                    for l in range(8):
                        out[i, l, r, 4 * j + k] = f32(sc * a[32 * j + 8 * k + l])
                out[i, 8, r, j] = f32(m)


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
    @njit
    def fold(ws, xs, isum, out, acc):
        # ws (nb, 2) = (x.d, x.dmin), xs (nb, 1, tokens) = y.d, isum (9 nb, tokens); acc[:, t] = sums[0:8], sumf
        for i in range(ws.shape[0]):
            xd, xdmin, yd = ws[i, 0], ws[i, 1], xs[i, 0]
            for t in range(isum.shape[1]):
                acc[8, t] = _q45_K_step(acc[8, t], xd, xdmin, yd[t], isum[9 * i:9 * i + 8, t], acc[0:8, t],
                                        isum[9 * i + 8, t])
        for t in range(isum.shape[1]):
            out[t] = final(acc[0:8, t], acc[8, t])
    return fold


def _int_dot_q45_K(final):
    return IntDot(_q45_K_weight_ints, _q8_K_lane_ints, _q45_K_weight_scales, _q8_K_scales, _make_fold_q45_K(final),
                  acc_size=9)


INT_DOT_Q4_K = _int_dot_q45_K(_q4_K_final)
INT_DOT_Q5_K = _int_dot_q45_K(_q5_K_final)


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
    return _vec_dot_q6_K(n, x, y, _work_k(n))


@njit
def _vec_dot_q6_K(n, x, y, work):
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
        _lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return _lanes_final(sums)


# BLAS path for Q6_K: 8 groups (lanes) per super-block; lane l holds scale_j * a[16j + 8k + l] for sub-blocks
# j = 0..15 and k = 0..1 (the C's aux16/aux32 loops).  Bound: |scale * a| <= 128 * 32, |q8| <= 127, 32 terms:
# < 2^24, exact in float32.

@njit(nogil=True)
def _q6_K_weight_ints_kernel(ql, qh, scales, out):
    a = np.zeros(QK_K, np.int8)
    for r in range(ql.shape[0]):
        for i in range(ql.shape[1]):
            _q6_K_levels(ql[r, i], qh[r, i], a)
            for j in range(QK_K // 16):
                sc = np.int32(scales[r, i, j])
                for k in range(2):
                    for l in range(8):
                        out[i, l, r, 2 * j + k] = f32(sc * a[16 * j + 8 * k + l])


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
    # ws (nb, 1) = x.d, xs (nb, 1, tokens) = y.d, isum (8 nb, tokens); acc[:, t] = sums[0:8]
    for i in range(ws.shape[0]):
        xd, yd = ws[i, 0], xs[i, 0]
        for t in range(isum.shape[1]):
            _lanes_step(xd, yd[t], isum[8 * i:8 * i + 8, t], acc[0:8, t])
    for t in range(isum.shape[1]):
        out[t] = _lanes_final(acc[0:8, t])


INT_DOT_Q6_K = IntDot(_q6_K_weight_ints, _q8_K_lanes16, lambda b: fp16_to_fp32_row(b["d"])[..., None],
                      _q8_K_scales, _fold_q6_K, acc_size=8)


# ---------------------------------------------------------------------------------------------------------------
# validation (ggml_validate_row_data)

@njit
def _fp16_ok(h):
    # validate_fp16: exponent all ones means Inf or NaN
    return (i64(h) & 0x7C00) != 0x7C00


@njit
def validate_d_dmin(blocks):
    # VALIDATE_ROW_DATA_DM_F16_IMPL(block_q*_K, data, nb, d, dmin): Q2_K, Q4_K, Q5_K
    for i in range(blocks.shape[0]):
        if not _fp16_ok(blocks[i]["d"]) or not _fp16_ok(blocks[i]["dmin"]):
            return False
    return True


@njit
def validate_d(blocks):
    # VALIDATE_ROW_DATA_D_F16_IMPL(block_q*_K, data, nb): Q3_K, Q6_K
    for i in range(blocks.shape[0]):
        if not _fp16_ok(blocks[i]["d"]):
            return False
    return True


@njit
def validate_q8_K(blocks):
    # ggml_validate_row_data, case GGML_TYPE_Q8_K: validate_float(d) rejects Inf and NaN
    for i in range(blocks.shape[0]):
        if (f32_to_bits(blocks[i]["d"]) & np.uint32(0x7F800000)) == np.uint32(0x7F800000):
            return False
    return True


FORMATS = [
    QuantFormat(
        name="Q2_K", type_id=10, block_size=QK_K, block_dtype=BLOCK_Q2_K, vec_dot_type="Q8_K",
        quantize=quantize_q2_K, quantize_ref=quantize_row_q2_K_ref, dequantize=dequantize_row_q2_K,
        from_float=quantize_row_q2_K_ref, vec_dot=vec_dot_q2_K_q8_K,
        validate=validate_d_dmin,
        doc="256 values in 16 sub-blocks of 16: 2-bit levels, 4-bit scale and min per sub-block, 2.625 bpw"),
    QuantFormat(
        name="Q3_K", type_id=11, block_size=QK_K, block_dtype=BLOCK_Q3_K, vec_dot_type="Q8_K",
        quantize=quantize_q3_K, quantize_ref=quantize_row_q3_K_ref, dequantize=dequantize_row_q3_K,
        from_float=quantize_row_q3_K_ref, vec_dot=vec_dot_q3_K_q8_K, make_work=_work_k, vec_dot_work=_vec_dot_q3_K,
        validate=validate_d,
        doc="256 values in 16 sub-blocks of 16: signed 3-bit levels, signed 6-bit scales, 3.4375 bpw"),
    QuantFormat(
        name="Q4_K", type_id=12, block_size=QK_K, block_dtype=BLOCK_Q4_K, vec_dot_type="Q8_K",
        quantize=quantize_q4_K, quantize_ref=quantize_row_q4_K_ref, dequantize=dequantize_row_q4_K,
        from_float=quantize_row_q4_K_ref, vec_dot=vec_dot_q4_K_q8_K, make_work=_work_k, vec_dot_work=_vec_dot_q4_K, int_dot=INT_DOT_Q4_K,
        validate=validate_d_dmin,
        doc="256 values in 8 sub-blocks of 32: 4-bit levels, 6-bit scale and min per sub-block, 4.5 bpw"),
    QuantFormat(
        name="Q5_K", type_id=13, block_size=QK_K, block_dtype=BLOCK_Q5_K, vec_dot_type="Q8_K",
        quantize=quantize_q5_K, quantize_ref=quantize_row_q5_K_ref, dequantize=dequantize_row_q5_K,
        from_float=quantize_row_q5_K_ref, vec_dot=vec_dot_q5_K_q8_K, make_work=_work_k, vec_dot_work=_vec_dot_q5_K, int_dot=INT_DOT_Q5_K,
        validate=validate_d_dmin,
        doc="256 values in 8 sub-blocks of 32: 5-bit levels, 6-bit scale and min per sub-block, 5.5 bpw"),
    QuantFormat(
        name="Q6_K", type_id=14, block_size=QK_K, block_dtype=BLOCK_Q6_K, vec_dot_type="Q8_K",
        quantize=quantize_q6_K, quantize_ref=quantize_row_q6_K_ref, dequantize=dequantize_row_q6_K,
        from_float=quantize_row_q6_K_ref, vec_dot=vec_dot_q6_K_q8_K, make_work=_work_k, vec_dot_work=_vec_dot_q6_K, int_dot=INT_DOT_Q6_K,
        validate=validate_d,
        doc="256 values in 16 sub-blocks of 16: signed 6-bit levels, int8 scales, 6.5625 bpw"),
    QuantFormat(
        name="Q8_K", type_id=15, block_size=QK_K, block_dtype=BLOCK_Q8_K, vec_dot_type=None,
        quantize_ref=quantize_row_q8_K_ref, dequantize=dequantize_row_q8_K, validate=validate_q8_K,
        from_float=quantize_row_q8_K_ref,  # quantize_row_q8_K = _generic = the ref (checked with the oracle)
        doc="activations for K-quant dot products: float32 scale, 256 int8 levels, 16 int16 group sums"),
]
