"""1-bit lattice i-quants: IQ1_S (1.5625 bpw) and IQ1_M (1.75 bpw).

A 256-weight super-block is cut into groups of 8 ternary values ``q in {-1, 0, 1}``, each group one of the 2048
points of ``IQ1S_GRID`` (11-bit index).  A shift ``delta = +-1/8`` is added to every value of a group set
(``y = dl * (q + delta)``), which makes the three levels asymmetric and lets the sign of ``delta`` carry a bit of
information:

* IQ1_S: per 32 weights a uint16 ``qh``: 4 x 3 high index bits, a 3-bit scale (bits 12-14) and the delta sign
  (bit 15); one F16 super-block scale ``d``.
* IQ1_M: per 16 weights a 3-bit scale; per 8 weights (one group) 3 high index bits and a delta-sign bit in a
  nibble of ``qh``; no ``d`` field: the F16 super-block scale is scattered over the top nibbles of the four
  uint16 words of ``scales``.

Quantization (``quantize_row_iq1_s_impl`` / ``quantize_row_iq1_m_impl`` in ggml-quants.c) solves the weighted
3-level problem exactly per 32 (16) weights: sort the values, try every pair of split points (with prefix sums)
and both delta signs, keep the best least-squares scale; then each group's levels are looked up on the grid and,
when off the grid, replaced by the best of its neighbours at the 3 smallest distances (``iq2_search``).
IQ1_S needs an importance matrix; IQ1_M uses ``x^2`` weights without one.  Where ggml hits a GGML_ASSERT the
kernels raise ValueError.
"""
from __future__ import annotations

import numpy as np

from ..._jit import f32, mul_nan_first, nearest_int
from ...floats import F16_TO_F32, fp16_to_fp32, fp32_to_fp16
from .. import iq_tables
from ..kquant_search import njit  # numba's "numpy" error model: x/0 gives Inf/NaN as in C
from ..registry import QuantFormat
from .common import validate_d_f16
from .iq2 import FLT_MAX, c_max, c_min
from .iq2_search import search_tables

QK_K = 256
IQ1S_BLOCK_SIZE = 32
IQ1M_BLOCK_SIZE = 16
NGRID_IQ1S = 2048
IQ1S_DELTA = f32(0.125)
IQ1M_DELTA = f32(0.125)
GROUP_MAX_EPS_IQ1_S = f32(1e-12)
GROUP_MAX_EPS_IQ1_M = f32(1e-7)

IQ1S_GRID = iq_tables.IQ1S_GRID.view(np.int8).reshape(-1, 8)   # decoding grid: 8 values in {-1, 0, 1}
# (grid[j] + delta) for delta = +1/8 (row 0) and -1/8 (row 1), exactly the float C's dequantizers form first
IQ1S_GRID_PLUS_DELTA = np.stack([IQ1S_GRID.astype(np.float32) + IQ1S_DELTA, IQ1S_GRID.astype(np.float32) - IQ1S_DELTA])

