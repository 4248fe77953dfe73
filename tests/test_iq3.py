"""IQ3/IQ4 specifics the generic golden tests do not show: the iq3 search tables equal a literal transcription of
iq3xs_init_impl, the descriptors agree with ggml's traits, and the kernels give the same bits without numba."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl import quant
from refimpl.quant import iq_tables
from refimpl.quant.formats.iq3_grids import iq3_search_tables


def _init_impl_literal(grid_size, points):
    """iq3xs_init_impl's neighbour lists for ``points``, transcribed loop by loop (sort by (d2, j), then keep the
    entries of the first nwant distinct distances)."""
    kgrid = iq_tables.KGRID_256 if grid_size == 256 else iq_tables.KGRID_512
    nwant = 2 if grid_size == 256 else 3
    grid = [[2 * ((int(kgrid[j]) >> 3 * k) & 7) + 1 for k in range(4)] for j in range(grid_size)]
    out = {}
    for i in points:
        pos = [2 * ((i >> 3 * k) & 7) + 1 for k in range(4)]
        dist2 = sorted((sum((g[k] - pos[k]) ** 2 for k in range(4)), j) for j, g in enumerate(grid))
        d2, nhave, keep = dist2[0][0], 1, []
        for dist, j in dist2:
            if dist > d2:
                if nhave == nwant:
                    break
                d2 = dist
                nhave += 1
            keep.append(j)
        out[i] = keep
    return grid, out


@pytest.mark.parametrize("grid_size", [256, 512])
def test_iq3_search_tables_match_init_impl(grid_size):
    grid, kmap, kneighbors = iq3_search_tables(grid_size)
    on_grid = {sum(((int(v) >> 8 * k & 0xFF) - 1) // 2 << 3 * k for k in range(4)): j for j, v in enumerate(grid)}
    assert len(on_grid) == grid_size
    for u, j in on_grid.items():
        assert kmap[u] == j
    off = [u for u in range(4096) if u not in on_grid]
    assert all(kmap[u] < 0 for u in off)
    # offsets are consecutive in increasing u: count + that many indices each
    offsets = [-int(kmap[u]) - 1 for u in off]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert kneighbors.size == offsets[-1] + 1 + int(kneighbors[offsets[-1]])
    sample = off[::9]
    ref_grid, ref = _init_impl_literal(grid_size, sample)
    assert [[int(v) >> 8 * k & 0xFF for k in range(4)] for v in grid] == ref_grid
    for u in sample:
        o = -int(kmap[u]) - 1
        n = int(kneighbors[o])
        assert list(kneighbors[o + 1: o + 1 + n]) == ref[u], f"neighbours of point {u}"


@pytest.mark.parametrize("name,vtype", [("IQ4_NL", "Q8_0"), ("IQ4_XS", "Q8_K"), ("IQ3_XXS", "Q8_K"),
                                        ("IQ3_S", "Q8_K")])
def test_descriptor_traits(name, vtype):
    # ggml_quantize_requires_imatrix is true only for IQ2_XXS, IQ2_XS, IQ1_S
    assert quant.requires_imatrix(name) is False
    assert quant.vec_dot_type(name) == vtype


NOJIT_SCRIPT = r"""
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import assert_bits_equal, load_golden
from quant_cases import case_input, cases, golden
from refimpl import quant
acts = load_golden("matmul/activations.npz")
for name in ("IQ4_NL", "IQ4_XS", "IQ3_XXS", "IQ3_S"):
    g = golden("iquant", name)
    bs = quant.get_type(name).block_size
    for cname in ("quantize.gauss.one", "quantize_imatrix.random.ties", "quantize_ref.outlier"):
        case = cases()[cname]
        x, im = case_input(case, bs)
        x, want = x[:1], g[cname][:1]
        got = quant.quantize_ref(x, name) if case["op"] == "quantize_ref" else quant.quantize(x, name, imatrix=im)
        assert_bits_equal(got, want, f"{{name}} {{cname}}")
    for cname in ("dequantize.random_raw", "dequantize.special_raw"):
        raw = g[cases()[cname]["raw"]]
        assert_bits_equal(quant.dequantize(raw, name), g[cname], f"{{name}} {{cname}}")
    for a in g["aborts"]:
        x, im = case_input(cases()[a.decode()], bs)
        try:
            quant.quantize(x[:1, :bs], name, imatrix=im)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{{name}} {{a}}: no ValueError")
    m = load_golden(f"matmul/{{name}}.npz")
    vt = quant.vec_dot_type(name)
    w, xq = m["w.small"], acts[f"xq.{{vt}}.small"]
    got = np.array([[quant.vec_dot(name, w[r], xq[t]) for r in range(w.shape[0])] for t in range(xq.shape[0])],
                   dtype=np.float32)
    assert_bits_equal(got, m["vec_dot.small"], f"{{name}} vec_dot")
print("ok")
"""


def test_iq3_iq4_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", NOJIT_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def _best_index_int8_literal(val, x):
    # ggml-quants.c best_index_int8, transcribed
    n = len(val)
    if x <= val[0]:
        return 0
    if x >= val[n - 1]:
        return n - 1
    ml, mu = 0, n - 1
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if x < val[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if np.float32(x - val[mu - 1]) < np.float32(val[mu] - x) else mu


def test_best_index_int8_equals_binary_search():
    from refimpl.quant.formats.iq4 import KVALUES_F32, best_index_int8

    vals = KVALUES_F32
    mids = (vals[:-1] + vals[1:]) / np.float32(2)
    xs = np.concatenate([vals, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
                         np.random.default_rng(1).uniform(-140, 130, 3000).astype(np.float32),
                         np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)]).astype(np.float32)
    for x in xs:
        assert best_index_int8(vals, x) == _best_index_int8_literal(list(vals), x), x
