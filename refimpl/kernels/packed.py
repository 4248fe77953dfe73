"""Packed weights: a layout prepared once at load time for the decode and prompt paths (llama.cpp's ``REPACK``).

The row dots (refimpl.kernels.rowdot) read the weights as the file holds them.  That layout costs instructions the
arithmetic does not need: Q4_0's 18-byte blocks give one 16-byte load per row and block, IQ4_XS rebuilds its 6-bit
scales and reduces eight sub-block sums per row one by one, Q4_K unpacks its 12 scale bytes and shuffles every
nibble into lane order.  On this 2-core machine those kernels were compute-bound below the memory's read speed
(in cache, 2 threads: Q4_K / Q4_0 ~23 GB/s, IQ4_XS ~14 GB/s, against ~30 GB/s of DRAM).  llama.cpp's CPU backend
copies such weights into interleaved blocks of several rows when it loads a model (ggml-cpu/repack.cpp:
block_q4_0x8, block_q4_Kx8, block_iq4_nlx8).  Here the same idea, for ``GROUP`` = 8 rows:

* **rows in lanes** (Q4_0, Q8_0, IQ4_NL, IQ4_XS, Q2_K): each 4-byte chunk of the 8 rows' levels side by side, so one
  VNNI ``vpdpbusd`` multiplies 4 levels of each of 8 rows (x 2 chunks in 512 bits) by the activation's chunk
  broadcast to the rows' lanes; a block's 8 integer sums come out in the 8 lanes of one vector with no
  transposition, and the float part runs for the 8 rows as one <8 x float>, each lane its row's own operations in
  the reference's order (so its bits);
* **rows apart, scales ready** (Q3_K, Q4_K, Q5_K): the float part keeps eight lanes per row (aux32[l] of the C),
  so the rows stay apart; each row's nibbles (and high bits) are stored in the lanes' order (no shuffle at run
  time), Q3_K/Q4_K/Q5_K's 6-bit scales (and mins) as bytes, and the rows' d / dmin as vectors.

A packed matrix is (rows / GROUP, blocks per row) group blocks of ``gbytes`` bytes.  Only the fast layer reads it;
the reference layer and every other path keep the file's layout (WeightMatrix.blocks).  ``pack`` is plain loops
(tests/test_kernels_packed.py unpacks the rows-in-lanes layouts back to the file's bytes, and compares every
packed dot and tile with the reference vec_dot of each row, bit for bit, on hostile blocks).  Where the host lacks
AVX-512 VNNI ``PACKED`` is empty and the row dots serve.

Reading order: pack_q4_0 (the layout), _q4_0_block (the dot over it), _make_group_dot, PACKED; the drivers are
refimpl.kernels.drivers.matmul_packed / matmul_group_packed / matmul_packed_tiles.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit
from ..quant.formats.kquants import _q3_K_scales
from .rowdot import AVAILABLE, VNNI

GROUP = 8           # rows per packed group (ggml-cpu/repack.cpp's x8 layouts)

# the byte layout of one group block of each format (offsets in bytes)
Q4_0_GBYTES = 8 * 18            # qs chunks 0..1 of 8 rows @0 (64), chunks 2..3 @64 (64), d[8] f16 @128
Q8_0_GBYTES = 8 * 34            # levels, 4 vectors of (chunk, row) @0 (256), d[8] f16 @256
IQ4_XS_GBYTES = 8 * 136 + 16    # per sub-block ib: qs @128 ib (as Q4_0's), ls-32[ib][row] int8 @1024, d[8] @1088
Q2_K_GBYTES = 8 * 84            # levels of run k @256 k (rows in lanes), scales[sub-block][row] @512, d @640, dmin @656
Q3_K_GBYTES = 8 * 114           # qs of row r @64 r, hmask @512 + 32 r (lane order), scales - 32 @768 + 16 r, d @896
Q4_K_GBYTES = 8 * 144 + 32      # qs of row r @128 r (lane order), scales/mins bytes of row r @1024 + 16 r,
                                # d[8] f16 @1152, dmin[8] f16 @1168
Q5_K_GBYTES = 8 * 176 + 32      # as Q4_K with row r's 32 qh bytes (lane order) @1024 + 32 r: scales/mins @1280 + 16 r,
                                # d[8] @1408, dmin[8] @1424

PACKED: dict = {}   # ggml type name -> PackedFormat


@njit
def _interleave_chunks(src16, s_off, dst32, d_off, r, n_chunks):
    # row r's n_chunks chunks of 4 bytes at byte s_off of src16 (a row's bytes as uint16) into a group's
    # rows-in-lanes slot at byte d_off of dst32 (a group's bytes as uint32): chunk c of row r at 32 c + 4 r (the 8
    # rows' chunk c side by side, 32 bytes; a 64-byte vector holds chunks c and c + 1).  Moved as 32-bit words
    # from two 16-bit loads (the offsets here are even, not always multiples of 4): a byte at a time made packing
    # a 110M model's weights a fifth of a second of its first prompt
    s16, d32 = s_off // 2, d_off // 4
    for c in range(n_chunks):
        dst32[d32 + 8 * c + r] = np.uint32(src16[s16 + 2 * c]) | (np.uint32(src16[s16 + 2 * c + 1]) << np.uint32(16))


@njit
def _deinterleave_chunks(src, s_off, dst, d_off, r, n_chunks):
    for c in range(n_chunks):
        for b in range(4):
            dst[d_off + 4 * c + b] = src[s_off + 32 * c + 4 * r + b]


@njit
def _lane_ordered_runs(src, s_off, dst32, d_off, n_runs):
    # n_runs runs of 32 bytes, each in LANE_ORDER: byte p = 4l + k of a run = the source's byte LANE_ORDER[p] =
    # 8k + l of that run; written as the 32-bit word l (dst32: the group's bytes as uint32, d_off in bytes)
    for k in range(n_runs):
        s = s_off + 32 * k
        d = d_off // 4 + 8 * k
        for l in range(8):
            dst32[d + l] = (np.uint32(src[s + l]) | (np.uint32(src[s + 8 + l]) << np.uint32(8))
                            | (np.uint32(src[s + 16 + l]) << np.uint32(16))
                            | (np.uint32(src[s + 24 + l]) << np.uint32(24)))


@njit
def _copy2(src, s_off, dst, d_off):
    # one F16 (two bytes)
    dst[d_off] = src[s_off]
    dst[d_off + 1] = src[s_off + 1]


@njit(parallel=True)
def pack_q4_0(raw):
    """(rows, nb * 18) block_q4_0 bytes -> (rows / 8, nb * 144) group blocks.  Group block of rows 8g..8g+7,
    block i: the 64 bytes @0 hold chunks 0 and 1 (qs bytes 0..3 and 4..7) of rows 0..7, 4 bytes each, in the
    order (chunk, row); @64 the same for chunks 2 and 3; @128 the 8 rows' d.  A byte's low nibble is a level of
    the block's first half, its high nibble the level 16 further, so the low nibbles of @0 are levels 0..7 of
    each row and its high nibbles levels 16..23: two <64 x u8> level vectors per 64 bytes."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 18
    out = np.empty((rows // GROUP, nb * Q4_0_GBYTES), np.uint8)
    raw16, out32 = raw.view(np.uint16), out.view(np.uint32)     # see _interleave_chunks
    for g in prange(rows // GROUP):     # groups in parallel (a 1B model: 0.6 GB at load)
        for i in range(nb):
            o = i * Q4_0_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                _interleave_chunks(raw16[GROUP * g + r], 18 * i + 2, out32[g], o, r, 4)
                _copy2(src, 18 * i, out[g], o + 128 + 2 * r)
    return out


@njit
def unpack_q4_0(packed, rows):
    nb = packed.shape[1] // Q4_0_GBYTES
    raw = np.empty((rows, nb * 18), np.uint8)
    for g in range(rows // GROUP):
        for i in range(nb):
            o = i * Q4_0_GBYTES
            for r in range(GROUP):
                dst = raw[GROUP * g + r]
                _deinterleave_chunks(packed[g], o, dst, 18 * i + 2, r, 4)
                _copy2(packed[g], o + 128 + 2 * r, dst, 18 * i)
    return raw


@njit(parallel=True)
def pack_q8_0(raw):
    """(rows, nb * 34) block_q8_0 bytes -> (rows / 8, nb * 272) group blocks: the 8 rows' 32 levels as 4 vectors of
    64 bytes, vector k holding chunk 2k (levels 8k..8k+3) of rows 0..7 then chunk 2k + 1, 4 bytes each (the
    layout Q4_0's nibbles unpack to); then the rows' d @256."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 34
    out = np.empty((rows // GROUP, nb * Q8_0_GBYTES), np.uint8)
    raw16, out32 = raw.view(np.uint16), out.view(np.uint32)     # see _interleave_chunks
    for g in prange(rows // GROUP):     # groups in parallel (a 1B model: 0.6 GB at load)
        for i in range(nb):
            o = i * Q8_0_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                _interleave_chunks(raw16[GROUP * g + r], 34 * i + 2, out32[g], o, r, 8)
                _copy2(src, 34 * i, out[g], o + 256 + 2 * r)
    return out


@njit
def unpack_q8_0(packed, rows):
    nb = packed.shape[1] // Q8_0_GBYTES
    raw = np.empty((rows, nb * 34), np.uint8)
    for g in range(rows // GROUP):
        for i in range(nb):
            o = i * Q8_0_GBYTES
            for r in range(GROUP):
                dst = raw[GROUP * g + r]
                _deinterleave_chunks(packed[g], o, dst, 34 * i + 2, r, 8)
                _copy2(packed[g], o + 256 + 2 * r, dst, 34 * i)
    return raw


@njit(parallel=True)
def pack_iq4_xs(raw):
    """(rows, nb * 136) block_iq4_xs bytes -> (rows / 8, nb * 1104) group blocks: per sub-block ib (32 levels, 16
    qs bytes) the 8 rows' nibbles as Q4_0's (@128 ib), then the sub-blocks' scales as ggml computes them,
    ls - 32 = ((scales_l >> 4 (ib % 2)) & 15 | ((scales_h >> 2 ib) & 3) << 4) - 32, as int8 in the order (ib, row)
    @1024, then the rows' d @1088."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 136
    out = np.empty((rows // GROUP, nb * IQ4_XS_GBYTES), np.uint8)
    raw16, out32 = raw.view(np.uint16), out.view(np.uint32)     # see _interleave_chunks
    for g in prange(rows // GROUP):     # groups in parallel (a 1B model: 0.6 GB at load)
        for i in range(nb):
            o = i * IQ4_XS_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                s = 136 * i
                scales_h = np.int64(src[s + 2]) | (np.int64(src[s + 3]) << 8)
                for ib in range(8):
                    _interleave_chunks(raw16[GROUP * g + r], s + 8 + 16 * ib, out32[g], o + 128 * ib, r, 4)
                    low = (np.int64(src[s + 4 + ib // 2]) >> (4 * (ib % 2))) & 0xF
                    ls = (low | (((scales_h >> (2 * ib)) & 3) << 4)) - 32
                    out[g, o + 1024 + GROUP * ib + r] = np.uint8(ls & 0xFF)
                _copy2(src, s, out[g], o + 1088 + 2 * r)
    return out


@njit
def unpack_iq4_xs(packed, rows):
    nb = packed.shape[1] // IQ4_XS_GBYTES
    raw = np.empty((rows, nb * 136), np.uint8)
    for g in range(rows // GROUP):
        for i in range(nb):
            o = i * IQ4_XS_GBYTES
            for r in range(GROUP):
                dst = raw[GROUP * g + r]
                s = 136 * i
                scales_h = 0
                for ib in range(8):
                    _deinterleave_chunks(packed[g], o + 128 * ib, dst, s + 8 + 16 * ib, r, 4)
                    ls = (np.int64(packed[g, o + 1024 + GROUP * ib + r]) + 32) & 0x3F
                    scales_h |= (ls >> 4) << (2 * ib)
                    if ib % 2 == 0:
                        dst[s + 4 + ib // 2] = ls & 0xF
                    else:
                        dst[s + 4 + ib // 2] |= (ls & 0xF) << 4
                dst[s + 2] = scales_h & 0xFF
                dst[s + 3] = scales_h >> 8
                _copy2(packed[g], o + 1088 + 2 * r, dst, s)
    return raw


@njit
def _q4_K_scale_min(sc, s, j):
    # get_scale_min_k4 (ggml-quants.c) of sub-block j from the 12 scale bytes at sc[s:]
    if j < 4:
        return sc[s + j] & 63, sc[s + j + 4] & 63
    return (sc[s + j + 4] & 0xF) | ((sc[s + j - 4] >> 6) << 4), (sc[s + j + 4] >> 4) | ((sc[s + j] >> 6) << 4)


@njit
def _q4_K_scale_min_bytes(src, s_off, dst, d_off):
    # the 8 scales and 8 mins of the 12 bytes at src[s_off:] as bytes: scales 0..3, mins 0..3, scales 4..7, mins 4..7
    for j in range(8):
        sc, m = _q4_K_scale_min(src, s_off, j)
        dst[d_off + 8 * (j // 4) + j % 4] = sc
        dst[d_off + 8 * (j // 4) + 4 + j % 4] = m


@njit(parallel=True)
def pack_q4_K(raw):
    """(rows, nb * 144) block_q4_K bytes -> (rows / 8, nb * 1184) group blocks: row r's 128 qs bytes @128 r, each
    32-byte run in LANE_ORDER (byte p = the file's byte LANE_ORDER[p] of the run: its low nibbles are then the
    lane-packed levels of sub-block 2k, its high nibbles those of 2k + 1); row r's scales and mins
    (get_scale_min_k4) as bytes @1024 + 16 r: scales 0..3, mins 0..3, scales 4..7, mins 4..7; the rows' d @1152
    and dmin @1168."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 144
    out = np.empty((rows // GROUP, nb * Q4_K_GBYTES), np.uint8)
    out32 = out.view(np.uint32)     # see _lane_ordered_runs
    for g in prange(rows // GROUP):     # groups in parallel (a 1B model: 0.6 GB at load)
        for i in range(nb):
            o = i * Q4_K_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                s = 144 * i
                _lane_ordered_runs(src, s + 16, out32[g], o + 128 * r, 4)
                _q4_K_scale_min_bytes(src, s + 4, out[g], o + 1024 + 16 * r)
                _copy2(src, s, out[g], o + 1152 + 2 * r)
                _copy2(src, s + 2, out[g], o + 1168 + 2 * r)
    return out


@njit
def pack_q8_K_sums(blocks):
    """Q8_K activation blocks (tokens, nb), in place: bsums[k] = the sum of qs[16 k .. 16 k + 15], as
    quantize_row_q8_K computes them.  The packed IQ4_XS dots take a sub-block's activation sum from bsums (the
    reference vec_dot does not read them), so they are made sure of here, whoever made the blocks."""
    for t in range(blocks.shape[0]):
        for i in range(blocks.shape[1]):
            qs = blocks[t, i]["qs"]
            for k in range(16):
                acc = 0
                for j in range(16):
                    acc += qs[16 * k + j]
                blocks[t, i]["bsums"][k] = acc


@njit(parallel=True)
def pack_q2_K(raw):
    """(rows, nb * 84) block_q2_K bytes -> (rows / 8, nb * 672) group blocks: per half k of qs (32 bytes) the 8
    rows' chunks of 4 bytes side by side as Q4_0's (@256 k: 64 bytes per chunk pair), every 2-bit field of a byte
    then being a level of the same row in the same lane; the 16 scale bytes of the rows in the order (sub-block,
    row) @512; d[8] @640, dmin[8] @656."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 84
    out = np.empty((rows // GROUP, nb * Q2_K_GBYTES), np.uint8)
    raw16, out32 = raw.view(np.uint16), out.view(np.uint32)     # see _interleave_chunks
    for g in prange(rows // GROUP):     # groups in parallel
        for i in range(nb):
            o = i * Q2_K_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                s = 84 * i
                for k in range(2):
                    _interleave_chunks(raw16[GROUP * g + r], s + 16 + 32 * k, out32[g], o + 256 * k, r, 8)
                for j in range(16):
                    out[g, o + 512 + GROUP * j + r] = src[s + j]
                _copy2(src, s + 80, out[g], o + 640 + 2 * r)
                _copy2(src, s + 82, out[g], o + 656 + 2 * r)
    return out


@njit(parallel=True)
def pack_q3_K(raw):
    """(rows, nb * 110) block_q3_K bytes -> (rows / 8, nb * 912) group blocks: row r's 64 qs bytes @64 r and its 32
    hmask bytes @512 + 32 r, each 32-byte run in LANE_ORDER (a level is built from the bytes at one position);
    its 16 scales as ggml's kmask shuffle gives them, minus 32, as int8 @768 + 16 r; the rows' d @896."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 110
    out = np.empty((rows // GROUP, nb * Q3_K_GBYTES), np.uint8)
    out32 = out.view(np.uint32)     # see _lane_ordered_runs
    for g in prange(rows // GROUP):     # groups in parallel
        scales = np.zeros(16, np.int8)
        for i in range(nb):
            o = i * Q3_K_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                s = 110 * i
                _lane_ordered_runs(src, s + 32, out32[g], o + 64 * r, 2)
                _lane_ordered_runs(src, s, out32[g], o + 512 + 32 * r, 1)
                _q3_K_scales(src[s + 96:s + 108], scales)
                for j in range(16):
                    out[g, o + 768 + 16 * r + j] = np.uint8((np.int64(scales[j]) - 32) & 0xFF)
                _copy2(src, s + 108, out[g], o + 896 + 2 * r)
    return out


@njit(parallel=True)
def pack_q5_K(raw):
    """(rows, nb * 176) block_q5_K bytes -> (rows / 8, nb * 1440) group blocks: pack_q4_K's layout with each row's
    32 qh bytes in LANE_ORDER @1024 + 32 r (bit 2k of qh byte l is the fifth bit of level l of sub-block 2k, bit
    2k + 1 that of sub-block 2k + 1), so scales/mins @1280 + 16 r, d @1408, dmin @1424."""
    rows = raw.shape[0]
    nb = raw.shape[1] // 176
    out = np.empty((rows // GROUP, nb * Q5_K_GBYTES), np.uint8)
    out32 = out.view(np.uint32)     # see _lane_ordered_runs
    for g in prange(rows // GROUP):     # groups in parallel
        for i in range(nb):
            o = i * Q5_K_GBYTES
            for r in range(GROUP):
                src = raw[GROUP * g + r]
                s = 176 * i
                _lane_ordered_runs(src, s + 48, out32[g], o + 128 * r, 4)
                _lane_ordered_runs(src, s + 16, out32[g], o + 1024 + 32 * r, 1)
                _q4_K_scale_min_bytes(src, s + 4, out[g], o + 1280 + 16 * r)
                _copy2(src, s, out[g], o + 1408 + 2 * r)
                _copy2(src, s + 2, out[g], o + 1424 + 2 * r)
    return out


class PackedFormat:
    """A packed layout of one ggml type: ``pack(raw rows) -> group blocks``, the group dot (``dot(w, g, y, out)``:
    out[8g + k] = vec_dot(n, row 8g + k, y) for the 8 rows of group g) and the tile (``tile(w, g, y, t0, out)``:
    the same for tokens t0 .. t0 + tile_tokens - 1 of y, out (tokens, rows)).  ``block_dtype`` views a group
    block as one record (the drivers take (groups, nb) arrays of it)."""

    def __init__(self, name, gbytes, pack, dot, tile, tile_tokens, pack_acts=None):
        self.name, self.gbytes, self.pack, self.dot, self.tile, self.tile_tokens = \
            name, gbytes, pack, dot, tile, tile_tokens
        # the activations' layout for these dots (in place on (tokens, nb) blocks), as FastKernels.pack_acts
        self.pack_acts = pack_acts
        self.block_dtype = np.dtype([("b", np.uint8, (gbytes,))])

    def packed(self, raw_rows: np.ndarray) -> np.ndarray:
        """The (groups, nb) group-block array of raw (rows, row bytes) weights (rows a multiple of GROUP)."""
        p = self.pack(np.ascontiguousarray(raw_rows))
        return p.reshape(-1).view(self.block_dtype).reshape(p.shape[0], -1)


if AVAILABLE and VNNI:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from .lanes import _maddwd, _splat_float, _vec
    from .rowdot import (F8, F32, I8, _add_nan_first, _at, _c32, _f16, _halves8, _load, _maddubs512, _maddwd512,
                         _mul_nan_first, _over_blocks, _row_sums_vec, _SCALE_LANE)

    V16 = _vec(32, 16)
    F16V8 = ir.VectorType(ir.HalfType(), 8)

    def _dpbusd512(builder, acc, a_u8, b_i8):
        # VNNI vpdpbusd on 512 bits: acc + sums of four adjacent a[j] * b[j] (a unsigned, b signed): exact
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16, [V16, V16, V16]),
                                            "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, [acc, builder.bitcast(a_u8, V16), builder.bitcast(b_i8, V16)])

    def _both_halves(builder, v32):
        # a <32 x i8> in both 32-byte halves of a 512-bit vector, seen as 32 words (for per-half word shifts)
        return builder.bitcast(builder.shuffle_vector(v32, v32, ir.Constant(_vec(32, 64), list(range(32)) * 2)),
                               _vec(16, 32))

    def _bit_fields(builder, words, shift_lo, shift_hi, mask):
        # the bytes of ``words`` (<32 x i16>) shifted right by shift_lo (low 32 bytes) / shift_hi (high 32 bytes),
        # then & mask: one field of every byte, a neighbour byte's bits masked off (x86 has no byte shifts)
        shifted = builder.lshr(words, ir.Constant(_vec(16, 32), [shift_lo] * 16 + [shift_hi] * 16))
        return builder.and_(builder.bitcast(shifted, _vec(8, 64)), ir.Constant(_vec(8, 64), [mask] * 64))

    def _f16x8(builder, ptr, off):
        # 8 halves at byte off, widened (vcvtph2ps: ggml_compute_fp16_to_fp32's bits)
        return builder.fpext(_load(builder, ptr, off, F16V8), F8)

    def _chunk_pairs(builder, ptr, off):
        # the 32 activation levels at byte off as the 4 vectors the rows-in-lanes dots multiply: vector k holds
        # chunk 2k (4 bytes) in lanes 0..7 and chunk 2k + 1 in lanes 8..15 (one per row)
        y = _load(builder, ptr, off, _vec(32, 8))
        return [builder.shuffle_vector(y, y, ir.Constant(V16, [2 * k] * 8 + [2 * k + 1] * 8)) for k in range(4)]

    def _levels_rows_in_lanes(builder, gb, off, table=None):
        # the 4 level vectors (u8) of a 128-byte rows-in-lanes slot at gb + off: low nibbles of @0 (chunks 0, 1),
        # of @64 (2, 3), high nibbles of @0 (4, 5), of @64 (6, 7); through a pshufb table if one is given
        m = ir.Constant(_vec(8, 64), [15] * 64)
        four = ir.Constant(_vec(8, 64), [4] * 64)
        p0, p1 = _load(builder, gb, off, _vec(8, 64)), _load(builder, gb, off + 64, _vec(8, 64))
        levels = [builder.and_(p0, m), builder.and_(p1, m), builder.lshr(p0, four), builder.lshr(p1, four)]
        if table is not None:
            pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(8, 64), [_vec(8, 64)] * 2),
                                                    "llvm.x86.avx512.pshuf.b.512")
            levels = [builder.call(pshufb, [table, v]) for v in levels]
        return levels

    def _rows_dot(builder, levels, yv, offset):
        # <8 x i32>: row r's sum of (level - offset) * y over the 32 levels: vpdpbusd from the start
        # -offset * (sum of y's chunks), the two halves of each row's lanes added at the end
        zero = ir.Constant(V16, [0] * 16)
        off = ir.Constant(_vec(8, 64), [offset] * 64)
        start = zero
        for k in range(4):
            start = _dpbusd512(builder, start, off, yv[k])
        acc = builder.sub(zero, start)
        for k in range(4):
            acc = _dpbusd512(builder, acc, levels[k], yv[k])
        return _halves8(builder, acc)

    # ------------------------------------------------------------------------------------------------- Q4_0
    # equals refimpl.quant.formats.legacy.vec_dot_q4_0_q8_0 for each row (y Q8_0: d f16 @0, qs[32] @2).

    def _q4_0_state(n_tok):
        return (ir.Constant(F8, [0.0] * 8),) * n_tok

    def _q4_0_block(builder, gb, ybs, state):
        levels = _levels_rows_in_lanes(builder, gb, 0)
        xd = _f16x8(builder, gb, 128)
        out = []
        for yb, sumf in zip(ybs, state):
            sumi = builder.sitofp(_rows_dot(builder, levels, _chunk_pairs(builder, yb, 2), 8), F8)
            # ref._step_q4_0: sumf += sumi*x.d*y.d (left to right)
            term = _mul_nan_first(builder, builder.fmul(sumi, xd), _splat_float(builder, _f16(builder, yb, 0), 8))
            out.append(_add_nan_first(builder, sumf, term))
        return tuple(out)

    # ------------------------------------------------------------------------------------------------- IQ4_NL
    # equals refimpl.quant.formats.iq4.vec_dot_iq4_nl_q8_0 for each row; packed as Q4_0 (the same block shape).

    def _iq4_nl_block(builder, gb, ybs, state):
        # sum kvalue*y = vpdpbusd(-128 * sum y, kvalue + 128, y): the table holds kvalue + 128 (unsigned)
        table = ir.Constant(_vec(8, 64), [v + 128 for v in _KVALUES] * 4)
        levels = _levels_rows_in_lanes(builder, gb, 0, table)
        xd = _f16x8(builder, gb, 128)
        out = []
        for yb, sumf in zip(ybs, state):
            sumi = builder.sitofp(_rows_dot(builder, levels, _chunk_pairs(builder, yb, 2), 128), F8)
            # ref._step_iq4_nl: sumf += (x.d*y.d)*sumi
            d = _mul_nan_first(builder, xd, _splat_float(builder, _f16(builder, yb, 0), 8))
            out.append(_add_nan_first(builder, sumf, builder.fmul(d, sumi)))
        return tuple(out)

    # ------------------------------------------------------------------------------------------------- Q2_K
    # equals refimpl.quant.formats.kquants.vec_dot_q2_K_q8_K for each row (y Q8_K in its own order; its bsums are
    # read as the reference reads them, for the mins).

    def _q2_K_block(builder, gb, ybs, state):
        v8 = _vec(32, 8)
        xd, xdmin = _f16x8(builder, gb, 640), _f16x8(builder, gb, 656)
        scb = [builder.zext(_load(builder, gb, 512 + GROUP * j, _vec(8, 8)), v8) for j in range(16)]
        scales = [builder.and_(b, ir.Constant(v8, [15] * 8)) for b in scb]
        mins = [builder.lshr(b, ir.Constant(v8, [4] * 8)) for b in scb]
        packs = [_load(builder, gb, 64 * q, _vec(8, 64)) for q in range(8)]       # run k: packs[4k .. 4k + 3]
        zero = ir.Constant(V16, [0] * 16)
        out = []
        for yb, sumf in zip(ybs, state):
            yd = _load(builder, yb, 0, F32)
            bsums = builder.sext(_load(builder, yb, 260, _vec(16, 16)), _vec(32, 16))
            summs = ir.Constant(v8, [0] * 8)
            for j in range(16):
                bj = builder.shuffle_vector(bsums, bsums, ir.Constant(v8, [j] * 8))
                summs = builder.add(summs, builder.mul(bj, mins[j]))
            isum = ir.Constant(v8, [0] * 8)
            for k in range(2):
                for j in range(4):
                    y = _load(builder, yb, 4 + 128 * k + 32 * j, v8)
                    for half in range(2):
                        acc = zero
                        for p in (2 * half, 2 * half + 1):
                            lv = _bit_fields(builder, builder.bitcast(packs[4 * k + p], _vec(16, 32)), 2 * j, 2 * j, 3)
                            yv = builder.shuffle_vector(y, y, ir.Constant(V16, [2 * p] * 8 + [2 * p + 1] * 8))
                            acc = _dpbusd512(builder, acc, lv, yv)
                        isum = builder.add(isum, builder.mul(_halves8(builder, acc), scales[8 * k + 2 * j + half]))
            # ref: dall = x.d*y.d; dmin = x.dmin*y.d; sumf += dall*isum - dmin*summs
            ydv = _splat_float(builder, yd, 8)
            dall, dmin = _mul_nan_first(builder, xd, ydv), _mul_nan_first(builder, xdmin, ydv)
            term = builder.fsub(builder.fmul(dall, builder.sitofp(isum, F8)),
                                builder.fmul(dmin, builder.sitofp(summs, F8)))
            out.append(_add_nan_first(builder, sumf, term))
        return tuple(out)

    # ------------------------------------------------------------------------------------------------- Q8_0
    # equals refimpl.quant.formats.legacy.vec_dot_q8_0_q8_0 for each row (y Q8_0).

    def _q8_0_block(builder, gb, ybs, state):
        # sum x*y = sum (x + 128)*y - 128 * sum y, x + 128 being x with its sign bit flipped, read as unsigned
        flip = ir.Constant(_vec(8, 64), [0x80] * 64)
        levels = [builder.xor(_load(builder, gb, 64 * k, _vec(8, 64)), flip) for k in range(4)]
        xd = _f16x8(builder, gb, 256)
        out = []
        for yb, sumf in zip(ybs, state):
            sumi = builder.sitofp(_rows_dot(builder, levels, _chunk_pairs(builder, yb, 2), 128), F8)
            # ref._step_q8_0: sumf += sumi*(y.d*x.d)
            dd = _mul_nan_first(builder, _splat_float(builder, _f16(builder, yb, 0), 8), xd)
            out.append(_add_nan_first(builder, sumf, builder.fmul(sumi, dd)))
        return tuple(out)

    def _rows_final(builder, state):
        # per token the 8 rows' results: the state itself (lane r = row r)
        return list(state)

    # ------------------------------------------------------------------------------------------------- IQ4_XS
    # equals refimpl.quant.formats.iq4.vec_dot_iq4_xs_q8_K for each row (y Q8_K in its own order: d f32 @0,
    # qs[256] @4).

    _KVALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)

    def _iq4_xs_block(builder, gb, ybs, state):
        # sum kvalue*y = sum (kvalue + 128)*y - 128 * sum y: the table holds kvalue + 128 (unsigned, for vpdpbusd),
        # sum y of sub-block ib is bsums[2 ib] + bsums[2 ib + 1] (refreshed from qs by pack_q8_K_sums)
        table = ir.Constant(_vec(8, 64), [v + 128 for v in _KVALUES] * 4)
        xd = _f16x8(builder, gb, 1088)
        d4d8s = [_mul_nan_first(builder, xd, _splat_float(builder, _load(builder, yb, 0, F32), 8)) for yb in ybs]
        ones = ir.Constant(_vec(16, 16), [1] * 16)
        offsets = [builder.shl(_maddwd(builder, _load(builder, yb, 260, _vec(16, 16)), ones),
                               ir.Constant(_vec(32, 8), [7] * 8)) for yb in ybs]
        zero = ir.Constant(V16, [0] * 16)
        state = list(state)
        for ib in range(8):
            levels = _levels_rows_in_lanes(builder, gb, 128 * ib, table)
            ls = builder.sitofp(_load(builder, gb, 1024 + GROUP * ib, _vec(8, 8)), F8)
            for t, yb in enumerate(ybs):
                yv = _chunk_pairs(builder, yb, 4 + 32 * ib)
                acc = zero
                for k in range(4):
                    acc = _dpbusd512(builder, acc, levels[k], yv[k])
                offset = builder.shuffle_vector(offsets[t], offsets[t], ir.Constant(_vec(32, 8), [ib] * 8))
                sumi = builder.sitofp(builder.sub(_halves8(builder, acc), offset), F8)
                # ref._step_iq4_xs: sumf += (d4d8*ls)*sumi, each rounded as the C's scalar ops
                term = builder.fmul(builder.fmul(d4d8s[t], ls), sumi)
                state[t] = _add_nan_first(builder, state[t], term)
        return tuple(state)

    # ------------------------------------------------------------------------------------------------- Q4_K
    # equals refimpl.quant.formats.kquants.vec_dot_q4_K_q8_K for each row (y lane-packed by
    # kquants.pack_q8_K_lanes; block_q8_K: d f32 @0, qs[256] @4, bsums i16[16] @260).

    def _q4_K_state(n_tok):
        # per token: the 8 rows' <8 x float> lanes, then the rows' sumf as one <8 x float>
        return ((ir.Constant(F8, [0.0] * 8),) * GROUP + (ir.Constant(F8, [0.0] * 8),)) * n_tok

    def _q45_K_block(builder, gb, ybs, state, q5):
        # Q4_K's super-block of 8 rows, or Q5_K's (q5: a fifth bit from qh, 16 added where it is set)
        sc_at = 1280 if q5 else 1024
        maddubs, maddwd = _maddubs512(builder), _maddwd512(builder)
        ys = []
        for yb in ybs:
            q8 = [_load(builder, yb, 4 + 64 * p, _vec(8, 64)) for p in range(4)]
            bsums16 = _load(builder, yb, 260, _vec(16, 16))
            ys.append((_load(builder, yb, 0, F32), q8, bsums16))
        xd, xdmin = _f16x8(builder, gb, sc_at + 128), _f16x8(builder, gb, sc_at + 144)
        per = GROUP + 1
        new = list(state)
        sumi_parts = [[] for _ in ybs]
        ds = [_mul_nan_first(builder, xd, _splat_float(builder, yd, 8)) for yd, _, _ in ys]
        for r in range(GROUP):
            sm = builder.zext(_load(builder, gb, sc_at + 16 * r, _vec(8, 16)), _vec(16, 16))
            if q5:
                qh2 = _both_halves(builder, _load(builder, gb, 1024 + 32 * r, _vec(8, 32)))
            levels, scls = [], []
            for p in range(4):
                # sub-blocks 2p (low nibbles) and 2p + 1 (high) of the run, side by side, already in lane order
                lv = _bit_fields(builder, _both_halves(builder, _load(builder, gb, 128 * r + 32 * p, _vec(8, 32))),
                                 0, 4, 15)
                if q5:
                    # bits 2p and 2p + 1 of the run's qh bytes (lane order too), times 16
                    hb = _bit_fields(builder, qh2, 2 * p, 2 * p + 1, 1)
                    lv = builder.or_(lv, builder.shl(hb, ir.Constant(_vec(8, 64), [4] * 64)))
                levels.append(lv)
                scls.append(builder.shuffle_vector(sm, sm, ir.Constant(_vec(32, 32), [_SCALE_LANE[2 * p]] * 16
                                                                       + [_SCALE_LANE[2 * p + 1]] * 16)))
            mins16 = builder.shuffle_vector(sm, sm, ir.Constant(_vec(32, 16),
                                                                [_SCALE_LANE[j // 2] + 4 for j in range(16)]))
            for t, (yd, q8, bsums16) in enumerate(ys):
                acc = ir.Constant(V16, [0] * 16)
                for p in range(4):
                    acc = builder.add(acc, builder.call(maddwd, [builder.call(maddubs, [levels[p], q8[p]]), scls[p]]))
                aux32 = _halves8(builder, acc)
                sumi_parts[t].append(_maddwd(builder, bsums16, mins16))
                # ref._q45_K_step: sums[l] += d*aux32[l] (d = x.d*y.d of this row)
                d = _splat_float(builder, builder.extract_element(ds[t], _c32(r)), 8)
                k = per * t + r
                new[k] = _add_nan_first(builder, new[k], builder.fmul(d, builder.sitofp(aux32, F8)))
        for t, (yd, _, _) in enumerate(ys):
            # ref._q45_K_step: dmin = y.d*x.dmin; sumf -= dmin*sumi (all rows as one vector)
            dmin = _mul_nan_first(builder, _splat_float(builder, yd, 8), xdmin)
            sumi = builder.sitofp(_row_sums_vec(builder, sumi_parts[t]), F8)
            k = per * t + GROUP
            new[k] = builder.fsub(new[k], builder.fmul(dmin, sumi))
        return tuple(new)

    def _q4_K_block(builder, gb, ybs, state):
        return _q45_K_block(builder, gb, ybs, state, False)

    def _q5_K_block(builder, gb, ybs, state):
        return _q45_K_block(builder, gb, ybs, state, True)

    def _transpose8(builder, vecs):
        # the 8 x 8 floats of vecs (vecs[r][l]) as T[l][r]: unpack, shuffle, 128-bit permute (24 shuffles)
        def sh(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(_vec(32, 8), mask))
        t = []
        for r in range(0, 8, 2):
            t += [sh(vecs[r], vecs[r + 1], [0, 8, 1, 9, 4, 12, 5, 13]),
                  sh(vecs[r], vecs[r + 1], [2, 10, 3, 11, 6, 14, 7, 15])]
        lo, hi = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        u = [sh(t[0], t[2], lo), sh(t[0], t[2], hi), sh(t[1], t[3], lo), sh(t[1], t[3], hi),
             sh(t[4], t[6], lo), sh(t[4], t[6], hi), sh(t[5], t[7], lo), sh(t[5], t[7], hi)]
        first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        return ([sh(u[c], u[4 + c], first) for c in range(4)] + [sh(u[c], u[4 + c], second) for c in range(4)])

    def _q45_K_rows_final(builder, state, q5):
        # ref._q4_K_final for the 8 rows at once: sumf += sums[0]; sumf = sums[1] + sumf; sumf += sums[2..7];
        # ref._q5_K_final: sumf = sums[0] + sumf; sumf += sums[1..7]; lane r of each vector being row r (the rows'
        # lanes transposed)
        per = GROUP + 1
        out = []
        for t in range(len(state) // per):
            s = state[per * t:per * (t + 1)]
            lane = _transpose8(builder, s[:GROUP])
            if q5:
                acc = _add_nan_first(builder, lane[0], s[GROUP])
                first = 1
            else:
                acc = _add_nan_first(builder, s[GROUP], lane[0])
                acc = _add_nan_first(builder, lane[1], acc)
                first = 2
            for l in range(first, 8):
                acc = _add_nan_first(builder, acc, lane[l])
            out.append(acc)
        return out

    def _q4_K_rows_final(builder, state):
        return _q45_K_rows_final(builder, state, False)

    def _q5_K_rows_final(builder, state):
        return _q45_K_rows_final(builder, state, True)

    # ------------------------------------------------------------------------------------------------- K lanes
    # the parts of the K-quants whose float part is ref._lanes_step / _lanes_final (Q3_K here; Q6_K's file-layout
    # kernels stream faster than its packed form did: 8 vs 19 GB/s on one thread from memory, though 27 vs 19 in
    # cache, not understood, so Q6_K is not packed)

    def _lanes_state(n_tok):
        return (ir.Constant(F8, [0.0] * 8),) * (GROUP * n_tok)

    def _lanes_acts(builder, ybs, offset):
        # per token: y.d, the activations of groups (2p, 2p + 1) as <64 x i8> (lane-packed), and offset * their
        # byte-pair sums (pmaddubsw(offset, y): the offset of the stored levels, 4 for Q3_K)
        maddubs = _maddubs512(builder)
        thirty_two = ir.Constant(_vec(8, 64), [offset] * 64)
        ys = []
        for yb in ybs:
            q8 = [_load(builder, yb, 4 + 64 * p, _vec(8, 64)) for p in range(4)]
            ys.append((_load(builder, yb, 0, F32), q8, [builder.call(maddubs, [thirty_two, v]) for v in q8]))
        return ys

    def _lanes_aux32(builder, unpacked, y):
        # aux32 (<8 x i32>) of one row against one token: sum over pairs of (level - 32) * y, times the pair's scale
        maddubs, maddwd = _maddubs512(builder), _maddwd512(builder)
        levels, scls = unpacked
        _, q8, offs = y
        acc = ir.Constant(V16, [0] * 16)
        for p in range(4):
            pairs = builder.sub(builder.call(maddubs, [levels[p], q8[p]]), offs[p])
            acc = builder.add(acc, builder.call(maddwd, [pairs, scls[p]]))
        return _halves8(builder, acc)

    # ------------------------------------------------------------------------------------------------- Q3_K
    # equals refimpl.quant.formats.kquants.vec_dot_q3_K_q8_K for each row (y lane-packed): 3-bit
    # levels stored + 4 (2 bits from qs, the third from hmask: set means no -4)

    def _q3_K_unpack(builder, qs_ptr, hm_ptr, sc_ptr):
        sc = builder.sext(_load(builder, sc_ptr, 0, _vec(8, 16)), _vec(16, 16))
        hm2 = _both_halves(builder, _load(builder, hm_ptr, 0, _vec(8, 32)))
        levels, scls = [], []
        for k in range(2):
            q2 = _both_halves(builder, _load(builder, qs_ptr, 32 * k, _vec(8, 32)))
            for t in range(2):
                # groups g0 = 4k + 2t and g1 = g0 + 1: bits 2 (g % 4) of qs, bit g of hmask
                g0, g1 = 4 * k + 2 * t, 4 * k + 2 * t + 1
                lo = _bit_fields(builder, q2, 2 * (g0 % 4), 2 * (g1 % 4), 3)
                hb = _bit_fields(builder, hm2, g0, g1, 1)
                levels.append(builder.or_(lo, builder.shl(hb, ir.Constant(_vec(8, 64), [2] * 64))))
                scls.append(builder.shuffle_vector(sc, sc, ir.Constant(_vec(32, 32), [2 * g0, 2 * g0 + 1] * 8
                                                                       + [2 * g1, 2 * g1 + 1] * 8)))
        return levels, scls

    def _q3_K_block(builder, gb, ybs, state):
        ys = _lanes_acts(builder, ybs, 4)
        xd = _f16x8(builder, gb, 896)
        ds = [_mul_nan_first(builder, xd, _splat_float(builder, yd, 8)) for yd, _, _ in ys]
        new = list(state)
        for r in range(GROUP):
            unpacked = _q3_K_unpack(builder, builder.gep(gb, [_c32(64 * r)]), builder.gep(gb, [_c32(512 + 32 * r)]),
                                    builder.gep(gb, [_c32(768 + 16 * r)]))
            for t, y in enumerate(ys):
                # ref._lanes_step: d = x.d*y.d; sums[l] += d*aux32[l]
                d = _splat_float(builder, builder.extract_element(ds[t], _c32(r)), 8)
                k = GROUP * t + r
                aux32 = builder.sitofp(_lanes_aux32(builder, unpacked, y), F8)
                new[k] = _add_nan_first(builder, new[k], builder.fmul(d, aux32))
        return tuple(new)

    def _lanes_rows_final(builder, state):
        # ref._lanes_final for the 8 rows at once: sumf = 0; sumf += sums[l], l = 0..7
        out = []
        for t in range(len(state) // GROUP):
            lane = _transpose8(builder, state[GROUP * t:GROUP * (t + 1)])
            acc = ir.Constant(F8, [0.0] * 8)
            for l in range(8):
                acc = _add_nan_first(builder, acc, lane[l])
            out.append(acc)
        return out

    # ------------------------------------------------------------------------------------------------- the loop

    class _Kind:
        """A packed format's part of the loops: group-block and activation-block bytes, the state of n_tok tokens
        (``state(n_tok)``), the step over one group block (``block(builder, gb, [yb per token], state)``), the
        results (``final(builder, state)`` -> per token the 8 rows' <8 x float>)."""
        def __init__(self, gbytes, ybytes, state, block, final):
            self.gbytes, self.ybytes, self.state, self.block, self.final = gbytes, ybytes, state, block, final

    _KINDS = {
        "Q4_0": _Kind(Q4_0_GBYTES, 34, _q4_0_state, _q4_0_block, _rows_final),
        "Q8_0": _Kind(Q8_0_GBYTES, 34, _q4_0_state, _q8_0_block, _rows_final),
        "IQ4_NL": _Kind(Q4_0_GBYTES, 34, _q4_0_state, _iq4_nl_block, _rows_final),
        "Q2_K": _Kind(Q2_K_GBYTES, 292, _q4_0_state, _q2_K_block, _rows_final),
        "Q3_K": _Kind(Q3_K_GBYTES, 292, _lanes_state, _q3_K_block, _lanes_rows_final),
        "IQ4_XS": _Kind(IQ4_XS_GBYTES, 292, _q4_0_state, _iq4_xs_block, _rows_final),
        "Q4_K": _Kind(Q4_K_GBYTES, 292, _q4_K_state, _q4_K_block, _q4_K_rows_final),
        "Q5_K": _Kind(Q5_K_GBYTES, 292, _q4_K_state, _q5_K_block, _q5_K_rows_final),
    }

    def _kind(name):
        # looked up by name from the intrinsics' codegen (see refimpl.kernels.rowdot._format: cache keys)
        return _KINDS[name]

    def _group_dot_codegen(name, n_tok, context, builder, sig, args):
        # the body of group_dot's codegen, at module level: numba's cache key pickles the intrinsic's Python
        # function by value with the globals it names, and llvmlite type objects (I8, F32, F8) pickle differently
        # once a compilation has used them (they cache their pointer types), which made the key of every closure
        # over a packed dot differ between the lookup and the save (a recompilation in each process).  A
        # module-level function pickles by name.
        kind = _kind(name)
        warr = context.make_array(sig.args[0])(context, builder, args[0])
        yarr = context.make_array(sig.args[2])(context, builder, args[2])
        oarr = context.make_array(sig.args[4])(context, builder, args[4])
        intp = context.get_value_type(types.intp)
        gv = context.cast(builder, args[1], sig.args[1], types.intp)
        t0v = context.cast(builder, args[3], sig.args[3], types.intp)
        nb = builder.extract_value(warr.shape, 1)
        wstride, ystride, ostride = (builder.extract_value(a.strides, 0) for a in (warr, yarr, oarr))
        row = builder.gep(builder.bitcast(warr.data, I8.as_pointer()), [builder.mul(gv, wstride)])
        ydata = builder.bitcast(yarr.data, I8.as_pointer())
        toks = [builder.gep(ydata, [builder.mul(builder.add(t0v, ir.Constant(intp, j)), ystride)])
                for j in range(n_tok)]

        def step(i, state):
            gb = _at(builder, row, i, kind.gbytes, intp)
            return kind.block(builder, gb, [_at(builder, tok, i, kind.ybytes, intp) for tok in toks], state)
        results = kind.final(builder, _over_blocks(builder, nb, kind.state(n_tok), step))
        odata = builder.bitcast(oarr.data, I8.as_pointer())
        r0 = builder.mul(gv, ir.Constant(intp, GROUP))
        for j, rows8 in enumerate(results):
            # token t0 + j's 8 outputs (rows 8g .. 8g + 7) are adjacent: one vector store
            orow = builder.bitcast(builder.gep(odata, [builder.mul(builder.add(t0v, ir.Constant(intp, j)), ostride)]),
                                   F32.as_pointer())
            builder.store(rows8, builder.bitcast(builder.gep(orow, [r0]), F8.as_pointer()), align=4)
        return context.get_dummy_value()

    def _make_group_dot(name: str, n_tok: int):
        """An intrinsic ``group_dot(w, g, y, t0, out)``: out[t0 + j, 8g + k] = vec_dot(n, row 8g + k, y[t0 + j])
        for k < 8, j < n_tok; w the (groups, nb) packed group blocks, y (tokens, nb) activation blocks, out
        (tokens, rows) float32, all C-contiguous.  One LLVM loop over the blocks, the state in registers."""
        @intrinsic
        def group_dot(typingctx, w, g, y, t0, out):
            if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C" and isinstance(y, types.Array)
                    and y.ndim == 2 and y.layout == "C" and isinstance(out, types.Array) and out.ndim == 2
                    and out.layout == "C" and out.dtype == types.float32 and isinstance(g, types.Integer)
                    and isinstance(t0, types.Integer)):
                return None

            def codegen(context, builder, sig, args):
                return _group_dot_codegen(name, n_tok, context, builder, sig, args)

            return types.void(w, g, y, t0, out), codegen
        return group_dot

    # tokens per tile call: as many as keep the state in registers (Q4_K: 9 <8 x float> per token)
    _TILE_TOKENS = {"Q4_0": 4, "Q8_0": 4, "IQ4_NL": 4, "IQ4_XS": 4, "Q2_K": 2, "Q3_K": 2, "Q4_K": 2, "Q5_K": 2}
    # IQ4_NL's block is Q4_0's shape (d f16, 16 bytes of nibbles): the same packing
    _PACKERS = {"Q4_0": pack_q4_0, "Q8_0": pack_q8_0, "IQ4_NL": pack_q4_0, "IQ4_XS": pack_iq4_xs, "Q4_K": pack_q4_K,
                "Q2_K": pack_q2_K, "Q3_K": pack_q3_K, "Q5_K": pack_q5_K}
    def _pack_acts_of(name):
        from . import get as fast_kernels
        if name == "IQ4_XS":
            return pack_q8_K_sums
        if name in ("Q3_K", "Q5_K"):
            # the packed Q3_K/Q5_K read their activations lane-packed, as Q4_K's kernels do (their file-layout
            # kernels read them in their own order)
            return fast_kernels("Q4_K").pack_acts
        fk = fast_kernels(name)
        return fk.pack_acts if fk is not None else None

    for _name, _kind_of in _KINDS.items():
        PACKED[_name] = PackedFormat(_name, _kind_of.gbytes, _PACKERS[_name], _make_group_dot(_name, 1),
                                     _make_group_dot(_name, _TILE_TOKENS[_name]), _TILE_TOKENS[_name],
                                     _pack_acts_of(_name))
