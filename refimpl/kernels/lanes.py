"""The fast layer's integer vector steps: LLVM-IR intrinsics for the integer sums of ggml's dot products.

Each step computes exactly what a loop of the reference layer computes (integer arithmetic, so regrouping is exact:
int8 x int8 -> int16 products, widened to int32, int32 sums wrapping as the C's do); the docstrings name the loop.
numba cannot be made to vectorize those loops (it widens small integers to int64, and LLVM unrolls short constant
loops into scalar code, or guards short run-time ones with checks that cost more than the work), so they are
written here as the vector operations they are.  With ``NUMBA_DISABLE_JIT=1`` each has a numpy fallback.
tests/test_jit_helpers.py checks every step against Python integers, jitted and interpreted.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import JIT_DISABLED, njit

if not JIT_DISABLED:
    from llvmlite import ir

# The caller keeps every element read within its arrays (no bounds check).
#
# Eight int32 lanes.  ggml's K-quant dot products (ggml_vec_dot_q{2..6}_K_q8_K_generic) keep eight partial sums,
# aux32[0..7]: for each 8 levels a and activations q8, aux16[l] = q8[l] * a[l]; aux32[l] += scale * aux16[l].  The
# lanes stay separate (each is rounded to float on its own).  lanes8_madd2 / lanes8_madd4 do 2 / 4 consecutive
# groups of 8 that share the scale (scale * (p0 + p1 + ...) equals the C's scale * p0 + scale * p1 + ...).
#
# One 32-level block's sum.  The legacy dot products (ggml_vec_dot_q8_0_q8_0_generic and friends) sum 32 products
# per block into an int, sumi: one <32 x i8> multiply and LLVM's vector add-reduction.

if JIT_DISABLED:

    def _add_scaled_lanes(acc, products, groups, scale):
        total = np.asarray(products, dtype=np.int64).reshape(groups, 8).sum(axis=0)
        acc[:8] = (acc[:8].astype(np.int64) + np.int64(scale) * total).astype(np.int32)

    def _lanes8_madd_groups(groups):
        def lanes8_madd(acc, a, b, off, scale):
            """acc[l] += scale * sum over the groups g of int16(a[off + 8g + l] * b[off + 8g + l]), l = 0..7."""
            n = 8 * groups
            _add_scaled_lanes(acc, a[off:off + n].astype(np.int64) * b[off:off + n].astype(np.int64), groups, scale)
        return lanes8_madd

    def lanes8_madd4_nibbles(acc, q4, q4_off, shift, b, b_off, scale):
        """lanes8_madd4 with the levels unpacked on the fly: level l = (q4[q4_off + l] >> shift) & 15."""
        levels = (q4[q4_off:q4_off + 32].astype(np.int64) >> int(shift)) & 15
        _add_scaled_lanes(acc, levels * b[b_off:b_off + 32].astype(np.int64), 4, scale)

    def dot32_i8(a, b):
        """sum over l < 32 of a[l] * b[l] (int8 arrays) as an int32."""
        return np.int32(np.dot(a[:32].astype(np.int32), b[:32].astype(np.int32)))

    def dot32_q5(qs, qh, b, offset):
        """sum over j < 32 of (level j - offset) * b[j] as an int32, level j = nibble j | (bit j of the 32-bit qh) << 4,
        nibbles j < 16 the low ones of qs[j], j >= 16 the high ones of qs[j - 16]: the integer part of a Q5_0
        (offset 16) or Q5_1 (offset 0) block against Q8 levels."""
        q = qs[:16].astype(np.int32)
        bits = (np.int64(qh) >> np.arange(32)) & 1
        levels = np.concatenate([q & 15, q >> 4]) | (bits << 4).astype(np.int32)
        return np.int32(np.dot(levels - int(offset), b[:32].astype(np.int32)))

    def make_dot32_lut16(values):
        table = np.asarray(values, dtype=np.int64)

        def dot32_lut16(qs, b):
            """sum over j < 16 of T[qs[j] & 15] * b[j] + T[qs[j] >> 4] * b[j + 16] as an int32, T the 16 values."""
            q = qs[:16].astype(np.int64)
            return np.int32(np.dot(np.concatenate([table[q & 15], table[q >> 4]]), b[:32].astype(np.int64)))
        return dot32_lut16

else:

    def _vec(bits, n=32):
        return ir.VectorType(ir.IntType(bits), n)

    def _splat(builder, value, bits, n):
        # the scalar ``value`` (an LLVM iN) in all n lanes
        v = builder.insert_element(ir.Constant(_vec(bits, n), ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_vec(bits, n), ir.Undefined), ir.Constant(_vec(32, n), [0] * n))

    def _array_data(context, builder, aryty, ary):
        return context.make_array(aryty)(context, builder, ary).data

    def _load(context, builder, aryty, ary, n, offty=None, off=None):
        # n bytes of an int8/uint8 array from element ``off`` (0 if None) as an <n x i8>
        data = _array_data(context, builder, aryty, ary)
        if off is not None:
            data = builder.gep(data, [context.cast(builder, off, offty, types.intp)])
        return builder.load(builder.bitcast(data, _vec(8, n).as_pointer()), align=1)

    def _widen16(builder, v, dtype):
        widen = builder.zext if dtype == types.uint8 else builder.sext
        return widen(v, _vec(16, v.type.count))

    def _nibbles32(builder, q):
        # 16 bytes -> 32 levels (i8): the low nibbles, then the high nibbles (ggml's Q4/Q5/IQ4_NL order)
        lo = builder.and_(q, ir.Constant(_vec(8, 16), [15] * 16))
        hi = builder.lshr(q, ir.Constant(_vec(8, 16), [4] * 16))
        return builder.shuffle_vector(lo, hi, ir.Constant(_vec(32), list(range(32))))

    def _reduce_add32(builder, v):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [_vec(32)]),
                                            "llvm.vector.reduce.add.v32i32")
        return builder.call(fn, [v])

    def _reduce_add8(builder, v):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [_vec(32, 8)]),
                                            "llvm.vector.reduce.add.v8i32")
        return builder.call(fn, [v])

    def _maddubs(builder, a_u8, b_i8):
        # x86 pmaddubsw: int16 m = a[2m] * b[2m] + a[2m + 1] * b[2m + 1], a unsigned, b signed (saturating: the
        # callers keep every pair inside int16)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(16, 16), [_vec(8), _vec(8)]),
                                            "llvm.x86.avx2.pmadd.ub.sw")
        return builder.call(fn, [a_u8, b_i8])

    def _maddwd(builder, a16, b16):
        # x86 pmaddwd: int32 m = a[2m] * b[2m] + a[2m + 1] * b[2m + 1] (exact for |products| < 2^30)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(32, 8), [_vec(16, 16), _vec(16, 16)]),
                                            "llvm.x86.avx2.pmadd.wd")
        return builder.call(fn, [a16, b16])

    def _add_scaled_lanes(builder, acc_ptr, products, groups, scale32):
        # acc[0:8] += scale * (the groups of 8 in products, added lane by lane), all int32
        total = None
        for g in range(groups):
            part = builder.shuffle_vector(products, products, ir.Constant(_vec(32, 8), list(range(8 * g, 8 * g + 8))))
            total = part if total is None else builder.add(total, part)
        acc_ptr = builder.bitcast(acc_ptr, _vec(32, 8).as_pointer())
        scaled = builder.mul(_splat(builder, scale32, 32, 8), total)
        builder.store(builder.add(builder.load(acc_ptr, align=4), scaled), acc_ptr, align=4)

    _INT8S = (types.int8, types.uint8)

    def _is_array(t, dtypes):
        return isinstance(t, types.Array) and t.dtype in dtypes

    def _lanes8_madd_groups(groups):
        @intrinsic
        def lanes8_madd(typingctx, acc, a, b, off, scale):
            """acc[l] += scale * sum over the groups g of int16(a[off + 8g + l] * b[off + 8g + l]), l = 0..7."""
            if not (_is_array(acc, (types.int32,)) and _is_array(a, _INT8S) and _is_array(b, _INT8S)
                    and isinstance(off, types.Integer) and isinstance(scale, types.Integer)):
                return None

            def codegen(context, builder, sig, args):
                n = 8 * groups
                va = _widen16(builder, _load(context, builder, sig.args[1], args[1], n, sig.args[3], args[3]),
                              sig.args[1].dtype)
                vb = _widen16(builder, _load(context, builder, sig.args[2], args[2], n, sig.args[3], args[3]),
                              sig.args[2].dtype)
                products = builder.sext(builder.mul(va, vb), _vec(32, n))
                _add_scaled_lanes(builder, _array_data(context, builder, sig.args[0], args[0]), products, groups,
                                  context.cast(builder, args[4], sig.args[4], types.int32))
                return context.get_dummy_value()

            return types.void(acc, a, b, off, scale), codegen
        return lanes8_madd

    @intrinsic
    def lanes8_madd4_nibbles(typingctx, acc, q4, q4_off, shift, b, b_off, scale):
        """lanes8_madd4 with the levels unpacked on the fly: level l = (q4[q4_off + l] >> shift) & 15."""
        if not (_is_array(acc, (types.int32,)) and _is_array(q4, (types.uint8,)) and _is_array(b, (types.int8,))
                and all(isinstance(t, types.Integer) for t in (q4_off, shift, b_off, scale))):
            return None

        def codegen(context, builder, sig, args):
            shift8 = _splat(builder, context.cast(builder, args[3], sig.args[3], types.uint8), 8, 32)
            levels = builder.and_(builder.lshr(_load(context, builder, sig.args[1], args[1], 32, sig.args[2], args[2]),
                                               shift8), ir.Constant(_vec(8), [15] * 32))
            vb = builder.sext(_load(context, builder, sig.args[4], args[4], 32, sig.args[5], args[5]), _vec(16))
            products = builder.sext(builder.mul(builder.zext(levels, _vec(16)), vb), _vec(32))
            _add_scaled_lanes(builder, _array_data(context, builder, sig.args[0], args[0]), products, 4,
                              context.cast(builder, args[6], sig.args[6], types.int32))
            return context.get_dummy_value()

        return types.void(acc, q4, q4_off, shift, b, b_off, scale), codegen

    @intrinsic
    def dot32_i8(typingctx, a, b):
        """sum over l < 32 of a[l] * b[l] (int8 arrays) as an int32."""
        if not (_is_array(a, (types.int8,)) and _is_array(b, (types.int8,))):
            return None

        def codegen(context, builder, sig, args):
            va = builder.sext(_load(context, builder, sig.args[0], args[0], 32), _vec(16))
            vb = builder.sext(_load(context, builder, sig.args[1], args[1], 32), _vec(16))
            if HOST_AVX2:
                # pmaddwd on the int16 halves: |a * b| <= 2^14, a pair < 2^15 -> exact int32, 8 dwords to reduce
                halves = []
                for h in range(2):
                    sel = ir.Constant(_vec(32, 16), list(range(16 * h, 16 * h + 16)))
                    halves.append(_maddwd(builder, builder.shuffle_vector(va, va, sel),
                                          builder.shuffle_vector(vb, vb, sel)))
                return _reduce_add8(builder, builder.add(halves[0], halves[1]))
            return _reduce_add32(builder, builder.sext(builder.mul(va, vb), _vec(32)))

        return types.int32(a, b), codegen

    @intrinsic
    def dot32_q5(typingctx, qs, qh, b, offset):
        """sum over j < 32 of (level j - offset) * b[j] as an int32, level j = nibble j | (bit j of the 32-bit qh) << 4,
        nibbles j < 16 the low ones of qs[j], j >= 16 the high ones of qs[j - 16]: the integer part of a Q5_0
        (offset 16) or Q5_1 (offset 0) block against Q8 levels."""
        if not (_is_array(qs, (types.uint8,)) and _is_array(b, (types.int8,)) and isinstance(qh, types.Integer)
                and isinstance(offset, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            nib = _nibbles32(builder, _load(context, builder, sig.args[0], args[0], 16))
            # bit j of qh: byte j // 8 of the word (bitcast: memory order, and numba runs only on little-endian
            # hosts), spread to lanes 8k..8k+7 and tested against 1 << (j % 8): byte-wide ops, no per-lane shifts
            qh_bytes = builder.bitcast(context.cast(builder, args[1], sig.args[1], types.uint32), _vec(8, 4))
            spread = builder.shuffle_vector(qh_bytes, qh_bytes, ir.Constant(_vec(32), [j // 8 for j in range(32)]))
            bit = builder.and_(spread, ir.Constant(_vec(8), [1 << (j % 8) for j in range(32)]))
            fifth = builder.select(builder.icmp_unsigned("!=", bit, ir.Constant(_vec(8), [0] * 32)),
                                   ir.Constant(_vec(8), [16] * 32), ir.Constant(_vec(8), [0] * 32))
            if HOST_AVX2:
                # pmaddubsw(level, b) - pmaddubsw(offset, b): levels and offset in [0, 31], pairs < 2 * 31 * 128
                y = _load(context, builder, sig.args[2], args[2], 32)
                off8 = _splat(builder, context.cast(builder, args[3], sig.args[3], types.uint8), 8, 32)
                pairs = builder.sub(_maddubs(builder, builder.or_(nib, fifth), y), _maddubs(builder, off8, y))
                return _reduce_add8(builder, _maddwd(builder, pairs, ir.Constant(_vec(16, 16), [1] * 16)))
            offset16 = _splat(builder, context.cast(builder, args[3], sig.args[3], types.int16), 16, 32)
            levels = builder.sub(builder.zext(builder.or_(nib, fifth), _vec(16)), offset16)
            vb = builder.sext(_load(context, builder, sig.args[2], args[2], 32), _vec(16))
            return _reduce_add32(builder, builder.sext(builder.mul(levels, vb), _vec(32)))

        return types.int32(qs, qh, b, offset), codegen

    def make_dot32_lut16(values):
        """An intrinsic dot32_lut16(qs, b): sum over j < 16 of T[qs[j] & 15] * b[j] + T[qs[j] >> 4] * b[j + 16] as
        an int32, T the 16 int8 ``values`` (IQ4_NL's kvalues).  The lookup is pshufb on AVX2 hosts, elsewhere a
        tree of 15 vector selects on the index bits: LLVM IR has no portable dynamic byte shuffle, and a gather per
        level is slower."""
        table = [int(v) for v in values]
        if len(table) != 16 or not all(-128 <= v < 128 for v in table):
            raise ValueError("make_dot32_lut16 takes 16 int8 values")

        @intrinsic
        def dot32_lut16(typingctx, qs, b):
            if not (_is_array(qs, (types.uint8,)) and _is_array(b, (types.int8,))):
                return None

            def codegen(context, builder, sig, args):
                idx = _nibbles32(builder, _load(context, builder, sig.args[0], args[0], 16))
                if HOST_AVX2:
                    # x86 has the dynamic byte shuffle: pshufb looks up 16 bytes in each 128-bit half
                    pshufb = cgutils.get_or_insert_function(
                        builder.module, ir.FunctionType(_vec(8), [_vec(8), _vec(8)]), "llvm.x86.avx2.pshuf.b")
                    looked_up = builder.call(pshufb, [ir.Constant(_vec(8), [v & 0xFF for v in table] * 2), idx])
                else:
                    level = [ir.Constant(_vec(8), [v] * 32) for v in table]
                    for bit in range(4):        # halve the candidates on each index bit
                        mask = builder.icmp_unsigned("!=", builder.and_(idx, ir.Constant(_vec(8), [1 << bit] * 32)),
                                                     ir.Constant(_vec(8), [0] * 32))
                        level = [builder.select(mask, level[2 * k + 1], level[2 * k])
                                 for k in range(len(level) // 2)]
                    looked_up = level[0]
                vb = builder.sext(_load(context, builder, sig.args[1], args[1], 32), _vec(16))
                va = builder.sext(looked_up, _vec(16))
                if HOST_AVX2:
                    # pmaddwd on the int16 halves, as dot32_i8 (|T| <= 127: every pair is exact in int32)
                    halves = []
                    for h in range(2):
                        sel = ir.Constant(_vec(32, 16), list(range(16 * h, 16 * h + 16)))
                        halves.append(_maddwd(builder, builder.shuffle_vector(va, va, sel),
                                              builder.shuffle_vector(vb, vb, sel)))
                    return _reduce_add8(builder, builder.add(halves[0], halves[1]))
                return _reduce_add32(builder, builder.sext(builder.mul(va, vb), _vec(32)))

            return types.int32(qs, b), codegen
        return dot32_lut16


# Lane-packed activations.  x86's byte dot-product instructions (pmaddubsw + pmaddwd, VNNI's vpdpbusd) add up four
# ADJACENT byte products into one int32; the K-quant lanes need the products of positions 8k + l (k = 0..3) added
# into lane l.  So the activations of each 32-level group are stored once per token in LANE_ORDER (lane-packed:
# packed[4l + k] = q8[8k + l]) and the weight levels are shuffled the same way in a register: then dword l of one
# pmaddubsw/pmaddwd pair is exactly the C's aux32[l] contribution of that group.  Integer sums: exact in any order.
LANE_ORDER = np.array([8 * k + l for l in range(8) for k in range(4)], dtype=np.intp)


def _host_has(feature: str) -> bool:
    if JIT_DISABLED:
        return False
    import llvmlite.binding as llvm
    from numba.core import config
    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
        return False                     # a chosen target (e.g. a portable cache): generic code
    return bool(llvm.get_host_cpu_features().get(feature, False))


# chosen once at import, from the CPU numba compiles for (its cache keys on the CPU and its features too)
HOST_AVX2 = _host_has("avx2")

if JIT_DISABLED:

    def q4_K_lanes(acc, qs, q8p, scales):
        """acc[0:8] = sum over the sub-blocks j < 8 of scales[j] * (the lane sums of sub-block j), the levels of
        sub-block j being nibble (j & 1) of qs[32 (j >> 1) + p] and its activations q8p[32 j: 32 j + 32] in
        LANE_ORDER: the integer part of one Q4_K super-block as ggml_vec_dot_q4_K_q8_K_generic's aux32."""
        q = qs[:128].astype(np.int64).reshape(4, 32)
        total = np.zeros(8, np.int64)
        for j in range(8):
            a = (q[j >> 1] >> (4 * (j & 1))) & 15
            y = q8p[32 * j:32 * j + 32].astype(np.int64)[np.argsort(LANE_ORDER)]   # back to natural order
            total += int(scales[j]) * (a * y).reshape(4, 8).sum(axis=0)
        acc[:8] = total.astype(np.int32)

else:

    def _lane_dots(builder, levels_u8, acts_i8, scale16):
        # <8 x i32>: dword l = scale * sum_k levels[LANE_ORDER[4l + k]] * acts[4l + k]; levels in [0, 15], so a
        # pair of products fits an int16 (|2 * 15 * 128| < 2^15: pmaddubsw never saturates)
        shuffled = builder.shuffle_vector(levels_u8, levels_u8, ir.Constant(_vec(32), [int(i) for i in LANE_ORDER]))
        if HOST_AVX2:
            mod = builder.module
            maddubs = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_vec(16, 16), [_vec(8), _vec(8)]), "llvm.x86.avx2.pmadd.ub.sw")
            maddwd = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_vec(32, 8), [_vec(16, 16), _vec(16, 16)]), "llvm.x86.avx2.pmadd.wd")
            pairs = builder.call(maddubs, [shuffled, acts_i8])
            return builder.call(maddwd, [pairs, scale16])
        prod = builder.mul(builder.zext(shuffled, _vec(32)), builder.sext(acts_i8, _vec(32)))
        quads = None
        for k in range(4):
            part = builder.shuffle_vector(prod, prod, ir.Constant(_vec(32, 8), [4 * l + k for l in range(8)]))
            quads = part if quads is None else builder.add(quads, part)
        scale32 = builder.sext(builder.shuffle_vector(scale16, scale16, ir.Constant(_vec(32, 8), list(range(8)))),
                               _vec(32, 8))
        return builder.mul(quads, scale32)

    @intrinsic
    def q4_K_lanes(typingctx, acc, qs, q8p, scales):
        """acc[0:8] = sum over the sub-blocks j < 8 of scales[j] * (the lane sums of sub-block j), the levels of
        sub-block j being nibble (j & 1) of qs[32 (j >> 1) + p] and its activations q8p[32 j: 32 j + 32] in
        LANE_ORDER: the integer part of one Q4_K super-block as ggml_vec_dot_q4_K_q8_K_generic's aux32.
        scales: int32 (8,), each in [0, 63]."""
        if not (_is_array(acc, (types.int32,)) and _is_array(qs, (types.uint8,)) and _is_array(q8p, (types.int8,))
                and _is_array(scales, (types.int32,))):
            return None

        def codegen(context, builder, sig, args):
            i32 = ir.IntType(32)
            qs_ptr = _array_data(context, builder, sig.args[1], args[1])
            q8_ptr = _array_data(context, builder, sig.args[2], args[2])
            sc_ptr = _array_data(context, builder, sig.args[3], args[3])
            total = ir.Constant(_vec(32, 8), [0] * 8)
            for p in range(4):
                q = builder.load(builder.bitcast(builder.gep(qs_ptr, [ir.Constant(i32, 32 * p)]),
                                                 _vec(8).as_pointer()), align=1)
                lo = builder.and_(q, ir.Constant(_vec(8), [15] * 32))
                hi = builder.lshr(q, ir.Constant(_vec(8), [4] * 32))
                for levels, j in ((lo, 2 * p), (hi, 2 * p + 1)):
                    y = builder.load(builder.bitcast(builder.gep(q8_ptr, [ir.Constant(i32, 32 * j)]),
                                                     _vec(8).as_pointer()), align=1)
                    sc = builder.trunc(builder.load(builder.gep(sc_ptr, [ir.Constant(i32, j)])), ir.IntType(16))
                    total = builder.add(total, _lane_dots(builder, levels, y, _splat(builder, sc, 16, 16)))
            acc_ptr = builder.bitcast(_array_data(context, builder, sig.args[0], args[0]), _vec(32, 8).as_pointer())
            builder.store(total, acc_ptr, align=4)
            return context.get_dummy_value()

        return types.void(acc, qs, q8p, scales), codegen


