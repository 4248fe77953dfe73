"""The i-quant lookup tables (grids, sign tables, non-linear value tables), as extracted from llama.cpp.

The arrays come from ``refimpl/data/iq_tables.npz``, written by ``tools/extract_iq_tables.py`` straight from
the C source (``ggml-common.h`` and the ``kgrid_*`` arrays in ``ggml-quants.c``); each is named after its C
array in upper case and keeps the C element type:

=================  ===========  ====================================================================
name               dtype/size   what it is
=================  ===========  ====================================================================
IQ2XXS_GRID        uint64[256]  8 int8 values (1, 3 ... 43 by bytes) per entry, IQ2_XXS decoding grid
IQ2XS_GRID         uint64[512]  IQ2_XS decoding grid
IQ2S_GRID          uint64[1024] IQ2_S decoding grid
IQ3XXS_GRID        uint32[256]  4 uint8 values per entry, IQ3_XXS decoding grid
IQ3S_GRID          uint32[512]  IQ3_S decoding grid
IQ1S_GRID          uint64[2048] 8 int8 values in {-1, 0, 1}, IQ1_S / IQ1_M grid
KVALUES_IQ4NL      int8[16]     the non-linear 4-bit code book of IQ4_NL / IQ4_XS
KSIGNS_IQ2XS       uint8[128]   7 sign bits -> 8 sign bits with even parity
KMASK_IQ2XS        uint8[8]     1 << j
KSIGNS64           uint64[128]  KSIGNS_IQ2XS expanded to 0x00/0xff bytes (used by SIMD code)
KGRID_2BIT_256     uint16[256]  compact (2 bits per value) form of IQ2XXS_GRID (iq2xs_init_impl)
KGRID_2BIT_512     uint16[512]  ... of IQ2XS_GRID
KGRID_2BIT_1024    uint16[1024] ... of IQ2S_GRID
KGRID_1BIT_2048    uint16[2048] ... of IQ1S_GRID
KGRID_256          uint16[256]  compact (3 bits per value) form of IQ3XXS_GRID (iq3xs_init_impl)
KGRID_512          uint16[512]  ... of IQ3S_GRID
=================  ===========  ====================================================================
"""
from __future__ import annotations

from importlib import resources

import numpy as np

_NAMES = ("IQ2XXS_GRID", "IQ2XS_GRID", "IQ2S_GRID", "IQ3XXS_GRID", "IQ3S_GRID", "IQ1S_GRID", "KVALUES_IQ4NL",
          "KSIGNS_IQ2XS", "KMASK_IQ2XS", "KSIGNS64", "KGRID_2BIT_256", "KGRID_2BIT_512", "KGRID_2BIT_1024",
          "KGRID_1BIT_2048", "KGRID_256", "KGRID_512")


def _load() -> dict[str, np.ndarray]:
    with resources.files("refimpl").joinpath("data/iq_tables.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


_TABLES = _load()

IQ2XXS_GRID: np.ndarray = _TABLES["IQ2XXS_GRID"]
IQ2XS_GRID: np.ndarray = _TABLES["IQ2XS_GRID"]
IQ2S_GRID: np.ndarray = _TABLES["IQ2S_GRID"]
IQ3XXS_GRID: np.ndarray = _TABLES["IQ3XXS_GRID"]
IQ3S_GRID: np.ndarray = _TABLES["IQ3S_GRID"]
IQ1S_GRID: np.ndarray = _TABLES["IQ1S_GRID"]
KVALUES_IQ4NL: np.ndarray = _TABLES["KVALUES_IQ4NL"]
KSIGNS_IQ2XS: np.ndarray = _TABLES["KSIGNS_IQ2XS"]
KMASK_IQ2XS: np.ndarray = _TABLES["KMASK_IQ2XS"]
KSIGNS64: np.ndarray = _TABLES["KSIGNS64"]
KGRID_2BIT_256: np.ndarray = _TABLES["KGRID_2BIT_256"]
KGRID_2BIT_512: np.ndarray = _TABLES["KGRID_2BIT_512"]
KGRID_2BIT_1024: np.ndarray = _TABLES["KGRID_2BIT_1024"]
KGRID_1BIT_2048: np.ndarray = _TABLES["KGRID_1BIT_2048"]
KGRID_256: np.ndarray = _TABLES["KGRID_256"]
KGRID_512: np.ndarray = _TABLES["KGRID_512"]

# Constants from ggml-common.h that go with the tables.
NGRID_IQ1S = 2048
IQ1S_DELTA = np.float32(0.125)
IQ1M_DELTA = np.float32(0.125)

__all__ = list(_NAMES) + ["NGRID_IQ1S", "IQ1S_DELTA", "IQ1M_DELTA"]
