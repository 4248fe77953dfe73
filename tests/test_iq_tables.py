"""The i-quant tables in refimpl/data/iq_tables.npz are exactly what tools/extract_iq_tables.py extracts from the
pinned llama.cpp C source (when the source is present), and have the C names, types and sizes."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from refimpl.quant import iq_tables

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "IQ2XXS_GRID": (np.uint64, 256), "IQ2XS_GRID": (np.uint64, 512), "IQ2S_GRID": (np.uint64, 1024),
    "IQ3XXS_GRID": (np.uint32, 256), "IQ3S_GRID": (np.uint32, 512), "IQ1S_GRID": (np.uint64, 2048),
    "KVALUES_IQ4NL": (np.int8, 16), "KSIGNS_IQ2XS": (np.uint8, 128), "KMASK_IQ2XS": (np.uint8, 8),
    "KSIGNS64": (np.uint64, 128), "KGRID_2BIT_256": (np.uint16, 256), "KGRID_2BIT_512": (np.uint16, 512),
    "KGRID_2BIT_1024": (np.uint16, 1024), "KGRID_1BIT_2048": (np.uint16, 2048), "KGRID_256": (np.uint16, 256),
    "KGRID_512": (np.uint16, 512),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_table_type_and_size(name):
    dtype, size = EXPECTED[name]
    a = getattr(iq_tables, name)
    assert a.dtype == dtype and a.shape == (size,)


def test_tables_reproducible_from_c_source():
    """The shipped npz is byte for byte what the extractor makes from the pinned C source (fetched if absent)."""
    import refimpl
    from sdist import llama_cpp_dir

    data = (Path(refimpl.__file__).resolve().parent / "data" / "iq_tables.npz").read_bytes()
    spec = importlib.util.spec_from_file_location("extract_iq_tables", ROOT / "tools" / "extract_iq_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from goldens._io import npz_bytes
    assert npz_bytes(mod.extract(llama_cpp_dir())) == data, "run tools/extract_iq_tables.py"


def _check_kgrid_matches_grids():
    # iq3xs_init_impl: value l of entry i = 2*((kgrid[i] >> 3*l) & 7) + 1, stored as bytes of a uint32.
    # The IQ3_XXS decoding grid in ggml-common.h holds 4x those values (its dequantizer scales by 0.25 more),
    # except that the largest, 4*15 = 60, is stored as 62 (a llama.cpp quirk: the quantizer searches with 15,
    # the decoder uses 62/4 = 15.5).  The IQ3_S grid holds the values as they are.
    xxs_values = [4 * (2 * l + 1) for l in range(7)] + [62]
    s_values = [2 * l + 1 for l in range(8)]
    for kgrid, grid, values in ((iq_tables.KGRID_256, iq_tables.IQ3XXS_GRID, xxs_values),
                                (iq_tables.KGRID_512, iq_tables.IQ3S_GRID, s_values)):
        for i in range(kgrid.size):
            want = sum(values[(int(kgrid[i]) >> 3 * l) & 7] << 8 * l for l in range(4))
            assert want == int(grid[i])


def test_kgrid_3bit_matches_grids():
    _check_kgrid_matches_grids()
