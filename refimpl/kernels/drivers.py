"""The fast layer's matmul machinery: compiled row drivers, cached per kernel, and WeightMatrix's fast runner.

The reference layer's matmul (refimpl.quant.matmul.reference_matmul) is two Python loops: convert each activation
row, then one ``vec_dot`` per output.  The fast runner computes the same outputs, each still start to end by one
thread in the C's order, so the result does not depend on the thread count:

* the **vec_dot path**: one numba call per matmul that quantizes the activations and runs every (row, token) dot
  product in parallel over rows, with the format's row dot (refimpl.kernels.rowdot: several rows per call) where
  it has one, else its ``matvec`` kernel on activations it packs once per call (FastKernels.pack_acts), else its
  fast ``vec_dot`` (or its reference one when it has none);
* the **intdot path** (refimpl.kernels.intdot): the integer part of all dot products by float32 BLAS, the float
  part replayed in the C's order; taken when the weights were ``prepare``d or when there are at least
  ``INTDOT_MIN_TOKENS`` tokens (enough to pay for expanding the weights on the fly).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import get as fast_kernels
from . import intdot
from .._jit import njit
from .jitcache import cached_closure
from .packed import GROUP, PACKED, PackedFormat
from .rowdot import DECODE_ROW_DOTS, ROW_DOTS, ROWS, TILE_DOTS

INTDOT_MIN_TOKENS = 8

# One compiled driver per kernel (vec_dot, from_float), the kernel bound as a constant of the closure.  Passing the
# kernel as an argument instead makes numba work out the argument's type on every call (~0.1 ms: half of the
# time of a decode step).  Cached on disk like every other kernel: refimpl.kernels.jitcache gives the closures a
# cache key that is the same in every process.
_DRIVERS: dict = {}

# Chunks of rows per matmul on the vec_dot path with scratch arrays (one set per chunk).  A constant, not
# numba.get_num_threads() inside the driver: that call compiles to a ctypes pointer, which numba will not cache
# (each process would compile the parallel driver again).  Only the scratch arrays' reuse depends on it.
_MAX_CHUNKS = 4 * numba.config.NUMBA_NUM_THREADS


def _cached(key, make):
    d = _DRIVERS.get(key)
    if d is None:
        d = _DRIVERS[key] = make()
    return d


def convert_rows(conv):
    """A compiled ``convert_rows(x (tokens, n) float32, out_blocks (tokens, nb))``: ``conv`` on every row."""
    def make():
        @cached_closure
        def convert_rows(x, out_blocks):
            for t in range(x.shape[0]):
                conv(x[t], out_blocks[t])
        return convert_rows
    return _cached(("convert", conv), make)


def matmul_rows(vec_dot, make_work=None):
    """A compiled ``matmul_rows(n, w_blocks, x_blocks, out)``: out[t, r] = vec_dot(n, w[r], x[t]), rows in parallel;
    with ``make_work``, ``vec_dot`` is a ``vec_dot_work`` and each chunk of rows gets its own scratch arrays."""
    def make():
        if make_work is None:
            @cached_closure(parallel=True)
            def matmul_rows(n, w_blocks, x_blocks, out):
                # one output row per task: each (token, row) sum is computed start to end by a single thread
                for r in prange(w_blocks.shape[0]):
                    for t in range(x_blocks.shape[0]):
                        out[t, r] = vec_dot(n, w_blocks[r], x_blocks[t])
        else:
            @cached_closure(parallel=True)
            def matmul_rows(n, w_blocks, x_blocks, out):
                # as above, in a few chunks of rows per thread, each with its own scratch arrays
                rows = w_blocks.shape[0]
                n_chunks = min(rows, _MAX_CHUNKS)
                per = (rows + n_chunks - 1) // n_chunks
                for c in prange(n_chunks):
                    work = make_work(n)
                    for r in range(c * per, min(rows, c * per + per)):
                        for t in range(x_blocks.shape[0]):
                            out[t, r] = vec_dot(n, w_blocks[r], x_blocks[t], work)
        return matmul_rows
    return _cached(("matmul", vec_dot, make_work), make)


@njit(inline="always")
def _row_chunks(rows):
    # chunks of whole ROWS-row groups, at most _MAX_CHUNKS of them (one when there are no rows)
    n_chunks = max(1, min(_MAX_CHUNKS, (rows + ROWS - 1) // ROWS))
    per = ((rows + n_chunks - 1) // n_chunks + ROWS - 1) // ROWS * ROWS
    return n_chunks, per


def matmul_group_row_dots(dot_rows, dot_row):
    """``matmul_row_dots`` over several weight matrices of one format in one parallel region: their ROWS-row groups
    taken as one list split evenly over _MAX_CHUNKS tasks (q, k and v of a GQA layer differ in size: splitting each
    matrix into the same number of chunks left one thread with most of the rows)."""
    step = 1 if dot_rows is dot_row else ROWS      # rows per dot_rows call (rowdot.DECODE_ROW_DOTS)

    def make():
        @cached_closure(parallel=True)
        def matmul_group_row_dots(n, ws, x_blocks, outs):
            total = 0
            for m in range(len(ws)):
                total += (ws[m].shape[0] + step - 1) // step
            per = (total + _MAX_CHUNKS - 1) // _MAX_CHUNKS
            for task in prange(_MAX_CHUNKS):
                g0 = task * per
                g1 = min(total, g0 + per)
                base = 0
                for m in range(len(ws)):
                    w, out = ws[m], outs[m]
                    groups = (w.shape[0] + step - 1) // step
                    lo, hi = max(g0, base), min(g1, base + groups)
                    if lo < hi:
                        end = min(w.shape[0], (hi - base) * step)
                        for t in range(x_blocks.shape[0]):
                            r = (lo - base) * step
                            while r + step <= end:
                                dot_rows(w, r, x_blocks[t], out[t])
                                r += step
                            while r < end:
                                dot_row(w, r, x_blocks[t], out[t])
                                r += 1
                    base += groups
        return matmul_group_row_dots
    return _cached(("matmul_group_row_dots", dot_rows, dot_row), make)


def matmul_row_dots(dot_rows, dot_row):
    """``matmul_rows`` over a row dot (refimpl.kernels.rowdot): ``dot_rows`` computes ROWS outputs per call,
    ``dot_row`` the last rows; the one-matrix case of matmul_group_row_dots."""
    def make():
        group = matmul_group_row_dots(dot_rows, dot_row)

        @cached_closure
        def matmul_row_dots(n, w_blocks, x_blocks, out):
            group(n, (w_blocks,), x_blocks, (out,))
        return matmul_row_dots
    return _cached(("matmul_row_dots", dot_rows, dot_row), make)


# rows per block of the tile driver (a multiple of every tile's rows)
_TILE_ROW_BLOCK = 32


def matmul_tiles(tile, tile_rows, tile_tokens, dot_row):
    """``matmul_rows`` for a batch of tokens over a tile dot (refimpl.kernels.rowdot._make_tile_dot): tile_rows rows
    x tile_tokens tokens per call, the leftover tokens and rows by the one-row dot; each output is still one row's
    dot product start to end, whatever the tiling."""
    def make():
        @cached_closure(parallel=True)
        def matmul_tiles(n, w_blocks, x_blocks, out):
            rows, tokens = w_blocks.shape[0], x_blocks.shape[0]
            n_chunks, per = _row_chunks(rows)
            for c in prange(n_chunks):
                end = min(rows, c * per + per)
                # blocks of _TILE_ROW_BLOCK rows: the tile_tokens tokens' activations stay in the core's cache
                # while the block's rows pass them, instead of every token of the batch passing each row
                for rb in range(c * per, end, _TILE_ROW_BLOCK):
                    rb_end = min(end, rb + _TILE_ROW_BLOCK)
                    r_full = rb + (rb_end - rb) // tile_rows * tile_rows
                    t = 0
                    while t + tile_tokens <= tokens:
                        for r in range(rb, r_full, tile_rows):
                            tile(w_blocks, r, x_blocks, t, out)
                        t += tile_tokens
                    for tt in range(t, tokens):
                        for rr in range(rb, r_full):
                            dot_row(w_blocks, rr, x_blocks[tt], out[tt])
                    for rr in range(r_full, rb_end):
                        for tt in range(tokens):
                            dot_row(w_blocks, rr, x_blocks[tt], out[tt])
        return matmul_tiles
    return _cached(("matmul_tiles", tile, tile_rows, tile_tokens, dot_row), make)


def matmul_group_packed(dot):
    """The row drivers over packed weights (refimpl.kernels.packed): ``(n, ws, x_blocks, outs)`` with ws a tuple
    of (groups, nb) group-block arrays of one packed format, outs[m][t, r] the dot of row r of matrix m with token
    t.  The matrices' groups are taken as one list split evenly over _MAX_CHUNKS tasks (as matmul_group_row_dots);
    each output is one row's dot product start to end, computed by one thread."""
    def make():
        @cached_closure(parallel=True)
        def matmul_group_packed(n, ws, x_blocks, outs):
            total = 0
            for m in range(len(ws)):
                total += ws[m].shape[0]
            per = (total + _MAX_CHUNKS - 1) // _MAX_CHUNKS
            for task in prange(_MAX_CHUNKS):
                g0 = task * per
                g1 = min(total, g0 + per)
                base = 0
                for m in range(len(ws)):
                    w, out = ws[m], outs[m]
                    for g in range(max(g0, base), min(g1, base + w.shape[0])):
                        for t in range(x_blocks.shape[0]):
                            dot(w, g - base, x_blocks, t, out)
                    base += w.shape[0]
        return matmul_group_packed
    return _cached(("matmul_group_packed", dot), make)


