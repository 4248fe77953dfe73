"""3-bit grid i-quants: IQ3_XXS (3.0625 bpw) and IQ3_S (3.4375 bpw), super-blocks of 256.

Weights are coded in groups of 4 magnitudes that must form a point of a fixed grid (256 or 512 of the 8^4
possible 4-vectors of odd values 1..15), plus one sign bit per weight, plus a 4-bit scale per 32 weights and an
F16 super-scale.  IQ3_XXS stores 7 sign bits per 8 weights (the 8th is implied: the number of negative signs is
made even by flipping the least important weight), IQ3_S stores all 8 and a 9th grid-index bit.

The quantizers (``quantize_row_iq3_xxs_impl``, ``quantize_row_iq3_s_impl``) try a range of scales; for each, every
4-group is rounded coordinate-wise and, if the point is off the grid, replaced by the best of its precomputed
nearest grid neighbours (``iq3_find_best_neighbour``, weighted squared error).  The search structures come from
``iq3_grids.iq3_search_tables`` (mirrors ``iq3xs_init_impl``).  ggml aborts (GGML_ASSERT) when every neighbour's
error is NaN/Inf (e.g. Inf weights from huge inputs); refimpl raises ValueError there.
"""
from __future__ import annotations

import numpy as np

from ..._jit import f32, f32_from_bits, f32_to_bits, nearest_int
from ...floats import F16_TO_F32, fp32_to_fp16
from ..iq_tables import IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS
from ..registry import QuantFormat
from .common import njit  # njit with the numpy error model: x/0 -> Inf as in C
from .iq3_grids import iq3_search_tables
from .common import add_nan_first, mul_nan_first, validate_d_f16

QK_K = 256
IQ3S_BLOCK_SIZE = 32
GROUP_MAX_EPS_IQ3_XXS = f32(1e-8)
FLT_MAX = f32(3.4028234663852886e38)