if JIT_DISABLED:

    def q4_K_block_ints(aux32, qs, sc12, q8p, bsums):
        """The whole integer part of one Q4_K super-block against lane-packed Q8_K activations: the 12 scale bytes
        unpacked (get_scale_min_k4), aux32[0:8] as q4_K_lanes, and the return value sumi = sum over j < 16 of
        bsums[j] * min[j // 2] (ggml_vec_dot_q4_K_q8_K_generic's sumi)."""
        scales = np.zeros(8, np.int32)
        mins = np.zeros(8, np.int64)
        for j in range(8):
            if j < 4:
                scales[j], mins[j] = int(sc12[j]) & 63, int(sc12[j + 4]) & 63
            else:
                scales[j] = (int(sc12[j + 4]) & 0xF) | ((int(sc12[j - 4]) >> 6) << 4)
                mins[j] = (int(sc12[j + 4]) >> 4) | ((int(sc12[j]) >> 6) << 4)
        q4_K_lanes(aux32, qs, q8p, scales)
        return np.int32(np.dot(bsums[:16].astype(np.int64), np.repeat(mins, 2)))

    def lanes8_axpy_nan_first(sums, d, lanes):
        """sums[l] = add_nan_first(sums[l], d * float32(lanes[l])) for l < 8 (the K-quants' per-lane float step)."""
        for l in range(8):
            p = np.float32(d) * np.float32(lanes[l])
            a = sums[l]
            sums[l] = np.float32(np.array([a]).view(np.uint32)[0] | 0x00400000).view(np.float32) if a != a \
                else np.float32(a + p)

