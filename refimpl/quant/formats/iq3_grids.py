"""The search structures ggml's IQ3 quantizers use, built exactly like ``iq3xs_init_impl`` (ggml-quants.c).

For a grid of 256 (IQ3_XXS) or 512 (IQ3_S) points, each point a 4-vector of odd values 1, 3, ..., 15 (3 bits per
coordinate ``l``, value ``2*l + 1``):

* ``grid``  — uint32[G]: the quantizer's grid, byte k of entry j = ``2*((kgrid[j] >> 3k) & 7) + 1``.  (For
  IQ3_XXS this is NOT the decoding table ``iq3xxs_grid``, which holds 4x these values and 62 for 60.)
* ``kmap``  — int32[4096]: for each of the 8^4 points ``u = l0 | l1<<3 | l2<<6 | l3<<9``, the grid index if the
  point is on the grid, else ``-(offset+1)`` where ``offset`` points into ``kneighbors``.
* ``kneighbors`` — uint16[]: for each off-grid point (in increasing ``u``), a count ``n`` followed by ``n`` grid
  indices: every grid point whose squared Euclidean distance to ``u`` is among the ``nwant`` smallest distinct
  distances (``nwant`` = 2 for 256, 3 for 512), sorted by (distance, grid index) -- the total order of
  ``iq3_compare_func``, so qsort's instability cannot change the result.

Built once per process on first use (vectorised numpy, a few milliseconds) and cached; the arrays are read-only.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..iq_tables import KGRID_256, KGRID_512

KMAP_SIZE = 4096


@lru_cache(maxsize=None)
def iq3_search_tables(grid_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(grid uint32[G], kmap int32[4096], kneighbors uint16[])`` as iq3xs_init_impl(grid_size) builds them."""
    if grid_size not in (256, 512):
        raise ValueError(f"iq3 grids have 256 or 512 points, got {grid_size}")
    kgrid = (KGRID_256 if grid_size == 256 else KGRID_512).astype(np.int64)
    nwant = 2 if grid_size == 256 else 3
    shifts = 3 * np.arange(4)
    levels = (kgrid[:, None] >> shifts) & 7                      # (G, 4) values l in 0..7
    pos_grid = 2 * levels + 1                                    # (G, 4) the grid points, odd 1..15
    grid = (pos_grid.astype(np.uint32) << (8 * np.arange(4, dtype=np.uint32))).sum(axis=1).astype(np.uint32)

    kmap = np.full(KMAP_SIZE, -1, dtype=np.int32)
    kmap[(levels << shifts).sum(axis=1)] = np.arange(grid_size, dtype=np.int32)

    off_grid = np.flatnonzero(kmap < 0)                          # increasing u, the C loop order
    pos = 2 * ((off_grid[:, None] >> shifts) & 7) + 1            # (M, 4)
    d2 = ((pos_grid[None, :, :] - pos[:, None, :]) ** 2).sum(axis=2)  # (M, G) squared distances
    idx = np.broadcast_to(np.arange(grid_size), d2.shape)
    # sort by (distance, index): np.lexsort's last key is the primary one
    order = np.lexsort((idx, d2), axis=1)
    d2_sorted = np.take_along_axis(d2, order, axis=1)
    # keep every entry whose distance is among the first nwant distinct distances
    new_level = np.concatenate([np.zeros((len(off_grid), 1), bool), d2_sorted[:, 1:] > d2_sorted[:, :-1]], axis=1)
    rank = np.cumsum(new_level, axis=1)                          # 0 for the smallest distance, 1 for the next ...
    keep = rank < nwant
    counts = keep.sum(axis=1)

    kneighbors = np.empty(int(counts.sum()) + len(off_grid), dtype=np.uint16)
    offsets = np.concatenate([[0], np.cumsum(counts + 1)[:-1]])
    for m, u in enumerate(off_grid):
        o = int(offsets[m])
        n = int(counts[m])
        kneighbors[o] = n
        kneighbors[o + 1: o + 1 + n] = order[m, :n]              # kept entries are a prefix of the sorted row
        kmap[u] = -(o + 1)
    for a in (grid, kmap, kneighbors):
        a.setflags(write=False)
    return grid, kmap, kneighbors
