"""The integer part of a matmul through float32 BLAS, the float part in the C's order: same bits, many times faster.

Every ggml ``vec_dot`` of a block format splits into two parts:

* an **integer part**: inside each block (or each lane of a super-block), sums of products of small integers —
  weight levels (times integer sub-block scales) by activation levels.  Integer addition is exact, so its order
  does not matter;
* a **float part**: those integer sums converted to float, multiplied by the blocks' float scales and accumulated
  in one fixed order (the order, rounding and NaN propagation that the golden files pin).

The integer part of a whole matmul is a batched matrix product: for every group ``g`` of ``K`` integers,
``isum[g] = W[g] @ X[g]`` with ``W[g]`` ``(rows, K)`` and ``X[g]`` ``(K, tokens)``.  It is computed here with
float32 GEMM (numpy's BLAS).  That is exact: every weight integer, activation integer, product and partial sum
is an integer of magnitude below 2^24 (each format states its bound next to its ``IntDot``), and float32
represents all of those exactly, so the result cannot depend on BLAS's blocking, summation order or use of FMA.
The float part is then replayed per output by the format's ``fold`` — the same helper its scalar ``vec_dot``
calls — so ``matmul`` gives the vec_dot path's bits (tests/test_matmul_golden.py checks both paths against
llama.cpp and against each other).  This is a fast-layer path: the reference layer never takes it.

A format opts in with an ``IntDot`` in its fast kernels (``FastKernels.intdot``, refimpl/kernels/__init__.py):

* ``weights(blocks (rows, nb)) -> (G, rows, K)``: the weight integers, in the order they meet ``acts``;
* ``acts(blocks (tokens, nb)) -> (G, K, tokens)``: the activation integers (of the ``vec_dot_type``);
* ``weight_scales(blocks) -> float32 (rows, nb, S)`` and ``act_scales(blocks) -> float32 (nb, S', tokens)``:
  the blocks' float scales, converted from F16 once instead of once per dot product;
* ``fold(w_scales_row, act_scales, isum_row (G, tokens), out (tokens,), acc (acc_size, tokens))``: every output
  of one weight row from its group sums, each in the C's float order — through the same per-block step function
  the format's scalar ``vec_dot`` calls.  Tokens are the inner loop (contiguous: 10x faster than one output at
  a time); each token's accumulator still sees its blocks in the C's order.

Threads: rows are split into chunks, and each chunk's GEMM and fold run in one worker thread (numpy's BLAS call
and the numba fold both release the GIL), with BLAS itself limited to one thread meanwhile (threadpoolctl).
BLAS's own thread pool and numba's, taking turns on the same cores, were measured 3x slower: each spins while
the other works.  Each output is still computed start to end by one thread, so results do not depend on the
thread count.

Weights can be expanded once and kept (``prepare``): 4 bytes per weight, so worth it for models whose weights are
used for many tokens (decoding) and that fit in memory; otherwise ``matmul`` expands them on the fly, in row
chunks, when there are enough tokens to amortise it.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from ..floats import fp16_to_fp32_row
from .jitcache import cached_closure

# Bytes of float32 temporaries (expanded weights + group sums) one chunk of rows may use: about one core's L2, so
# that the fold reads the group sums from cache right after the GEMM wrote them (16 MB chunks made the GEMM and
# the fold stream them through memory: a 2048x768 Q8_0 matmul of 128 tokens took 10.7 ms, 7.3 ms at 1 MB)
CHUNK_BYTES = 1 << 20
# Fewer rows than this per chunk cost more in task overhead than they gain in parallelism.
MIN_CHUNK_ROWS = 32


@dataclass(frozen=True)
class IntDot:
    weights: Callable
    acts: Callable
    weight_scales: Callable
    act_scales: Callable
    fold: Callable
    acc_size: int = 1


class PreparedWeights:
    """Weights of one matrix with their integer part expanded for ``matmul`` (see the module docstring)."""

    def __init__(self, blocks: np.ndarray, fmt, intdot: IntDot):
        self.blocks = blocks                                                     # (rows, nb) structured blocks
        self.fmt = fmt
        self.expanded = np.ascontiguousarray(intdot.weights(blocks), dtype=np.float32)   # (G, rows, K)
        self.scales = np.ascontiguousarray(intdot.weight_scales(blocks), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return int(self.expanded.nbytes + self.scales.nbytes)


_FOLDERS: dict = {}


def _fold_rows(fold):
    """The row driver of one format's fold, the fold bound as a closure constant (see matmul._driver)."""
    d = _FOLDERS.get(fold)
    if d is None:
        @cached_closure(nogil=True)
        def d(acc_size, isum, w_scales, x_scales, out, row0):
            # isum is (rows, G, tokens) so that isum[r] is C-contiguous: numba then knows every row of it is,
            # and vectorizes the fold's loops over tokens (a strided view would make it 5x slower)
            acc = np.zeros((acc_size, isum.shape[2]), np.float32)
            for r in range(isum.shape[0]):
                acc[:] = 0
                fold(w_scales[r], x_scales, isum[r], out[:, row0 + r], acc)
        _FOLDERS[fold] = d
    return d


