"""Prompt attention with its dots register-blocked: equals refimpl.model.layers._attention_impl bit for bit.

The reference kernel computes each query's scores as ``acc[j] += double(k[d, j] * q[d])`` over d, for all cells j
of a head at once, and each output as ``acc_v[d] += double(v[j, d] * p[j])`` over the cells j: the accumulators
live in arrays, so every multiply-add also loads and stores its accumulator.  Here the same sums keep ``CELLS``
cells' (or ``DIMS`` dimensions') accumulators in <8 x double> registers (LLVM IR written in _sum_block_codegen):

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

Reading order: _sum_block_codegen, _scores, _weighted_sum, attention_blocked.
"""
from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import f32, njit
from ..model.layers import (attention_probabilities, attention_query, attention_task, redo_nan_outputs,
                             redo_nan_scores)

CELLS = 32    # scores per block: four <8 x double> sums (a double add's latency hides behind the other three)
DIMS = 64     # output dimensions per block: eight <8 x double> sums, a 64-wide head in one pass over the cells


def _sum_block_codegen(context, builder, sig, args, n_vec, over_rows):
    # the codegen of _cell_scores (over_rows False) and _dim_sums (True): n_vec <8 x double> sums advanced
    # together, each step ``acc += fpext(row[8v .. 8v + 7] * splat(x))`` -- a float product widened and added, the
    # reference's operations per element, in the reference's order along each sum -- then fptrunc to float
    from llvmlite import ir
    f32, f64, i8 = ir.FloatType(), ir.DoubleType(), ir.IntType(8)
    v8f, v8d = ir.VectorType(f32, 8), ir.VectorType(f64, 8)
    intp = context.get_value_type(types.intp)
    cache_ty, cache = sig.args[0], args[0]
    arr = context.make_array(cache_ty)(context, builder, cache)
    xs = context.make_array(sig.args[2])(context, builder, args[2])
    out = context.make_array(sig.args[6])(context, builder, args[6])
    head, start, lo, hi = (context.cast(builder, args[k], sig.args[k], types.intp) for k in (1, 3, 4, 5))
    s0, s1 = (builder.extract_value(arr.strides, k) for k in (0, 1))
    # over_rows: sum over cells j of v[head, j, start + i] * e[j]; else over d of k[head, d, start + i] * q[d]
    base = builder.gep(builder.bitcast(arr.data, i8.as_pointer()),
                       [builder.add(builder.mul(head, s0), builder.mul(start, ir.Constant(intp, 4)))])
    xdata = builder.bitcast(xs.data, f32.as_pointer())
    accs = [cgutils.alloca_once_value(builder, ir.Constant(v8d, [0.0] * 8)) for _ in range(n_vec)]
    with cgutils.for_range_slice(builder, lo, hi, ir.Constant(intp, 1), inc=True) as (idx, _):
        row = builder.gep(base, [builder.mul(idx, s1)])
        x = builder.load(builder.gep(xdata, [idx]))
        xv = builder.insert_element(ir.Constant(v8f, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        xv = builder.shuffle_vector(xv, xv, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        for v, acc in enumerate(accs):
            ptr = builder.bitcast(builder.gep(row, [ir.Constant(intp, 32 * v)]), v8f.as_pointer())
            prod = builder.fmul(builder.load(ptr, align=4), xv)
            builder.store(builder.fadd(builder.load(acc), builder.fpext(prod, v8d)), acc)
    odata = builder.bitcast(builder.gep(builder.bitcast(out.data, f32.as_pointer()), [start]), v8f.as_pointer())
    for v, acc in enumerate(accs):
        builder.store(builder.fptrunc(builder.load(acc), v8f), builder.gep(odata, [ir.Constant(intp, v)]), align=4)
    return context.get_dummy_value()


def _score_codegen(context, builder, sig, args):
    return _sum_block_codegen(context, builder, sig, args, CELLS // 8, False)


def _score8_codegen(context, builder, sig, args):
    return _sum_block_codegen(context, builder, sig, args, 1, False)


def _dims_codegen(context, builder, sig, args):
    return _sum_block_codegen(context, builder, sig, args, DIMS // 8, True)


def _dims32_codegen(context, builder, sig, args):
    return _sum_block_codegen(context, builder, sig, args, 4, True)


def _dims8_codegen(context, builder, sig, args):
    return _sum_block_codegen(context, builder, sig, args, 1, True)


def _typed(cache, head, xs, start, lo, hi, out):
    ok = (isinstance(cache, types.Array) and cache.ndim == 3 and cache.dtype == types.float32 and cache.layout == "C"
          and isinstance(xs, types.Array) and xs.ndim == 1 and xs.dtype == types.float32 and xs.layout == "C"
          and isinstance(out, types.Array) and out.ndim == 1 and out.dtype == types.float32 and out.layout == "C"
          and all(isinstance(a, types.Integer) for a in (head, start, lo, hi)))
    return types.void(cache, head, xs, start, lo, hi, out) if ok else None


@intrinsic
def _cell_scores(typingctx, k_cache, kvh, qh, j, d_lo, d_hi, w):
    """w[j + i] = f32(sum over d_lo <= d < d_hi of double(k_cache[kvh, d, j + i] * qh[d])), d in order, for
    i < CELLS: the reference's score sums, CELLS of them advanced together.  The caller keeps j + CELLS <= n_ctx."""
    sig = _typed(k_cache, kvh, qh, j, d_lo, d_hi, w)
    return (sig, _score_codegen) if sig is not None else None


@intrinsic
def _cell_scores8(typingctx, k_cache, kvh, qh, j, d_lo, d_hi, w):
    """_cell_scores for 8 cells (the ends of the rows)."""
    sig = _typed(k_cache, kvh, qh, j, d_lo, d_hi, w)
    return (sig, _score8_codegen) if sig is not None else None


@intrinsic
def _dim_sums(typingctx, v_cache, kvh, e, d, j_lo, j_hi, out_row):
    """out_row[d + i] = f32(sum over j_lo <= j < j_hi of double(v_cache[kvh, j, d + i] * e[j])), j in order, for
    i < DIMS: the reference's output sums (ggml_mul_mat(v^T, kq)), DIMS of them advanced together."""
    sig = _typed(v_cache, kvh, e, d, j_lo, j_hi, out_row)
    return (sig, _dims_codegen) if sig is not None else None


@intrinsic
def _dim_sums32(typingctx, v_cache, kvh, e, d, j_lo, j_hi, out_row):
    """_dim_sums for 32 dimensions (a 32-wide head, or what a wider one leaves)."""
    sig = _typed(v_cache, kvh, e, d, j_lo, j_hi, out_row)
    return (sig, _dims32_codegen) if sig is not None else None


@intrinsic
def _dim_sums8(typingctx, v_cache, kvh, e, d, j_lo, j_hi, out_row):
    """_dim_sums for 8 dimensions."""
    sig = _typed(v_cache, kvh, e, d, j_lo, j_hi, out_row)
    return (sig, _dims8_codegen) if sig is not None else None


@njit(inline="always")
def _scores(k_cache, kvh, qh, lo, hi, w):
    """w[j] for lo <= j < hi: blocks of CELLS cells, then of 8, then the last cells one by one (the reference's
    loop)."""
    hd = qh.shape[0]
    j = lo
    while j + CELLS <= hi:
        _cell_scores(k_cache, kvh, qh, j, 0, hd, w)
        j += CELLS
    while j + 8 <= hi:
        _cell_scores8(k_cache, kvh, qh, j, 0, hd, w)
        j += 8
    for jj in range(j, hi):
        a = 0.0
        for d in range(hd):
            a += np.float64(k_cache[kvh, d, jj] * qh[d])
        w[jj] = f32(a)


@njit(inline="always")
def _weighted_sum(v_cache, kvh, e, lo, hi, out_row):
    """out_row[d] for every dimension: blocks of DIMS dimensions, then of 32, then of 8, then the last ones one
    by one."""
    hd_v = v_cache.shape[2]
    d = 0
    while d + DIMS <= hd_v:
        _dim_sums(v_cache, kvh, e, d, lo, hi, out_row)
        d += DIMS
    while d + 32 <= hd_v:
        _dim_sums32(v_cache, kvh, e, d, lo, hi, out_row)
        d += 32
    while d + 8 <= hd_v:
        _dim_sums8(v_cache, kvh, e, d, lo, hi, out_row)
        d += 8
    for dd in range(d, hd_v):
        a = 0.0
        for j in range(lo, hi):
            a += np.float64(v_cache[kvh, j, dd] * e[j])
        out_row[dd] = f32(a)


@njit(parallel=True)
def attention_blocked(q, k_cache, v_cache, kq_pre, positions, n_kv, window, kq_scale, k_f16, v_f16, out):
    """refimpl.model.layers._attention_impl (same arguments, same bits) with the score and output dots blocked
    (_scores, _weighted_sum); the tasks, masks, scale, softmax, F16 roundings and NaN redos are the reference's
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
            _scores(k_cache, kvh, qh, lo, hi, w)
            redo_nan_scores(w, k_cache, kvh, qh, lo, hi)
        e = attention_probabilities(w, n_kv, lo, hi, kq_scale, v_f16)
        _weighted_sum(v_cache, kvh, e, lo, hi, out[t, h])
        redo_nan_outputs(out[t, h], v_cache, kvh, e, lo, hi)
