"""Row dots: the decode path's matvec, ``ROWS`` weight rows against one token per call, in one LLVM loop.

A decode step multiplies every weight matrix by one activation row; a 768-wide Q4_K row is only 3 super-blocks, so
a kernel that computes one row per call (refimpl.kernels.kquants.matvec_q4_K) spends as much time starting and
finishing rows (scratch arrays, the structured views of each block, the software F16 conversion, the final sum) as
on the weights.  Here one compiled loop walks the blocks of ``ROWS`` rows side by side:

* the activations' block (its levels, bsums, scale) is loaded once for all rows;
* each row's running sums live in registers: the eight float lanes of the K-quants as one <8 x float>, the block
  sums of the legacy formats as one float;
* the integer part is the same vector steps as refimpl.kernels.lanes (pmaddubsw/pmaddwd; the per-block sums of
  several rows reduced together, a transpose-and-add tree instead of one horizontal sum each);
* the F16 scales are widened by the hardware (F16C ``vcvtph2ps``: exact, NaN payloads kept and quieted, the same
  bits as ggml_compute_fp16_to_fp32; tests/test_kernels_rowdot.py checks all 65536 halves);
* the float part of every row is its reference's operations in its reference's order, NaN-first where the
  reference says add_nan_first/mul_nan_first (a select on the first operand, as refimpl.kernels.lanes does).

So every output is bit for bit the reference's vec_dot of that row, whatever the number of rows per call or of
threads.  Each format names the reference it equals in ``ROW_DOTS`` below; tests/test_kernels_rowdot.py compares
them on random and hostile blocks.  Only on x86 hosts with AVX2 and F16C (the integer steps are x86 intrinsics);
elsewhere ``ROW_DOTS`` is empty and the drivers use the per-row kernels.

Reading order: _Format, _q4_K_block (the pattern), _make_row_dot (the loop around it), ROW_DOTS; the drivers are
refimpl.kernels.drivers.matmul_row_dots / matmul_group_row_dots.
"""
from __future__ import annotations

import os

from .._jit import JIT_DISABLED
from .lanes import HOST_AVX2, LANE_ORDER, _host_has

ROWS = 4            # rows per call: 2 measured slower, 8 no faster (Q4_K, 768..4096 wide, one thread)
PREFETCH_ROWS = 8   # the row dots prefetch each block this many rows ahead (see _prefetch)

# what the intrinsics below need from the host (numba compiles for the host CPU)
AVAILABLE = (not JIT_DISABLED) and HOST_AVX2 and _host_has("f16c")
# REFIMPL_ROWDOT_ISA=avx2 keeps to the AVX2 steps on an AVX-512 host (tests/test_kernels_rowdot.py runs them so, with
# its own numba cache: the cache does not key on this choice)
_AVX2_ONLY = os.environ.get("REFIMPL_ROWDOT_ISA", "").lower() == "avx2"
# 512-bit integer steps (two 32-level sub-blocks per pmaddubsw/pmaddwd) where the host has AVX-512BW
WIDE = AVAILABLE and not _AVX2_ONLY and _host_has("avx512bw")
# VNNI's vpdpbusd (unsigned x signed bytes, four products into each int32, no saturation) where the host has it
VNNI = WIDE and _host_has("avx512vnni") and _host_has("avx512vl")

ROW_DOTS: dict = {}     # ggml type name -> (dot of ROWS rows, dot of 1 row)
TILE_DOTS: dict = {}    # ggml type name -> (tile dot, its rows, its tokens): batches of tokens (prompts)
# the formats whose one-token products (decode) take the row dots, and how many rows per call.  Q6_K takes its
# one-row dot: ROWS rows side by side streamed large matrices from memory slower than its per-row kernel
# (refimpl.kernels.kquants.matvec_q6_K; 110M Q6_K model 4.7 vs 5.5-7.0 ms per token), one row per call faster
# than both (2 threads, 8192x2048: 25 vs 24 vs 20 GB/s; 2048x768: 20 vs 16 GB/s).
DECODE_ROW_DOTS = {"Q4_K": ROWS, "Q8_0": ROWS, "Q4_0": ROWS, "IQ4_XS": ROWS, "Q6_K": 1}
# rows x tokens per tile call, measured on one thread (2048x768 and 768x2048 weights, 128 tokens)
_TILE_SHAPES = {"Q4_K": (1, 8), "Q6_K": (1, 8), "Q8_0": (4, 4), "Q4_0": (4, 4), "IQ4_XS": (1, 8)}

