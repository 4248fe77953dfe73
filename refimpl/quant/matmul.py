"""Dot products and matrix multiplication the way ggml's CPU backend does them.

llama.cpp never multiplies by dequantized weights.  ``ggml_mul_mat(W, X)`` first converts each activation row of X
with the ``from_float`` of the weight type's ``vec_dot_type`` (Q8_0, Q8_1, Q8_K, F16, BF16 or F32), then computes
every output as one ``vec_dot`` between a weight row and a quantized activation row.  Each output is produced by
one thread with a fixed summation order, so the result does not depend on the number of threads — here, as in ggml.

The per-format ``vec_dot`` kernels mirror the ``ggml_vec_dot_*_generic`` functions of ggml-cpu/quants.c (the
scalar build), which define the float summation order; they live in each format's module.

Formats with an ``IntDot`` (refimpl.quant.intdot) have a second, faster path with the same bits: the exact
integer part of all dot products at once through float32 BLAS, then the float part per output in the C's order.
``matmul`` takes it when the weights were ``prepare``d or when there are at least ``INT_DOT_MIN_TOKENS`` tokens
(enough to pay for expanding the weights on the fly); ``path="vec_dot"`` or ``path="int_dot"`` forces one.
"""
from __future__ import annotations

import os

import numba
import numpy as np
from numba import prange

from . import intdot
from .registry import TYPES, QuantFormat

THREADS_ENV = "REFIMPL_NUM_THREADS"
INT_DOT_MIN_TOKENS = 8


def set_num_threads(n: int) -> None:
    """Threads used by ``matmul`` (and everything else refimpl runs in parallel)."""
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"thread count must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {n}")
    numba.set_num_threads(n)


def get_num_threads() -> int:
    return numba.get_num_threads()


if os.environ.get(THREADS_ENV):
    set_num_threads(int(os.environ[THREADS_ENV]))


# One compiled driver per kernel (vec_dot, from_float), the kernel bound as a constant of the closure.  Passing the
# kernel as an argument instead makes numba work out the argument's type on every call (~0.1 ms: half of the
# time of a decode step).  Not cached on disk: numba cannot pickle the closure; one compilation per type and
# process is the price.
_DRIVERS: dict = {}


def _driver(kind: str, kernel, make_work=None):
    key = (kind, kernel)
    d = _DRIVERS.get(key)
    if d is None:
        if kind == "convert":
            d = _make_convert_rows(kernel)
        elif make_work is None:
            d = _make_matmul_rows(kernel)
        else:
            d = _make_matmul_rows_work(kernel, make_work)
        _DRIVERS[key] = d
    return d


def _make_matmul_rows(vec_dot):
    @numba.njit(parallel=True, cache=False)
    def matmul_rows(n, w_blocks, x_blocks, out):
        # one output row per task: each (token, row) sum is computed start to end by a single thread
        for r in prange(w_blocks.shape[0]):
            for t in range(x_blocks.shape[0]):
                out[t, r] = vec_dot(n, w_blocks[r], x_blocks[t])
    return matmul_rows


def _make_matmul_rows_work(vec_dot_work, make_work):
    @numba.njit(parallel=True, cache=False)
    def matmul_rows(n, w_blocks, x_blocks, out):
        # as matmul_rows above, in a few chunks of rows per thread, each with its own scratch arrays
        rows = w_blocks.shape[0]
        n_chunks = min(rows, 4 * numba.get_num_threads())
        per = (rows + n_chunks - 1) // n_chunks
        for c in prange(n_chunks):
            work = make_work(n)
            for r in range(c * per, min(rows, c * per + per)):
                for t in range(x_blocks.shape[0]):
                    out[t, r] = vec_dot_work(n, w_blocks[r], x_blocks[t], work)
    return matmul_rows


def _make_quantize_and_multiply(convert_rows, matmul_rows):
    @numba.njit(cache=False)
    def quantize_and_multiply(x, x_blocks, n, w_blocks, out):
        # the whole vec_dot path in one call from Python (each call into numba costs microseconds)
        convert_rows(x, x_blocks)
        matmul_rows(n, w_blocks, x_blocks, out)
    return quantize_and_multiply


def _make_convert_rows(conv):
    @numba.njit(cache=False)
    def convert_rows(x, out_blocks):
        for t in range(x.shape[0]):
            conv(x[t], out_blocks[t])
    return convert_rows


def _weight_format(qtype) -> tuple[QuantFormat, QuantFormat]:
    fmt = TYPES.get(qtype)
    if fmt.vec_dot is None or fmt.vec_dot_type is None:
        raise ValueError(f"ggml has no vec_dot for {fmt.name} weights")
    vfmt = TYPES.get(fmt.vec_dot_type)
    if vfmt.from_float is None and vfmt.quantize_ref is None:
        raise ValueError(f"{vfmt.name} (the activation type of {fmt.name}) has no from_float")
    return fmt, vfmt


