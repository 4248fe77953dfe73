"""2-bit lattice i-quants: IQ2_XXS (2.0625 bpw), IQ2_XS (2.3125 bpw), IQ2_S (2.5625 bpw).

All three cut a 256-weight super-block into groups of 8.  A group is stored as |x| on a point of an E8-like
lattice grid (values 1, 3, 5, 7 per coordinate, times a scale) plus 8 signs:

* IQ2_XXS: 256-point grid (8-bit index), 7 stored sign bits (the 8th makes the number of minus signs even,
  ``KSIGNS_IQ2XS``), one 4-bit scale per 32 weights.
* IQ2_XS:  512-point grid (9-bit index) + 7 sign bits in one uint16, one 4-bit scale per 16 weights.
* IQ2_S:   1024-point grid (10-bit index), all 8 sign bits stored, one 4-bit scale per 16 weights.

Quantization (``quantize_row_iq2_*_impl`` in ggml-quants.c) takes signs out first, searches a handful of trial
scales, rounds each group to the full lattice ``{1,3,5,7}^8`` and, when that point is not on the grid, picks the
best of its precomputed grid neighbours (``iq2_search``) by weighted squared error.  IQ2_XXS and IQ2_XS need an
importance matrix (``ggml_quantize_requires_imatrix``); IQ2_S uses ``sigma2/4 + x^2`` weights without one.

Where ggml hits a GGML_ASSERT (NaN or Inf distances leave ``iq2_find_best_neighbour`` without a candidate) the
kernels raise ValueError.  Hot loops mirror the C line by line, in float32.
"""
from __future__ import annotations

import numpy as np

from ..._jit import f32, f32_from_bits, f32_to_bits, nearest_int
from ...floats import F16_TO_F32, fp32_to_fp16
from .. import iq_tables
from ..kquant_search import GROUP_MAX_EPS, make_qp_quants, njit  # njit: numba's "numpy" error model (x/0 -> Inf, as C)
from ..registry import QuantFormat
from .common import validate_d_f16
from .iq2_search import search_tables

QK_K = 256
FLT_MAX = f32(3.4028234663852886e38)
GROUP_MAX_EPS_IQ2_S = f32(1e-8)

IQ2XXS_GRID = iq_tables.IQ2XXS_GRID.view(np.uint8).reshape(-1, 8)   # decoding grids: 8 magnitudes per entry
IQ2XS_GRID = iq_tables.IQ2XS_GRID.view(np.uint8).reshape(-1, 8)
IQ2S_GRID = iq_tables.IQ2S_GRID.view(np.uint8).reshape(-1, 8)
# the same as float32 (what C's `db * grid[j]` converts each byte to), so the dequantizers skip the conversion
IQ2XXS_GRID_F32 = IQ2XXS_GRID.astype(np.float32)
IQ2XS_GRID_F32 = IQ2XS_GRID.astype(np.float32)
IQ2S_GRID_F32 = IQ2S_GRID.astype(np.float32)
KSIGNS_IQ2XS = iq_tables.KSIGNS_IQ2XS
KMASK_IQ2XS = iq_tables.KMASK_IQ2XS