def matmul_packed(dot):
    """matmul_group_packed of one matrix."""
    def make():
        group = matmul_group_packed(dot)

        @cached_closure
        def matmul_packed(n, w_blocks, x_blocks, out):
            group(n, (w_blocks,), x_blocks, (out,))
        return matmul_packed
    return _cached(("matmul_packed", dot), make)


# tokens per block of the packed tile driver: the activations of a block stay in cache while the chunk's weight
# groups stream past them
_TILE_TOKEN_BLOCK = 64


def matmul_packed_tiles(tile, tile_tokens, dot):
    """A batch of tokens over packed weights: each task a run of groups, for each block of _TILE_TOKEN_BLOCK
    tokens the groups' tiles (8 rows x tile_tokens tokens per call), the leftover tokens by the group dot."""
    def make():
        @cached_closure(parallel=True)
        def matmul_packed_tiles(n, w_blocks, x_blocks, out):
            groups, tokens = w_blocks.shape[0], x_blocks.shape[0]
            n_chunks = max(1, min(_MAX_CHUNKS, groups))
            per = (groups + n_chunks - 1) // n_chunks
            for c in prange(n_chunks):
                g_end = min(groups, c * per + per)
                for tb in range(0, tokens, _TILE_TOKEN_BLOCK):
                    te = min(tokens, tb + _TILE_TOKEN_BLOCK)
                    for g in range(c * per, g_end):
                        t = tb
                        while t + tile_tokens <= te:
                            tile(w_blocks, g, x_blocks, t, out)
                            t += tile_tokens
                        while t < te:
                            dot(w_blocks, g, x_blocks, t, out)
                            t += 1
        return matmul_packed_tiles
    return _cached(("matmul_packed_tiles", tile, tile_tokens, dot), make)


