"""The 2-bit / 1-bit lattice i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) beyond the generic golden tests:
the fast search-table build against the literal one, and the kernels with NUMBA_DISABLE_JIT=1."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl.quant import iq_tables
from refimpl.quant.formats import iq2_search


@pytest.mark.parametrize("kind", sorted(iq2_search._KINDS))
def test_search_tables_match_literal_build(kind):
    # _build (histogram + counting sort) against build_literal (sort every key's (d2, j) pairs, as ggml does)
    kgrid_name, nwant = iq2_search._KINDS[kind]
    fast = iq2_search.search_tables(kind)
    literal = iq2_search.build_literal(getattr(iq_tables, kgrid_name), nwant)
    for what, a, b in zip(("grid", "kmap", "neighbours"), fast, literal):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{kind}: {what} differs"


def test_search_tables_cover_every_key():
    grid, kmap, neighbours = iq2_search.search_tables("IQ1_S")
    assert (kmap >= 0).sum() == 2048
    starts = -kmap[kmap < 0] - 1
    assert (neighbours[starts] > 0).all()   # every off-grid key has at least one neighbour


NOJIT = r"""
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import assert_bits_equal
from quant_cases import case_input, cases, golden
from refimpl import quant
c = cases()
for name in ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M"):
    g = golden("iquant", name)
    ts = quant.get_type(name).type_size
    # super-blocks are quantized independently: the first one of a golden case is checked on its own
    x, im = case_input(c["quantize_imatrix.random.gauss"], 256)
    assert_bits_equal(quant.quantize(x[:1, :256], name, imatrix=im[:256]),
                      g["quantize_imatrix.random.gauss"][:1, :ts], name + " quantize+imatrix")
    if name in ("IQ2_S", "IQ1_M"):
        x, _ = case_input(c["quantize.student_t2.one"], 256)
        assert_bits_equal(quant.quantize(x, name), g["quantize.student_t2.one"], name + " quantize")
    raw = g["random_raw"][:2 * ts]
    assert_bits_equal(quant.dequantize(raw, name), g["dequantize.random_raw"][:512], name + " dequantize")
print("ok")
"""


def test_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", NOJIT.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