if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from .lanes import _maddubs, _maddwd, _splat, _splat_float, _vec, q4_K_ints_ir, q6_K_ints_ir, q6_K_levels_ir

    F32 = ir.FloatType()
    I8, I16, I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
    F8 = ir.VectorType(F32, 8)

    def _c32(v):
        return ir.Constant(I32, v)

    def _load(builder, ptr, off, ty):
        # a value of type ty at byte offset off of ptr (i8*), unaligned
        return builder.load(builder.bitcast(builder.gep(ptr, [_c32(off)]), ty.as_pointer()), align=1)

    def _f16(builder, ptr, off):
        # ggml_compute_fp16_to_fp32 of the half at byte offset off: fpext is vcvtph2ps on F16C hosts
        return builder.fpext(builder.bitcast(_load(builder, ptr, off, I16), ir.HalfType()), F32)

    def _quiet(builder, a):
        ity = _vec(32, a.type.count) if isinstance(a.type, ir.VectorType) else I32
        bit = ir.Constant(ity, [0x00400000] * a.type.count) if isinstance(a.type, ir.VectorType) \
            else ir.Constant(I32, 0x00400000)
        return builder.bitcast(builder.or_(builder.bitcast(a, ity), bit), a.type)

    def _nan_first(builder, a, result):
        # refimpl._jit.add_nan_first / mul_nan_first: ``result`` (a op b), unless a is NaN: then a, quieted.  With
        # at most one NaN operand the hardware op already returns that NaN quieted, whatever the operand order.
        return builder.select(builder.fcmp_unordered("uno", a, a), _quiet(builder, a), result)

    def _add_nan_first(builder, a, b):
        return _nan_first(builder, a, builder.fadd(a, b))

    def _mul_nan_first(builder, a, b):
        return _nan_first(builder, a, builder.fmul(a, b))

    def _row_sums(builder, vecs):
        """The int32 sums of the <8 x i32> vectors ``vecs`` (4 or 8 of them) as a list: pairs of vectors
        interleaved and added, three times (a transposition), instead of one horizontal sum per vector.  Integer
        sums: exact in any order."""
        n = len(vecs)
        v = _transpose_add(builder, vecs)
        # lanes now hold partial sums of vector (lane % n); 8 // n of them per vector remain to add
        sums = []
        for k in range(n):
            s = builder.extract_element(v, _c32(k))
            for rep in range(1, 8 // n):
                s = builder.add(s, builder.extract_element(v, _c32(k + n * rep)))
            sums.append(s)
        return sums

    def _transpose_add(builder, vecs):
        # the tree of _row_sums: lane l of the result holds a partial sum of vector l % len(vecs)
        level = list(vecs)
        width = 1                                     # lanes that belong to one vector in the current level
        while len(level) > 1 and width < 8:
            nxt = []
            for a, b in zip(level[0::2], level[1::2]):
                lo, hi = [], []
                for blk in range(0, 8, 2 * width):
                    lo += [blk + i for i in range(width)] + [8 + blk + i for i in range(width)]
                    hi += [blk + width + i for i in range(width)] + [8 + blk + width + i for i in range(width)]
                nxt.append(builder.add(builder.shuffle_vector(a, b, ir.Constant(_vec(32, 8), lo)),
                                       builder.shuffle_vector(a, b, ir.Constant(_vec(32, 8), hi))))
            level = nxt
            width *= 2
        return level[0]

    def _block_sums(builder, vecs):
        # one int32 sum per <8 x i32>: the tree for 4 or 8 vectors, else LLVM's horizontal add each
        if len(vecs) in (4, 8):
            return _row_sums(builder, vecs)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(I32, [_vec(32, 8)]),
                                            "llvm.vector.reduce.add.v8i32")
        return [builder.call(fn, [v]) for v in vecs]

    def _dot32_i16(builder, a8, b8):
        # <8 x i32> partial sums of a[j] * b[j], j < 32 (two <32 x i8>, both signed): pmaddwd on the int16 halves
        # (|a * b| <= 2^14, a pair < 2^15: exact)
        va, vb = builder.sext(a8, _vec(16)), builder.sext(b8, _vec(16))
        halves = []
        for h in range(2):
            sel = ir.Constant(_vec(32, 16), list(range(16 * h, 16 * h + 16)))
            halves.append(_maddwd(builder, builder.shuffle_vector(va, va, sel), builder.shuffle_vector(vb, vb, sel)))
        return builder.add(halves[0], halves[1])

    def _dpbusd(builder, acc, a_u8, b_i8):
        # VNNI vpdpbusd: acc (<8 x i32>) + the sums of four adjacent a[j] * b[j] (a unsigned, b signed bytes):
        # exact (products <= 255 * 128, no saturation in this form)
        v8 = _vec(32, 8)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v8, [v8, v8, v8]),
                                            "llvm.x86.avx512.vpdpbusd.256")
        return builder.call(fn, [acc, builder.bitcast(a_u8, v8), builder.bitcast(b_i8, v8)])

    def _neg_offset_sums(builder, offset, b_i8):
        # <8 x i32> -offset * (the sums of four adjacent b[j]): the accumulator start that turns
        # dpbusd(level + offset, b) into the sums of level * b
        zero = ir.Constant(_vec(32, 8), [0] * 8)
        return builder.sub(zero, _dpbusd(builder, zero, ir.Constant(_vec(8), [offset] * 32), b_i8))

    def _nibbles32(builder, q16):
        lo = builder.and_(q16, ir.Constant(_vec(8, 16), [15] * 16))
        hi = builder.lshr(q16, ir.Constant(_vec(8, 16), [4] * 16))
        return builder.shuffle_vector(lo, hi, ir.Constant(_vec(32), list(range(32))))

    class _Format:
        """One format's part of the loop: bytes per weight block and activation block, the running state of all
        rows (``state(n_rows)``: a tuple of initial LLVM constants), the activation block's loads (shared by the
        rows), the step of all rows over one block (``block(builder, row_block_ptrs, y_values, state)`` -> the new
        state) and the rows' results (``final(builder, state)`` -> one float per row)."""

        def __init__(self, wbytes, ybytes, state, load_y, block, final, tile=None):
            self.wbytes, self.ybytes = wbytes, ybytes
            self.state, self.load_y, self.block, self.final = state, load_y, block, final
            # optionally a one-row, several-token form whose scalar float steps run across the tokens as one
            # vector: (state(n_tok), block(builder, xb, [y values per token], state), final(builder, state))
            self.tile = tile

    def _per_row(row_state, row_block, row_final):
        # a format whose rows keep separate states (the K-quants' <8 x float> lanes): its functions over one row's
        # state (a tuple), flattened into the whole state
        k = len(row_state)

        def state(n_rows):
            return tuple(row_state) * n_rows

        def block(builder, xbs, ys, flat):
            rows = [tuple(flat[k * r:k * r + k]) for r in range(len(xbs))]
            return tuple(v for new in row_block(builder, xbs, ys, rows) for v in new)

        def final(builder, flat):
            return [row_final(builder, tuple(flat[k * r:k * r + k])) for r in range(len(flat) // k)]
        return state, block, final

    # ------------------------------------------------------------------------------------------------- Q4_K
    # equals refimpl.quant.formats.kquants.vec_dot_q4_K_q8_K (y lane-packed by kquants.pack_q8_K_lanes).
    # block_q4_K: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16; block_q8_K: d f32 @0, qs[256] @4, bsums @260.

    def _q8_K_load(builder, yb):
        yd = _load(builder, yb, 0, F32)
        q8 = [_load(builder, yb, 4 + 32 * j, _vec(8)) for j in range(8)]
        bsums = builder.sext(_load(builder, yb, 260, _vec(16, 16)), _vec(32, 16))
        return yd, q8, bsums

    def _q4_K_block(builder, xbs, ys, states):
        yd, q8, bsums = ys
        out = []
        for xb, (sums, sumf) in zip(xbs, states):
            # the integer part: refimpl.kernels.lanes.q4_K_block_ints's
            aux32, sumi = q4_K_ints_ir(builder, builder.gep(xb, [_c32(16)]), builder.gep(xb, [_c32(4)]), q8, bsums)
            out.append(_q4_K_float_step(builder, xb, yd, aux32, sumi, sums, sumf))
        return out

    def _q4_K_float_step(builder, xb, yd, aux32, sumi, sums, sumf):
        # ref._q45_K_step: d = x.d*y.d; sums[l] += d*aux32[l]; dmin = y.d*x.dmin; sumf -= dmin*sumi
        xd, xdmin = _f16(builder, xb, 0), _f16(builder, xb, 2)
        d = _mul_nan_first(builder, xd, yd)
        sums = _add_nan_first(builder, sums, builder.fmul(_splat_float(builder, d, 8), builder.sitofp(aux32, F8)))
        dmin = _mul_nan_first(builder, yd, xdmin)
        return sums, builder.fsub(sumf, builder.fmul(dmin, builder.sitofp(sumi, F32)))

    def _q4_K_scales_mins16(builder, xb):
        # get_scale_min_k4 of j = 0..7 as one <16 x i8>: bytes 0-3 scales 0-3, 4-7 mins 0-3, 8-11 scales 4-7,
        # 12-15 mins 4-7: ggml's kmask1..3 shuffle of the words u0, u1, u2 (the 12 scale bytes) done on the
        # vector <u0, u1, u2, u2>: <u0 & k1, u1 & k1, u2 & k2, (u2 >> 4) & k2> | <0, 0, u0 >> 6 & k3, u1 >> 6 & k3> << 4
        # (16 bytes read from offset 4: the scales and the first 4 bytes of qs, inside the block)
        v4 = _vec(32, 4)
        w = _load(builder, xb, 4, v4)
        u = builder.shuffle_vector(w, w, ir.Constant(v4, [0, 1, 2, 2]))
        x = builder.and_(builder.lshr(u, ir.Constant(v4, [0, 0, 0, 4])),
                         ir.Constant(v4, [0x3F3F3F3F, 0x3F3F3F3F, 0x0F0F0F0F, 0x0F0F0F0F]))
        hi = builder.shuffle_vector(w, w, ir.Constant(v4, [0, 0, 0, 1]))
        y = builder.shl(builder.and_(builder.lshr(hi, ir.Constant(v4, [6] * 4)),
                                     ir.Constant(v4, [0, 0, 0x03030303, 0x03030303])), ir.Constant(v4, [4] * 4))
        return builder.bitcast(builder.or_(x, y), _vec(8, 16))

    # lane of scale j in _q4_K_scales_mins16's vector; min j is 4 lanes further
    _SCALE_LANE = (0, 1, 2, 3, 8, 9, 10, 11)

    # the 512-bit integer steps (also refimpl.kernels.packed's)
    def _maddubs512(builder):
        fty = ir.FunctionType(_vec(16, 32), [_vec(8, 64), _vec(8, 64)])
        return cgutils.get_or_insert_function(builder.module, fty, "llvm.x86.avx512.pmaddubs.w.512")

    def _maddwd512(builder):
        fty = ir.FunctionType(_vec(32, 16), [_vec(16, 32), _vec(16, 32)])
        return cgutils.get_or_insert_function(builder.module, fty, "llvm.x86.avx512.pmaddw.d.512")

    def _halves8(builder, v16):
        # lanes l and l + 8 of a <16 x i32> added: the two 256-bit halves' sums (integer: exact)
        lo = builder.shuffle_vector(v16, v16, ir.Constant(_vec(32, 8), list(range(8))))
        hi = builder.shuffle_vector(v16, v16, ir.Constant(_vec(32, 8), list(range(8, 16))))
        return builder.add(lo, hi)

    # LANE_ORDER within each 32-byte half of a 64-byte vector (two sub-block runs side by side)
    _LANE_ORDER2 = [int(t) for t in LANE_ORDER] + [32 + int(t) for t in LANE_ORDER]

    def _float_lanes(builder, values):
        # scalar floats (one per token) as one <len(values) x float>
        v = ir.Constant(ir.VectorType(F32, len(values)), ir.Undefined)
        for t, x in enumerate(values):
            v = builder.insert_element(v, x, _c32(t))
        return v

    def _q4_K_unpack_wide(builder, xb):
        # one row's super-block for the 512-bit steps: per 32 bytes p of qs, the sub-blocks 2p (low nibbles) and
        # 2p + 1 (high nibbles) side by side in one <64 x i8> (LANE_ORDER within each half) with their two scales
        # spread over the matching int16 pairs; and the mins spread for sumi (mins[j // 2] at j < 16)
        sm = builder.zext(_q4_K_scales_mins16(builder, xb), _vec(16, 16))
        levels, scls = [], []
        for p in range(4):
            q = _load(builder, xb, 16 + 32 * p, _vec(8))
            lo = builder.and_(q, ir.Constant(_vec(8), [15] * 32))
            hi = builder.lshr(q, ir.Constant(_vec(8), [4] * 32))
            levels.append(builder.shuffle_vector(lo, hi, ir.Constant(_vec(32, 64), _LANE_ORDER2)))
            scls.append(builder.shuffle_vector(sm, sm, ir.Constant(_vec(32, 32), [_SCALE_LANE[2 * p]] * 16
                                                                   + [_SCALE_LANE[2 * p + 1]] * 16)))
        mins16 = builder.shuffle_vector(sm, sm, ir.Constant(_vec(32, 16), [_SCALE_LANE[j // 2] + 4 for j in range(16)]))
        return levels, scls, mins16

    def _q4_K_ints_wide(builder, unpacked, q8, bsums):
        # (aux32, sumi) of an unpacked row against one token: pmaddubsw/pmaddwd on 512 bits, the two 256-bit halves
        # added; sumi by pmaddwd on the bsums as int16 (|bsum| <= 16 * 128; pairs < 2^31)
        levels, scls, mins16 = unpacked
        maddubs, maddwd = _maddubs512(builder), _maddwd512(builder)
        acc = ir.Constant(_vec(32, 16), [0] * 16)
        for p in range(4):
            y = builder.shuffle_vector(q8[2 * p], q8[2 * p + 1], ir.Constant(_vec(32, 64), list(range(64))))
            acc = builder.add(acc, builder.call(maddwd, [builder.call(maddubs, [levels[p], y]), scls[p]]))
        return _halves8(builder, acc), _maddwd(builder, builder.trunc(bsums, _vec(16, 16)), mins16)

    def _q4_K_block_wide(builder, xbs, ys, states):
        # _q4_K_block with 512-bit integer steps (_q4_K_unpack_wide, _q4_K_ints_wide): the same integers (integer
        # sums: any grouping is exact), the same float part
        yd, q8, bsums = ys
        out = []
        for xb, (sums, sumf) in zip(xbs, states):
            aux32, sumi_parts = _q4_K_ints_wide(builder, _q4_K_unpack_wide(builder, xb), q8, bsums)
            out.append(_q4_K_float_step(builder, xb, yd, aux32, _reduce8(builder, sumi_parts), sums, sumf))
        return out

    def _reduce8(builder, v):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(I32, [_vec(32, 8)]),
                                            "llvm.vector.reduce.add.v8i32")
        return builder.call(fn, [v])

    def _q4_K_tile_state(n_tok):
        return (_ZERO8,) * n_tok + (ir.Constant(ir.VectorType(F32, n_tok), [0.0] * n_tok),)

    def _q4_K_tile_block(builder, xb, yss, state):
        # one row's super-block against n_tok tokens (_q4_K_block_wide per token, the row unpacked once), with the
        # scalar steps of ref._q45_K_step -- d = x.d*y.d, dmin = y.d*x.dmin, sumf -= dmin*sumi -- for all tokens
        # as one <n_tok x float> (lane t: token t's own operations, so its own bits), and the tokens' sumi by one
        # transpose-and-add
        n_tok = len(yss)
        unpacked = _q4_K_unpack_wide(builder, xb)
        fv = ir.VectorType(F32, n_tok)
        ydv = _float_lanes(builder, [ys[0] for ys in yss])
        xd, xdmin = _f16(builder, xb, 0), _f16(builder, xb, 2)
        dv = _mul_nan_first(builder, _splat_float(builder, xd, n_tok), ydv)
        dminv = _mul_nan_first(builder, ydv, _splat_float(builder, xdmin, n_tok))
        new_sums, sumi_parts = [], []
        for t, (yd, q8, bsums) in enumerate(yss):
            aux32, part = _q4_K_ints_wide(builder, unpacked, q8, bsums)
            d = builder.extract_element(dv, _c32(t))
            new_sums.append(_add_nan_first(builder, state[t], builder.fmul(_splat_float(builder, d, 8),
                                                                           builder.sitofp(aux32, F8))))
            sumi_parts.append(part)
        sumi = builder.sitofp(_row_sums_vec(builder, sumi_parts), fv)
        sumf = builder.fsub(state[n_tok], builder.fmul(dminv, sumi))
        return tuple(new_sums) + (sumf,)

    def _q4_K_tile_final(builder, state):
        n_tok = len(state) - 1
        return [_q4_K_final(builder, (state[t], builder.extract_element(state[n_tok], _c32(t)))) for t in range(n_tok)]

    def _q4_K_final(builder, state):
        # ref._q4_K_final: sumf += sums[0]; sumf = sums[1] + sumf (gcc commuted it); sumf += sums[2..7]
        sums, sumf = state
        lane = [builder.extract_element(sums, _c32(l)) for l in range(8)]
        acc = _add_nan_first(builder, sumf, lane[0])
        acc = _add_nan_first(builder, lane[1], acc)
        for l in range(2, 8):
            acc = _add_nan_first(builder, acc, lane[l])
        return acc

    _ZERO8 = ir.Constant(F8, [0.0] * 8)
    _ZERO = ir.Constant(F32, 0.0)

    # ------------------------------------------------------------------------------------------------- Q6_K
    # equals refimpl.quant.formats.kquants.vec_dot_q6_K_q8_K (y lane-packed).
    # block_q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d f16 @208.

    def _q6_K_block(builder, xbs, ys, states):
        yd, q8, _ = ys
        out = []
        for xb, (sums,) in zip(xbs, states):
            # the integer part: refimpl.kernels.lanes.q6_K_block_ints's
            aux32 = q6_K_ints_ir(builder, xb, builder.gep(xb, [_c32(128)]), builder.gep(xb, [_c32(192)]), q8)
            # ref._lanes_step: d = x.d*y.d; sums[l] += d*aux32[l]
            d = _mul_nan_first(builder, _f16(builder, xb, 208), yd)
            sums = _add_nan_first(builder, sums, builder.fmul(_splat_float(builder, d, 8), builder.sitofp(aux32, F8)))
            out.append((sums,))
        return out

    def _q6_K_unpack_wide(builder, xb):
        # one row's super-block for the 512-bit steps: the signed levels (level - 32, in [-32, 31]) of the 32-level
        # groups 2p and 2p + 1 (q6_K_ints_ir's order) side by side in one <64 x i8> (LANE_ORDER within each half),
        # their sub-blocks' four scales spread over the matching int16 pairs, and the row's correction
        # (_q6_K_ints_wide): sum over p of pmaddwd(pmaddubsw(128, w_p), scales_p)
        scales = builder.sext(_load(builder, xb, 192, _vec(8, 16)), _vec(16, 16))
        groups = q6_K_levels_ir(builder, xb, builder.gep(xb, [_c32(128)]))
        maddubs, maddwd = _maddubs512(builder), _maddwd512(builder)
        weights, scls = [], []
        corr = ir.Constant(_vec(32, 16), [0] * 16)
        for p in range(4):
            g = 2 * p
            levels = builder.shuffle_vector(groups[g], groups[g + 1], ir.Constant(_vec(32, 64), _LANE_ORDER2))
            weights.append(builder.sub(levels, ir.Constant(_vec(8, 64), [32] * 64)))
            scls.append(builder.shuffle_vector(scales, scales, ir.Constant(
                _vec(32, 32), [2 * g, 2 * g + 1] * 8 + [2 * g + 2, 2 * g + 3] * 8)))
            corr = builder.add(corr, builder.call(maddwd, [
                builder.call(maddubs, [ir.Constant(_vec(8, 64), [0x80] * 64), weights[p]]), scls[p]]))
        return weights, scls, corr

    def _q6_K_ints_wide(builder, unpacked, q8):
        # aux32 of an unpacked row against one token.  pmaddubsw takes its unsigned operand from the activations
        # (y + 128, i.e. y with the sign bit flipped) and the signed one from the row (w = level - 32): a pair is
        # at most 2 * 255 * 32 < 2^15 (no saturation) and holds sum (y + 128) * w = sum y * w + 128 * sum w, so
        # after pmaddwd by the scales the row's own correction (_q6_K_unpack_wide, the same pmaddwd of 128 * the
        # pair sums of w) is subtracted.  Two multiplies per 64 levels instead of three: integer sums, exact in
        # any grouping; the two 256-bit halves (groups 2p, 2p + 1) added at the end
        weights, scls, corr = unpacked
        maddubs, maddwd = _maddubs512(builder), _maddwd512(builder)
        flip = ir.Constant(_vec(8, 64), [0x80] * 64)
        acc = builder.sub(ir.Constant(_vec(32, 16), [0] * 16), corr)
        for p in range(4):
            y = builder.shuffle_vector(q8[2 * p], q8[2 * p + 1], ir.Constant(_vec(32, 64), list(range(64))))
            acc = builder.add(acc, builder.call(maddwd, [builder.call(maddubs, [builder.xor(y, flip), weights[p]]),
                                                         scls[p]]))
        return _halves8(builder, acc)

    def _q6_K_tile_state(n_tok):
        return (_ZERO8,) * n_tok

    def _q6_K_tile_block(builder, xb, yss, state):
        # one row's super-block against n_tok tokens: the row unpacked once (_q6_K_unpack_wide), each token's
        # ref._lanes_step -- d = x.d*y.d (all tokens as one <n_tok x float>, lane t token t's own product);
        # sums[l] += d*aux32[l]
        n_tok = len(yss)
        unpacked = _q6_K_unpack_wide(builder, xb)
        dv = _mul_nan_first(builder, _splat_float(builder, _f16(builder, xb, 208), n_tok),
                            _float_lanes(builder, [ys[0] for ys in yss]))
        new_sums = []
        for t, (_, q8, _) in enumerate(yss):
            aux32 = _q6_K_ints_wide(builder, unpacked, q8)
            d = builder.extract_element(dv, _c32(t))
            new_sums.append(_add_nan_first(builder, state[t], builder.fmul(_splat_float(builder, d, 8),
                                                                           builder.sitofp(aux32, F8))))
        return tuple(new_sums)

    def _q6_K_tile_final(builder, state):
        return [_lanes_final(builder, (sums,)) for sums in state]

    def _lanes_final(builder, state):
        # ref._lanes_final: sumf = 0; sumf += sums[l], l = 0..7
        (sums,) = state
        acc = _ZERO
        for l in range(8):
            acc = _add_nan_first(builder, acc, builder.extract_element(sums, _c32(l)))
        return acc

    # ------------------------------------------------------------------------------------------------- Q8_0, Q4_0
    # equal refimpl.quant.formats.legacy.vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0 (y Q8_0 in its own order).
    # block_q8_0: d f16 @0, qs[32] @2; block_q4_0: d f16 @0, qs[16] @2.

    def _q8_0_load(builder, yb):
        return _f16(builder, yb, 0), _load(builder, yb, 2, _vec(8))

    def _row_sums_vec(builder, vecs):
        # the int32 sums of the <8 x i32> ``vecs`` as one <len(vecs) x i32>
        if len(vecs) == 8:
            return _transpose_add(builder, vecs)
        if len(vecs) == 4:
            v = _transpose_add(builder, vecs)
            return builder.add(builder.shuffle_vector(v, v, ir.Constant(_vec(32, 4), [0, 1, 2, 3])),
                               builder.shuffle_vector(v, v, ir.Constant(_vec(32, 4), [4, 5, 6, 7])))
        sums = _block_sums(builder, vecs)
        v = ir.Constant(_vec(32, len(vecs)), ir.Undefined)
        for k, s in enumerate(sums):
            v = builder.insert_element(v, s, _c32(k))
        return v

    def _f16_rows(builder, xbs, off):
        # the F16 at byte off of each row's block, widened, as one <rows x float>
        h = ir.Constant(_vec(16, len(xbs)), ir.Undefined)
        for k, xb in enumerate(xbs):
            h = builder.insert_element(h, _load(builder, xb, off, I16), _c32(k))
        return builder.fpext(builder.bitcast(h, ir.VectorType(ir.HalfType(), len(xbs))), ir.VectorType(F32, len(xbs)))

    def _splat_rows(builder, value, n):
        return _splat_float(builder, value, n)

    # The legacy formats' float part is one multiply-add per block and row: done for all rows at once in a
    # <rows x float> (each lane is one row's own chain of operations, so the bits are the per-row ones).

    def _q8_0_block(builder, xbs, ys, state):
        yd, q8 = ys
        (sumf,) = state
        sumi = builder.sitofp(_row_sums_vec(builder, [_dot32_i16(builder, _load(builder, xb, 2, _vec(8)), q8)
                                                      for xb in xbs]), sumf.type)
        # ref._step_q8_0: sumf += sumi*(y.d*x.d)
        dd = _mul_nan_first(builder, _splat_rows(builder, yd, len(xbs)), _f16_rows(builder, xbs, 0))
        return (_add_nan_first(builder, sumf, builder.fmul(sumi, dd)),)

    def _q4_0_block(builder, xbs, ys, state):
        yd, q8 = ys
        (sumf,) = state
        ones = ir.Constant(_vec(16, 16), [1] * 16)
        # sum (level - 8) * q8 = pmaddubsw(level, q8) - pmaddubsw(8, q8) (levels in [0, 15]: no saturation)
        eights = _maddubs(builder, ir.Constant(_vec(8), [8] * 32), q8)
        vecs = [_maddwd(builder, builder.sub(_maddubs(builder, _nibbles32(builder, _load(builder, xb, 2, _vec(8, 16))), q8),
                                             eights), ones) for xb in xbs]
        sumi = builder.sitofp(_row_sums_vec(builder, vecs), sumf.type)
        # ref._step_q4_0: sumf += sumi*x.d*y.d (left to right)
        term = _mul_nan_first(builder, builder.fmul(sumi, _f16_rows(builder, xbs, 0)), _splat_rows(builder, yd, len(xbs)))
        return (_add_nan_first(builder, sumf, term),)

    def _q8_0_block_vnni(builder, xbs, ys, state):
        # _q8_0_block with the integer sums by vpdpbusd: sum x*y = sum (x + 128)*y - 128 * sum y, x + 128 being
        # x with its sign bit flipped, read as unsigned
        yd, q8 = ys
        (sumf,) = state
        start = _neg_offset_sums(builder, 128, q8)
        flip = ir.Constant(_vec(8), [0x80] * 32)
        vecs = [_dpbusd(builder, start, builder.xor(_load(builder, xb, 2, _vec(8)), flip), q8) for xb in xbs]
        sumi = builder.sitofp(_row_sums_vec(builder, vecs), sumf.type)
        dd = _mul_nan_first(builder, _splat_rows(builder, yd, len(xbs)), _f16_rows(builder, xbs, 0))
        return (_add_nan_first(builder, sumf, builder.fmul(sumi, dd)),)

    def _q4_0_block_vnni(builder, xbs, ys, state):
        # _q4_0_block with sum (level - 8)*y = vpdpbusd(-8 * sum y, level, y)
        yd, q8 = ys
        (sumf,) = state
        start = _neg_offset_sums(builder, 8, q8)
        vecs = [_dpbusd(builder, start, _nibbles32(builder, _load(builder, xb, 2, _vec(8, 16))), q8) for xb in xbs]
        sumi = builder.sitofp(_row_sums_vec(builder, vecs), sumf.type)
        term = _mul_nan_first(builder, builder.fmul(sumi, _f16_rows(builder, xbs, 0)), _splat_rows(builder, yd, len(xbs)))
        return (_add_nan_first(builder, sumf, term),)

    def _vec_final(builder, state):
        # one row's sum per lane of the state's <rows x float>
        (sumf,) = state
        return [builder.extract_element(sumf, _c32(k)) for k in range(sumf.type.count)]

    def _joint(n_rows):
        # the state of formats that keep all rows in one <rows x float>
        return (ir.Constant(ir.VectorType(F32, n_rows), [0.0] * n_rows),)

    # ------------------------------------------------------------------------------------------------- IQ4_XS
    # equals refimpl.quant.formats.iq4.vec_dot_iq4_xs_q8_K (y Q8_K in its own order).
    # block_iq4_xs: d f16 @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8.

    _KVALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)

    def _iq4_xs_block(builder, xbs, ys, states):
        yd, q8, _ = ys
        pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(8), [_vec(8), _vec(8)]),
                                                "llvm.x86.avx2.pshuf.b")
        if VNNI:
            # sum kvalue*y = vpdpbusd(-128 * sum y, kvalue + 128, y): the table holds kvalue + 128 (unsigned)
            table = ir.Constant(_vec(8), [v + 128 for v in _KVALUES] * 2)
            starts = [_neg_offset_sums(builder, 128, q8[ib]) for ib in range(8)]
        else:
            table = ir.Constant(_vec(8), [v & 0xFF for v in _KVALUES] * 2)
        out = []
        for xb, (sumf,) in zip(xbs, states):
            vecs = []
            for ib in range(8):
                levels = builder.call(pshufb, [table, _nibbles32(builder, _load(builder, xb, 8 + 16 * ib, _vec(8, 16)))])
                vecs.append(_dpbusd(builder, starts[ib], levels, q8[ib]) if VNNI
                            else _dot32_i16(builder, levels, q8[ib]))
            # the 8 sub-blocks' terms as one vector: ls = (4 low bits from scales_l | 2 high from scales_h) - 32,
            # term = (d4d8*ls)*sumi, each lane rounded as the C's scalar ops; then added in order
            sumis = _row_sums_vec(builder, vecs)
            d4d8 = _mul_nan_first(builder, _f16(builder, xb, 0), yd)
            v8 = _vec(32, 8)
            sh = _splat(builder, builder.zext(_load(builder, xb, 2, I16), I32), 32, 8)
            high = builder.and_(builder.lshr(sh, ir.Constant(v8, [2 * ib for ib in range(8)])), ir.Constant(v8, [3] * 8))
            sl4 = _load(builder, xb, 4, _vec(8, 4))
            sl = builder.zext(builder.shuffle_vector(sl4, sl4, ir.Constant(v8, [ib // 2 for ib in range(8)])), v8)
            low = builder.and_(builder.lshr(sl, ir.Constant(v8, [4 * (ib % 2) for ib in range(8)])),
                               ir.Constant(v8, [0xF] * 8))
            ls = builder.sub(builder.or_(low, builder.shl(high, ir.Constant(v8, [4] * 8))), ir.Constant(v8, [32] * 8))
            terms = builder.fmul(builder.fmul(_splat_float(builder, d4d8, 8), builder.sitofp(ls, F8)),
                                 builder.sitofp(sumis, F8))
            for ib in range(8):
                sumf = _add_nan_first(builder, sumf, builder.extract_element(terms, _c32(ib)))
            out.append((sumf,))
        return out

    def _q8_K_natural_load(builder, yb):
        return _load(builder, yb, 0, F32), [_load(builder, yb, 4 + 32 * j, _vec(8)) for j in range(8)], None

    def _formats():
        q4_K = _per_row((_ZERO8, _ZERO), _q4_K_block_wide if WIDE else _q4_K_block, _q4_K_final)
        q6_K = _per_row((_ZERO8,), _q6_K_block, _lanes_final)
        iq4_xs = _per_row((_ZERO,), _iq4_xs_block, lambda builder, state: state[0])
        return {
            "Q4_K": _Format(144, 292, q4_K[0], _q8_K_load, q4_K[1], q4_K[2],
                            tile=(_q4_K_tile_state, _q4_K_tile_block, _q4_K_tile_final) if WIDE else None),
            "Q6_K": _Format(210, 292, q6_K[0], _q8_K_load, q6_K[1], q6_K[2],
                            tile=(_q6_K_tile_state, _q6_K_tile_block, _q6_K_tile_final) if WIDE else None),
            "Q8_0": _Format(34, 34, _joint, _q8_0_load, _q8_0_block_vnni if VNNI else _q8_0_block, _vec_final),
            "Q4_0": _Format(18, 34, _joint, _q8_0_load, _q4_0_block_vnni if VNNI else _q4_0_block, _vec_final),
            "IQ4_XS": _Format(136, 292, iq4_xs[0], _q8_K_natural_load, iq4_xs[1], iq4_xs[2]),
        }

    _FORMATS = _formats()

    def _format(name: str) -> _Format:
        # looked up by the intrinsics' codegen through this module-level function: numba's cache key pickles the
        # intrinsic's functions and the globals they name, and a module-level function pickles by name (the
        # _Format objects, holding closures over LLVM constants, do not pickle the same way in every process)
        return _FORMATS[name]

    def _prefetch(builder, xbs, wbytes, stride0, intp):
        # software prefetch of the same block PREFETCH_ROWS rows further on (the row group after next): the
        # hardware prefetchers follow each row's stream, but a compute-heavy loop over short rows (a 2048-wide
        # Q4_K row is 1152 bytes) reaches the next rows before they arrive.  Measured, 2 threads, matrices
        # streamed from memory: Q4_K 8192x2048 7 -> 16 GB/s, Q6_K 2048x2048 13 -> 36 GB/s (from L3).  Prefetches
        # past a chunk's or the matrix's end are hints, never faults.
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [I8.as_pointer(), I32, I32, I32]), "llvm.prefetch.p0")
        ahead = builder.mul(stride0, ir.Constant(intp, PREFETCH_ROWS))
        for xb in xbs:
            nxt = builder.gep(xb, [ahead])
            for off in range(0, wbytes, 64):
                builder.call(prefetch, [builder.gep(nxt, [_c32(off)]), _c32(0), _c32(3), _c32(1)])

    def _at(builder, base, i, nbytes, intp):
        # block i of nbytes-byte blocks from base (i8*)
        return builder.gep(base, [builder.mul(i, ir.Constant(intp, nbytes))])

    def _over_blocks(builder, nb, state0, step):
        """The loop of every dot here: for i < nb, state = step(i, state), from the LLVM constants state0; returns
        the final state (a tuple of LLVM values).  The state lives in stack slots, which LLVM keeps in registers."""
        slots = [cgutils.alloca_once_value(builder, v) for v in state0]
        with cgutils.for_range(builder, nb) as loop:
            for s, v in zip(slots, step(loop.index, tuple(builder.load(s) for s in slots))):
                builder.store(v, s)
        return tuple(builder.load(s) for s in slots)

    def _row_dot_codegen(name, n_rows, context, builder, sig, args):
        # row_dot's codegen at module level (see refimpl.kernels.packed._group_dot_codegen: a stable cache key)
        fmt = _format(name)
        warr = context.make_array(sig.args[0])(context, builder, args[0])
        yarr = context.make_array(sig.args[2])(context, builder, args[2])
        oarr = context.make_array(sig.args[3])(context, builder, args[3])
        intp = context.get_value_type(types.intp)
        r0v = context.cast(builder, args[1], sig.args[1], types.intp)
        nb = builder.extract_value(warr.shape, 1)
        stride0 = builder.extract_value(warr.strides, 0)
        wdata = builder.bitcast(warr.data, I8.as_pointer())
        ydata = builder.bitcast(yarr.data, I8.as_pointer())
        rows = [builder.gep(wdata, [builder.mul(builder.add(r0v, ir.Constant(intp, k)), stride0)])
                for k in range(n_rows)]
        def step(i, state):
            xbs = [_at(builder, row, i, fmt.wbytes, intp) for row in rows]
            _prefetch(builder, xbs, fmt.wbytes, stride0, intp)
            return fmt.block(builder, xbs, fmt.load_y(builder, _at(builder, ydata, i, fmt.ybytes, intp)), state)
        odata = oarr.data
        for k, result in enumerate(fmt.final(builder, _over_blocks(builder, nb, fmt.state(n_rows), step))):
            builder.store(result, builder.gep(odata, [builder.add(r0v, ir.Constant(intp, k))]))
        return context.get_dummy_value()

    def _make_row_dot(name: str, n_rows: int):
        """An intrinsic ``row_dot(w, r0, y, out)``: out[r0 + k] = vec_dot(n, w[r0 + k], y) for k < n_rows, w the
        (rows, nb) weight blocks, y one token's (nb,) activation blocks (lane-packed for the K-quants whose
        FastKernels.pack_acts packs them), out float32; w and y C-contiguous.  The caller keeps r0 + n_rows <= rows."""
        @intrinsic
        def row_dot(typingctx, w, r0, y, out):
            if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C" and isinstance(y, types.Array)
                    and y.ndim == 1 and y.layout == "C" and isinstance(out, types.Array) and out.dtype == types.float32
                    and isinstance(r0, types.Integer)):
                return None

            def codegen(context, builder, sig, args):
                return _row_dot_codegen(name, n_rows, context, builder, sig, args)

            return types.void(w, r0, y, out), codegen
        return row_dot

    def _tile_loop(builder, fmt, nb, row, toks, odata, ostride, r0v, t0v, intp):
        # the tile loop of a format with a one-row tile form (fmt.tile): one state for all the tokens
        state0, block, final = fmt.tile

        def step(i, state):
            yss = [fmt.load_y(builder, _at(builder, tok, i, fmt.ybytes, intp)) for tok in toks]
            return block(builder, _at(builder, row, i, fmt.wbytes, intp), yss, state)
        for j, result in enumerate(final(builder, _over_blocks(builder, nb, state0(len(toks)), step))):
            orow = builder.bitcast(builder.gep(odata, [builder.mul(builder.add(t0v, ir.Constant(intp, j)), ostride)]),
                                   F32.as_pointer())
            builder.store(result, builder.gep(orow, [r0v]))

    def _tile_dot_codegen(name, n_rows, n_tok, context, builder, sig, args):
        # tile_dot's codegen at module level (a stable cache key, as _row_dot_codegen)
        fmt = _format(name)
        warr = context.make_array(sig.args[0])(context, builder, args[0])
        yarr = context.make_array(sig.args[2])(context, builder, args[2])
        oarr = context.make_array(sig.args[4])(context, builder, args[4])
        intp = context.get_value_type(types.intp)
        r0v = context.cast(builder, args[1], sig.args[1], types.intp)
        t0v = context.cast(builder, args[3], sig.args[3], types.intp)
        nb = builder.extract_value(warr.shape, 1)
        wdata = builder.bitcast(warr.data, I8.as_pointer())
        ydata = builder.bitcast(yarr.data, I8.as_pointer())
        odata = builder.bitcast(oarr.data, I8.as_pointer())
        wstride, ystride, ostride = (builder.extract_value(a.strides, 0) for a in (warr, yarr, oarr))
        rows = [builder.gep(wdata, [builder.mul(builder.add(r0v, ir.Constant(intp, k)), wstride)])
                for k in range(n_rows)]
        toks = [builder.gep(ydata, [builder.mul(builder.add(t0v, ir.Constant(intp, j)), ystride)])
                for j in range(n_tok)]
        if n_rows == 1 and fmt.tile is not None:
            _tile_loop(builder, fmt, nb, rows[0], toks, odata, ostride, r0v, t0v, intp)
            return context.get_dummy_value()
        # every token's own state, side by side in one tuple
        per_tok = len(fmt.state(n_rows))

        def step(i, state):
            xbs = [_at(builder, row, i, fmt.wbytes, intp) for row in rows]
            new = []
            for j, tok in enumerate(toks):
                ys = fmt.load_y(builder, _at(builder, tok, i, fmt.ybytes, intp))
                new += fmt.block(builder, xbs, ys, state[per_tok * j:per_tok * (j + 1)])
            return tuple(new)
        final_state = _over_blocks(builder, nb, fmt.state(n_rows) * n_tok, step)
        for j in range(n_tok):
            orow = builder.bitcast(builder.gep(odata, [builder.mul(builder.add(t0v, ir.Constant(intp, j)),
                                                                   ostride)]), F32.as_pointer())
            for k, result in enumerate(fmt.final(builder, final_state[per_tok * j:per_tok * (j + 1)])):
                builder.store(result, builder.gep(orow, [builder.add(r0v, ir.Constant(intp, k))]))
        return context.get_dummy_value()

    def _make_tile_dot(name: str, n_rows: int, n_tok: int):
        """An intrinsic ``tile_dot(w, r0, y, t0, out)``: out[t0 + j, r0 + k] = vec_dot(n, w[r0 + k], y[t0 + j]) for
        k < n_rows, j < n_tok: the row dot's loop with the tokens of a batch side by side.  Each (row, token) keeps
        its own state and its reference's order; the weight block's loads and unpacking are the same expressions
        for every token, so LLVM computes them once per block (common subexpressions) and only the integer
        products and the float part are done per token.  y (tokens, nb) and out (tokens, rows) C-contiguous; the
        caller keeps r0 + n_rows <= rows and t0 + n_tok <= tokens."""
        @intrinsic
        def tile_dot(typingctx, w, r0, y, t0, out):
            if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C" and isinstance(y, types.Array)
                    and y.ndim == 2 and y.layout == "C" and isinstance(out, types.Array) and out.ndim == 2
                    and out.layout == "C" and out.dtype == types.float32 and isinstance(r0, types.Integer)
                    and isinstance(t0, types.Integer)):
                return None

            def codegen(context, builder, sig, args):
                return _tile_dot_codegen(name, n_rows, n_tok, context, builder, sig, args)

            return types.void(w, r0, y, t0, out), codegen
        return tile_dot

    for _name in _FORMATS:
        ROW_DOTS[_name] = (_make_row_dot(_name, ROWS), _make_row_dot(_name, 1))
        _r, _t = _TILE_SHAPES[_name]
        TILE_DOTS[_name] = (_make_tile_dot(_name, _r, _t), _r, _t)
