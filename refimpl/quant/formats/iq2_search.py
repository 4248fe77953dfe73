"""Search structures of the 2-bit and 1-bit lattice quantizers (IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M).

ggml builds them once per type in ``iq2xs_init_impl`` (ggml-quants.c, called by ``ggml_quantize_init``); we build
the same arrays lazily on first use and keep them for the life of the process.

Every quantizer works on groups of 8 weights.  A group is first rounded to a point of the *full* lattice
``{1, 3, 5, 7}^8`` (2 bits per coordinate ``l = 0..3``, value ``2*l + 1``), and packed into a 16-bit key
``u = sum(l_k << 2k)``.  Only a subset of the lattice is encodable (256, 512, 1024 or 2048 points: the "grid", given
compactly by the ``kgrid_*`` tables, same 2-bit packing).  Three arrays answer "which grid point for key u?":

* ``grid``       int8[grid_size, 8]: the grid points as lattice coordinates ``2*l + 1`` (ggml's ``kgrid_q2xs``,
  not the ``iq2xxs_grid`` decoding tables, whose byte values differ).
* ``kmap``       int32[43692]: ``kmap[u] >= 0`` is the grid index of an on-grid key; for an off-grid key
  ``kmap[u] = -(offset + 1)`` points into ``neighbours``.  43692 = the largest key in any kgrid table + 2.
* ``neighbours`` uint16[...]: at ``offset``: ``n``, then the ``n`` grid indices nearest to ``u`` (squared Euclidean
  distance in lattice coordinates), *all* points at the ``nwant`` smallest distinct distances: ``nwant`` is 2 for
  IQ2_XXS/IQ2_XS, 1 for IQ2_S, 3 for IQ1_S/IQ1_M.  They are ordered by distance, then by grid index: ggml
  qsorts ``(d2, j)`` pairs with a comparator on both, so the order is total and this reproduces it exactly.
  The order matters: ``iq2_find_best_neighbour`` keeps the *first* candidate with the smallest weighted error.

ggml sorts all ``grid_size`` distances per key; we get the same list without sorting: distances are small
integers (at most 8 * 6^2 = 288), so a histogram finds the ``nwant`` smallest distinct ones and a counting sort
places the grid indices (scanned in increasing ``j``, which is the tie-break).  Distances are sums of two
half-group terms looked up in two 256 x grid_size tables.  IQ1's 2048-point build takes ~0.2 s.

``build_literal`` is a second, vectorised numpy build that follows the C literally (sort every key's
``(d2, j)`` pairs, walk the sorted list): it serves under ``NUMBA_DISABLE_JIT=1`` (where the scalar build would
take hours) and as the cross-check of the fast build in ``tests/test_iq_lattice.py``.
"""
from __future__ import annotations

import numpy as np

from ..._jit import JIT_DISABLED, njit
from .. import iq_tables

KMAP_SIZE = 43692   # iq2xs_init_impl: kmap_size
MAX_D2 = 8 * 36     # largest squared distance between two points of {1,3,5,7}^8

#: type name -> (kgrid table, nwant) as chosen in iq2xs_init_impl; IQ1_S and IQ1_M share one entry (gindex 2).
_KINDS = {
    "IQ2_XXS": ("KGRID_2BIT_256", 2),
    "IQ2_XS": ("KGRID_2BIT_512", 2),
    "IQ2_S": ("KGRID_2BIT_1024", 1),
    "IQ1": ("KGRID_1BIT_2048", 3),
}
_ALIASES = {"IQ1_S": "IQ1", "IQ1_M": "IQ1"}
_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


@njit
def _expand_grid(kgrid):
    # iq2xs_init_impl: pos[i] = 2*l + 1 with l the i-th 2-bit field of kgrid[k]
    grid_size = kgrid.shape[0]
    grid = np.empty((grid_size, 8), dtype=np.int8)
    for k in range(grid_size):
        v = int(kgrid[k])
        for i in range(8):
            grid[k, i] = 2 * ((v >> (2 * i)) & 3) + 1
    return grid


@njit
def _half_distances(grid, half):
    """table[h, j]: squared distance between grid point j and the lattice key whose 4 coordinates of this half
    (0: coordinates 0..3, 1: 4..7) are the 2-bit fields of h."""
    grid_size = grid.shape[0]
    table = np.empty((256, grid_size), dtype=np.int32)
    for h in range(256):
        for j in range(grid_size):
            d2 = 0
            for k in range(4):
                diff = int(grid[j, 4 * half + k]) - (2 * ((h >> (2 * k)) & 3) + 1)
                d2 += diff * diff
            table[h, j] = d2
    return table


@njit
def _select(d2row, nwant, hist, chosen):
    """Mark in ``chosen`` the ``nwant`` smallest distinct distances of ``d2row``; return how many grid points
    lie at those distances (the C loop: take every entry until the (nwant+1)-th distinct distance)."""
    for v in range(MAX_D2 + 1):
        hist[v] = 0
        chosen[v] = False
    for j in range(d2row.shape[0]):
        hist[d2row[j]] += 1
    n = 0
    nhave = 0
    for v in range(MAX_D2 + 1):
        if hist[v] > 0:
            chosen[v] = True
            n += hist[v]
            nhave += 1
            if nhave == nwant:
                break
    return n


