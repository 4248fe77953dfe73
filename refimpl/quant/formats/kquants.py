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

from ..._jit import add_nan_first
from ..._jit import f32, f32_to_bits, nearest_int
from ..._jit import mul_nan_first
from ...floats import F16_TO_F32, fp32_to_fp16
from ..kquant_search import (GROUP_MAX_EPS, c_int8, get_scale_min_k4, make_q3_quants, make_qkx2_quants,
                             make_qkx3_quants, make_qp_quants, make_qx_quants, nearest_int_clamped,
                             nearest_int_min, njit)
from ..registry import QuantFormat
from .common import to_int8, validate_d_f16, validate_dm_f16

u8, i8 = np.uint8, np.int8   # the C's widths
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
    """dequantize_row_q2_K (ggml-quants.c): 16 sub-blocks of 16, y = d*(scale & 15) * level - dmin*(scale >> 4)."""
    yo = 0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        mn = F16_TO_F32[blocks[i]["dmin"]]
        q = blocks[i]["qs"]
        qo = 0
        is_ = 0
        for n in range(0, QK_K, 128):
            shift = 0
            for j in range(4):
                sc = i64(blocks[i]["scales"][is_])
                is_ += 1
                dl = d * f32(sc & 0xF)
                ml = mn * f32(sc >> 4)
                for l in range(16):
                    y[yo] = dl * f32((i64(q[qo + l]) >> shift) & 3) - ml
                    yo += 1
                sc = i64(blocks[i]["scales"][is_])
                is_ += 1
                dl = d * f32(sc & 0xF)
                ml = mn * f32(sc >> 4)
                for l in range(16):
                    y[yo] = dl * f32((i64(q[qo + l + 16]) >> shift) & 3) - ml
                    yo += 1
                shift += 2
            qo += 32

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
def dequantize_row_q3_K(blocks, y):
    """dequantize_row_q3_K (ggml-quants.c): y = d * (scale - 32) * (2-bit level - (hmask bit ? 0 : 4))."""
    scales = np.zeros(16, np.int8)
    yo = 0
    for i in range(blocks.shape[0]):
        d_all = F16_TO_F32[blocks[i]["d"]]
        q = blocks[i]["qs"]
        hm = blocks[i]["hmask"]
        m = 1
        _q3_K_scales(blocks[i]["scales"], scales)
        qo = 0
        is_ = 0
        for n in range(0, QK_K, 128):
            shift = 0
            for j in range(4):
                dl = d_all * f32(i64(scales[is_]) - 32)
                is_ += 1
                for l in range(16):
                    y[yo] = dl * f32(((i64(q[qo + l]) >> shift) & 3) - (0 if (i64(hm[l]) & m) else 4))
                    yo += 1
                dl = d_all * f32(i64(scales[is_]) - 32)
                is_ += 1
                for l in range(16):
                    y[yo] = dl * f32(((i64(q[qo + l + 16]) >> shift) & 3) - (0 if (i64(hm[l + 16]) & m) else 4))
                    yo += 1
                shift += 2
                m <<= 1
            qo += 32

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
    """dequantize_row_q4_K (ggml-quants.c): 8 sub-blocks of 32, y = d*scale * level - dmin*min, the 6-bit scale and
    min from get_scale_min_k4; a sub-block pair shares 32 bytes (low nibbles, then high nibbles)."""
    yo = 0
    for i in range(blocks.shape[0]):
        q = blocks[i]["qs"]
        d = F16_TO_F32[blocks[i]["d"]]
        mn = F16_TO_F32[blocks[i]["dmin"]]
        qo = 0
        is_ = 0
        for j in range(0, QK_K, 64):
            sc, m = get_scale_min_k4(is_ + 0, blocks[i]["scales"])
            d1 = d * f32(sc)
            m1 = mn * f32(m)
            sc, m = get_scale_min_k4(is_ + 1, blocks[i]["scales"])
            d2 = d * f32(sc)
            m2 = mn * f32(m)
            for l in range(32):
                y[yo] = d1 * f32(i64(q[qo + l]) & 0xF) - m1
                yo += 1
            for l in range(32):
                y[yo] = d2 * f32(i64(q[qo + l]) >> 4) - m2
                yo += 1
            qo += 32
            is_ += 2

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
    """dequantize_row_q5_K (ggml-quants.c): dequantize_row_q4_K with 16 added to a level where its bit of qh is
    set (bits 2j and 2j + 1 of qh[l] for the sub-block pair j)."""
    yo = 0
    for i in range(blocks.shape[0]):
        ql = blocks[i]["qs"]
        qh = blocks[i]["qh"]
        d = F16_TO_F32[blocks[i]["d"]]
        mn = F16_TO_F32[blocks[i]["dmin"]]
        qo = 0
        is_ = 0
        u1 = 1
        u2 = 2
        for j in range(0, QK_K, 64):
            sc, m = get_scale_min_k4(is_ + 0, blocks[i]["scales"])
            d1 = d * f32(sc)
            m1 = mn * f32(m)
            sc, m = get_scale_min_k4(is_ + 1, blocks[i]["scales"])
            d2 = d * f32(sc)
            m2 = mn * f32(m)
            for l in range(32):
                y[yo] = d1 * f32((i64(ql[qo + l]) & 0xF) + (16 if (i64(qh[l]) & u1) else 0)) - m1
                yo += 1
            for l in range(32):
                y[yo] = d2 * f32((i64(ql[qo + l]) >> 4) + (16 if (i64(qh[l]) & u2) else 0)) - m2
                yo += 1
            qo += 32
            is_ += 2
            u1 <<= 2
            u2 <<= 2

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
    """dequantize_row_q6_K (ggml-quants.c): 16 sub-blocks of 16, y = d * scale * (6-bit level - 32), the level's low
    4 bits in ql and high 2 bits in qh."""
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        ql = blocks[i]["ql"]
        qh = blocks[i]["qh"]
        sc = blocks[i]["scales"]
        yo = i * QK_K
        qlo = 0
        qho = 0
        so = 0
        for n in range(0, QK_K, 128):
            for l in range(32):
                is_ = l // 16
                h = i64(qh[qho + l])
                q1 = to_int8((i64(ql[qlo + l]) & 0xF) | (((h >> 0) & 3) << 4)) - 32
                q2 = to_int8((i64(ql[qlo + l + 32]) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                q3 = to_int8((i64(ql[qlo + l]) >> 4) | (((h >> 4) & 3) << 4)) - 32
                q4 = to_int8((i64(ql[qlo + l + 32]) >> 4) | (((h >> 6) & 3) << 4)) - 32
                y[yo + l] = d * f32(sc[so + is_]) * f32(q1)
                y[yo + l + 32] = d * f32(sc[so + is_ + 2]) * f32(q2)
                y[yo + l + 64] = d * f32(sc[so + is_ + 4]) * f32(q3)
                y[yo + l + 96] = d * f32(sc[so + is_ + 6]) * f32(q4)
            yo += 128
            qlo += 64
            qho += 32
            so += 8

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
# the float accumulations) are pinned with mul_nan_first / add_nan_first, in the operand order read from the
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
        dall = mul_nan_first(F16_TO_F32[x[i]["d"]], yd)
        dmin = mul_nan_first(F16_TO_F32[x[i]["dmin"]], yd)
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
        sumf = add_nan_first(sumf, dall * f32(isum) - dmin * f32(summs))
    return sumf


# The dot products of Q3_K … Q6_K, as ggml_vec_dot_q*_K_q8_K_generic writes them: the levels of a super-block
# unpacked into aux8, then for each 8 levels aux16[l] = q8[l] * a[l] and aux32[l] += scale * aux16[l] — eight int32
# lanes that stay separate, each converted to float on its own — then the float part below.  The C's int8/int16/
# int32 arrays are numpy arrays of those widths, so every store truncates as the C's does.

@njit
def _lanes_step(xd, yd, lanes, sums):
    # the float part of a super-block's eight lane sums: d = x.d*y.d; sums[l] += d * aux32[l]
    d = mul_nan_first(xd, yd)
    for l in range(8):
        sums[l] = add_nan_first(sums[l], d * f32(lanes[l]))


@njit
def _lanes_final(sums):
    # for (l = 0; l < 8; ++l) sumf += sums[l], from sumf = 0 (Q3_K, Q6_K; Q4_K/Q5_K: see _q4_K_final)
    sumf = f32(0.0)
    for l in range(8):
        sumf = add_nan_first(sumf, sums[l])
    return sumf


@njit
def _q45_K_step(sumf, xd, xdmin, yd, lanes, sums, sumi):
    # the float part of one Q4_K/Q5_K super-block: sums[l] += d*aux32[l]; dmin = x.dmin*y.d; sumf -= dmin*sumi
    _lanes_step(xd, yd, lanes, sums)
    dmin = mul_nan_first(yd, xdmin)
    return sumf - dmin * f32(sumi)


@njit
def _q4_K_final(sums, sumf):
    # for (l = 0; l < 8; ++l) sumf += sums[l]; with NaN payloads as the oracle's compiled code orders the operands
    sumf = add_nan_first(sumf, sums[0])
    sumf = add_nan_first(sums[1], sumf)  # gcc commuted this one add
    for l in range(2, 8):
        sumf = add_nan_first(sumf, sums[l])
    return sumf


@njit
def _q5_K_final(sums, sumf):
    sumf = add_nan_first(sums[0], sumf)  # gcc commuted the first add
    for l in range(1, 8):
        sumf = add_nan_first(sumf, sums[l])
    return sumf


@njit
def _lanes_madd8(aux16, aux32, q8, a, o, scale):
    # for (l = 0; l < 8; ++l) aux16[l] = q8[l] * a[l];  for (l = 0; l < 8; ++l) aux32[l] += scale * aux16[l];
    for l in range(8):
        aux16[l] = i64(q8[o + l]) * i64(a[o + l])
    for l in range(8):
        aux32[l] = i64(aux32[l]) + i64(scale) * i64(aux16[l])


@njit
def _q3_K_scales(sc, scales):
    # memcpy(auxs, x[i].scales, 12) and the kmask1/kmask2 shuffle: 16 6-bit scales (before the -32) as int8
    kmask1 = 0x03030303
    kmask2 = 0x0F0F0F0F
    auxs = np.zeros(4, np.int64)
    for w in range(3):
        auxs[w] = i64(sc[4 * w]) | (i64(sc[4 * w + 1]) << 8) | (i64(sc[4 * w + 2]) << 16) | (i64(sc[4 * w + 3]) << 24)
    tmp = auxs[2]
    auxs[2] = ((auxs[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
    auxs[3] = ((auxs[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
    auxs[0] = (auxs[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
    auxs[1] = (auxs[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
    for j in range(16):
        scales[j] = (auxs[j // 4] >> (8 * (j % 4))) & 0xFF     # the bytes of auxs, as int8_t *scales reads them


@njit
def vec_dot_q3_K_q8_K(n, x, y):
    """ggml_vec_dot_q3_K_q8_K_generic (ggml-cpu/quants.c): aux8 = the signed 3-bit levels (2 bits from qs, minus 4
    unless the hmask bit is set), then the aux16/aux32 lanes with the 16 scales minus 32."""
    nb = n // QK_K
    aux8 = np.zeros(QK_K, np.int8)
    aux16 = np.zeros(8, np.int16)
    sums = np.zeros(8, np.float32)
    aux32 = np.zeros(8, np.int32)
    scales = np.zeros(16, np.int8)
    for i in range(nb):
        q3 = x[i]["qs"]
        hm = x[i]["hmask"]
        q8 = y[i]["qs"]
        aux32[:] = 0
        a = 0
        m = 1
        q3o = 0
        for j in range(0, QK_K, 128):
            for shift in range(0, 8, 2):
                for l in range(32):
                    aux8[a + l] = (i64(q3[q3o + l]) >> shift) & 3
                for l in range(32):
                    aux8[a + l] = i64(aux8[a + l]) - (0 if (i64(hm[l]) & m) else 4)
                a += 32
                m <<= 1
            q3o += 32
        _q3_K_scales(x[i]["scales"], scales)
        a = 0
        for j in range(QK_K // 16):
            _lanes_madd8(aux16, aux32, q8, aux8, a, i64(scales[j]) - 32)
            a += 8
            _lanes_madd8(aux16, aux32, q8, aux8, a, i64(scales[j]) - 32)
            a += 8
        _lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return _lanes_final(sums)


@njit
def _q4_K_scales_mins(sc, scales, mins):
    # memcpy(utmp, x[i].scales, 12) and the kmask1/2/3 shuffle: scales = the bytes of utmp[0..1], mins = utmp[2..3]
    # (the same values as get_scale_min_k4)
    kmask1 = 0x3F3F3F3F
    kmask2 = 0x0F0F0F0F
    kmask3 = 0x03030303
    utmp = np.zeros(4, np.int64)
    for w in range(3):
        utmp[w] = i64(sc[4 * w]) | (i64(sc[4 * w + 1]) << 8) | (i64(sc[4 * w + 2]) << 16) | (i64(sc[4 * w + 3]) << 24)
    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4)
    uaux = utmp[1] & kmask1
    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4)
    utmp[2] = uaux
    utmp[0] &= kmask1
    for j in range(8):
        scales[j] = (utmp[j // 4] >> (8 * (j % 4))) & 0xFF
        mins[j] = (utmp[2 + j // 4] >> (8 * (j % 4))) & 0xFF


@njit
def vec_dot_q4_K_q8_K(n, x, y):
    """ggml_vec_dot_q4_K_q8_K_generic (ggml-cpu/quants.c): aux8 = the 4-bit levels (32 low nibbles, then the 32
    high nibbles of the same bytes), the aux16/aux32 lanes with one 6-bit scale per 32 levels, and the mins
    through the activations' bsums: sumf -= dmin * sum(bsums[j] * mins[j/2])."""
    nb = n // QK_K
    aux8 = np.zeros(QK_K, np.int8)
    aux16 = np.zeros(8, np.int16)
    sums = np.zeros(8, np.float32)
    aux32 = np.zeros(8, np.int32)
    scales = np.zeros(8, np.uint8)
    mins = np.zeros(8, np.uint8)
    sumf = f32(0.0)
    for i in range(nb):
        q4 = x[i]["qs"]
        q8 = y[i]["qs"]
        aux32[:] = 0
        a = 0
        q4o = 0
        for j in range(QK_K // 64):
            for l in range(32):
                aux8[a + l] = i64(q4[q4o + l]) & 0xF
            a += 32
            for l in range(32):
                aux8[a + l] = i64(q4[q4o + l]) >> 4
            a += 32
            q4o += 32
        _q4_K_scales_mins(x[i]["scales"], scales, mins)
        sumi = 0
        for j in range(QK_K // 16):
            sumi += i64(y[i]["bsums"][j]) * i64(mins[j // 2])
        a = 0
        for j in range(QK_K // 32):
            scale = i64(scales[j])
            for k in range(4):
                _lanes_madd8(aux16, aux32, q8, aux8, a, scale)
                a += 8
        sumf = _q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return _q4_K_final(sums, sumf)


@njit
def vec_dot_q5_K_q8_K(n, x, y):
    """ggml_vec_dot_q5_K_q8_K_generic (ggml-cpu/quants.c): the Q4_K loop with 16 added to a level where its bit
    of qh is set."""
    nb = n // QK_K
    aux8 = np.zeros(QK_K, np.int8)
    aux16 = np.zeros(8, np.int16)
    sums = np.zeros(8, np.float32)
    aux32 = np.zeros(8, np.int32)
    scales = np.zeros(8, np.uint8)
    mins = np.zeros(8, np.uint8)
    sumf = f32(0.0)
    for i in range(nb):
        q4 = x[i]["qs"]
        hm = x[i]["qh"]
        q8 = y[i]["qs"]
        aux32[:] = 0
        a = 0
        m = 1
        q4o = 0
        for j in range(QK_K // 64):
            for l in range(32):
                aux8[a + l] = i64(q4[q4o + l]) & 0xF
            for l in range(32):
                aux8[a + l] = i64(aux8[a + l]) + (16 if (i64(hm[l]) & m) else 0)
            a += 32
            m <<= 1
            for l in range(32):
                aux8[a + l] = i64(q4[q4o + l]) >> 4
            for l in range(32):
                aux8[a + l] = i64(aux8[a + l]) + (16 if (i64(hm[l]) & m) else 0)
            a += 32
            m <<= 1
            q4o += 32
        _q4_K_scales_mins(x[i]["scales"], scales, mins)
        sumi = 0
        for j in range(QK_K // 16):
            sumi += i64(y[i]["bsums"][j]) * i64(mins[j // 2])
        a = 0
        for j in range(QK_K // 32):
            scale = i64(scales[j])
            for k in range(4):
                _lanes_madd8(aux16, aux32, q8, aux8, a, scale)
                a += 8
        sumf = _q45_K_step(sumf, F16_TO_F32[x[i]["d"]], F16_TO_F32[x[i]["dmin"]], y[i]["d"], aux32, sums, sumi)
    return _q5_K_final(sums, sumf)


@njit
def vec_dot_q6_K_q8_K(n, x, y):
    """ggml_vec_dot_q6_K_q8_K_generic (ggml-cpu/quants.c): aux8 = the signed 6-bit levels (4 bits from ql, 2 from
    qh, minus 32), then the aux16/aux32 lanes with one int8 scale per 16 levels."""
    nb = n // QK_K
    aux8 = np.zeros(QK_K, np.int8)
    aux16 = np.zeros(8, np.int16)
    sums = np.zeros(8, np.float32)
    aux32 = np.zeros(8, np.int32)
    for i in range(nb):
        q4 = x[i]["ql"]
        qh = x[i]["qh"]
        q8 = y[i]["qs"]
        aux32[:] = 0
        a = 0
        q4o = 0
        qho = 0
        for j in range(0, QK_K, 128):
            for l in range(32):
                h = i64(qh[qho + l])
                aux8[a + l] = to_int8((i64(q4[q4o + l]) & 0xF) | (((h >> 0) & 3) << 4)) - 32
                aux8[a + l + 32] = to_int8((i64(q4[q4o + l + 32]) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                aux8[a + l + 64] = to_int8((i64(q4[q4o + l]) >> 4) | (((h >> 4) & 3) << 4)) - 32
                aux8[a + l + 96] = to_int8((i64(q4[q4o + l + 32]) >> 4) | (((h >> 6) & 3) << 4)) - 32
            a += 128
            q4o += 64
            qho += 32
        a = 0
        for j in range(QK_K // 16):
            scale = i64(x[i]["scales"][j])
            _lanes_madd8(aux16, aux32, q8, aux8, a, scale)
            a += 8
            _lanes_madd8(aux16, aux32, q8, aux8, a, scale)
            a += 8
        _lanes_step(F16_TO_F32[x[i]["d"]], y[i]["d"], aux32, sums)
    return _lanes_final(sums)


# ---------------------------------------------------------------------------------------------------------------
# validation (ggml_validate_row_data)

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
        validate=validate_dm_f16("dmin"),
        doc="256 values in 16 sub-blocks of 16: 2-bit levels, 4-bit scale and min per sub-block, 2.625 bpw"),
    QuantFormat(
        name="Q3_K", type_id=11, block_size=QK_K, block_dtype=BLOCK_Q3_K, vec_dot_type="Q8_K",
        quantize=quantize_q3_K, quantize_ref=quantize_row_q3_K_ref, dequantize=dequantize_row_q3_K,
        from_float=quantize_row_q3_K_ref, vec_dot=vec_dot_q3_K_q8_K,
        validate=validate_d_f16,
        doc="256 values in 16 sub-blocks of 16: signed 3-bit levels, signed 6-bit scales, 3.4375 bpw"),
    QuantFormat(
        name="Q4_K", type_id=12, block_size=QK_K, block_dtype=BLOCK_Q4_K, vec_dot_type="Q8_K",
        quantize=quantize_q4_K, quantize_ref=quantize_row_q4_K_ref, dequantize=dequantize_row_q4_K,
        from_float=quantize_row_q4_K_ref, vec_dot=vec_dot_q4_K_q8_K,
        validate=validate_dm_f16("dmin"),
        doc="256 values in 8 sub-blocks of 32: 4-bit levels, 6-bit scale and min per sub-block, 4.5 bpw"),
    QuantFormat(
        name="Q5_K", type_id=13, block_size=QK_K, block_dtype=BLOCK_Q5_K, vec_dot_type="Q8_K",
        quantize=quantize_q5_K, quantize_ref=quantize_row_q5_K_ref, dequantize=dequantize_row_q5_K,
        from_float=quantize_row_q5_K_ref, vec_dot=vec_dot_q5_K_q8_K,
        validate=validate_dm_f16("dmin"),
        doc="256 values in 8 sub-blocks of 32: 5-bit levels, 6-bit scale and min per sub-block, 5.5 bpw"),
    QuantFormat(
        name="Q6_K", type_id=14, block_size=QK_K, block_dtype=BLOCK_Q6_K, vec_dot_type="Q8_K",
        quantize=quantize_q6_K, quantize_ref=quantize_row_q6_K_ref, dequantize=dequantize_row_q6_K,
        from_float=quantize_row_q6_K_ref, vec_dot=vec_dot_q6_K_q8_K,
        validate=validate_d_f16,
        doc="256 values in 16 sub-blocks of 16: signed 6-bit levels, int8 scales, 6.5625 bpw"),
    QuantFormat(
        name="Q8_K", type_id=15, block_size=QK_K, block_dtype=BLOCK_Q8_K, vec_dot_type=None,
        quantize_ref=quantize_row_q8_K_ref, dequantize=dequantize_row_q8_K, validate=validate_q8_K,
        from_float=quantize_row_q8_K_ref,  # quantize_row_q8_K = _generic = the ref (checked with the oracle)
        doc="activations for K-quant dot products: float32 scale, 256 int8 levels, 16 int16 group sums"),
]
