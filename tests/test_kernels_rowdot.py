"""The row dots (refimpl.kernels.rowdot: several weight rows per call, the decode path's matvec) give the reference
vec_dot's bits for every row: random and hostile blocks (NaN/Inf/denormal scales, NaN payloads, extreme levels),
every F16 scale, row counts that leave a remainder, and through quant.matmul's vec_dot path and matmul_group."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_bits_equal, reference_matmul
from refimpl import kernels, quant
from refimpl.kernels import rowdot
from test_kernels_props import _hostile_blocks, hostile_operands, reference_dots

pytestmark = pytest.mark.skipif(not rowdot.AVAILABLE, reason="row dots need an x86 host with AVX2 and F16C "
                                                               "(elsewhere the per-row kernels run)")
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = sorted(rowdot.ROW_DOTS)


@functools.lru_cache(maxsize=None)
def _row_dots_runner(name):
    from numba import njit
    dot_rows, dot_row = rowdot.ROW_DOTS[name]
    n_rows = rowdot.ROWS

    @njit
    def run(w, y, out):
        r = 0
        while r + n_rows <= w.shape[0]:
            dot_rows(w, r, y, out)
            r += n_rows
        while r < w.shape[0]:
            dot_row(w, r, y, out)
            r += 1
    return run


def _run_row_dots(name, w, y):
    """Every row of w (rows, nb) against the one-token activations y (nb,), ROWS at a time then one at a time, as
    the drivers call them; the activations packed as the format's matvec expects."""
    run = _row_dots_runner(name)
    fk = kernels.get(name)
    packed = y.copy().reshape(1, -1)
    if fk.pack_acts is not None:
        fk.pack_acts(packed)
    out = np.full(w.shape[0], np.nan, np.float32)
    run(np.ascontiguousarray(w), packed[0], out)
    return out


def test_the_decode_formats_have_row_dots():
    assert {"Q4_K", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 3), n_rows=st.integers(1, 9),
       special_rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_row_dots_equal_reference_vec_dot(name, seed, n_blocks, n_rows, special_rate):
    fmt, n, w, y = hostile_operands(name, seed, n_rows, n_blocks, 1, special_rate)
    assert_bits_equal(_run_row_dots(name, w, y[0]), reference_dots(fmt, n, w, y)[0], f"{name} row dots")


@pytest.mark.parametrize("name", ["Q8_0", "Q4_K", "Q6_K"])
def test_every_f16_scale_widens_as_ggml_does(name):
    # one row per half value: the row dot's hardware F16 widening against the reference's table, NaN payloads too
    fmt = quant.get_type(name)
    vfmt = quant.get_type(fmt.vec_dot_type)
    rng = np.random.default_rng(1)
    w = _hostile_blocks(fmt, rng, 65536, 0.0).view(fmt.block_dtype).reshape(65536, 1)
    w["d"][:, 0] = np.arange(65536, dtype=np.uint16)
    y = _hostile_blocks(vfmt, rng, fmt.block_size // vfmt.block_size, 0.0).view(vfmt.block_dtype)
    expected = np.array([fmt.vec_dot(fmt.block_size, w[r], y) for r in range(0, 65536)], np.float32)
    assert_bits_equal(_run_row_dots(name, w, y), expected, f"{name} row dots, every F16 d")


@pytest.mark.parametrize("name", NAMES)
def test_matmul_vec_dot_path_uses_row_dots_with_the_reference_bits(name):
    rng = np.random.default_rng(7)
    raw = quant.quantize(rng.standard_normal((43, 768)).astype(np.float32), name)
    acts = rng.standard_normal((3, 768)).astype(np.float32)
    from refimpl.kernels.drivers import matmul_group
    wm = quant.WeightMatrix(raw, name)
    fast = wm.matmul(acts, path="vec_dot")
    grouped = matmul_group([wm, quant.WeightMatrix(raw[:5], name)], acts)
    ref = reference_matmul(raw, name, acts)
    assert_bits_equal(fast, ref, f"{name} matmul vec_dot path")
    assert_bits_equal(grouped[0], ref, f"{name} matmul_group")
    assert_bits_equal(grouped[1], ref[:, :5], f"{name} matmul_group, second matrix")


@functools.lru_cache(maxsize=None)
def _tiles_runner(name):
    from numba import njit
    tile, tile_rows, tile_tokens = rowdot.TILE_DOTS[name]
    dot_row = rowdot.ROW_DOTS[name][1]

    @njit
    def run(w, y, out):
        r = 0
        while r + tile_rows <= w.shape[0]:
            t = 0
            while t + tile_tokens <= y.shape[0]:
                tile(w, r, y, t, out)
                t += tile_tokens
            for tt in range(t, y.shape[0]):
                for rr in range(r, r + tile_rows):
                    dot_row(w, rr, y[tt], out[tt])
            r += tile_rows
        for rr in range(r, w.shape[0]):
            for tt in range(y.shape[0]):
                dot_row(w, rr, y[tt], out[tt])
    return run


def _run_tiles(name, w, y):
    """Every (row, token) of w (rows, nb) against y (tokens, nb) through the format's tile dot as
    drivers.matmul_tiles calls it (whole tiles, then the leftover tokens and rows by the one-row dot)."""
    run = _tiles_runner(name)
    fk = kernels.get(name)
    packed = np.ascontiguousarray(y.copy())
    if fk.pack_acts is not None:
        fk.pack_acts(packed)
    out = np.full((y.shape[0], w.shape[0]), np.nan, np.float32)
    run(np.ascontiguousarray(w), packed, out)
    return out


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 2), n_rows=st.integers(1, 6),
       n_tok=st.integers(1, 11), special_rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_tile_dots_equal_reference_vec_dot(name, seed, n_blocks, n_rows, n_tok, special_rate):
    fmt, n, w, y = hostile_operands(name, seed, n_rows, n_blocks, n_tok, special_rate)
    assert_bits_equal(_run_tiles(name, w, y), reference_dots(fmt, n, w, y), f"{name} tile dots")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", [37, 333])   # 333: chunks of 44 rows, so blocks of 32 and 12 (drivers._TILE_ROW_BLOCK)
