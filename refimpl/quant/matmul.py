"""Dot products and matrix multiplication the way ggml's CPU backend does them.

llama.cpp never multiplies by dequantized weights.  ``ggml_mul_mat(W, X)`` first converts each activation row of X
with the ``from_float`` of the weight type's ``vec_dot_type`` (Q8_0, Q8_1, Q8_K, F16, BF16 or F32), then computes
every output as one ``vec_dot`` between a weight row and a quantized activation row.  Each output is produced by
one thread with a fixed summation order, so the result does not depend on the number of threads — here, as in ggml.

The per-format ``vec_dot`` kernels mirror the ``ggml_vec_dot_*_generic`` functions of ggml-cpu/quants.c (the
scalar build), which define the float summation order; they live in each format's module (the reference layer).
``reference_matmul`` below is ggml_compute_forward_mul_mat on one thread, as two plain loops.  The fast layer
(refimpl.kernels.drivers) gives the same bits with compiled parallel drivers, vector intrinsics and, for formats
with an ``IntDot``, a BLAS integer path (``path="intdot"``; ``prepare`` expands weights once for it).
``refimpl.quant.set_kernels`` chooses the layer.

A format with no ``vec_dot`` (e.g. a plugin type registered from outside ggml) is multiplied by dequantizing its
rows and a float32 numpy product.  That is **not** a ggml path: ggml has no mul_mat for such a type, and the sums'
order (numpy's BLAS) is not pinned by any golden.
"""
from __future__ import annotations

import os

import numba
import numpy as np

from . import layer
from .registry import TYPES, QuantFormat

THREADS_ENV = "REFIMPL_NUM_THREADS"


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


def _weight_format(qtype) -> tuple[QuantFormat, QuantFormat | None]:
    """The weight format and its activation format (None for a format multiplied through float32)."""
    fmt = TYPES.get(qtype)
    if fmt.vec_dot is None or fmt.vec_dot_type is None:
        if fmt.dequantize is None:
            raise ValueError(f"ggml has no vec_dot for {fmt.name} weights, and it has no dequantize either")
        return fmt, None
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


def _convert_reference(vfmt, x2: np.ndarray, blocks: np.ndarray) -> None:
    # type_traits_cpu.from_float of the activation type, one row at a time
    conv = vfmt.from_float or vfmt.quantize_ref
    for t in range(x2.shape[0]):
        conv(x2[t], blocks[t])


def quantize_activations(x, vec_type) -> np.ndarray:
    """Activation rows -> raw rows of ``vec_type`` exactly as mul_mat converts them (type_traits_cpu.from_float)."""
    vfmt = TYPES.get(vec_type)
    if vfmt.from_float is None and vfmt.quantize_ref is None:
        raise ValueError(f"{vfmt.name} has no from_float")
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim not in (1, 2):
        raise ValueError(f"activations must be a 1-D or 2-D float array, got {x.dtype} with shape {x.shape}")
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    n = x2.shape[1]
    out = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
    blocks = out.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
    with np.errstate(all="ignore"):
        if layer.get_kernels() == "fast":
            from ..kernels import drivers
            drivers.convert_rows(drivers.activation_converter(vfmt))(x2, blocks)
        else:
            _convert_reference(vfmt, x2, blocks)
    return out.reshape(x.shape[:-1] + (out.shape[-1],))


def vec_dot(qtype, a_raw, b_raw) -> np.float32:
    """One weight row (``qtype``) against one activation row already in ``vec_dot_type(qtype)``: ggml's vec_dot."""
    fmt, vfmt = _weight_format(qtype)
    if vfmt is None:
        raise ValueError(f"ggml has no vec_dot for {fmt.name} weights")
    a = _as_blocks(a_raw, fmt, "weight row")
    b = _as_blocks(b_raw, vfmt, f"activation row ({vfmt.name})")
    if a.shape[0] != 1 or b.shape[0] != 1:
        raise ValueError("vec_dot takes one row of each; use matmul for matrices")
    n = a.shape[1] * fmt.block_size
    if b.shape[1] * vfmt.block_size != n:
        raise ValueError(f"row lengths differ: {n} weights vs {b.shape[1] * vfmt.block_size} activations")
    with np.errstate(all="ignore"):
        return np.float32(layer.kernel(fmt, "vec_dot")(n, a[0], b[0]))


def prepare(w_raw, qtype):
    """Expand a weight matrix's integers once for the fast layer's BLAS path (4 bytes per weight); None if
    ``qtype`` has no intdot path.  Pass the result to ``matmul`` as ``prepared=``."""
    from ..kernels import drivers

    fmt, vfmt = _weight_format(qtype)
    if vfmt is None:
        return None
    return drivers.prepare(_as_blocks(w_raw, fmt, "weights"), fmt)


