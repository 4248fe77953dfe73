"""Packed weights (refimpl.kernels.packed: the load-time layout of Q4_0, Q8_0, IQ4_NL, IQ4_XS and Q2_K … Q5_K, 8
rows per group) give the reference vec_dot's bits for every row and token: the group dots and tiles on random and
hostile blocks (NaN/Inf/denormal scales, NaN payloads, levels at their bounds), every F16 scale, and through
WeightMatrix, the grouped decode driver and a model whose file pages are released after packing."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_bits_equal, reference_matmul
from refimpl import quant
from refimpl.kernels import packed
from test_kernels_props import _hostile_blocks, hostile_operands, reference_dots

pytestmark = pytest.mark.skipif(not packed.PACKED, reason="packed layouts need an x86 host with AVX-512 VNNI "
                                                            "(elsewhere the row dots serve)")
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = sorted(packed.PACKED)
G = packed.GROUP


def test_the_packed_formats():
    assert set(NAMES) == {"Q4_0", "Q8_0", "IQ4_NL", "IQ4_XS", "Q2_K", "Q3_K", "Q4_K", "Q5_K"}


@pytest.mark.parametrize("name, unpack", [("Q4_0", packed.unpack_q4_0), ("IQ4_NL", packed.unpack_q4_0),
                                          ("Q8_0", packed.unpack_q8_0), ("IQ4_XS", packed.unpack_iq4_xs)])
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_groups=st.integers(1, 3), n_blocks=st.integers(1, 3))
def test_packing_loses_nothing(name, unpack, seed, n_groups, n_blocks):
    fmt = quant.get_type(name)
    raw = _hostile_blocks(fmt, np.random.default_rng(seed), G * n_groups * n_blocks, 0.3).reshape(G * n_groups, -1)
    assert np.array_equal(unpack(packed.PACKED[name].pack(raw), raw.shape[0]), raw)


@functools.lru_cache(maxsize=None)
def _runner(name):
    from numba import njit
    pf = packed.PACKED[name]
    dot, tile, n_tok = pf.dot, pf.tile, pf.tile_tokens

    @njit
    def run(w, y, out):
        # as drivers.matmul_packed_tiles: whole tiles, then the leftover tokens by the group dot
        for g in range(w.shape[0]):
            t = 0
            while t + n_tok <= y.shape[0]:
                tile(w, g, y, t, out)
                t += n_tok
            while t < y.shape[0]:
                dot(w, g, y, t, out)
                t += 1
    return run


def _run_packed(name, w, y):
    """Every (row, token) of w (rows, nb) against y (tokens, nb) through the packed group dots and tiles, the
    activations in the layout the packed kernels read (PackedFormat.pack_acts)."""
    pf = packed.PACKED[name]
    acts = np.ascontiguousarray(y.copy())
    if pf.pack_acts is not None:
        pf.pack_acts(acts)
    out = np.full((y.shape[0], w.shape[0]), np.nan, np.float32)
    _runner(name)(pf.packed(np.ascontiguousarray(w).view(np.uint8).reshape(w.shape[0], -1)), acts, out)
    return out


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 3), n_groups=st.integers(1, 2),
       n_tok=st.integers(1, 9), special_rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_group_dots_and_tiles_equal_reference_vec_dot(name, seed, n_blocks, n_groups, n_tok, special_rate):
    fmt, n, w, y = hostile_operands(name, seed, G * n_groups, n_blocks, n_tok, special_rate)
    assert_bits_equal(_run_packed(name, w, y), reference_dots(fmt, n, w, y), f"{name} packed dots")


@pytest.mark.parametrize("name", NAMES)
def test_every_f16_scale_widens_as_ggml_does(name):
    # one row per half value of d (and of Q4_K's dmin): the packed dots' hardware widening against the reference
    fmt = quant.get_type(name)
    vfmt = quant.get_type(fmt.vec_dot_type)
    rng = np.random.default_rng(3)
    w = _hostile_blocks(fmt, rng, 65536, 0.0).view(fmt.block_dtype).reshape(65536, 1)
    w["d"][:, 0] = np.arange(65536, dtype=np.uint16)
    if name in ("Q2_K", "Q4_K", "Q5_K"):
        w["dmin"][:, 0] = rng.permutation(65536).astype(np.uint16)
    y = _hostile_blocks(vfmt, rng, fmt.block_size // vfmt.block_size, 0.0).view(vfmt.block_dtype).reshape(1, -1)
    assert_bits_equal(_run_packed(name, w, y), reference_dots(fmt, fmt.block_size, w, y), f"{name}, every F16 d")


@pytest.mark.parametrize("name", NAMES)
def test_weight_matrix_reads_its_packed_copy_with_the_reference_bits(name):
    rng = np.random.default_rng(5)
    raw = quant.quantize(rng.standard_normal((48, 768)).astype(np.float32), name)
    acts = rng.standard_normal((19, 768)).astype(np.float32)
    wm = quant.WeightMatrix(raw, name)
    assert wm.fast_runner().packed is not None
    ref = reference_matmul(raw, name, acts)
    for tokens in (1, 3, 19):       # group dots (decode), group dots (a few tokens), tiles (a batch)
        assert_bits_equal(wm.matmul(acts[:tokens]), ref[:tokens], f"{name} packed matmul, {tokens} tokens")
    assert_bits_equal(wm.matmul(acts[:3], path="vec_dot"), ref[:3], f"{name} packed, path vec_dot")
    # the grouped driver of the decode step (q/k/v, gate/up): several packed matrices in one call
    from refimpl.kernels.drivers import matmul_group
    small = quant.WeightMatrix(raw[:16], name)
    grouped = matmul_group([wm, small], acts[:2])
    assert_bits_equal(grouped[0], ref[:2], f"{name} matmul_group, packed")
    assert_bits_equal(grouped[1], ref[:2, :16], f"{name} matmul_group, second packed matrix")


@pytest.mark.parametrize("name", NAMES)
def test_rows_not_a_multiple_of_the_group_keep_the_file_layout(name):
    rng = np.random.default_rng(9)
    raw = quant.quantize(rng.standard_normal((12, 256)).astype(np.float32), name)
    wm = quant.WeightMatrix(raw, name)
    assert wm.fast_runner().packed is None
    acts = rng.standard_normal((2, 256)).astype(np.float32)
    assert_bits_equal(wm.matmul(acts), reference_matmul(raw, name, acts), f"{name}, 12 rows (row dots)")


def test_a_model_packs_its_weights_and_releases_their_file_pages():
    # the golden llama-Q4_K model (its ffn_down matrices are Q4_K, 64 rows): after a prompt and a decode step they
    # read their packed copy; the GGUF views stay readable (released pages come back from the page cache), and
    # an array in anonymous memory is never touched by the release
    from pathlib import Path

    from refimpl import model
    from refimpl.model.base import release_file_pages
    path = Path(__file__).resolve().parent.parent / "golden" / "model" / "llama-Q4_K.gguf"
    m = model.load(path, n_ctx=32)
    before = {n: np.array(m.file.weight(n).raw) for n in m.file.gguf.tensors}
    m.eval([1, 2, 3])
    m.eval([4])
    down = m.layers[0].ffn_down
    assert down.qtype == "Q4_K" and down.matrix().fast_runner().packed is not None
    for name, data in before.items():
        assert np.array_equal(m.file.weight(name).raw, data), name
    assert np.array_equal(down.raw, before[down.name])
    anon = np.arange(1 << 16, dtype=np.uint8)
    release_file_pages(anon)
    assert np.array_equal(anon, np.arange(1 << 16, dtype=np.uint8))