_blas = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _workers(n_threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != n_threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(n_threads, thread_name_prefix="refimpl-intdot")
            _pool_size = n_threads
        return _pool


def _single_threaded_blas():
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def matmul_blocks(w_blocks: np.ndarray, idot: IntDot, x_blocks: np.ndarray, out: np.ndarray,
                  prepared: PreparedWeights | None = None) -> None:
    """``out (tokens, rows) = W @ X`` through ``idot``; ``x_blocks`` already in the weight type's vec_dot_type."""
    xi = np.ascontiguousarray(idot.acts(x_blocks), dtype=np.float32)        # (G, K, T)
    xs = np.ascontiguousarray(idot.act_scales(x_blocks), dtype=np.float32)
    n_groups, k, n_tok = xi.shape
    n_rows = w_blocks.shape[0]
    n_threads = numba.get_num_threads()
    # the float scales of all rows at once: converting them chunk by chunk cost ~30 us of numpy calls per chunk
    w_scales = prepared.scales if prepared is not None else np.ascontiguousarray(idot.weight_scales(w_blocks),
                                                                                   dtype=np.float32)

    def run(r0: int, r1: int) -> None:
        ws = w_scales[r0:r1]
        if prepared is not None:
            wi = prepared.expanded[:, r0:r1]
        else:
            wi = np.ascontiguousarray(idot.weights(w_blocks[r0:r1]), dtype=np.float32)
        isum = np.empty((r1 - r0, n_groups, n_tok), np.float32)               # exact integers
        np.matmul(wi, xi, out=np.transpose(isum, (1, 0, 2)))                  # BLAS writes it in place
        _fold_rows(idot.fold)(idot.acc_size, isum, ws, xs, out, r0)

    per_row = 4 * n_groups * (n_tok + (0 if prepared is not None else k))
    chunk = max(MIN_CHUNK_ROWS, min(-(-n_rows // n_threads), CHUNK_BYTES // max(per_row, 1)))
    starts = range(0, n_rows, chunk)
    with _single_threaded_blas():
        if n_threads == 1 or len(starts) == 1:
            for r0 in starts:
                run(r0, min(n_rows, r0 + chunk))
        else:
            for f in [_workers(n_threads).submit(run, r0, min(n_rows, r0 + chunk)) for r0 in starts]:
                f.result()


# ---------------------------------------------------------------------------------------------------------------
# Formats with one F16-scaled integer sum per 32-weight block against Q8_0/Q8_1 activations (Q4_0 … Q8_0, IQ4_NL):
# one group per block, the weight levels in the order of y.qs.  ``step(sumf, x.d, x.m, y.d, y.s, sumi) -> sumf``
# is the format's float step, shared with its scalar vec_dot (x.m and y.s are 0 where the format has none).

def q8_block_acts(blocks):
    """(tokens, nb) Q8_0/Q8_1 blocks -> their levels (nb, 32, tokens)."""
    return np.transpose(blocks["qs"], (1, 2, 0))


def f16_scales(*fields):
    """The F16 fields of (rows, nb) blocks as float32 (rows, nb, 2); the second is 0 when only one is named."""
    def get(blocks):
        out = np.zeros(blocks.shape + (2,), np.float32)
        for i, f in enumerate(fields):
            out[..., i] = fp16_to_fp32_row(blocks[f])
        return out
    return get


def f16_act_scales(*fields):
    get = f16_scales(*fields)
    return lambda blocks: np.transpose(get(blocks), (1, 2, 0))     # (nb, 2, tokens)


def make_block_fold(step):
    @cached_closure
    def fold(ws, xs, isum, out, acc):
        # ws (nb, 2) = (x.d, x.m) of one weight row, xs (nb, 2, tokens) = (y.d, y.s), isum (nb, tokens)
        sumf = acc[0]
        for ib in range(ws.shape[0]):
            xd, xm, yd, ys, sumi = ws[ib, 0], ws[ib, 1], xs[ib, 0], xs[ib, 1], isum[ib]
            for t in range(sumf.size):
                sumf[t] = step(sumf[t], xd, xm, yd[t], ys[t], sumi[t])
        out[:] = sumf
    return fold


def block_intdot(levels, w_fields, x_fields, step) -> IntDot:
    """The IntDot of a 32-weight-block format: ``levels(blocks) -> (nb, rows, 32)``, the F16 scale fields of the
    weight and activation blocks, and the float step."""
    return IntDot(levels, q8_block_acts, f16_scales(*w_fields), f16_act_scales(*x_fields), make_block_fold(step))