def reference_matmul(fmt: QuantFormat, vfmt: QuantFormat, w_blocks: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """ggml_compute_forward_mul_mat on one thread: every activation row converted by the ``from_float`` of the
    vec_dot type, then each output one ``vec_dot`` of a weight row and an activation row (the reference layer)."""
    n = x2.shape[1]
    xq = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
    x_blocks = xq.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
    out = np.empty((x2.shape[0], w_blocks.shape[0]), dtype=np.float32)
    with np.errstate(all="ignore"):
        _convert_reference(vfmt, x2, x_blocks)
        for t in range(x2.shape[0]):
            for r in range(w_blocks.shape[0]):
                out[t, r] = fmt.vec_dot(n, w_blocks[r], x_blocks[t])
    return out


class WeightMatrix:
    """A weight matrix bound once for many products: its type resolved, its rows checked and viewed as blocks, its
    kernels looked up.  ``WeightMatrix(w_raw, qtype).matmul(x)`` is ``matmul(w_raw, qtype, x)`` without the
    per-call checks of the weights (what a model keeps for each of its matrices).  The kernel layer is read at each
    call, so ``set_kernels`` applies to matrices made before it."""

    def __init__(self, w_raw, qtype, prepared=None):
        self.fmt, self.vfmt = _weight_format(qtype)
        self.blocks = _as_blocks(w_raw, self.fmt, "weights")
        self.n = self.blocks.shape[1] * self.fmt.block_size
        if prepared is not None and (prepared.fmt is not self.fmt or prepared.blocks.shape != self.blocks.shape):
            raise ValueError(f"prepared weights are {prepared.fmt.name} {prepared.blocks.shape}, "
                             f"not {self.fmt.name} {self.blocks.shape}")
        self.prepared = prepared
        self._fast = None           # refimpl.kernels.drivers.FastRunner, made on the first fast call
        self._dequantized = None    # float32 rows of a format without vec_dot, made on the first call

    def _float_matmul(self, x2: np.ndarray) -> np.ndarray:
        # Not a ggml path (see the module docstring): the rows dequantized once, then a float32 numpy product.
        if self._dequantized is None:
            y = np.empty(self.blocks.size * self.fmt.block_size, dtype=np.float32)
            with np.errstate(all="ignore"):
                layer.kernel(self.fmt, "dequantize")(np.ascontiguousarray(self.blocks).reshape(-1), y)
            self._dequantized = y.reshape(self.blocks.shape[0], self.n)
        return np.matmul(x2, self._dequantized.T)

    def matmul(self, x, path: str = "auto") -> np.ndarray:
        fmt, n = self.fmt, self.n
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim not in (1, 2) or x.shape[-1] != n:
            raise ValueError(f"activations must be float with last dimension {n} (the weight row length), "
                             f"got {x.dtype} {x.shape}")
        if path not in ("auto", "vec_dot", "intdot"):
            raise ValueError(f"path must be 'auto', 'vec_dot' or 'intdot', got {path!r}")
        x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n)
        if self.vfmt is None:
            if path == "intdot":
                raise ValueError(f"{fmt.name} has no intdot (integer/float split) path")
            out = self._float_matmul(x2)
        elif layer.get_kernels() == "reference":
            if path == "intdot":
                raise ValueError("the intdot path belongs to the fast kernel layer (set_kernels('fast'))")
            out = reference_matmul(fmt, self.vfmt, self.blocks, x2)
        else:
            out = self.fast_runner().matmul(x2, path, self.prepared)
        return out[0] if x.ndim == 1 else out

    def fast_runner(self):
        """The fast layer's runner of these weights (refimpl.kernels.drivers.FastRunner), made on first use; it
        holds the packed copy of the weights where the fast layer has a packed layout for the type.  None for a
        type without an activation type (its float path has no fast runner)."""
        if self.vfmt is None:
            return None
        if self._fast is None:
            from ..kernels.drivers import FastRunner
            self._fast = FastRunner(self.fmt, self.vfmt, self.blocks, self.prepared)
        return self._fast


def matmul(w_raw, qtype, x, *, prepared=None, path: str = "auto") -> np.ndarray:
    """``ggml_mul_mat`` semantics: weights ``(n_rows, row_bytes)`` of ``qtype`` times float activations
    ``(n_tokens, n)`` (or ``(n,)``) -> float32 ``(n_tokens, n_rows)`` (or ``(n_rows,)``).  ``prepared``: see
    ``prepare``; ``path``: ``"auto"``, or force ``"vec_dot"`` / ``"intdot"`` (see the module docstring)."""
    return WeightMatrix(w_raw, qtype, prepared).matmul(x, path)