BLOCK_IQ1_S = np.dtype([("d", "<u2"), ("qs", "u1", (QK_K // 8,)), ("qh", "<u2", (QK_K // 32,))])    # 50 bytes
BLOCK_IQ1_M = np.dtype([("qs", "u1", (QK_K // 8,)), ("qh", "u1", (QK_K // 16,)),
                        ("scales", "u1", (QK_K // 32,))])                                          # 56 bytes


@njit
def _levels(delta):
    # x_p = {-1 + delta, delta, 1 + delta}, x_m = {-1 - delta, -delta, 1 - delta} (float)
    x_p = np.empty(3, dtype=np.float32)
    x_m = np.empty(3, dtype=np.float32)
    x_p[0] = f32(-1.0) + delta
    x_p[1] = delta
    x_p[2] = f32(1.0) + delta
    x_m[0] = f32(-1.0) - delta
    x_m[1] = -delta
    x_m[2] = f32(1.0) - delta
    return x_p, x_m


@njit
def _sort_pairs(xb, vals, idx, tmp_v, tmp_i):
    """qsort(pairs, n, 2*sizeof(float), iq1_sort_helper) as glibc 2.36 runs it for small arrays: a top-down merge
    sort (msort_with_tmp) that takes the left element unless ``left > right``.  That makes it stable, and defines
    the order of equal values (and of NaNs, which compare equal to everything).  ``n`` is 16 or 32, a power of
    two, for which the bottom-up merges below are exactly the top-down ones."""
    n = xb.shape[0]
    for j in range(n):
        vals[j] = xb[j]
        idx[j] = j
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            a = lo
            b = lo + width
            a_end = lo + width
            b_end = lo + 2 * width
            o = lo
            while a < a_end and b < b_end:
                if not (vals[a] > vals[b]):   # iq1_sort_helper(left, right) <= 0
                    tmp_v[o] = vals[a]
                    tmp_i[o] = idx[a]
                    a += 1
                else:
                    tmp_v[o] = vals[b]
                    tmp_i[o] = idx[b]
                    b += 1
                o += 1
            while a < a_end:
                tmp_v[o] = vals[a]
                tmp_i[o] = idx[a]
                a += 1
                o += 1
            while b < b_end:
                tmp_v[o] = vals[b]
                tmp_i[o] = idx[b]
                b += 1
                o += 1
        for j in range(n):
            vals[j] = tmp_v[j]
            idx[j] = tmp_i[j]
        width *= 2


@njit
def iq1_find_best_neighbour2(neighbours, start, grid, xflat, xoff, weight, woff, scale, xg, L, loff, terms):
    """mirrors iq1_find_best_neighbour2 (ggml-quants.c): of the listed grid neighbours, the one minimising
    sum(w * (scale*xg[level] - x)^2) (first wins a tie); writes its levels to ``L[loff:loff+8]``.

    ``x`` is ``xflat[xoff:xoff+8]``.  If no neighbour has a distance below FLT_MAX, ggml scans the whole grid,
    and that loop reads ``xval[i]`` with ``i`` the *grid* index (a ggml bug): up to 2047 floats past the group,
    i.e. further along ggml's source matrix.  We reproduce that read where it stays inside the input and refuse
    (ValueError) where ggml would read outside it."""
    num_neighbors = int(neighbours[start])
    if num_neighbors <= 0:
        raise ValueError("ggml aborts: lattice point without grid neighbours (GGML_ASSERT(num_neighbors > 0))")
    # Each term w*(scale*xg[level] - x)^2 depends only on (i, level), level in 0..2: the 24 possible terms are
    # computed once with C's exact expression; a candidate is then 8 look-ups added in C's order (same bits).
    # (``terms``: float32[8, 3] scratch owned by the caller)
    for i in range(8):
        w = weight[woff + i]
        for lv in range(3):
            diff = scale * xg[lv] - xflat[xoff + i]
            terms[i, lv] = w * diff * diff
    best_score = FLT_MAX
    grid_index = -1
    for j in range(1, num_neighbors + 1):
        g = int(neighbours[start + j])
        d2 = f32(0.0)
        for i in range(8):
            d2 += terms[i, (int(grid[g, i]) - 1) >> 1]
        if d2 < best_score:
            best_score = d2
            grid_index = g
    if grid_index < 0:
        for i in range(NGRID_IQ1S):
            if xoff + i >= xflat.shape[0]:
                raise ValueError("ggml reads past the end of the input here (iq1_find_best_neighbour2 "
                                 "fallback indexes xval by grid index); refusing")
            d2 = f32(0.0)
            for j in range(8):
                w = weight[woff + j]
                q = xg[(int(grid[i, j]) - 1) >> 1]
                diff = scale * q - xflat[xoff + i]
                d2 += w * diff * diff
            if d2 < best_score:
                best_score = d2
                grid_index = i
    if grid_index < 0:
        raise ValueError("ggml aborts: no grid point at a finite distance (NaN/Inf in the input or scale; "
                         "GGML_ASSERT(grid_index >= 0) in iq1_find_best_neighbour2)")
    for i in range(8):
        L[loff + i] = (int(grid[grid_index, i]) - 1) >> 1
    return grid_index


@njit
def _lattice_key(L, off):
    u = 0
    for j in range(8):
        u |= int(L[off + j]) << (2 * j)
    return u & 0xFFFF


@njit
def _grid_lookup(kmap, u):
    if u >= kmap.shape[0]:
        raise ValueError("lattice key outside kmap (ggml reads out of bounds here)")
    return int(kmap[u])


@njit
def _superblock_sigma2(xflat, base):
    # sigma2 = 2*sumx2/QK_K (float)
    sumx2 = f32(0.0)
    for i in range(QK_K):
        sumx2 += xflat[base + i] * xflat[base + i]
    return f32(2.0) * sumx2 / f32(QK_K)


# ---------------------------------------------------------------------------------------------------------------
# IQ1_S

@njit
def _quantize_row_iq1_s(xflat, row_off, n_per_row, qw_row, y, grid, kmap, neighbours):
    # mirrors quantize_row_iq1_s_impl (ggml-quants.c)
    bs = IQ1S_BLOCK_SIZE
    x_p, x_m = _levels(IQ1S_DELTA)
    scales = np.zeros(QK_K // bs, dtype=np.float32)
    shifts = np.zeros(QK_K // bs, dtype=np.int64)
    weight = np.zeros(bs, dtype=np.float32)
    sumx = np.zeros(bs + 1, dtype=np.float32)
    sumw = np.zeros(bs + 1, dtype=np.float32)
    tail_xp = np.zeros(bs + 1, dtype=np.float32)
    tail_wp = np.zeros(bs + 1, dtype=np.float32)
    tail_xm = np.zeros(bs + 1, dtype=np.float32)
    tail_wm = np.zeros(bs + 1, dtype=np.float32)
    vals = np.zeros(bs, dtype=np.float32)
    idx = np.zeros(bs, dtype=np.int64)
    tmp_v = np.zeros(bs, dtype=np.float32)
    tmp_i = np.zeros(bs, dtype=np.int64)
    L = np.zeros(bs, dtype=np.int64)
    index = np.zeros(bs // 8, dtype=np.int64)
    terms = np.empty((8, 3), dtype=np.float32)
    for ibl in range(y.shape[0]):
        y[ibl]["d"] = fp32_to_fp16(f32(0.0))
        y[ibl]["qs"][:] = 0
        y[ibl]["qh"][:] = 0
        max_scale = f32(0.0)
        xbl_off = row_off + QK_K * ibl
        sigma2 = _superblock_sigma2(xflat, xbl_off)
        for ib in range(QK_K // bs):
            xb_off = xbl_off + bs * ib
            xb = xflat[xb_off: xb_off + bs]
            qw = qw_row[QK_K * ibl + bs * ib: QK_K * ibl + bs * ib + bs]
            for i in range(bs):
                weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            mx = abs(xb[0])
            for i in range(1, bs):
                mx = c_max(mx, abs(xb[i]))
            if mx < GROUP_MAX_EPS_IQ1_S:
                scales[ib] = 0
                shifts[ib] = 1
                L[:] = 1
                continue
            # exact weighted 3-level fit: sort, prefix sums, every split (i1, i2), both delta signs
            _sort_pairs(xb, vals, idx, tmp_v, tmp_i)
            sumx[0] = 0
            sumw[0] = 0
            for j in range(bs):
                i = idx[j]
                sumx[j + 1] = sumx[j] + weight[i] * xb[i]
                sumw[j + 1] = sumw[j] + weight[i]
            best_score = -FLT_MAX
            scale = mx
            besti1 = -1
            besti2 = -1
            best_shift = 0
            # The three terms of sumqx / sumq2 depend on i1 only, on (i1, i2), and on i2 only; the i2-only ones are
            # computed once per block (tail_*), the i1-only ones once per i1 (head_*): the same float operations
            # as the C expressions, added in the same order, just not recomputed for every pair.
            for i2 in range(bs + 1):
                tail_xp[i2] = (sumx[bs] - sumx[i2]) * x_p[2]
                tail_wp[i2] = (sumw[bs] - sumw[i2]) * x_p[2] * x_p[2]
                tail_xm[i2] = (sumx[bs] - sumx[i2]) * x_m[2]
                tail_wm[i2] = (sumw[bs] - sumw[i2]) * x_m[2] * x_m[2]
            for i1 in range(bs + 1):
                head_xp = (sumx[i1] - sumx[0]) * x_p[0]
                head_wp = (sumw[i1] - sumw[0]) * x_p[0] * x_p[0]
                head_xm = (sumx[i1] - sumx[0]) * x_m[0]
                head_wm = (sumw[i1] - sumw[0]) * x_m[0] * x_m[0]
                for i2 in range(i1, bs + 1):
                    dx = sumx[i2] - sumx[i1]
                    dw = sumw[i2] - sumw[i1]
                    sumqx = head_xp + dx * x_p[1] + tail_xp[i2]
                    sumq2 = head_wp + dw * x_p[1] * x_p[1] + tail_wp[i2]
                    if sumq2 > 0 and sumqx * sumqx > best_score * sumq2:
                        scale = sumqx / sumq2
                        best_score = scale * sumqx
                        besti1 = i1
                        besti2 = i2
                        best_shift = 1
                    sumqx = head_xm + dx * x_m[1] + tail_xm[i2]
                    sumq2 = head_wm + dw * x_m[1] * x_m[1] + tail_wm[i2]
                    if sumq2 > 0 and sumqx * sumqx > best_score * sumq2:
                        scale = sumqx / sumq2
                        best_score = scale * sumqx
                        besti1 = i1
                        besti2 = i2
                        best_shift = -1
            if besti1 < 0 or besti2 < 0 or best_shift == 0:
                scales[ib] = 0
                shifts[ib] = 1
                L[:] = 1
                continue
            for j in range(0, besti1):
                L[idx[j]] = 0
            for j in range(besti1, besti2):
                L[idx[j]] = 1
            for j in range(besti2, bs):
                L[idx[j]] = 2
            if scale < 0:
                for j in range(bs):
                    L[j] = 2 - L[j]
                scale = -scale
                best_shift = -best_shift
            all_on_grid = True
            xx = x_p if best_shift == 1 else x_m
            for k in range(bs // 8):
                grid_index = _grid_lookup(kmap, _lattice_key(L, 8 * k))
                if grid_index < 0:
                    all_on_grid = False
                    grid_index = iq1_find_best_neighbour2(neighbours, -grid_index - 1, grid, xflat, xb_off + 8 * k,
                                                          weight, 8 * k, scale, xx, L, 8 * k, terms)
                index[k] = grid_index
            if not all_on_grid:
                sumqx = f32(0.0)
                sumq2 = f32(0.0)
                for k in range(bs // 8):
                    for j in range(8):
                        w = weight[8 * k + j]
                        q = xx[(int(grid[index[k], j]) - 1) >> 1]
                        sumqx += w * q * xb[8 * k + j]
                        sumq2 += w * q * q
                if sumqx > 0 and sumq2 > 0:
                    scale = sumqx / sumq2
            h = 0
            for k in range(bs // 8):
                y[ibl]["qs"][(bs // 8) * ib + k] = index[k] & 255
                h |= (index[k] >> 8) << (3 * k)
            y[ibl]["qh"][ib] = h
            if not (scale >= 0):
                raise ValueError("ggml aborts: GGML_ASSERT(scale >= 0) in quantize_row_iq1_s_impl")
            scales[ib] = scale
            shifts[ib] = best_shift
            max_scale = c_max(max_scale, scale)
        if max_scale == 0:
            continue
        d = max_scale / f32(15.0)
        y[ibl]["d"] = fp32_to_fp16(d * f32(1.125))   # "another fudge factor" (ggml)
        id_ = f32(1.0) / d
        for ib in range(QK_K // bs):
            l = nearest_int(f32(0.5) * (id_ * scales[ib] - f32(1.0)))
            l = c_max(0, c_min(7, l))
            if shifts[ib] == -1:
                l |= 8
            y[ibl]["qh"][ib] |= l << 12


@njit
def _quantize_iq1_s(x, imatrix, blocks, grid, kmap, neighbours):
    # mirrors quantize_iq1_s (ggml-quants.c); rows are read from the flat matrix like ggml's src pointer
    n = x.shape[1]
    xflat = x.reshape(-1)
    for r in range(x.shape[0]):
        _quantize_row_iq1_s(xflat, r * n, n, imatrix, blocks[r], grid, kmap, neighbours)


def quantize_iq1_s(x, imatrix, blocks):
    if imatrix.size == 0:
        raise ValueError("IQ1_S requires an importance matrix (ggml: GGML_ASSERT(quant_weights))")
    _quantize_iq1_s(x, imatrix, blocks, *search_tables("IQ1_S"))


@njit
def dequantize_row_iq1_s(blocks, y):
    # mirrors dequantize_row_iq1_s (ggml-quants.c): y = d*(2*s+1) * (grid + delta), delta = -+1/8 by qh bit 15
    o = 0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        for ib in range(QK_K // 32):
            qh = int(blocks[i]["qh"][ib])
            dl = d * f32(2 * ((qh >> 12) & 7) + 1)
            neg = 1 if qh & 0x8000 else 0
            for l in range(4):
                g = int(qs[4 * ib + l]) | (((qh >> (3 * l)) & 7) << 8)
                for j in range(8):
                    y[o + j] = dl * IQ1S_GRID_PLUS_DELTA[neg, g, j]
                o += 8


# ---------------------------------------------------------------------------------------------------------------
# IQ1_M

@njit
def _quantize_row_iq1_m(xflat, row_off, n_per_row, qw_row, y, grid, kmap, neighbours):
    # mirrors quantize_row_iq1_m_impl (ggml-quants.c); qw_row of size 0 is C's NULL quant_weights
    has_qw = qw_row.size > 0
    bs = IQ1M_BLOCK_SIZE
    x_p, x_m = _levels(IQ1M_DELTA)
    masks = (0x00, 0x80, 0x08, 0x88)
    scales = np.zeros(QK_K // bs, dtype=np.float32)
    shifts = np.zeros(QK_K // bs, dtype=np.int64)
    weight = np.zeros(bs, dtype=np.float32)
    vals = np.zeros(bs, dtype=np.float32)
    idx = np.zeros(bs, dtype=np.int64)
    tmp_v = np.zeros(bs, dtype=np.float32)
    tmp_i = np.zeros(bs, dtype=np.int64)
    L = np.zeros(bs, dtype=np.int64)
    index = np.zeros(bs // 8, dtype=np.int64)
    terms = np.empty((8, 3), dtype=np.float32)
    px = np.zeros((2, bs + 1), dtype=np.float32)
    pw = np.zeros((2, bs + 1), dtype=np.float32)
    sc = np.zeros(4, dtype=np.int64)   # the uint16_t view of y.scales
    p2 = x_p[2]
    m2 = x_m[2]
    cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1]
    cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2]
    cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1]
    cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2]
    for ibl in range(y.shape[0]):
        y[ibl]["qs"][:] = 0
        y[ibl]["qh"][:] = 0
        y[ibl]["scales"][:] = 0
        max_scale = f32(0.0)
        xbl_off = row_off + QK_K * ibl
        sigma2 = _superblock_sigma2(xflat, xbl_off)
        for ib in range(QK_K // bs):
            xb_off = xbl_off + bs * ib
            xb = xflat[xb_off: xb_off + bs]
            if has_qw:
                qw = qw_row[QK_K * ibl + bs * ib: QK_K * ibl + bs * ib + bs]
                for i in range(bs):
                    weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            else:
                for i in range(bs):
                    weight[i] = xb[i] * xb[i]
            mx = abs(xb[0])
            for i in range(1, bs):
                mx = c_max(mx, abs(xb[i]))
            if mx < GROUP_MAX_EPS_IQ1_M:
                scales[ib] = 0
                shifts[ib] = 0
                L[:] = 1
                continue
            _sort_pairs(xb, vals, idx, tmp_v, tmp_i)
            best_score = -FLT_MAX
            scale = mx
            besti1 = -1
            besti2 = -1
            best_k = -1
            # shift choices k: 0: (+,+)  1: (+,-)  2: (-,+)  3: (-,-) for the two groups of 8.  Prefix sums are
            # kept per half because each half may use its own delta sign.
            px[0, 0] = 0
            px[1, 0] = 0
            pw[0, 0] = 0
            pw[1, 0] = 0
            for j in range(bs):
                i = idx[j]
                h = 0 if i < bs // 2 else 1
                px[h, j + 1] = px[h, j] + weight[i] * xb[i]
                px[1 - h, j + 1] = px[1 - h, j]
                pw[h, j + 1] = pw[h, j] + weight[i]
                pw[1 - h, j + 1] = pw[1 - h, j]
            txs0 = px[0, bs]
            txs1 = px[1, bs]
            tws0 = pw[0, bs]
            tws1 = pw[1, bs]
            for i1 in range(bs + 1):
                for i2 in range(i1, bs + 1):
                    sx0 = px[0, i1] + px[0, i2]
                    qx_p0 = txs0 * p2 - sx0
                    qx_m0 = txs0 * m2 - sx0
                    q2_p0 = tws0 * p2 * p2 + pw[0, i1] * cp1 + pw[0, i2] * cp2
                    q2_m0 = tws0 * m2 * m2 + pw[0, i1] * cm1 + pw[0, i2] * cm2
                    sx1 = px[1, i1] + px[1, i2]
                    qx_p1 = txs1 * p2 - sx1
                    qx_m1 = txs1 * m2 - sx1
                    q2_p1 = tws1 * p2 * p2 + pw[1, i1] * cp1 + pw[1, i2] * cp2
                    q2_m1 = tws1 * m2 * m2 + pw[1, i1] * cm1 + pw[1, i2] * cm2
                    # the 4 shift patterns, tried in order k = 0..3 (scalars rather than C's sumqx[4] arrays)
                    sqx = qx_p0 + qx_p1
                    sq2 = q2_p0 + q2_p1
                    if sq2 > 0 and sqx * sqx > best_score * sq2:
                        scale = sqx / sq2
                        best_score = scale * sqx
                        besti1 = i1
                        besti2 = i2
                        best_k = 0
                    sqx = qx_p0 + qx_m1
                    sq2 = q2_p0 + q2_m1
                    if sq2 > 0 and sqx * sqx > best_score * sq2:
                        scale = sqx / sq2
                        best_score = scale * sqx
                        besti1 = i1
                        besti2 = i2
                        best_k = 1
                    sqx = qx_m0 + qx_p1
                    sq2 = q2_m0 + q2_p1
                    if sq2 > 0 and sqx * sqx > best_score * sq2:
                        scale = sqx / sq2
                        best_score = scale * sqx
                        besti1 = i1
                        besti2 = i2
                        best_k = 2
                    sqx = qx_m0 + qx_m1
                    sq2 = q2_m0 + q2_m1
                    if sq2 > 0 and sqx * sqx > best_score * sq2:
                        scale = sqx / sq2
                        best_score = scale * sqx
                        besti1 = i1
                        besti2 = i2
                        best_k = 3
            if besti1 < 0 or besti2 < 0 or best_k < 0:
                scales[ib] = 0
                shifts[ib] = 0
                L[:] = 1
                continue
            for j in range(0, besti1):
                L[idx[j]] = 0
            for j in range(besti1, besti2):
                L[idx[j]] = 1
            for j in range(besti2, bs):
                L[idx[j]] = 2
            if scale < 0:
                for j in range(bs):
                    L[j] = 2 - L[j]
                scale = -scale
                best_k = 3 - best_k   # 0 <-> 3, 1 <-> 2: both delta signs flip
            all_on_grid = True
            for k in range(bs // 8):
                if k == 0:
                    xx = x_p if best_k < 2 else x_m
                else:
                    xx = x_p if best_k % 2 == 0 else x_m
                grid_index = _grid_lookup(kmap, _lattice_key(L, 8 * k))
                if grid_index < 0:
                    all_on_grid = False
                    grid_index = iq1_find_best_neighbour2(neighbours, -grid_index - 1, grid, xflat, xb_off + 8 * k,
                                                          weight, 8 * k, scale, xx, L, 8 * k, terms)
                index[k] = grid_index
            if not all_on_grid:
                sumqx_f = f32(0.0)
                sumq2_f = f32(0.0)
                for k in range(bs // 8):
                    if k == 0:
                        xx = x_p if best_k < 2 else x_m
                    else:
                        xx = x_p if best_k % 2 == 0 else x_m
                    for j in range(8):
                        w = weight[8 * k + j]
                        q = xx[(int(grid[index[k], j]) - 1) >> 1]
                        sumqx_f += w * q * xb[8 * k + j]
                        sumq2_f += w * q * q
                if sumqx_f > 0 and sumq2_f > 0:
                    scale = sumqx_f / sumq2_f
            y[ibl]["qs"][2 * ib + 0] = index[0] & 255
            y[ibl]["qs"][2 * ib + 1] = index[1] & 255
            y[ibl]["qh"][ib] = (index[0] >> 8) | ((index[1] >> 8) << 4)
            if not (scale >= 0):
                raise ValueError("ggml aborts: GGML_ASSERT(scale >= 0) in quantize_row_iq1_m_impl")
            scales[ib] = scale
            shifts[ib] = best_k
            max_scale = c_max(max_scale, scale)
        if max_scale == 0:
            continue
        sc[:] = 0
        d = max_scale / f32(15.0)
        id_ = f32(1.0) / d
        sumqx_f = f32(0.0)
        sumq2_f = f32(0.0)
        for ib in range(QK_K // bs):
            l = nearest_int(f32(0.5) * (id_ * scales[ib] - f32(1.0)))
            l = c_max(0, c_min(7, l))
            sc[ib // 4] |= l << (3 * (ib % 4))
            y[ibl]["qh"][ib] |= masks[shifts[ib]]
            xb_off = xbl_off + bs * ib
            xb = xflat[xb_off: xb_off + bs]
            if has_qw:
                qw = qw_row[QK_K * ibl + bs * ib: QK_K * ibl + bs * ib + bs]
                for i in range(bs):
                    weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            else:
                for i in range(bs):
                    weight[i] = xb[i] * xb[i]
            # re-fit the super-block scale over the stored grid points and 3-bit scales
            for k in range(bs // 8):
                if k == 0:
                    xx = x_p if shifts[ib] < 2 else x_m
                else:
                    xx = x_p if shifts[ib] % 2 == 0 else x_m
                g = int(y[ibl]["qs"][2 * ib + k]) + ((int(y[ibl]["qh"][ib]) << (8 - 4 * k)) & 0x700)
                for j in range(8):
                    w = weight[8 * k + j]
                    q = xx[(int(grid[g, j]) - 1) >> 1] * f32(2 * l + 1)
                    sumqx_f += w * q * xb[8 * k + j]
                    sumq2_f += w * q * q
        if sumq2_f > 0:
            d = sumqx_f / sumq2_f
        s = int(fp32_to_fp16(d * f32(1.1125)))   # "another fudge factor" (ggml)
        sc[0] |= (s & 0x000F) << 12
        sc[1] |= (s & 0x00F0) << 8
        sc[2] |= (s & 0x0F00) << 4
        sc[3] |= s & 0xF000
        for m in range(4):
            y[ibl]["scales"][2 * m] = sc[m] & 0xFF
            y[ibl]["scales"][2 * m + 1] = (sc[m] >> 8) & 0xFF


@njit
def _quantize_iq1_m(x, imatrix, blocks, grid, kmap, neighbours):
    # mirrors quantize_iq1_m (ggml-quants.c)
    n = x.shape[1]
    xflat = x.reshape(-1)
    for r in range(x.shape[0]):
        _quantize_row_iq1_m(xflat, r * n, n, imatrix, blocks[r], grid, kmap, neighbours)


def quantize_iq1_m(x, imatrix, blocks):
    _quantize_iq1_m(x, imatrix, blocks, *search_tables("IQ1_M"))


@njit
def iq1m_super_scale_bits(scales):
    # the F16 super-block scale of IQ1_M: the top nibbles of the four little-endian uint16 words of `scales`
    sc0 = int(scales[0]) | (int(scales[1]) << 8)
    sc1 = int(scales[2]) | (int(scales[3]) << 8)
    sc2 = int(scales[4]) | (int(scales[5]) << 8)
    sc3 = int(scales[6]) | (int(scales[7]) << 8)
    return (sc0 >> 12) | ((sc1 >> 8) & 0x00F0) | ((sc2 >> 4) & 0x0F00) | (sc3 & 0xF000)


@njit
def dequantize_row_iq1_m(blocks, y):
    # mirrors dequantize_row_iq1_m (ggml-quants.c)
    o = 0
    for i in range(blocks.shape[0]):
        scb = blocks[i]["scales"]
        d = fp16_to_fp32(np.uint16(iq1m_super_scale_bits(scb)))
        qs = blocks[i]["qs"]
        qh = blocks[i]["qh"]
        for ib in range(QK_K // 32):
            s = int(scb[2 * (ib // 2)]) | (int(scb[2 * (ib // 2) + 1]) << 8)   # sc[ib/2]
            dl1 = d * f32(2 * ((s >> (6 * (ib % 2) + 0)) & 0x7) + 1)
            dl2 = d * f32(2 * ((s >> (6 * (ib % 2) + 3)) & 0x7) + 1)
            h0 = int(qh[2 * ib])
            h1 = int(qh[2 * ib + 1])
            for l in range(4):
                h = h0 if l < 2 else h1
                g = int(qs[4 * ib + l]) | ((h << (8 if l % 2 == 0 else 4)) & 0x700)
                neg = 1 if h & (0x08 if l % 2 == 0 else 0x80) else 0
                dl = dl1 if l < 2 else dl2
                for j in range(8):
                    y[o + j] = dl * IQ1S_GRID_PLUS_DELTA[neg, g, j]
                o += 8


@njit
def validate_iq1_m(blocks):
    # ggml_validate_row_data, case GGML_TYPE_IQ1_M: the scattered F16 scale must be finite
    for i in range(blocks.shape[0]):
        if (iq1m_super_scale_bits(blocks[i]["scales"]) & 0x7C00) == 0x7C00:
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Dot products against Q8_K activations (ggml-cpu/quants.c, the *_generic functions).  The delta term uses the
# Q8_K group sums: sum(q8 * (grid + delta)) = sum(q8 * grid) + delta * sum(q8).

@njit
def vec_dot_iq1_s_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq1_s_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        q8 = y[i]["qs"]
        qs = x[i]["qs"]
        bsums = y[i]["bsums"]
        sumi = 0
        sumi1 = 0
        for ib in range(QK_K // 32):
            qh = int(x[i]["qh"][ib])
            ls = 2 * ((qh >> 12) & 7) + 1
            delta = -1 if qh & 0x8000 else 1
            lsum = 0
            for l in range(4):
                g = int(qs[4 * ib + l]) | (((qh >> (3 * l)) & 7) << 8)
                o = 32 * ib + 8 * l
                for j in range(8):
                    lsum += int(q8[o + j]) * int(IQ1S_GRID[g, j])
            sumi += ls * lsum
            sumi1 += ls * delta * (int(bsums[2 * ib]) + int(bsums[2 * ib + 1]))
        sumf += F16_TO_F32[x[i]["d"]] * y[i]["d"] * (f32(sumi) + IQ1S_DELTA * f32(sumi1))
    return sumf


@njit
def vec_dot_iq1_m_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq1_m_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        q8 = y[i]["qs"]
        qs = x[i]["qs"]
        qh = x[i]["qh"]
        scb = x[i]["scales"]
        d = fp16_to_fp32(np.uint16(iq1m_super_scale_bits(scb)))
        sumi1 = 0
        sumi2 = 0
        for ib in range(QK_K // 32):
            sum1_0 = 0
            sum1_1 = 0
            sum2_0 = 0
            sum2_1 = 0
            for l in range(4):
                h = int(qh[2 * ib + l // 2])
                delta = -1 if h & (0x08 if l % 2 == 0 else 0x80) else 1
                g = int(qs[4 * ib + l]) | ((h << (8 - 4 * (l % 2))) & 0x700)
                o = 32 * ib + 8 * l
                lsum1 = 0
                lsum2 = 0
                for j in range(8):
                    lsum1 += int(q8[o + j]) * int(IQ1S_GRID[g, j])
                    lsum2 += int(q8[o + j])
                if l < 2:
                    sum1_0 += lsum1
                    sum2_0 += lsum2 * delta
                else:
                    sum1_1 += lsum1
                    sum2_1 += lsum2 * delta
            s = int(scb[2 * (ib // 2)]) | (int(scb[2 * (ib // 2) + 1]) << 8)   # sc[ib/2]
            ls1 = 2 * ((s >> (6 * (ib % 2) + 0)) & 0x7) + 1
            ls2 = 2 * ((s >> (6 * (ib % 2) + 3)) & 0x7) + 1
            sumi1 += sum1_0 * ls1 + sum1_1 * ls2
            sumi2 += sum2_0 * ls1 + sum2_1 * ls2
        # d * y.d: with both NaN ggml's compiled code returns y.d's NaN (operand order measured on the oracle)
        sumf += mul_nan_first(y[i]["d"], d) * (f32(sumi1) + IQ1M_DELTA * f32(sumi2))
    return sumf


FORMATS = [
    QuantFormat(
        name="IQ1_S", type_id=19, block_size=QK_K, block_dtype=BLOCK_IQ1_S, vec_dot_type="Q8_K",
        requires_imatrix=True, quantize=quantize_iq1_s, dequantize=dequantize_row_iq1_s,
        validate=validate_d_f16, vec_dot=vec_dot_iq1_s_q8_K,
        doc="groups of 8 ternary values on a 2048-point grid, +-1/8 shift and 3-bit scale per 32, 1.5625 bpw"),
    QuantFormat(
        name="IQ1_M", type_id=29, block_size=QK_K, block_dtype=BLOCK_IQ1_M, vec_dot_type="Q8_K",
        quantize=quantize_iq1_m, dequantize=dequantize_row_iq1_m, validate=validate_iq1_m,
        vec_dot=vec_dot_iq1_m_q8_K,
        doc="groups of 8 ternary values on a 2048-point grid, +-1/8 shift per 8, 3-bit scale per 16, "
            "F16 scale scattered in the scale nibbles, 1.75 bpw"),
]