def _as_blocks(raw: np.ndarray, fmt: QuantFormat, what: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raise ValueError(f"{what} must be raw uint8 rows, got dtype {raw.dtype}")
    if raw.ndim not in (1, 2) or raw.shape[-1] == 0 or raw.shape[-1] % fmt.type_size:
        raise ValueError(f"{what}: expected rows of a positive multiple of {fmt.type_size} bytes ({fmt.name} blocks), "
                         f"got shape {raw.shape}")
    raw = np.ascontiguousarray(raw)
    rows = raw.reshape(-1, raw.shape[-1])
    return rows.reshape(-1).view(fmt.block_dtype).reshape(rows.shape[0], -1)


def quantize_activations(x, vec_type) -> np.ndarray:
    """Activation rows -> raw rows of ``vec_type`` exactly as mul_mat converts them (type_traits_cpu.from_float)."""
    vfmt = TYPES.get(vec_type)
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim not in (1, 2):
        raise ValueError(f"activations must be a 1-D or 2-D float array, got {x.dtype} with shape {x.shape}")
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    n = x2.shape[1]
    out = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
    conv = vfmt.from_float or vfmt.quantize_ref
    blocks = out.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
    with np.errstate(all="ignore"):
        _driver("convert", conv)(x2, blocks)
    return out.reshape(x.shape[:-1] + (out.shape[-1],))


def vec_dot(qtype, a_raw, b_raw) -> np.float32:
    """One weight row (``qtype``) against one activation row already in ``vec_dot_type(qtype)``: ggml's vec_dot."""
    fmt, vfmt = _weight_format(qtype)
    a = _as_blocks(a_raw, fmt, "weight row")
    b = _as_blocks(b_raw, vfmt, f"activation row ({vfmt.name})")
    if a.shape[0] != 1 or b.shape[0] != 1:
        raise ValueError("vec_dot takes one row of each; use matmul for matrices")
    n = a.shape[1] * fmt.block_size
    if b.shape[1] * vfmt.block_size != n:
        raise ValueError(f"row lengths differ: {n} weights vs {b.shape[1] * vfmt.block_size} activations")
    with np.errstate(all="ignore"):
        return np.float32(fmt.vec_dot(n, a[0], b[0]))


def prepare(w_raw, qtype) -> intdot.PreparedWeights | None:
    """Expand a weight matrix's integers once for the BLAS path (4 bytes per weight); None if ``qtype`` has no
    IntDot.  Pass the result to ``matmul`` as ``prepared=``."""
    fmt, _ = _weight_format(qtype)
    if fmt.int_dot is None:
        return None
    return intdot.prepare(_as_blocks(w_raw, fmt, "weights"), fmt)


class WeightMatrix:
    """A weight matrix bound once for many products: its type resolved, its rows checked and viewed as blocks, its
    kernels looked up.  ``WeightMatrix(w_raw, qtype).matmul(x)`` is ``matmul(w_raw, qtype, x)`` without the
    per-call checks of the weights (what a model keeps for each of its matrices)."""

    def __init__(self, w_raw, qtype, prepared: intdot.PreparedWeights | None = None):
        self.fmt, self.vfmt = _weight_format(qtype)
        self.blocks = _as_blocks(w_raw, self.fmt, "weights")
        self.n = self.blocks.shape[1] * self.fmt.block_size
        if prepared is not None and (prepared.fmt is not self.fmt or prepared.blocks.shape != self.blocks.shape):
            raise ValueError(f"prepared weights are {prepared.fmt.name} {prepared.blocks.shape}, "
                             f"not {self.fmt.name} {self.blocks.shape}")
        self.prepared = prepared
        if self.fmt.vec_dot_work is not None:
            self._rows = _driver("matmul", self.fmt.vec_dot_work, self.fmt.make_work)
        else:
            self._rows = _driver("matmul", self.fmt.vec_dot)
        self._convert = _driver("convert", self.vfmt.from_float or self.vfmt.quantize_ref)
        key = ("quantize_and_multiply", self._convert, self._rows)
        if key not in _DRIVERS:
            _DRIVERS[key] = _make_quantize_and_multiply(self._convert, self._rows)
        self._quantize_and_multiply = _DRIVERS[key]

    def matmul(self, x, path: str = "auto") -> np.ndarray:
        fmt, vfmt, n = self.fmt, self.vfmt, self.n
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim not in (1, 2) or x.shape[-1] != n:
            raise ValueError(f"activations must be float with last dimension {n} (the weight row length), "
                             f"got {x.dtype} {x.shape}")
        if path not in ("auto", "vec_dot", "int_dot"):
            raise ValueError(f"path must be 'auto', 'vec_dot' or 'int_dot', got {path!r}")
        if path == "int_dot" and fmt.int_dot is None:
            raise ValueError(f"{fmt.name} has no IntDot (integer/float split) path")
        x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n)
        xq = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
        xb = xq.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
        out = np.empty((x2.shape[0], self.blocks.shape[0]), dtype=np.float32)
        use_int_dot = fmt.int_dot is not None and (
            path == "int_dot" or (path == "auto" and (self.prepared is not None or x2.shape[0] >= INT_DOT_MIN_TOKENS)))
        if use_int_dot:
            with np.errstate(all="ignore"):
                self._convert(x2, xb)                      # quantize_activations
                intdot.matmul_blocks(self.blocks, fmt, xb, out, self.prepared)
        else:
            # numba kernels do not consult numpy's errstate (C float semantics: no traps), so no context here
            self._quantize_and_multiply(x2, xb, n, self.blocks, out)
        return out[0] if x.ndim == 1 else out


def matmul(w_raw, qtype, x, *, prepared: intdot.PreparedWeights | None = None, path: str = "auto") -> np.ndarray:
    """``ggml_mul_mat`` semantics: weights ``(n_rows, row_bytes)`` of ``qtype`` times float activations
    ``(n_tokens, n)`` (or ``(n,)``) -> float32 ``(n_tokens, n_rows)`` (or ``(n_rows,)``).  ``prepared``: see
    ``prepare``; ``path``: ``"auto"``, or force ``"vec_dot"`` / ``"int_dot"`` (see the module docstring)."""
    return WeightMatrix(w_raw, qtype, prepared).matmul(x, path)