@njit
def _build(kgrid, nwant):
    # mirrors iq2xs_init_impl (ggml-quants.c): the_grid, kmap_q2xs, kneighbors_q2xs
    grid = _expand_grid(kgrid)
    grid_size = grid.shape[0]
    kmap = np.full(KMAP_SIZE, -1, dtype=np.int32)
    for i in range(grid_size):
        index = 0
        for k in range(8):
            index |= ((int(grid[i, k]) - 1) // 2) << (2 * k)
        kmap[index] = i
    lo = _half_distances(grid, 0)
    hi = _half_distances(grid, 1)
    d2row = np.empty(grid_size, dtype=np.int32)
    hist = np.zeros(MAX_D2 + 1, dtype=np.int64)
    chosen = np.zeros(MAX_D2 + 1, dtype=np.bool_)
    # pass 1: how many neighbours each off-grid key gets, hence its offset in the neighbour list
    offsets = np.full(KMAP_SIZE, -1, dtype=np.int64)
    total = 0
    for i in range(KMAP_SIZE):
        if kmap[i] >= 0:
            continue
        for j in range(grid_size):
            d2row[j] = lo[i & 255, j] + hi[i >> 8, j]
        offsets[i] = total
        total += 1 + _select(d2row, nwant, hist, chosen)
    neighbours = np.empty(total, dtype=np.uint16)
    # pass 2: write each list, ordered by (distance, grid index) like ggml's qsort with iq2_compare_func
    slot = np.zeros(MAX_D2 + 1, dtype=np.int64)
    for i in range(KMAP_SIZE):
        if kmap[i] >= 0:
            continue
        for j in range(grid_size):
            d2row[j] = lo[i & 255, j] + hi[i >> 8, j]
        n = _select(d2row, nwant, hist, chosen)
        start = offsets[i]
        neighbours[start] = n
        pos = start + 1
        for v in range(MAX_D2 + 1):
            if chosen[v]:
                slot[v] = pos
                pos += hist[v]
        for j in range(grid_size):
            v = d2row[j]
            if chosen[v]:
                neighbours[slot[v]] = j
                slot[v] += 1
        kmap[i] = -(start + 1)
    return grid, kmap, neighbours


def build_literal(kgrid: np.ndarray, nwant: int, chunk: int = 1024):
    """iq2xs_init_impl in numpy, statement for statement at the array level: for every off-grid key, sort all
    ``(d2, j)`` pairs (``iq2_compare_func``: by distance, then index) and keep the entries before the
    (nwant+1)-th distinct distance.  Same result as ``_build``."""
    kgrid = np.asarray(kgrid)
    grid_size = kgrid.size
    shifts = 2 * np.arange(8)
    grid = (2 * ((kgrid.astype(np.int64)[:, None] >> shifts) & 3) + 1).astype(np.int8)
    kmap = np.full(KMAP_SIZE, -1, dtype=np.int32)
    keys = (((grid.astype(np.int64) - 1) // 2) << shifts).sum(axis=1)
    kmap[keys] = np.arange(grid_size, dtype=np.int32)
    off_grid = np.flatnonzero(kmap < 0)
    # squared distance = sum over coordinates; split in two halves of 4 coordinates (256 patterns each)
    half = 2 * ((np.arange(256)[:, None] >> shifts[:4]) & 3) + 1                              # (256, 4)
    g = grid.astype(np.int64)
    lo = ((g[None, :, :4] - half[:, None, :]) ** 2).sum(axis=2)                             # (256, grid)
    hi = ((g[None, :, 4:] - half[:, None, :]) ** 2).sum(axis=2)
    parts, lengths = [], []
    for c in range(0, off_grid.size, chunk):
        ks = off_grid[c:c + chunk]
        d2 = lo[ks & 255] + hi[ks >> 8]
        order = np.argsort(d2 * grid_size + np.arange(grid_size), axis=1)     # by (d2, j): keys are distinct
        sd2 = np.take_along_axis(d2, order, axis=1)
        nhave = 1 + np.cumsum(np.diff(sd2, axis=1) > 0, axis=1)               # distinct distances so far
        keep = np.concatenate([np.ones((ks.size, 1), bool), nhave <= nwant], axis=1)
        counts = keep.sum(axis=1)
        # each key's list is [n, j_1 .. j_n]; boolean indexing concatenates the rows in order
        parts.append(np.concatenate([counts[:, None], order], axis=1)[
            np.concatenate([np.ones((ks.size, 1), bool), keep], axis=1)])
        lengths.append(counts + 1)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    kmap[off_grid] = -(offsets + 1)
    neighbours = np.concatenate(parts).astype(np.uint16) if parts else np.zeros(0, np.uint16)
    return grid, kmap, neighbours


def search_tables(type_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(grid, kmap, neighbours)`` for IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S or IQ1_M, built on first use and cached
    for the process (what ``ggml_quantize_init`` does for the type)."""
    kind = _ALIASES.get(type_name, type_name)
    tables = _CACHE.get(kind)
    if tables is None:
        if kind not in _KINDS:
            raise ValueError(f"no lattice search tables for {type_name!r}; expected one of "
                             f"{', '.join(list(_KINDS)[:3] + list(_ALIASES))}")
        kgrid_name, nwant = _KINDS[kind]
        kgrid = np.ascontiguousarray(getattr(iq_tables, kgrid_name))
        tables = build_literal(kgrid, nwant) if JIT_DISABLED else _build(kgrid, nwant)
        for a in tables:
            a.setflags(write=False)
        _CACHE[kind] = tables
    return tables