def test_matmul_batches_use_tiles_with_the_reference_bits(name, rows):
    rng = np.random.default_rng(11)
    raw = quant.quantize(rng.standard_normal((rows, 512)).astype(np.float32), name)
    acts = rng.standard_normal((19, 512)).astype(np.float32)
    wm = quant.WeightMatrix(raw, name)
    for few in (1, 3):      # the one-token drivers (rowdot.DECODE_ROW_DOTS: row dots of ROWS rows or of one)
        assert_bits_equal(wm.matmul(acts[:few]), reference_matmul(raw, name, acts[:few]), f"{name}, {few} tokens")
    assert wm._fast.quantize_and_tiles is not None
    assert_bits_equal(wm.matmul(acts), reference_matmul(raw, name, acts), f"{name} matmul, 19 tokens (tiles)")


_AVX2_SCRIPT = r"""
import numpy as np
from refimpl import quant
from refimpl.kernels import rowdot
assert rowdot.AVAILABLE and not rowdot.WIDE and not rowdot.VNNI
import sys
sys.path.insert(0, "tests")
from test_kernels_rowdot import _run_row_dots, _run_tiles
from test_kernels_props import hostile_operands, reference_dots
for name in sorted(rowdot.ROW_DOTS):
    for seed in range(6):
        fmt, n, w, y = hostile_operands(name, seed, 7, 2, 9, (0.0, 0.3, 1.0)[seed % 3])
        expected = reference_dots(fmt, n, w, y)
        rows = np.stack([_run_row_dots(name, w, y[t]) for t in range(9)])
        tiles = _run_tiles(name, w, y)
        for got, what in ((rows, "row dots"), (tiles, "tiles")):
            if not np.array_equal(got.view(np.uint32), expected.view(np.uint32)):
                raise SystemExit(f"{name} {what} (AVX2 steps) differ from the reference, seed {seed}")
print("ok")
"""


def test_avx2_steps_equal_reference_too(tmp_path):
    # the AVX2-only code paths (what hosts without AVX-512 run), forced on this host in a fresh process with its
    # own numba cache
    import os
    import subprocess
    import sys
    if not rowdot.WIDE:
        pytest.skip("this host runs the AVX2 steps already (the tests above cover them)")
    env = dict(os.environ, REFIMPL_ROWDOT_ISA="avx2", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True, text=True, cwd=root,
                         timeout=900)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout + out.stderr)[-3000:]