else:

    def _load_vec(builder, ptr, off, ty):
        # a value of type ty at element offset off of ptr (an array's data pointer), unaligned
        return builder.load(builder.bitcast(builder.gep(ptr, [ir.Constant(ir.IntType(32), off)]), ty.as_pointer()),
                            align=1)

    def q4_K_ints_ir(builder, qs_ptr, sc_ptr, q8s, bsums):
        """The integer part of one Q4_K super-block as LLVM values: (aux32 <8 x i32>, sumi i32).  qs_ptr/sc_ptr point
        at its 128 qs / 12 scale bytes, q8s are the 8 lane-packed <32 x i8> of the activations, bsums their
        <16 x i32> bsums.  Shared by q4_K_block_ints and refimpl.kernels.rowdot."""
        i32 = ir.IntType(32)
        c32 = lambda v: ir.Constant(i32, v)  # noqa: E731
        # get_scale_min_k4 of j = 0..7 as ggml's SIMD kernels do it: the kmask1..3 shuffle of three 32-bit words
        u0, u1, u2 = (_load_vec(builder, builder.bitcast(sc_ptr, i32.as_pointer()), k, i32) for k in range(3))
        kmask1, kmask2, kmask3 = c32(0x3F3F3F3F), c32(0x0F0F0F0F), c32(0x03030303)
        s_lo = builder.and_(u0, kmask1)
        s_hi = builder.or_(builder.and_(u2, kmask2), builder.shl(builder.and_(builder.lshr(u0, c32(6)), kmask3), c32(4)))
        m_lo = builder.and_(u1, kmask1)
        m_hi = builder.or_(builder.and_(builder.lshr(u2, c32(4)), kmask2),
                           builder.shl(builder.and_(builder.lshr(u1, c32(6)), kmask3), c32(4)))

        def bytes8(lo, hi):
            v = builder.insert_element(ir.Constant(_vec(32, 2), ir.Undefined), lo, c32(0))
            return builder.bitcast(builder.insert_element(v, hi, c32(1)), _vec(8, 8))

        scales, mins = bytes8(s_lo, s_hi), bytes8(m_lo, m_hi)
        total = ir.Constant(_vec(32, 8), [0] * 8)
        for p in range(4):
            q = _load_vec(builder, qs_ptr, 32 * p, _vec(8))
            lo = builder.and_(q, ir.Constant(_vec(8), [15] * 32))
            hi = builder.lshr(q, ir.Constant(_vec(8), [4] * 32))
            for levels, j in ((lo, 2 * p), (hi, 2 * p + 1)):
                sc = builder.zext(builder.extract_element(scales, c32(j)), ir.IntType(16))
                total = builder.add(total, _lane_dots(builder, levels, q8s[j], _splat(builder, sc, 16, 16)))
        # sumi = sum over j < 16 of bsums[j] * mins[j / 2]
        mins16 = builder.zext(builder.shuffle_vector(mins, mins, ir.Constant(_vec(32, 16), [j // 2 for j in range(16)])),
                              _vec(32, 16))
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [_vec(32, 16)]),
                                            "llvm.vector.reduce.add.v16i32")
        return total, builder.call(fn, [builder.mul(bsums, mins16)])

    @intrinsic
    def q4_K_block_ints(typingctx, aux32, qs, sc12, q8p, bsums):
        """The whole integer part of one Q4_K super-block against lane-packed Q8_K activations: the 12 scale bytes
        unpacked (get_scale_min_k4, as the kmask1..3 word shuffle of ggml's SIMD kernels), aux32[0:8] as
        q4_K_lanes, and the return value sumi = sum over j < 16 of bsums[j] * min[j // 2]
        (ggml_vec_dot_q4_K_q8_K_generic's sumi; |sumi| <= 16 * 32768 * 63 < 2^31)."""
        if not (_is_array(aux32, (types.int32,)) and _is_array(qs, (types.uint8,))
                and _is_array(sc12, (types.uint8,)) and _is_array(q8p, (types.int8,))
                and _is_array(bsums, (types.int16,))):
            return None

        def codegen(context, builder, sig, args):
            q8_ptr = _array_data(context, builder, sig.args[3], args[3])
            q8s = [_load_vec(builder, q8_ptr, 32 * j, _vec(8)) for j in range(8)]
            bs_ptr = _array_data(context, builder, sig.args[4], args[4])
            bsums = builder.sext(_load_vec(builder, bs_ptr, 0, _vec(16, 16)), _vec(32, 16))
            aux32, sumi = q4_K_ints_ir(builder, _array_data(context, builder, sig.args[1], args[1]),
                                       _array_data(context, builder, sig.args[2], args[2]), q8s, bsums)
            acc_ptr = builder.bitcast(_array_data(context, builder, sig.args[0], args[0]), _vec(32, 8).as_pointer())
            builder.store(aux32, acc_ptr, align=4)
            return sumi

        return types.int32(aux32, qs, sc12, q8p, bsums), codegen

    @intrinsic
    def lanes8_axpy_nan_first(typingctx, sums, d, lanes):
        """sums[l] = add_nan_first(sums[l], d * float32(lanes[l])) for l < 8, as one vector step: the K-quants'
        per-lane float step (refimpl.quant.formats.kquants._lanes_step after its d).  Exact: an IEEE product and
        sum per lane, no contraction into FMA (no fast-math flags), and a NaN sums[l] kept quieted as
        add_nan_first keeps it (with only one NaN operand x86 returns that NaN, scalar or vector)."""
        if not (_is_array(sums, (types.float32,)) and d == types.float32 and _is_array(lanes, (types.int32,))):
            return None

        def codegen(context, builder, sig, args):
            f8 = ir.VectorType(ir.FloatType(), 8)
            s_ptr = builder.bitcast(_array_data(context, builder, sig.args[0], args[0]), f8.as_pointer())
            l_ptr = builder.bitcast(_array_data(context, builder, sig.args[2], args[2]), _vec(32, 8).as_pointer())
            a = builder.load(s_ptr, align=4)
            prod = builder.fmul(_splat_float(builder, args[1], 8), builder.sitofp(builder.load(l_ptr, align=4), f8))
            total = builder.fadd(a, prod)
            quieted = builder.bitcast(builder.or_(builder.bitcast(a, _vec(32, 8)),
                                                  ir.Constant(_vec(32, 8), [0x00400000] * 8)), f8)
            builder.store(builder.select(builder.fcmp_unordered("uno", a, a), quieted, total), s_ptr, align=4)
            return context.get_dummy_value()

        return types.void(sums, d, lanes), codegen

    def _splat_float(builder, value, n):
        fv = ir.VectorType(ir.FloatType(), n)
        v = builder.insert_element(ir.Constant(fv, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(fv, ir.Undefined), ir.Constant(_vec(32, n), [0] * n))


if JIT_DISABLED:

    def q6_K_block_ints(aux32, ql, qh, sc, q8p):
        """The integer part of one Q6_K super-block against lane-packed Q8_K activations: aux32[l] = sum over the
        16-level sub-blocks j of sc[j] * sum_k a[16j + 8k + l] * q8[16j + 8k + l], a the signed 6-bit levels
        (ggml_vec_dot_q6_K_q8_K_generic's aux8/aux16/aux32)."""
        a = np.zeros(256, np.int64)
        for h in range(2):
            q4, hh = ql[64 * h:64 * h + 64].astype(np.int64), qh[32 * h:32 * h + 32].astype(np.int64)
            a[128 * h:128 * h + 32] = (q4[:32] & 15) | ((hh & 3) << 4)
            a[128 * h + 32:128 * h + 64] = (q4[32:] & 15) | (((hh >> 2) & 3) << 4)
            a[128 * h + 64:128 * h + 96] = (q4[:32] >> 4) | (((hh >> 4) & 3) << 4)
            a[128 * h + 96:128 * h + 128] = (q4[32:] >> 4) | (((hh >> 6) & 3) << 4)
        a -= 32
        y = q8p[:256].astype(np.int64).reshape(8, 32)[:, np.argsort(LANE_ORDER)].reshape(-1)
        prod = (a * y).reshape(16, 2, 8).sum(axis=1) * sc[:16].astype(np.int64)[:, None]
        aux32[:8] = prod.sum(axis=0).astype(np.int32)

else:

    def _pair_lane_dots(builder, levels_u8, acts_i8, offset, scales16):
        # <8 x i32>: dword l = scales16[2l] * (pair 2l) + scales16[2l + 1] * (pair 2l + 1), pair m = sum over the
        # packed bytes 2m, 2m + 1 of (level - offset) * act; levels in [0, 63]: |pair| <= 2 * 63 * 128 < 2^15
        shuffled = builder.shuffle_vector(levels_u8, levels_u8, ir.Constant(_vec(32), [int(i) for i in LANE_ORDER]))
        if HOST_AVX2:
            mod = builder.module
            maddubs = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_vec(16, 16), [_vec(8), _vec(8)]), "llvm.x86.avx2.pmadd.ub.sw")
            maddwd = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_vec(32, 8), [_vec(16, 16), _vec(16, 16)]), "llvm.x86.avx2.pmadd.wd")
            pairs = builder.sub(builder.call(maddubs, [shuffled, acts_i8]),
                                builder.call(maddubs, [ir.Constant(_vec(8), [offset] * 32), acts_i8]))
            return builder.call(maddwd, [pairs, scales16])
        levels = builder.sub(builder.zext(shuffled, _vec(32)), ir.Constant(_vec(32), [offset] * 32))
        prod = builder.mul(levels, builder.sext(acts_i8, _vec(32)))
        pairs = builder.add(builder.shuffle_vector(prod, prod, ir.Constant(_vec(32, 16), list(range(0, 32, 2)))),
                            builder.shuffle_vector(prod, prod, ir.Constant(_vec(32, 16), list(range(1, 32, 2)))))
        scaled = builder.mul(pairs, builder.sext(scales16, _vec(32, 16)))
        return builder.add(builder.shuffle_vector(scaled, scaled, ir.Constant(_vec(32, 8), list(range(0, 16, 2)))),
                           builder.shuffle_vector(scaled, scaled, ir.Constant(_vec(32, 8), list(range(1, 16, 2)))))

    def q6_K_levels_ir(builder, ql_ptr, qh_ptr):
        """The 8 groups of 32 unsigned 6-bit levels (0..63) of one Q6_K super-block, as <32 x i8> LLVM values in
        ggml's order (group 4h + t: ql's low/high nibbles of half h with qh's bit pair t); ql_ptr/qh_ptr point at
        its 128 ql and 64 qh bytes.  Shared by q6_K_ints_ir and refimpl.kernels.rowdot's 512-bit tile."""
        def splat8(v):
            return ir.Constant(_vec(8), [v] * 32)

        groups = []
        for h in range(2):
            q4a, q4b = _load_vec(builder, ql_ptr, 64 * h, _vec(8)), _load_vec(builder, ql_ptr, 64 * h + 32, _vec(8))
            hh = _load_vec(builder, qh_ptr, 32 * h, _vec(8))
            groups += [
                builder.or_(builder.and_(q4a, splat8(15)), builder.shl(builder.and_(hh, splat8(3)), splat8(4))),
                builder.or_(builder.and_(q4b, splat8(15)),
                            builder.shl(builder.and_(builder.lshr(hh, splat8(2)), splat8(3)), splat8(4))),
                builder.or_(builder.lshr(q4a, splat8(4)),
                            builder.shl(builder.and_(builder.lshr(hh, splat8(4)), splat8(3)), splat8(4))),
                builder.or_(builder.lshr(q4b, splat8(4)), builder.shl(builder.lshr(hh, splat8(6)), splat8(4))),
            ]
        return groups

    def q6_K_ints_ir(builder, ql_ptr, qh_ptr, sc_ptr, q8s):
        """aux32 (<8 x i32>) of one Q6_K super-block as an LLVM value: ql/qh/sc_ptr point at its 128 ql, 64 qh and 16
        int8 scale bytes, q8s are the 8 lane-packed <32 x i8> of the activations.  Shared by q6_K_block_ints and
        refimpl.kernels.rowdot."""
        scales = builder.sext(_load_vec(builder, sc_ptr, 0, _vec(8, 16)), _vec(16, 16))
        total = ir.Constant(_vec(32, 8), [0] * 8)
        for g, levels in enumerate(q6_K_levels_ir(builder, ql_ptr, qh_ptr)):
            # 32 levels: sub-blocks 2g and 2g + 1
            pair_scales = builder.shuffle_vector(scales, scales, ir.Constant(_vec(32, 16), [2 * g, 2 * g + 1] * 8))
            total = builder.add(total, _pair_lane_dots(builder, levels, q8s[g], 32, pair_scales))
        return total

    @intrinsic
    def q6_K_block_ints(typingctx, aux32, ql, qh, sc, q8p):
        """The integer part of one Q6_K super-block against lane-packed Q8_K activations: aux32[l] = sum over the
        16-level sub-blocks j of sc[j] * sum_k a[16j + 8k + l] * q8[16j + 8k + l], a the signed 6-bit levels
        (ggml_vec_dot_q6_K_q8_K_generic's aux8/aux16/aux32).  LANE_ORDER puts the two sub-blocks of 32 levels in
        the alternate int16 pairs of pmaddubsw, so pmaddwd applies their two scales."""
        if not (_is_array(aux32, (types.int32,)) and _is_array(ql, (types.uint8,)) and _is_array(qh, (types.uint8,))
                and _is_array(sc, (types.int8,)) and _is_array(q8p, (types.int8,))):
            return None

        def codegen(context, builder, sig, args):
            q8_ptr = _array_data(context, builder, sig.args[4], args[4])
            total = q6_K_ints_ir(builder, *(_array_data(context, builder, sig.args[k], args[k]) for k in (1, 2, 3)),
                                 [_load_vec(builder, q8_ptr, 32 * g, _vec(8)) for g in range(8)])
            acc_ptr = builder.bitcast(_array_data(context, builder, sig.args[0], args[0]), _vec(32, 8).as_pointer())
            builder.store(total, acc_ptr, align=4)
            return context.get_dummy_value()

        return types.void(aux32, ql, qh, sc, q8p), codegen


lanes8_madd = _lanes8_madd_groups(1)
lanes8_madd2 = _lanes8_madd_groups(2)
lanes8_madd4 = _lanes8_madd_groups(4)


@njit(inline="always")
def dot32_nibbles(qs, b, offset):
    """sum over j < 16 of ((qs[j] & 15) - offset) * b[j] + ((qs[j] >> 4) - offset) * b[j + 16] as an int32: the
    integer part of a Q4_0 (offset 8) or Q4_1 (offset 0) block against Q8 levels; dot32_q5 with no fifth bits (the
    compiler folds the zeros away)."""
    return dot32_q5(qs, np.uint32(0), b, offset)