# block_iq3_xxs (ggml-common.h): F16 scale, 64 grid indices (one byte per 4 weights), then 8 little-endian uint32
# "scales_and_signs" (4 x 7 sign bits + a 4-bit scale in bits 28..31), one per 32 weights
BLOCK_IQ3_XXS = np.dtype([("d", "<u2"), ("qs", "u1", (3 * QK_K // 8,))])
# block_iq3_s (ggml-common.h): F16 scale, low 8 bits of 64 grid indices, their 9th bits, 256 sign bits,
# 8 4-bit scales (two per byte)
BLOCK_IQ3_S = np.dtype([("d", "<u2"), ("qs", "u1", (QK_K // 4,)), ("qh", "u1", (QK_K // 32,)),
                        ("signs", "u1", (QK_K // 8,)), ("scales", "u1", (QK_K // 64,))])

# Decoding tables as float32 [grid index, coordinate] (little-endian bytes of the uint32 entries)
IQ3XXS_GRID_F32 = IQ3XXS_GRID.view(np.uint8).reshape(-1, 4).astype(np.float32)
IQ3S_GRID_F32 = IQ3S_GRID.view(np.uint8).reshape(-1, 4).astype(np.float32)
KSIGNS = KSIGNS_IQ2XS.astype(np.int64)
KMASK = KMASK_IQ2XS.astype(np.int64)


@njit
def _c_max(a, b):
    # ggml's MAX(a, b) = ((a) > (b) ? (a) : (b)): a NaN in `b` wins, a NaN in `a` loses
    return a if a > b else b


@njit
def iq3_find_best_neighbour(kneighbors, noff, grid_values, xval, weight, o, scale, L):
    """mirrors iq3_find_best_neighbour (ggml-quants.c): among the neighbours listed at ``kneighbors[noff]``, the grid
    point minimising sum w*(scale*q - x)^2 over the 4 values at ``o``; writes its levels (q-1)/2 into ``L[o:o+4]``.
    ggml's GGML_ASSERT(grid_index >= 0) fires when no error is < FLT_MAX (all NaN/Inf): raise instead."""
    num_neighbors = int(kneighbors[noff])
    best_d2 = FLT_MAX
    grid_index = -1
    for j in range(1, num_neighbors + 1):
        gi = int(kneighbors[noff + j])
        d2 = f32(0.0)
        for i in range(4):
            q = grid_values[gi, i]
            diff = scale * q - xval[o + i]
            d2 += weight[o + i] * diff * diff
        if d2 < best_d2:
            best_d2 = d2
            grid_index = gi
    if grid_index < 0:
        raise ValueError("iq3_find_best_neighbour: no finite grid distance (ggml aborts on this input)")
    for i in range(4):
        L[o + i] = (int(grid_values[grid_index, i]) - 1) // 2
    return grid_index


@njit
def _search_block(xb, xbo, n, weight, waux, xval, L, Laux, is_on_grid, is_on_grid_aux, is_lo, is_hi,
                  grid_values, kmap, kneighbors, refine_all):
    """The common per-32 search of both IQ3 quantizers: try ``id = (15 + is*0.2)/max`` for is in [is_lo, is_hi],
    keep the best weighted least-squares scale, then re-round the off-grid groups with the final scale.
    ``xval`` already holds the magnitudes.  Returns the scale (L holds the levels)."""
    kMaxQ = 8
    mx = xval[0]
    for i in range(1, n):
        mx = _c_max(mx, xval[i])
    best = f32(0.0)
    scale = mx / f32(2 * kMaxQ - 1)
    for itry in range(is_lo, is_hi + 1):
        id = (f32(2 * kMaxQ - 1) + f32(itry) * f32(0.2)) / mx
        this_scale = f32(1.0) / id
        for k in range(n // 4):
            u = 0
            for i in range(4):
                l = nearest_int(f32(0.5) * (id * xval[4 * k + i] - f32(1.0)))
                l = max(0, min(kMaxQ - 1, l))
                Laux[4 * k + i] = l
                u |= l << (3 * i)
            grid_index = kmap[u]
            is_on_grid_aux[k] = True
            if grid_index < 0:
                is_on_grid_aux[k] = False
                iq3_find_best_neighbour(kneighbors, -grid_index - 1, grid_values, xval, waux, 4 * k, this_scale,
                                        Laux)
        sumqx = f32(0.0)
        sumq2 = f32(0.0)
        for i in range(n):
            w = weight[i]
            q = f32(2 * int(Laux[i]) + 1)
            sumqx += w * xval[i] * q
            sumq2 += w * q * q
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(n):
                L[i] = Laux[i]
            for k in range(n // 4):
                is_on_grid[k] = is_on_grid_aux[k]
    n_not_ongrid = 0
    for k in range(n // 4):
        if not is_on_grid[k]:
            n_not_ongrid += 1
    if n_not_ongrid > 0 and scale > 0:
        id = f32(1.0) / scale
        for k in range(n // 4):
            # IQ3_XXS re-rounds only the off-grid groups; IQ3_S (its `continue` commented out) all of them
            if is_on_grid[k] and not refine_all:
                continue
            u = 0
            for i in range(4):
                l = nearest_int(f32(0.5) * (id * xval[4 * k + i] - f32(1.0)))
                l = max(0, min(kMaxQ - 1, l))
                u |= l << (3 * i)
            grid_index = kmap[u]
            if grid_index < 0:
                grid_index = iq3_find_best_neighbour(kneighbors, -grid_index - 1, grid_values, xval, waux, 4 * k,
                                                     scale, L)
            for i in range(4):
                L[4 * k + i] = (int(grid_values[grid_index, i]) - 1) // 2
        sumqx = f32(0.0)
        sumq2 = f32(0.0)
        for i in range(n):
            w = weight[i]
            q = f32(2 * int(L[i]) + 1)
            sumqx += w * xval[i] * q
            sumq2 += w * q * q
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit
def _weights(xbl, xo, n, qw, qwo, has_qw, sigma2, weight, waux):
    if has_qw:
        for i in range(n):
            weight[i] = qw[qwo + i] * np.sqrt(sigma2 + xbl[xo + i] * xbl[xo + i])
    else:
        for i in range(n):
            weight[i] = xbl[xo + i] * xbl[xo + i]
    for i in range(n):
        waux[i] = np.sqrt(weight[i])


@njit
def _grid_index_of(L, o, kmap):
    u = 0
    for i in range(4):
        u |= int(L[o + i]) << (3 * i)
    grid_index = kmap[u]
    if grid_index < 0:
        raise ValueError("iq3 quantizer: point not on grid (ggml aborts: 'Oops: found point not on grid')")
    return grid_index


@njit
def quantize_row_iq3_xxs_impl(x, blocks, qw, has_qw, grid_values, kmap, kneighbors):
    # mirrors quantize_row_iq3_xxs_impl(256, ...) (ggml-quants.c) for one row: x (n,), blocks (n/256,)
    scales = np.zeros(QK_K // 32, dtype=np.float32)
    weight = np.zeros(32, dtype=np.float32)
    xval = np.zeros(32, dtype=np.float32)
    L = np.zeros(32, dtype=np.int64)
    Laux = np.zeros(32, dtype=np.int64)
    waux = np.zeros(32, dtype=np.float32)
    is_on_grid = np.zeros(8, dtype=np.bool_)
    is_on_grid_aux = np.zeros(8, dtype=np.bool_)
    block_signs = np.zeros(8, dtype=np.int64)
    q3 = np.zeros(QK_K // 4, dtype=np.uint8)
    scales_and_signs = np.zeros(QK_K // 32, dtype=np.uint32)
    for ibl in range(blocks.shape[0]):
        blk = blocks[ibl]
        blk["d"] = fp32_to_fp16(f32(0.0))
        q3[:] = 0
        scales_and_signs[:] = 0
        max_scale = f32(0.0)
        xo = QK_K * ibl
        sumx2 = f32(0.0)
        for i in range(QK_K):
            sumx2 += x[xo + i] * x[xo + i]
        sigma2 = f32(2.0) * sumx2 / f32(QK_K)
        for ib in range(QK_K // 32):
            xb = xo + 32 * ib
            _weights(x, xb, 32, qw, xb, has_qw, sigma2, weight, waux)
            for k in range(4):
                nflip = 0
                s = 0
                for i in range(8):
                    v = x[xb + 8 * k + i]
                    if v >= 0:
                        xval[8 * k + i] = v
                    else:
                        xval[8 * k + i] = -v
                        nflip += 1
                        s |= 1 << i
                if nflip % 2:
                    # odd number of negatives: flip the sign of the weight that costs least (w*x^2), so that
                    # the 8th sign is implied by parity
                    imin = 0
                    mn = weight[8 * k] * x[xb + 8 * k] * x[xb + 8 * k]
                    for i in range(1, 8):
                        ax = weight[8 * k + i] * x[xb + 8 * k + i] * x[xb + 8 * k + i]
                        if ax < mn:
                            mn = ax
                            imin = i
                    xval[8 * k + imin] = -xval[8 * k + imin]
                    s ^= 1 << imin
                block_signs[k] = s & 127
            mx = xval[0]
            for i in range(1, 32):
                mx = _c_max(mx, xval[i])
            L[:] = 0
            if mx < GROUP_MAX_EPS_IQ3_XXS:
                scales[ib] = f32(0.0)
                continue
            for k in range(8):
                is_on_grid[k] = True
            scale = _search_block(x, xb, 32, weight, waux, xval, L, Laux, is_on_grid, is_on_grid_aux, -15, 15,
                                  grid_values, kmap, kneighbors, False)
            if scale < 0:
                # "should never happen": flip the scale positive and the signs with it
                scale = -scale
                for k in range(4):
                    block_signs[k] = (~block_signs[k]) & 127
            for k in range(8):
                q3[8 * ib + k] = _grid_index_of(L, 4 * k, kmap)
            scales_and_signs[ib] = (block_signs[0] | (block_signs[1] << 7) | (block_signs[2] << 14)
                                    | (block_signs[3] << 21))
            if not scale >= 0:
                raise ValueError("quantize_row_iq3_xxs_impl: GGML_ASSERT(scale >= 0) fails (ggml aborts)")
            scales[ib] = scale
            max_scale = _c_max(max_scale, scale)

        qs = blk["qs"]
        if max_scale == 0:
            for j in range(3 * QK_K // 8):
                qs[j] = 0
            continue
        d = max_scale / f32(31.0)
        blk["d"] = fp32_to_fp16(d * f32(1.0125))  # ggml's "small improvement via this fudge factor"
        id = f32(1.0) / d
        for ib in range(QK_K // 32):
            l = nearest_int(f32(0.5) * (id * scales[ib] - f32(1.0)))
            l = max(0, min(15, l))
            scales_and_signs[ib] |= np.uint32(l << 28)
        for j in range(QK_K // 4):
            qs[j] = q3[j]
        for ib in range(QK_K // 32):
            v = int(scales_and_signs[ib])
            for b in range(4):
                qs[QK_K // 4 + 4 * ib + b] = (v >> (8 * b)) & 0xFF


@njit
def quantize_row_iq3_s_impl(x, blocks, qw, has_qw, grid_values, kmap, kneighbors):
    # mirrors quantize_row_iq3_s_impl(32, ...) (ggml-quants.c) for one row: x (n,), blocks (n/256,)
    block_size = IQ3S_BLOCK_SIZE
    bs4 = block_size // 4
    bs8 = block_size // 8
    scales = np.zeros(QK_K // block_size, dtype=np.float32)
    weight = np.zeros(block_size, dtype=np.float32)
    xval = np.zeros(block_size, dtype=np.float32)
    L = np.zeros(block_size, dtype=np.int64)
    Laux = np.zeros(block_size, dtype=np.int64)
    waux = np.zeros(block_size, dtype=np.float32)
    is_on_grid = np.zeros(bs4, dtype=np.bool_)
    is_on_grid_aux = np.zeros(bs4, dtype=np.bool_)
    block_signs = np.zeros(bs8, dtype=np.int64)
    for ibl in range(blocks.shape[0]):
        blk = blocks[ibl]
        qs = blk["qs"]
        qh = blk["qh"]
        signs = blk["signs"]
        qs[:] = 0
        qh[:] = 0
        signs[:] = 0
        blk["scales"][:] = 0
        blk["d"] = fp32_to_fp16(f32(0.0))
        # C advances its qs/signs pointers only for sub-blocks that are not all zero (the `continue` skips the
        # increments), so after a zero sub-block the following ones are stored shifted down: mirrored here.
        qs_pos = 0
        signs_pos = 0
        max_scale = f32(0.0)
        xo = QK_K * ibl
        sumx2 = f32(0.0)
        for i in range(QK_K):
            sumx2 += x[xo + i] * x[xo + i]
        sigma2 = f32(2.0) * sumx2 / f32(QK_K)
        for ib in range(QK_K // block_size):
            xb = xo + block_size * ib
            _weights(x, xb, block_size, qw, xb, has_qw, sigma2, weight, waux)
            for k in range(bs8):
                s = 0
                for i in range(8):
                    v = x[xb + 8 * k + i]
                    if v >= 0:
                        xval[8 * k + i] = v
                    else:
                        xval[8 * k + i] = -v
                        s |= 1 << i
                block_signs[k] = s
            mx = xval[0]
            for i in range(1, block_size):
                mx = _c_max(mx, xval[i])
            L[:] = 0
            if mx == 0:
                scales[ib] = f32(0.0)
                continue
            for k in range(bs4):
                is_on_grid[k] = False
            scale = _search_block(x, xb, block_size, weight, waux, xval, L, Laux, is_on_grid, is_on_grid_aux,
                                  -9, 9, grid_values, kmap, kneighbors, True)
            if scale < 0:
                scale = -scale
                for k in range(bs8):
                    block_signs[k] = (~block_signs[k]) & 0xFF
            for k in range(bs4):
                grid_index = _grid_index_of(L, 4 * k, kmap)
                qs[qs_pos + k] = grid_index & 255
                j = ib * bs4 + k
                qh[j // 8] |= (grid_index >> 8) << (j % 8)
            qs_pos += bs4
            for k in range(bs8):
                signs[signs_pos + k] = block_signs[k]
            signs_pos += bs8
            if not scale >= 0:
                raise ValueError("quantize_row_iq3_s_impl: GGML_ASSERT(scale >= 0) fails (ggml aborts)")
            scales[ib] = scale
            max_scale = _c_max(max_scale, scale)

        if max_scale == 0:
            continue
        d = max_scale / f32(31.0)
        blk["d"] = fp32_to_fp16(d * f32(1.033))
        id = f32(1.0) / d
        sc = blk["scales"]
        for ib in range(0, QK_K // block_size, 2):
            l1 = nearest_int(f32(0.5) * (id * scales[ib] - f32(1.0)))
            l1 = max(0, min(15, l1))
            l2 = nearest_int(f32(0.5) * (id * scales[ib + 1] - f32(1.0)))
            l2 = max(0, min(15, l2))
            sc[ib // 2] = l1 | (l2 << 4)


@njit
def _quantize_rows_xxs(x, imatrix, blocks, grid_values, kmap, kneighbors):
    has_qw = imatrix.size > 0
    for row in range(x.shape[0]):
        quantize_row_iq3_xxs_impl(x[row], blocks[row], imatrix, has_qw, grid_values, kmap, kneighbors)


@njit
def _quantize_rows_s(x, imatrix, blocks, grid_values, kmap, kneighbors):
    has_qw = imatrix.size > 0
    for row in range(x.shape[0]):
        quantize_row_iq3_s_impl(x[row], blocks[row], imatrix, has_qw, grid_values, kmap, kneighbors)


_GRID_VALUES = {}


def _quantizer_grid(grid_size):
    """The quantizer's grid as float32 [index, coordinate] (values 1..15, exact), with kmap and kneighbors."""
    grid, kmap, kneighbors = iq3_search_tables(grid_size)
    if grid_size not in _GRID_VALUES:
        _GRID_VALUES[grid_size] = grid.view(np.uint8).reshape(-1, 4).astype(np.float32)
    return _GRID_VALUES[grid_size], kmap, kneighbors


def quantize_iq3_xxs(x, imatrix, blocks):
    # mirrors quantize_iq3_xxs (ggml-quants.c); the imatrix is optional
    _quantize_rows_xxs(x, imatrix, blocks, *_quantizer_grid(256))


def quantize_row_iq3_xxs_ref(x, blocks):
    # mirrors quantize_row_iq3_xxs_ref (ggml-quants.c) = quantize_row_iq3_xxs_impl(256, x, y, k, NULL)
    _quantize_rows_xxs(x.reshape(1, -1), np.zeros(0, np.float32), blocks.reshape(1, -1), *_quantizer_grid(256))


def quantize_iq3_s(x, imatrix, blocks):
    # mirrors quantize_iq3_s (ggml-quants.c); the imatrix is optional
    _quantize_rows_s(x, imatrix, blocks, *_quantizer_grid(512))


def quantize_row_iq3_s_ref(x, blocks):
    # mirrors quantize_row_iq3_s_ref (ggml-quants.c) = quantize_iq3_s(x, y, 1, k, NULL)
    _quantize_rows_s(x.reshape(1, -1), np.zeros(0, np.float32), blocks.reshape(1, -1), *_quantizer_grid(512))


# C's `v * (sign bit ? -1.f : 1.f)` is compiled to a sign flip (the goldens show NaNs changing sign, which a real
# multiply by -1 would not do on x86).  refimpl flips the sign bit directly, branch-free: SIGN_XOR[s, j] is
# 0x80000000 where bit j of the sign byte s is set.
SIGN_XOR = np.array([[0x80000000 if (s >> j) & 1 else 0 for j in range(8)] for s in range(256)], dtype=np.uint32)


@njit
def _signed(v, xor_mask):
    return f32_from_bits(f32_to_bits(v) ^ xor_mask)


@njit
def dequantize_row_iq3_xxs(blocks, y):
    # mirrors dequantize_row_iq3_xxs (ggml-quants.c)
    grid = IQ3XXS_GRID_F32
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        o = i * QK_K
        for ib32 in range(QK_K // 32):
            sb = QK_K // 4 + 4 * ib32
            aux32 = int(qs[sb]) | (int(qs[sb + 1]) << 8) | (int(qs[sb + 2]) << 16) | (int(qs[sb + 3]) << 24)
            db = d * (f32(0.5) + f32(aux32 >> 28)) * f32(0.5)
            for l in range(4):
                signs = KSIGNS[(aux32 >> (7 * l)) & 127]  # 7 stored bits -> 8 with even parity
                g1 = int(qs[8 * ib32 + 2 * l])
                g2 = int(qs[8 * ib32 + 2 * l + 1])
                for j in range(4):
                    y[o + j] = _signed(db * grid[g1, j], SIGN_XOR[signs, j])
                    y[o + j + 4] = _signed(db * grid[g2, j], SIGN_XOR[signs, j + 4])
                o += 8


@njit
def dequantize_row_iq3_s(blocks, y):
    # mirrors dequantize_row_iq3_s (ggml-quants.c)
    grid = IQ3S_GRID_F32
    for i in range(blocks.shape[0]):
        blk = blocks[i]
        d = F16_TO_F32[blk["d"]]
        qs = blk["qs"]
        qh = blk["qh"]
        signs = blk["signs"]
        sc = blk["scales"]
        o = i * QK_K
        for ib32 in range(0, QK_K // 32, 2):
            s = int(sc[ib32 // 2])
            for half in range(2):
                db = d * f32(1 + 2 * ((s >> (4 * half)) & 0xF))
                h = int(qh[ib32 + half])
                q0 = 8 * (ib32 + half)
                s0 = 4 * (ib32 + half)
                for l in range(4):
                    g1 = int(qs[q0 + 2 * l]) | ((h << (8 - 2 * l)) & 256)
                    g2 = int(qs[q0 + 2 * l + 1]) | ((h << (7 - 2 * l)) & 256)
                    sg = int(signs[s0 + l])
                    for j in range(4):
                        y[o + j] = _signed(db * grid[g1, j], SIGN_XOR[sg, j])
                        y[o + j + 4] = _signed(db * grid[g2, j], SIGN_XOR[sg, j + 4])
                    o += 8


# Integer decoding grids for the dot products (bytes of the ggml-common.h tables)
IQ3XXS_GRID_I64 = IQ3XXS_GRID.view(np.uint8).reshape(-1, 4).astype(np.int64)
IQ3S_GRID_I64 = IQ3S_GRID.view(np.uint8).reshape(-1, 4).astype(np.int64)


@njit
def vec_dot_iq3_xxs_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq3_xxs_q8_K_generic (ggml-cpu/quants.c): exact integer sums per super-block, scaled
    # by (2*ls + 1), then one float multiply-add per super-block and a final * 0.25
    grid = IQ3XXS_GRID_I64
    sumf = f32(0.0)
    for i in range(n // QK_K):
        d = mul_nan_first(F16_TO_F32[x[i]["d"]], y[i]["d"])
        qs = x[i]["qs"]
        q8 = y[i]["qs"]
        bsum = 0
        for ib32 in range(QK_K // 32):
            sb = QK_K // 4 + 4 * ib32
            aux32 = int(qs[sb]) | (int(qs[sb + 1]) << 8) | (int(qs[sb + 2]) << 16) | (int(qs[sb + 3]) << 24)
            ls = 2 * (aux32 >> 28) + 1
            sumi = 0
            for l in range(4):
                g1 = int(qs[8 * ib32 + 2 * l])
                g2 = int(qs[8 * ib32 + 2 * l + 1])
                signs = KSIGNS[(aux32 >> (7 * l)) & 127]
                o = 32 * ib32 + 8 * l
                for j in range(4):
                    p1 = grid[g1, j] * int(q8[o + j])
                    p2 = grid[g2, j] * int(q8[o + j + 4])
                    sumi += -p1 if signs & KMASK[j] else p1
                    sumi += -p2 if signs & KMASK[j + 4] else p2
            bsum += sumi * ls
        sumf = add_nan_first(sumf, d * f32(bsum))
    return f32(0.25) * sumf


@njit
def vec_dot_iq3_s_q8_K(n, x, y):
    # mirrors ggml_vec_dot_iq3_s_q8_K_generic (ggml-cpu/quants.c)
    grid = IQ3S_GRID_I64
    sumf = f32(0.0)
    for i in range(n // QK_K):
        d = mul_nan_first(F16_TO_F32[x[i]["d"]], y[i]["d"])
        qs = x[i]["qs"]
        qh = x[i]["qh"]
        signs = x[i]["signs"]
        sc = x[i]["scales"]
        q8 = y[i]["qs"]
        bsum = 0
        for ib32 in range(QK_K // 32):
            s = int(sc[ib32 // 2])
            ls = 2 * ((s >> (4 * (ib32 % 2))) & 0xF) + 1
            h = int(qh[ib32])
            sumi = 0
            for l in range(4):
                g1 = int(qs[8 * ib32 + 2 * l]) | ((h << (8 - 2 * l)) & 256)
                g2 = int(qs[8 * ib32 + 2 * l + 1]) | ((h << (7 - 2 * l)) & 256)
                sg = int(signs[4 * ib32 + l])
                o = 32 * ib32 + 8 * l
                for j in range(4):
                    p1 = grid[g1, j] * int(q8[o + j])
                    p2 = grid[g2, j] * int(q8[o + j + 4])
                    sumi += -p1 if sg & KMASK[j] else p1
                    sumi += -p2 if sg & KMASK[j + 4] else p2
            bsum += sumi * ls
        sumf = add_nan_first(sumf, d * f32(bsum))
    return sumf


FORMATS = [
    QuantFormat(
        name="IQ3_XXS", type_id=18, block_size=QK_K, block_dtype=BLOCK_IQ3_XXS, vec_dot_type="Q8_K",
        quantize=quantize_iq3_xxs, quantize_ref=quantize_row_iq3_xxs_ref, dequantize=dequantize_row_iq3_xxs,
        validate=validate_d_f16, vec_dot=vec_dot_iq3_xxs_q8_K,
        doc="3.0625 bpw: 4-value groups on a 256-point grid, 7 sign bits per 8 (parity), 4-bit scales per 32"),
    QuantFormat(
        name="IQ3_S", type_id=21, block_size=QK_K, block_dtype=BLOCK_IQ3_S, vec_dot_type="Q8_K",
        quantize=quantize_iq3_s, quantize_ref=quantize_row_iq3_s_ref, dequantize=dequantize_row_iq3_s,
        validate=validate_d_f16, vec_dot=vec_dot_iq3_s_q8_K,
        doc="3.4375 bpw: 4-value groups on a 512-point grid, one sign bit per weight, 4-bit scales per 32"),
]
