"""Prompt attention with its dots register-blocked: equals refimpl.model.layers._attention_impl bit for bit.

The reference kernel computes each query's scores as ``acc[j] += double(k[d, j] * q[d])`` over d, for all cells j
of a head at once, and each output as ``acc_v[d] += double(v[j, d] * p[j])`` over the cells j: the accumulators
live in arrays, so every multiply-add also loads and stores its accumulator.  Both are one computation -- a cache's
columns weighted by a vector over its rows (_weighted_columns) -- whose sums here keep 64, 32 or 8 columns'
accumulators in <8 x double> registers (LLVM IR written in _column_sums_codegen):

* a score is still ggml_vec_dot_f16/f32's sum over d in order, a float product added into a double;
* an output dimension is still ggml_vec_dot's sum over the cells in order (ggml_mul_mat(v^T, kq));
* a sum that comes out NaN is redone by refimpl.model.layers.dot_nan_first, as the reference does, so the NaN
  payload is the one the C's operand order keeps, however either loop was compiled;
* the softmax, the F16 roundings and the masks are the reference's own functions.

Only the order in which independent sums are advanced changes, never the operations of any one sum, so every
output has the reference's bits (tests/test_attention_fast.py compares them on hostile values: NaN payloads,
infinities, denormals, overflowing products).  A batch of tokens (a prompt) takes this kernel when the fast layer
is on (refimpl.model.layers.attention); a decoded token keeps the reference kernel (one query: little to block).
110M llama, 512-token prompt, 2 threads: attention 16 -> 11 ms per layer.

Reading order: _column_sums_codegen, _weighted_columns, attention_blocked.
"""
from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import f32, njit
from ..model.layers import (attention_probabilities, attention_query, attention_task, redo_nan_outputs,
                             redo_nan_scores)

