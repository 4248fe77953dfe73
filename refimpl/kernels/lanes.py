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
            offset16 = _splat(builder, context.cast(builder, args[3], sig.args[3], types.int16), 16, 32)
            levels = builder.sub(builder.zext(builder.or_(nib, fifth), _vec(16)), offset16)
            vb = builder.sext(_load(context, builder, sig.args[2], args[2], 32), _vec(16))
            return _reduce_add32(builder, builder.sext(builder.mul(levels, vb), _vec(32)))

        return types.int32(qs, qh, b, offset), codegen

    def make_dot32_lut16(values):
        """An intrinsic dot32_lut16(qs, b): sum over j < 16 of T[qs[j] & 15] * b[j] + T[qs[j] >> 4] * b[j + 16] as
        an int32, T the 16 int8 ``values`` (IQ4_NL's kvalues).  The lookup is a tree of 15 vector selects on the
        index bits: LLVM IR has no portable dynamic byte shuffle, and a gather per level is slower."""
        table = [int(v) for v in values]
        if len(table) != 16 or not all(-128 <= v < 128 for v in table):
            raise ValueError("make_dot32_lut16 takes 16 int8 values")

        @intrinsic
        def dot32_lut16(typingctx, qs, b):
            if not (_is_array(qs, (types.uint8,)) and _is_array(b, (types.int8,))):
                return None

            def codegen(context, builder, sig, args):
                idx = _nibbles32(builder, _load(context, builder, sig.args[0], args[0], 16))
                level = [ir.Constant(_vec(8), [v] * 32) for v in table]
                for bit in range(4):        # halve the candidates on each index bit
                    mask = builder.icmp_unsigned("!=", builder.and_(idx, ir.Constant(_vec(8), [1 << bit] * 32)),
                                                 ir.Constant(_vec(8), [0] * 32))
                    level = [builder.select(mask, level[2 * k + 1], level[2 * k]) for k in range(len(level) // 2)]
                vb = builder.sext(_load(context, builder, sig.args[1], args[1], 32), _vec(16))
                prod = builder.mul(builder.sext(level[0], _vec(16)), vb)
                return _reduce_add32(builder, builder.sext(prod, _vec(32)))

            return types.int32(qs, b), codegen
        return dot32_lut16


lanes8_madd = _lanes8_madd_groups(1)
lanes8_madd2 = _lanes8_madd_groups(2)
lanes8_madd4 = _lanes8_madd_groups(4)


@njit(inline="always")
def dot32_nibbles(qs, b, offset):
    """sum over j < 16 of ((qs[j] & 15) - offset) * b[j] + ((qs[j] >> 4) - offset) * b[j + 16] as an int32: the
    integer part of a Q4_0 (offset 8) or Q4_1 (offset 0) block against Q8 levels; dot32_q5 with no fifth bits (the
    compiler folds the zeros away)."""
    return dot32_q5(qs, np.uint32(0), b, offset)