def quantize_and_multiply(convert, rows, pack=None):
    """``convert`` (then ``pack``, the matvec kernel's activation layout) then ``rows`` in one compiled call (each
    call from Python into numba costs microseconds)."""
    def make():
        if pack is None:
            @cached_closure
            def quantize_and_multiply(x, x_blocks, n, w_blocks, out):
                convert(x, x_blocks)
                rows(n, w_blocks, x_blocks, out)
        else:
            @cached_closure
            def quantize_and_multiply(x, x_blocks, n, w_blocks, out):
                convert(x, x_blocks)
                pack(x_blocks)
                rows(n, w_blocks, x_blocks, out)
        return quantize_and_multiply
    return _cached(("quantize_and_multiply", convert, rows, pack), make)


def matmul_group_rows(vec_dot, make_work=None):
    """``matmul_rows`` over several weight matrices of one format in one parallel region: ``(n, w_tuple, x_blocks,
    out_tuple)``, out_tuple[m][t, r] = vec_dot(n, w_tuple[m][r], x_blocks[t]).  Each output is still one thread's
    start-to-end sum, so the bits are those of separate calls; one region instead of several saves a thread
    hand-off per matrix (decode steps of small models are made of such hand-offs)."""
    def make():
        if make_work is None:
            @cached_closure(parallel=True)
            def matmul_group_rows(n, ws, x_blocks, outs):
                for c in prange(len(ws) * _MAX_CHUNKS):
                    w, out = ws[c // _MAX_CHUNKS], outs[c // _MAX_CHUNKS]
                    per = (w.shape[0] + _MAX_CHUNKS - 1) // _MAX_CHUNKS
                    r0 = (c % _MAX_CHUNKS) * per
                    for r in range(r0, min(w.shape[0], r0 + per)):
                        for t in range(x_blocks.shape[0]):
                            out[t, r] = vec_dot(n, w[r], x_blocks[t])
        else:
            @cached_closure(parallel=True)
            def matmul_group_rows(n, ws, x_blocks, outs):
                for c in prange(len(ws) * _MAX_CHUNKS):
                    w, out = ws[c // _MAX_CHUNKS], outs[c // _MAX_CHUNKS]
                    per = (w.shape[0] + _MAX_CHUNKS - 1) // _MAX_CHUNKS
                    r0 = (c % _MAX_CHUNKS) * per
                    if r0 < w.shape[0]:
                        work = make_work(n)
                        for r in range(r0, min(w.shape[0], r0 + per)):
                            for t in range(x_blocks.shape[0]):
                                out[t, r] = vec_dot(n, w[r], x_blocks[t], work)
        return matmul_group_rows
    return _cached(("matmul_group", vec_dot, make_work), make)


def _format_parts(kind: str, fmt, vfmt, build):
    """``build(fmt, vfmt)`` once per (kind, weight format, activation format), looked up by identity (quant.matmul
    makes a runner per call, and hashing a frozen QuantFormat hashes every field)."""
    key = (kind, id(fmt), id(vfmt))
    hit = _DRIVERS.get(key)
    if hit is not None and hit[0] is fmt and hit[1] is vfmt:
        return hit[2]
    parts = build(fmt, vfmt)
    _DRIVERS[key] = (fmt, vfmt, parts)
    return parts


def _rows_driver(fmt, make_rows, make_row_dots):
    """The row driver over the format's fastest dot product — ``make_row_dots`` over its row dot (several rows per
    call), else ``make_rows`` over a matvec on packed activations, the vec_dot with caller-made scratch, or the
    plain vec_dot — with the activation packer it needs (or None)."""
    fk = fast_kernels(fmt.name)
    if fk is not None and fmt.name in ROW_DOTS and fmt.name in DECODE_ROW_DOTS:
        dot_rows, dot_row = ROW_DOTS[fmt.name]
        return make_row_dots(dot_rows if DECODE_ROW_DOTS[fmt.name] == ROWS else dot_row, dot_row), fk.pack_acts
    if fk is not None and fk.matvec is not None:
        return make_rows(fk.matvec, fk.make_work), fk.pack_acts
    if fk is not None and fk.vec_dot_work is not None:
        return make_rows(fk.vec_dot_work, fk.make_work), None
    return make_rows(fast_op(fmt, "vec_dot")), None


def _group_parts(fmt, vfmt):
    def build(fmt, vfmt):
        if isinstance(fmt, PackedFormat):
            return quantize_and_multiply(convert_rows(activation_converter(vfmt)), matmul_group_packed(fmt.dot),
                                         fmt.pack_acts)
        rows, pack = _rows_driver(fmt, matmul_group_rows, matmul_group_row_dots)
        return quantize_and_multiply(convert_rows(activation_converter(vfmt)), rows, pack)
    return _format_parts("group", fmt, vfmt, build)


def matmul_group(matrices, x2: np.ndarray):
    """The outputs of several WeightMatrix of one format and row length on the same few activation rows (the
    vec_dot path: fewer than INTDOT_MIN_TOKENS rows, no prepared weights), in one compiled call; None when the
    matrices do not qualify (the caller then multiplies them one by one: same bits)."""
    first = matrices[0]
    fmt, vfmt, n = first.fmt, first.vfmt, first.n
    if (vfmt is None or x2.shape[0] >= INTDOT_MIN_TOKENS or x2.shape[1] != n or x2.dtype != np.float32
            or not x2.flags.c_contiguous
            or any(m.fmt is not fmt or m.n != n or m.prepared is not None for m in matrices)):
        return None
    runners = [m.fast_runner() for m in matrices]
    if any(r.read_fmt is not runners[0].read_fmt for r in runners):     # some packed, some not
        return None
    xq = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
    xb = xq.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
    outs = tuple(np.empty((x2.shape[0], m.blocks.shape[0]), dtype=np.float32) for m in matrices)
    _group_parts(runners[0].read_fmt, vfmt)(x2, xb, n, tuple(r.read_blocks for r in runners), outs)
    return list(outs)


def fast_op(fmt, op: str):
    """The fast kernel of operation ``op`` of ``fmt`` if the fast layer has one, else the reference's."""
    fk = fast_kernels(fmt.name)
    kernel = getattr(fk, op) if fk is not None else None
    return kernel if kernel is not None else getattr(fmt, op)


def activation_converter(vfmt):
    """type_traits_cpu.from_float of the activation type: its fast from_float, else its reference one (which is
    quantize_ref where the format gives no from_float)."""
    fk = fast_kernels(vfmt.name)
    for kernel in ((fk.from_float if fk else None), vfmt.from_float, (fk.quantize_ref if fk else None),
                   vfmt.quantize_ref):
        if kernel is not None:
            return kernel
    return None


def intdot_of(fmt):
    fk = fast_kernels(fmt.name)
    return fk.intdot if fk is not None else None


def prepare(blocks: np.ndarray, fmt) -> intdot.PreparedWeights | None:
    idot = intdot_of(fmt)
    return None if idot is None else intdot.PreparedWeights(blocks, fmt, idot)


def _runner_parts(fmt, vfmt):
    """(convert, quantize_and_multiply, intdot, quantize_and_tiles) of a weight format, or of a PackedFormat (its
    packed drivers; no intdot)."""
    def build(fmt, vfmt):
        if isinstance(fmt, PackedFormat):
            convert, pack = convert_rows(activation_converter(vfmt)), fmt.pack_acts
            return (convert, quantize_and_multiply(convert, matmul_packed(fmt.dot), pack), None,
                    quantize_and_multiply(convert, matmul_packed_tiles(fmt.tile, fmt.tile_tokens, fmt.dot), pack))
        rows, pack = _rows_driver(fmt, matmul_rows, matmul_row_dots)
        convert = convert_rows(activation_converter(vfmt))
        tiles = None
        if fast_kernels(fmt.name) is not None and fmt.name in TILE_DOTS:
            tile, tile_rows, tile_tokens = TILE_DOTS[fmt.name]
            tiles = quantize_and_multiply(convert, matmul_tiles(tile, tile_rows, tile_tokens, ROW_DOTS[fmt.name][1]),
                                          pack)
        return convert, quantize_and_multiply(convert, rows, pack), intdot_of(fmt), tiles
    return _format_parts("runner", fmt, vfmt, build)


def packed_format(fmt, blocks: np.ndarray):
    """The PackedFormat that serves weights ``blocks`` of ``fmt`` on this host, or None (no packed layout for the
    type or the host, or a row count that is not a multiple of the group)."""
    pf = PACKED.get(fmt.name)
    return pf if pf is not None and blocks.ndim == 2 and blocks.shape[0] % GROUP == 0 else None


class FastRunner:
    """WeightMatrix's fast layer: its compiled drivers looked up once, and the weights packed (refimpl.kernels.packed)
    where the type has a packed layout: the vec_dot path and the tiles then read the packed copy."""

    def __init__(self, fmt, vfmt, blocks: np.ndarray, prepared=None):
        self.fmt, self.vfmt, self.blocks = fmt, vfmt, blocks
        self.convert, self.quantize_and_multiply, self.intdot, self.quantize_and_tiles = _runner_parts(fmt, vfmt)
        self.packed = self.packed_fmt = None
        pf = packed_format(fmt, blocks) if prepared is None else None
        if pf is not None:
            self.packed_fmt = pf
            self.packed = pf.packed(blocks.view(np.uint8).reshape(blocks.shape[0], -1))
            (_, self.packed_multiply, _, self.packed_tiles) = _runner_parts(pf, vfmt)
        # what the one-token drivers (matmul_group, the decode step) read: the packed copy where there is one
        self.read_fmt = fmt if pf is None else pf
        self.read_blocks = blocks if pf is None else self.packed

    def matmul(self, x2: np.ndarray, path: str, prepared) -> np.ndarray:
        fmt, vfmt = self.fmt, self.vfmt
        n = x2.shape[1]
        xq = np.zeros((x2.shape[0], vfmt.row_size(n)), dtype=np.uint8)
        xb = xq.reshape(-1).view(vfmt.block_dtype).reshape(x2.shape[0], -1)
        out = np.empty((x2.shape[0], self.blocks.shape[0]), dtype=np.float32)
        if path == "intdot" and self.intdot is None:
            raise ValueError(f"{fmt.name} has no intdot (integer/float split) path")
        use_intdot = self.intdot is not None and (
            path == "intdot" or (path == "auto" and (prepared is not None or x2.shape[0] >= INTDOT_MIN_TOKENS)))
        if self.packed is not None and prepared is None and path != "intdot":
            # the packed copy: its group dots for a few tokens, its tiles for a batch (refimpl.kernels.packed)
            if x2.shape[0] >= INTDOT_MIN_TOKENS:
                self.packed_tiles(x2, xb, n, self.packed, out)
            else:
                self.packed_multiply(x2, xb, n, self.packed, out)
        elif (path == "auto" and prepared is None and self.quantize_and_tiles is not None
                and x2.shape[0] >= INTDOT_MIN_TOKENS):
            # a batch through the tile dots (refimpl.kernels.rowdot): faster than the BLAS integer path here
            self.quantize_and_tiles(x2, xb, n, self.blocks, out)
        elif use_intdot:
            with np.errstate(all="ignore"):
                self.convert(x2, xb)                      # quantize_activations
                intdot.matmul_blocks(self.blocks, self.intdot, xb, out, prepared)
        else:
            # numba kernels do not consult numpy's errstate (C float semantics: no traps), so no context here
            self.quantize_and_multiply(x2, xb, n, self.blocks, out)
        return out