BLOCK_IQ2_XXS = np.dtype([("d", "<u2"), ("qs", "<u2", (QK_K // 8,))])                              # 66 bytes
BLOCK_IQ2_XS = np.dtype([("d", "<u2"), ("qs", "<u2", (QK_K // 8,)), ("scales", "u1", (QK_K // 32,))])  # 74
BLOCK_IQ2_S = np.dtype([("d", "<u2"), ("qs", "u1", (QK_K // 4,)), ("qh", "u1", (QK_K // 32,)),
                        ("scales", "u1", (QK_K // 32,))])                                          # 82 bytes


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared with iq1.py

@njit
def c_max(a, b):
    """ggml's ``MAX(a, b)`` macro, ``a > b ? a : b``: with a NaN the *second* argument wins."""
    return a if a > b else b


@njit
def c_min(a, b):
    """ggml's ``MIN(a, b)`` macro, ``a < b ? a : b``."""
    return a if a < b else b


@njit
def iq2_find_best_neighbour(neighbours, start, grid, xval, weight, scale, L, terms):
    """mirrors iq2_find_best_neighbour (ggml-quants.c): of the grid points listed at ``neighbours[start]``, the
    one minimising sum(weight * (scale*q - xval)^2); the first wins a tie.  Writes its levels ``(q-1)/2`` to
    ``L[:8]`` and returns its grid index.  No finite distance (NaN/Inf input) is ggml's GGML_ASSERT."""
    num_neighbors = int(neighbours[start])
    if num_neighbors <= 0:
        raise ValueError("ggml aborts: lattice point without grid neighbours (GGML_ASSERT(num_neighbors > 0))")
    best_d2 = FLT_MAX
    grid_index = -1
    if num_neighbors < 6:
        # the C loop as written
        for j in range(1, num_neighbors + 1):
            g = int(neighbours[start + j])
            d2 = f32(0.0)
            for i in range(8):
                q = f32(grid[g, i])
                diff = scale * q - xval[i]
                d2 += weight[i] * diff * diff
            if d2 < best_d2:
                best_d2 = d2
                grid_index = g
        return _take_neighbour(grid, grid_index, L)
    # Long lists (same bits, less work): each term weight[i]*(scale*q - xval[i])^2 depends only on (i, q), and q
    # takes 4 values (1, 3, 5, 7): compute the 32 possible terms once with C's exact expression; each candidate is
    # then 8 look-ups added in C's order.  (``terms``: float32[8, 4] scratch owned by the caller.)
    for i in range(8):
        for lv in range(4):
            diff = scale * f32(2 * lv + 1) - xval[i]
            terms[i, lv] = weight[i] * diff * diff
    for j in range(1, num_neighbors + 1):
        g = int(neighbours[start + j])
        d2 = f32(0.0)
        for i in range(8):
            d2 += terms[i, (int(grid[g, i]) - 1) >> 1]
        if d2 < best_d2:
            best_d2 = d2
            grid_index = g
    return _take_neighbour(grid, grid_index, L)


@njit
def _take_neighbour(grid, grid_index, L):
    if grid_index < 0:
        raise ValueError("ggml aborts: no grid neighbour at a finite distance (NaN/Inf in the input or scale; "
                         "GGML_ASSERT(grid_index >= 0) in iq2_find_best_neighbour)")
    for i in range(8):
        L[i] = (int(grid[grid_index, i]) - 1) >> 1
    return grid_index


@njit
def _apply_sign(v, signs, j):
    """``v * (signs & (1 << j) ? -1.f : 1.f)`` as ggml's compiled code computes it: a sign-bit flip (NaNs change
    sign too, unlike an x86 multiply), done branch-free on the bits."""
    return f32_from_bits(f32_to_bits(v) ^ (np.uint32((signs >> j) & 1) << np.uint32(31)))


@njit
def _lattice_key(L, off):
    # u = sum(L[i] << 2i) as the C's uint16_t accumulator (L is int8_t there: keep 16 bits of the promoted int)
    u = 0
    for i in range(8):
        u |= int(L[off + i]) << (2 * i)
    return u & 0xFFFF


@njit
def _grid_lookup(kmap, u):
    if u >= kmap.shape[0]:
        raise ValueError("lattice key outside kmap (ggml reads out of bounds here)")
    return int(kmap[u])


@njit
def _round_group(xval, off, id_, kmax, L):
    # the C loop: l = nearest_int(0.5f*(id*xval-1)), clamped to [0, kMaxQ-1]; returns the lattice key u
    u = 0
    for i in range(8):
        l = nearest_int(f32(0.5) * (id_ * xval[off + i] - f32(1.0)))
        l = c_max(0, c_min(kmax - 1, l))
        L[off + i] = l
        u |= l << (2 * i)
    return u


@njit
def _signs_with_even_parity(xb, weight, xval, k):
    """IQ2_XXS / IQ2_XS sign handling: xval = |x| for group k; only 7 sign bits are stored (the 8th is implied by
    an even number of minus signs), so with an odd count the element of least weight*x^2 keeps the wrong sign
    (its xval becomes negative).  Returns the 7 stored sign bits."""
    nflip = 0
    s = 0
    for i in range(8):
        v = xb[8 * k + i]
        if v >= 0:
            xval[8 * k + i] = v
        else:
            xval[8 * k + i] = -v
            nflip += 1
            s |= 1 << i
    if nflip % 2:
        imin = 0
        mn = weight[8 * k] * xb[8 * k] * xb[8 * k]
        for i in range(1, 8):
            ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i]
            if ax < mn:
                mn = ax
                imin = i
        xval[8 * k + imin] = -xval[8 * k + imin]
        s ^= 1 << imin
    return s & 127


@njit
def _weighted_fit(n, weight, xval, L):
    # sumqx = sum(w*x*q), sumq2 = sum(w*q*q) with q = 2L+1, in C's order
    sumqx = f32(0.0)
    sumq2 = f32(0.0)
    for i in range(n):
        w = weight[i]
        q = f32(2 * L[i] + 1)
        sumqx += w * xval[i] * q
        sumq2 += w * q * q
    return sumqx, sumq2


@njit
def _superblock_sigma2_sum(xbl):
    sumx2 = f32(0.0)
    for i in range(QK_K):
        sumx2 += xbl[i] * xbl[i]
    return sumx2


# ---------------------------------------------------------------------------------------------------------------
# IQ2_XXS

@njit
def _quantize_row_iq2_xxs(x, qw_row, y, grid, kmap, neighbours):
    # mirrors quantize_row_iq2_xxs_impl (ggml-quants.c)
    kmax = 3
    scales = np.zeros(QK_K // 32, dtype=np.float32)
    weight = np.zeros(32, dtype=np.float32)
    xval = np.zeros(32, dtype=np.float32)
    waux = np.zeros(32, dtype=np.float32)
    L = np.zeros(32, dtype=np.int64)
    Laux = np.zeros(32, dtype=np.int64)
    block_signs = np.zeros(4, dtype=np.int64)
    q2 = np.zeros(2 * (QK_K // 32), dtype=np.int64)   # uint32_t q2[16], the qs words
    terms = np.empty((8, 4), dtype=np.float32)
    for ibl in range(y.shape[0]):
        y[ibl]["d"] = fp32_to_fp16(f32(0.0))
        for m in range(q2.shape[0]):
            q2[m] = 0
        max_scale = f32(0.0)
        xbl = x[QK_K * ibl: QK_K * (ibl + 1)]
        sigma2 = _superblock_sigma2_sum(xbl) / f32(QK_K)
        for ib in range(QK_K // 32):
            xb = xbl[32 * ib: 32 * ib + 32]
            qw = qw_row[QK_K * ibl + 32 * ib: QK_K * ibl + 32 * ib + 32]
            for i in range(32):
                weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            for i in range(32):
                waux[i] = f32(np.sqrt(weight[i]))
            for k in range(4):
                block_signs[k] = _signs_with_even_parity(xb, weight, xval, k)
            mx = xval[0]
            for i in range(1, 32):
                mx = c_max(mx, xval[i])
            if mx < GROUP_MAX_EPS:
                scales[ib] = 0
                L[:] = 0
                continue
            scale = make_qp_quants(32, kmax + 1, xval, L, weight)
            for i in range(32):
                L[i] = ((L[i] + 128) & 0xFF) - 128   # the uint8_t quants land in C's int8_t L[]
            eff_max = scale * f32(kmax)
            if eff_max <= 0:
                scales[ib] = 0
                L[:] = 0
                continue
            best = f32(0.0)
            for step in range(-6, 7):
                id_ = (f32(2 * kmax - 1) + f32(step) * f32(0.1)) / eff_max
                this_scale = f32(1.0) / id_
                for k in range(4):
                    u = _round_group(xval, 8 * k, id_, kmax, Laux)
                    grid_index = _grid_lookup(kmap, u)
                    if grid_index < 0:
                        iq2_find_best_neighbour(neighbours, -grid_index - 1, grid, xval[8 * k: 8 * k + 8],
                                                waux[8 * k: 8 * k + 8], this_scale, Laux[8 * k: 8 * k + 8], terms)
                sumqx, sumq2 = _weighted_fit(32, weight, xval, Laux)
                if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                    scale = sumqx / sumq2
                    best = scale * sumqx
                    L[:] = Laux
            if scale > 0:
                id_ = f32(1.0) / scale
                for k in range(4):
                    u = _round_group(xval, 8 * k, id_, kmax, Laux)   # C keeps only u here; L is set below
                    grid_index = _grid_lookup(kmap, u)
                    if grid_index < 0:
                        grid_index = iq2_find_best_neighbour(neighbours, -grid_index - 1, grid,
                                                             xval[8 * k: 8 * k + 8], waux[8 * k: 8 * k + 8],
                                                             scale, L[8 * k: 8 * k + 8], terms)
                    for i in range(8):
                        L[8 * k + i] = (int(grid[grid_index, i]) - 1) >> 1
                sumqx, sumq2 = _weighted_fit(32, weight, xval, L)
                if sumq2 > 0:
                    scale = sumqx / sumq2
            if scale < 0:
                # "should never happen" in ggml: flip the scale positive and every stored sign
                scale = -scale
                for k in range(4):
                    block_signs[k] = (~block_signs[k]) & 127
            for k in range(4):
                u = _lattice_key(L, 8 * k)
                grid_index = _grid_lookup(kmap, u)
                if grid_index < 0:
                    raise ValueError("ggml aborts: IQ2_XXS found a point not on the grid (GGML_ABORT)")
                q2[2 * ib + 0] |= grid_index << (8 * k)
                q2[2 * ib + 1] |= block_signs[k] << (7 * k)
            if not (scale >= 0):
                raise ValueError("ggml aborts: GGML_ASSERT(scale >= 0) in quantize_row_iq2_xxs_impl")
            scales[ib] = scale
            max_scale = c_max(max_scale, scale)
        if max_scale == 0:
            for m in range(QK_K // 8):
                y[ibl]["qs"][m] = 0
            continue
        d = max_scale / f32(31.0)
        y[ibl]["d"] = fp32_to_fp16(d)
        id_ = f32(1.0) / d
        for ib in range(QK_K // 32):
            l = nearest_int(f32(0.5) * (id_ * scales[ib] - f32(1.0)))
            l = c_max(0, c_min(15, l))
            q2[2 * ib + 1] |= l << 28
        for m in range(q2.shape[0]):
            y[ibl]["qs"][2 * m] = q2[m] & 0xFFFF
            y[ibl]["qs"][2 * m + 1] = (q2[m] >> 16) & 0xFFFF


@njit
def _quantize_iq2_xxs(x, imatrix, blocks, grid, kmap, neighbours):
    # mirrors quantize_iq2_xxs (ggml-quants.c): row by row, the same imatrix for every row
    for r in range(x.shape[0]):
        _quantize_row_iq2_xxs(x[r], imatrix, blocks[r], grid, kmap, neighbours)


def quantize_iq2_xxs(x, imatrix, blocks):
    if imatrix.size == 0:
        raise ValueError("IQ2_XXS requires an importance matrix (ggml: GGML_ASSERT(quant_weights))")
    _quantize_iq2_xxs(x, imatrix, blocks, *search_tables("IQ2_XXS"))


@njit
def dequantize_row_iq2_xxs(blocks, y):
    # mirrors dequantize_row_iq2_xxs (ggml-quants.c): per 32 weights two uint32 words: 4 grid bytes, then
    # 4 x 7 sign bits and a 4-bit scale in the top nibble
    o = 0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        for ib32 in range(QK_K // 32):
            aux0 = int(qs[4 * ib32]) | (int(qs[4 * ib32 + 1]) << 16)
            aux1 = int(qs[4 * ib32 + 2]) | (int(qs[4 * ib32 + 3]) << 16)
            db = d * (f32(0.5) + f32(aux1 >> 28)) * f32(0.25)
            for l in range(4):
                g = (aux0 >> (8 * l)) & 255
                signs = int(KSIGNS_IQ2XS[(aux1 >> (7 * l)) & 127])
                for j in range(8):
                    y[o + j] = _apply_sign(db * IQ2XXS_GRID_F32[g, j], signs, j)
                o += 8


# ---------------------------------------------------------------------------------------------------------------
# IQ2_XS and IQ2_S share the 16-weight scale search

@njit
def _search_16(xval, weight, waux, L, Laux, is_on_grid, is_on_grid_aux, grid, kmap, neighbours, mx, terms):
    """The common middle of quantize_row_iq2_xs_impl / quantize_row_iq2_s_impl for one 16-weight block: 19 trial
    scales, then a re-rounding of the off-grid groups at the best scale.  Returns the block scale; ``L`` holds
    the chosen grid levels."""
    kmax = 3
    best = f32(0.0)
    scale = mx / f32(2 * kmax - 1)
    is_on_grid[0] = True
    is_on_grid[1] = True
    for step in range(-9, 10):
        id_ = (f32(2 * kmax - 1) + f32(step) * f32(0.1)) / mx
        this_scale = f32(1.0) / id_
        for k in range(2):
            u = _round_group(xval, 8 * k, id_, kmax, Laux)
            grid_index = _grid_lookup(kmap, u)
            is_on_grid_aux[k] = True
            if grid_index < 0:
                is_on_grid_aux[k] = False
                iq2_find_best_neighbour(neighbours, -grid_index - 1, grid, xval[8 * k: 8 * k + 8],
                                        waux[8 * k: 8 * k + 8], this_scale, Laux[8 * k: 8 * k + 8], terms)
        sumqx, sumq2 = _weighted_fit(16, weight, xval, Laux)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            L[:] = Laux
            is_on_grid[0] = is_on_grid_aux[0]
            is_on_grid[1] = is_on_grid_aux[1]
    n_not_ongrid = 0
    for k in range(2):
        if not is_on_grid[k]:
            n_not_ongrid += 1
    if n_not_ongrid > 0 and scale > 0:
        id_ = f32(1.0) / scale
        for k in range(2):
            if is_on_grid[k]:
                continue
            u = _round_group(xval, 8 * k, id_, kmax, L)
            grid_index = _grid_lookup(kmap, u)
            if grid_index < 0:
                iq2_find_best_neighbour(neighbours, -grid_index - 1, grid, xval[8 * k: 8 * k + 8],
                                        waux[8 * k: 8 * k + 8], scale, L[8 * k: 8 * k + 8], terms)
        sumqx, sumq2 = _weighted_fit(16, weight, xval, L)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit
def _quantize_row_iq2_xs(x, qw_row, y, grid, kmap, neighbours):
    # mirrors quantize_row_iq2_xs_impl (ggml-quants.c)
    scales = np.zeros(QK_K // 16, dtype=np.float32)
    weight = np.zeros(16, dtype=np.float32)
    xval = np.zeros(16, dtype=np.float32)
    waux = np.zeros(16, dtype=np.float32)
    L = np.zeros(16, dtype=np.int64)
    Laux = np.zeros(16, dtype=np.int64)
    is_on_grid = np.zeros(2, dtype=np.bool_)
    is_on_grid_aux = np.zeros(2, dtype=np.bool_)
    block_signs = np.zeros(2, dtype=np.int64)
    terms = np.empty((8, 4), dtype=np.float32)
    q2 = np.zeros(2 * (QK_K // 16), dtype=np.int64)   # uint16_t q2[32], the qs entries
    for ibl in range(y.shape[0]):
        y[ibl]["d"] = fp32_to_fp16(f32(0.0))
        q2[:] = 0
        for m in range(QK_K // 32):
            y[ibl]["scales"][m] = 0
        max_scale = f32(0.0)
        xbl = x[QK_K * ibl: QK_K * (ibl + 1)]
        sigma2 = _superblock_sigma2_sum(xbl) / f32(QK_K)
        for ib in range(QK_K // 16):
            xb = xbl[16 * ib: 16 * ib + 16]
            qw = qw_row[QK_K * ibl + 16 * ib: QK_K * ibl + 16 * ib + 16]
            for i in range(16):
                weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            for i in range(16):
                waux[i] = f32(np.sqrt(weight[i]))
            for k in range(2):
                block_signs[k] = _signs_with_even_parity(xb, weight, xval, k)
            mx = xval[0]
            for i in range(1, 16):
                mx = c_max(mx, xval[i])
            L[:] = 0
            if mx < GROUP_MAX_EPS:
                scales[ib] = 0
                continue
            scale = _search_16(xval, weight, waux, L, Laux, is_on_grid, is_on_grid_aux, grid, kmap, neighbours, mx,
                               terms)
            if scale < 0:
                scale = -scale
                for k in range(2):
                    block_signs[k] = (~block_signs[k]) & 127
            for k in range(2):
                grid_index = _grid_lookup(kmap, _lattice_key(L, 8 * k))
                if grid_index < 0:
                    raise ValueError("ggml aborts: IQ2_XS found a point not on the grid (GGML_ABORT)")
                q2[2 * ib + k] = grid_index | (block_signs[k] << 9)
            if not (scale >= 0):
                raise ValueError("ggml aborts: GGML_ASSERT(scale >= 0) in quantize_row_iq2_xs_impl")
            scales[ib] = scale
            max_scale = c_max(max_scale, scale)
        if max_scale == 0:
            for m in range(QK_K // 8):
                y[ibl]["qs"][m] = 0
            continue
        d = max_scale / f32(31.0)
        y[ibl]["d"] = fp32_to_fp16(d)
        id_ = f32(1.0) / d
        for ib in range(QK_K // 16):
            l = nearest_int(f32(0.5) * (id_ * scales[ib] - f32(1.0)))
            l = c_max(0, c_min(15, l))
            if ib % 2 == 0:
                y[ibl]["scales"][ib // 2] = l
            else:
                y[ibl]["scales"][ib // 2] |= l << 4
        for m in range(QK_K // 8):
            y[ibl]["qs"][m] = q2[m] & 0xFFFF


@njit
def _quantize_iq2_xs(x, imatrix, blocks, grid, kmap, neighbours):
    # mirrors quantize_iq2_xs (ggml-quants.c)
    for r in range(x.shape[0]):
        _quantize_row_iq2_xs(x[r], imatrix, blocks[r], grid, kmap, neighbours)


def quantize_iq2_xs(x, imatrix, blocks):
    if imatrix.size == 0:
        raise ValueError("IQ2_XS requires an importance matrix (ggml: GGML_ASSERT(quant_weights))")
    _quantize_iq2_xs(x, imatrix, blocks, *search_tables("IQ2_XS"))


@njit
def dequantize_row_iq2_xs(blocks, y):
    # mirrors dequantize_row_iq2_xs (ggml-quants.c): qs = 9-bit grid index | 7 sign bits << 9
    o = 0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        for ib32 in range(QK_K // 32):
            sc = int(blocks[i]["scales"][ib32])
            db0 = d * (f32(0.5) + f32(sc & 0xF)) * f32(0.25)
            db1 = d * (f32(0.5) + f32(sc >> 4)) * f32(0.25)
            for l in range(4):
                q = int(blocks[i]["qs"][4 * ib32 + l])
                g = q & 511
                signs = int(KSIGNS_IQ2XS[q >> 9])
                db = db0 if l < 2 else db1
                for j in range(8):
                    y[o + j] = _apply_sign(db * IQ2XS_GRID_F32[g, j], signs, j)
                o += 8


# ---------------------------------------------------------------------------------------------------------------
# IQ2_S

@njit
def _quantize_row_iq2_s(x, qw_row, y, grid, kmap, neighbours):
    # mirrors quantize_row_iq2_s_impl (ggml-quants.c); qw_row of size 0 is C's NULL quant_weights
    has_qw = qw_row.size > 0
    scales = np.zeros(QK_K // 16, dtype=np.float32)
    weight = np.zeros(16, dtype=np.float32)
    xval = np.zeros(16, dtype=np.float32)
    waux = np.zeros(16, dtype=np.float32)
    L = np.zeros(16, dtype=np.int64)
    Laux = np.zeros(16, dtype=np.int64)
    is_on_grid = np.zeros(2, dtype=np.bool_)
    is_on_grid_aux = np.zeros(2, dtype=np.bool_)
    block_signs = np.zeros(2, dtype=np.int64)
    terms = np.empty((8, 4), dtype=np.float32)
    for ibl in range(y.shape[0]):
        # memset(&y[ibl], 0, sizeof(block_iq2_s))
        y[ibl]["d"] = fp32_to_fp16(f32(0.0))
        y[ibl]["qs"][:] = 0
        y[ibl]["qh"][:] = 0
        y[ibl]["scales"][:] = 0
        max_scale = f32(0.0)
        xbl = x[QK_K * ibl: QK_K * (ibl + 1)]
        sigma2 = f32(2.0) * _superblock_sigma2_sum(xbl) / f32(QK_K)
        for ib in range(QK_K // 16):
            xb = xbl[16 * ib: 16 * ib + 16]
            if has_qw:
                qw = qw_row[QK_K * ibl + 16 * ib: QK_K * ibl + 16 * ib + 16]
                for i in range(16):
                    weight[i] = qw[i] * f32(np.sqrt(sigma2 + xb[i] * xb[i]))
            else:
                for i in range(16):
                    weight[i] = f32(0.25) * sigma2 + xb[i] * xb[i]
            for i in range(16):
                waux[i] = f32(np.sqrt(weight[i]))
            for k in range(2):
                # all 8 signs are stored: no parity fix-up
                s = 0
                for i in range(8):
                    v = xb[8 * k + i]
                    if v >= 0:
                        xval[8 * k + i] = v
                    else:
                        xval[8 * k + i] = -v
                        s |= 1 << i
                block_signs[k] = s
            mx = xval[0]
            for i in range(1, 16):
                mx = c_max(mx, xval[i])
            L[:] = 0
            if mx < GROUP_MAX_EPS_IQ2_S:
                scales[ib] = 0
                continue
            scale = _search_16(xval, weight, waux, L, Laux, is_on_grid, is_on_grid_aux, grid, kmap, neighbours, mx,
                               terms)
            if scale < 0:
                scale = -scale
                for k in range(2):
                    block_signs[k] = (~block_signs[k]) & 0xFF
            for k in range(2):
                grid_index = _grid_lookup(kmap, _lattice_key(L, 8 * k))
                if grid_index < 0:
                    raise ValueError("ggml aborts: IQ2_S found a point not on the grid (GGML_ABORT)")
                i8 = 2 * ib + k
                y[ibl]["qs"][i8] = grid_index & 255
                y[ibl]["qh"][i8 // 4] |= (grid_index >> 8) << (2 * (i8 % 4))
                y[ibl]["qs"][QK_K // 8 + i8] = block_signs[k]
            if not (scale >= 0):
                raise ValueError("ggml aborts: GGML_ASSERT(scale >= 0) in quantize_row_iq2_s_impl")
            scales[ib] = scale
            max_scale = c_max(max_scale, scale)
        if max_scale == 0:
            continue
        d = max_scale / f32(31.0)
        y[ibl]["d"] = fp32_to_fp16(d * f32(0.9875))
        id_ = f32(1.0) / d
        for ib in range(QK_K // 16):
            l = nearest_int(f32(0.5) * (id_ * scales[ib] - f32(1.0)))
            l = c_max(0, c_min(15, l))
            if ib % 2 == 0:
                y[ibl]["scales"][ib // 2] = l
            else:
                y[ibl]["scales"][ib // 2] |= l << 4


@njit
def _quantize_iq2_s(x, imatrix, blocks, grid, kmap, neighbours):
    # mirrors quantize_iq2_s (ggml-quants.c)
    for r in range(x.shape[0]):
        _quantize_row_iq2_s(x[r], imatrix, blocks[r], grid, kmap, neighbours)


def quantize_iq2_s(x, imatrix, blocks):
    _quantize_iq2_s(x, imatrix, blocks, *search_tables("IQ2_S"))


def quantize_row_iq2_s_ref(x, blocks):
    # mirrors quantize_row_iq2_s_ref (ggml-quants.c): quantize_iq2_s on one row, without quant weights
    _quantize_iq2_s(x.reshape(1, -1), np.zeros(0, dtype=np.float32), blocks.reshape(1, -1),
                    *search_tables("IQ2_S"))


@njit
def dequantize_row_iq2_s(blocks, y):
    # mirrors dequantize_row_iq2_s (ggml-quants.c): index = qs | 2 bits of qh << 8; signs are qs[32:]
    o = 0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        qh = blocks[i]["qh"]
        for ib32 in range(QK_K // 32):
            sc = int(blocks[i]["scales"][ib32])
            db0 = d * (f32(0.5) + f32(sc & 0xF)) * f32(0.25)
            db1 = d * (f32(0.5) + f32(sc >> 4)) * f32(0.25)
            h = int(qh[ib32])
            for l in range(4):
                dl = db0 if l < 2 else db1
                g = int(qs[4 * ib32 + l]) | ((h << (8 - 2 * l)) & 0x300)
                signs = int(qs[QK_K // 8 + 4 * ib32 + l])
                for j in range(8):
                    y[o + j] = _apply_sign(dl * IQ2S_GRID_F32[g, j], signs, j)
                o += 8


# ---------------------------------------------------------------------------------------------------------------
# Dot products against Q8_K activations (ggml-cpu/quants.c, the *_generic functions).  Integer sums are exact, so
# only the float steps need C's order: per block d = x.d * y.d, sumf += d * bsum, and 0.125f * sumf at the end
# (grid magnitudes are 4x the dequantized values and the scales 2x: 2*ls+1 instead of 0.5+ls, times 0.25).

@njit
def _signed_dot8(grid_row, q8, o, signs):
    # sum_j grid[j] * q8[j] * (signs bit j ? -1 : 1), as int
    s = 0
    for j in range(8):
        v = int(grid_row[j]) * int(q8[o + j])
        s += -v if (signs >> j) & 1 else v
    return s


@njit
def vec_dot_iq2_xxs_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq2_xxs_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        d = F16_TO_F32[x[i]["d"]] * y[i]["d"]
        q2 = x[i]["qs"]
        q8 = y[i]["qs"]
        bsum = 0
        for ib32 in range(QK_K // 32):
            aux0 = int(q2[4 * ib32]) | (int(q2[4 * ib32 + 1]) << 16)
            aux1 = int(q2[4 * ib32 + 2]) | (int(q2[4 * ib32 + 3]) << 16)
            ls = 2 * (aux1 >> 28) + 1
            sumi = 0
            for l in range(4):
                signs = int(KSIGNS_IQ2XS[(aux1 >> (7 * l)) & 127])
                sumi += _signed_dot8(IQ2XXS_GRID[(aux0 >> (8 * l)) & 255], q8, 32 * ib32 + 8 * l, signs)
            bsum += sumi * ls
        sumf += d * f32(bsum)
    return f32(0.125) * sumf


@njit
def vec_dot_iq2_xs_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq2_xs_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        d = F16_TO_F32[x[i]["d"]] * y[i]["d"]
        q2 = x[i]["qs"]
        sc = x[i]["scales"]
        q8 = y[i]["qs"]
        bsum = 0
        for ib32 in range(QK_K // 32):
            ls1 = 2 * (int(sc[ib32]) & 0xF) + 1
            ls2 = 2 * (int(sc[ib32]) >> 4) + 1
            sumi1 = 0
            sumi2 = 0
            for l in range(4):
                q = int(q2[4 * ib32 + l])
                v = _signed_dot8(IQ2XS_GRID[q & 511], q8, 32 * ib32 + 8 * l, int(KSIGNS_IQ2XS[q >> 9]))
                if l < 2:
                    sumi1 += v
                else:
                    sumi2 += v
            bsum += sumi1 * ls1
            bsum += sumi2 * ls2
        sumf += d * f32(bsum)
    return f32(0.125) * sumf


@njit
def vec_dot_iq2_s_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq2_s_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        d = F16_TO_F32[x[i]["d"]] * y[i]["d"]
        qs = x[i]["qs"]
        qh = x[i]["qh"]
        q8 = y[i]["qs"]
        bsum = 0
        for ib32 in range(QK_K // 32):
            ls1 = 1 + 2 * (int(x[i]["scales"][ib32]) & 0xF)
            ls2 = 1 + 2 * (int(x[i]["scales"][ib32]) >> 4)
            h = int(qh[ib32])
            sumi1 = 0
            sumi2 = 0
            for l in range(4):
                g = int(qs[4 * ib32 + l]) | ((h << (8 - 2 * l)) & 0x300)
                v = _signed_dot8(IQ2S_GRID[g], q8, 32 * ib32 + 8 * l, int(qs[QK_K // 8 + 4 * ib32 + l]))
                if l < 2:
                    sumi1 += v
                else:
                    sumi2 += v
            bsum += ls1 * sumi1 + ls2 * sumi2
        sumf += d * f32(bsum)
    return f32(0.125) * sumf


# ---------------------------------------------------------------------------------------------------------------

FORMATS = [
    QuantFormat(
        name="IQ2_XXS", type_id=16, block_size=QK_K, block_dtype=BLOCK_IQ2_XXS, vec_dot_type="Q8_K",
        requires_imatrix=True, quantize=quantize_iq2_xxs, dequantize=dequantize_row_iq2_xxs,
        validate=validate_d_f16, vec_dot=vec_dot_iq2_xxs_q8_K,
        doc="groups of 8 on a 256-point lattice grid + 7 parity-completed sign bits, 4-bit scale per 32, "
            "2.0625 bpw"),
    QuantFormat(
        name="IQ2_XS", type_id=17, block_size=QK_K, block_dtype=BLOCK_IQ2_XS, vec_dot_type="Q8_K",
        requires_imatrix=True, quantize=quantize_iq2_xs, dequantize=dequantize_row_iq2_xs,
        validate=validate_d_f16, vec_dot=vec_dot_iq2_xs_q8_K,
        doc="groups of 8 on a 512-point lattice grid + 7 sign bits, 4-bit scale per 16, 2.3125 bpw"),
    QuantFormat(
        name="IQ2_S", type_id=22, block_size=QK_K, block_dtype=BLOCK_IQ2_S, vec_dot_type="Q8_K",
        quantize=quantize_iq2_s, quantize_ref=quantize_row_iq2_s_ref, dequantize=dequantize_row_iq2_s,
        validate=validate_d_f16, vec_dot=vec_dot_iq2_s_q8_K,
        doc="groups of 8 on a 1024-point lattice grid + 8 sign bits, 4-bit scale per 16, 2.5625 bpw"),
]