def _column_sums_codegen(context, builder, sig, args, n_vec):
    # the codegen of _column_sums64/32/8: n_vec <8 x double> sums advanced together, one step per row r,
    # ``acc += fpext(cache[head, r, col .. col + 8 n_vec - 1] * splat(xs[r]))`` -- a float product widened and added,
    # the reference's operations per element, in the reference's order along each sum -- then fptrunc to float
    from llvmlite import ir
    f32, f64, i8 = ir.FloatType(), ir.DoubleType(), ir.IntType(8)
    v8f, v8d = ir.VectorType(f32, 8), ir.VectorType(f64, 8)
    intp = context.get_value_type(types.intp)
    arr = context.make_array(sig.args[0])(context, builder, args[0])
    xs = context.make_array(sig.args[2])(context, builder, args[2])
    out = context.make_array(sig.args[6])(context, builder, args[6])
    head, col, lo, hi = (context.cast(builder, args[k], sig.args[k], types.intp) for k in (1, 3, 4, 5))
    s0, s1 = (builder.extract_value(arr.strides, k) for k in (0, 1))
    base = builder.gep(builder.bitcast(arr.data, i8.as_pointer()),
                       [builder.add(builder.mul(head, s0), builder.mul(col, ir.Constant(intp, 4)))])
    xdata = builder.bitcast(xs.data, f32.as_pointer())
    accs = [cgutils.alloca_once_value(builder, ir.Constant(v8d, [0.0] * 8)) for _ in range(n_vec)]
    with cgutils.for_range_slice(builder, lo, hi, ir.Constant(intp, 1), inc=True) as (r, _):
        row = builder.gep(base, [builder.mul(r, s1)])
        x = builder.load(builder.gep(xdata, [r]))
        xv = builder.insert_element(ir.Constant(v8f, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        xv = builder.shuffle_vector(xv, xv, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        for v, acc in enumerate(accs):
            ptr = builder.bitcast(builder.gep(row, [ir.Constant(intp, 32 * v)]), v8f.as_pointer())
            prod = builder.fmul(builder.load(ptr, align=4), xv)
            builder.store(builder.fadd(builder.load(acc), builder.fpext(prod, v8d)), acc)
    odata = builder.bitcast(builder.gep(builder.bitcast(out.data, f32.as_pointer()), [col]), v8f.as_pointer())
    for v, acc in enumerate(accs):
        builder.store(builder.fptrunc(builder.load(acc), v8f), builder.gep(odata, [ir.Constant(intp, v)]), align=4)
    return context.get_dummy_value()


# one module-level codegen per width: numba's cache key pickles an intrinsic's functions, and a closure over the
# width would not pickle the same way in every process (see refimpl.kernels.rowdot._format)
def _sums64_codegen(context, builder, sig, args):
    return _column_sums_codegen(context, builder, sig, args, 8)


def _sums32_codegen(context, builder, sig, args):
    return _column_sums_codegen(context, builder, sig, args, 4)


def _sums8_codegen(context, builder, sig, args):
    return _column_sums_codegen(context, builder, sig, args, 1)


def _typed(cache, head, xs, col, lo, hi, out):
    ok = (isinstance(cache, types.Array) and cache.ndim == 3 and cache.dtype == types.float32 and cache.layout == "C"
          and isinstance(xs, types.Array) and xs.ndim == 1 and xs.dtype == types.float32 and xs.layout == "C"
          and isinstance(out, types.Array) and out.ndim == 1 and out.dtype == types.float32 and out.layout == "C"
          and all(isinstance(a, types.Integer) for a in (head, col, lo, hi)))
    return types.void(cache, head, xs, col, lo, hi, out) if ok else None


@intrinsic
def _column_sums64(typingctx, cache, head, xs, col, row_lo, row_hi, out):
    """out[col + i] = f32(sum over row_lo <= r < row_hi of double(cache[head, r, col + i] * xs[r])), r in order,
    for i < 64: 64 of _weighted_columns's sums advanced together.  The caller keeps col + 64 within the rows."""
    sig = _typed(cache, head, xs, col, row_lo, row_hi, out)
    return (sig, _sums64_codegen) if sig is not None else None


@intrinsic
def _column_sums32(typingctx, cache, head, xs, col, row_lo, row_hi, out):
    """_column_sums64 for 32 columns."""
    sig = _typed(cache, head, xs, col, row_lo, row_hi, out)
    return (sig, _sums32_codegen) if sig is not None else None


@intrinsic
def _column_sums8(typingctx, cache, head, xs, col, row_lo, row_hi, out):
    """_column_sums64 for 8 columns."""
    sig = _typed(cache, head, xs, col, row_lo, row_hi, out)
    return (sig, _sums8_codegen) if sig is not None else None


@njit(inline="always")
def _weighted_columns(cache, head, xs, row_lo, row_hi, col_lo, col_hi, out):
    """out[c] = f32(sum over row_lo <= r < row_hi of double(cache[head, r, c] * xs[r])), r in order, for
    col_lo <= c < col_hi: blocks of 64, 32 and 8 columns, then the last columns one by one.  The scores are the K
    cache's columns (cells) weighted by the query over its rows (dimensions), the outputs the V cache's columns
    (dimensions) weighted by the probabilities over its rows (cells)."""
    c = col_lo
    while c + 64 <= col_hi:
        _column_sums64(cache, head, xs, c, row_lo, row_hi, out)
        c += 64
    while c + 32 <= col_hi:
        _column_sums32(cache, head, xs, c, row_lo, row_hi, out)
        c += 32
    while c + 8 <= col_hi:
        _column_sums8(cache, head, xs, c, row_lo, row_hi, out)
        c += 8
    for cc in range(c, col_hi):
        a = 0.0
        for r in range(row_lo, row_hi):
            a += np.float64(cache[head, r, cc] * xs[r])
        out[cc] = f32(a)


@njit(parallel=True)
def attention_blocked(q, k_cache, v_cache, kq_pre, positions, n_kv, window, kq_scale, k_f16, v_f16, out):
    """refimpl.model.layers._attention_impl (same arguments, same bits) with the score and output dots blocked
    (_weighted_columns); the tasks, masks, scale, softmax, F16 roundings and NaN redos are the reference's
    own functions."""
    n_tok, n_head, hd = q.shape
    group = n_head // k_cache.shape[0]
    n_tasks = n_tok * n_head
    for task in prange(n_tasks):
        t, h, kvh, lo, hi = attention_task(task, n_tasks, n_head, group, positions, window)
        qh = attention_query(q, t, h, k_f16)
        w = np.empty(n_kv, dtype=np.float32)
        if kq_pre.shape[0] > 0:
            for j in range(lo, hi):
                w[j] = kq_pre[t, h, j]
        else:
            _weighted_columns(k_cache, kvh, qh, 0, hd, lo, hi, w)
            redo_nan_scores(w, k_cache, kvh, qh, lo, hi)
        e = attention_probabilities(w, n_kv, lo, hi, kq_scale, v_f16)
        _weighted_columns(v_cache, kvh, e, lo, hi, 0, v_cache.shape[2], out[t, h])
        redo_nan_outputs(out[t, h], v_cache, kvh, e, lo, hi)
