"""Property tests: every fast kernel (refimpl/kernels/) gives its reference's bits (refimpl/quant/formats/) on random
blocks, hostile ones included -- NaN (with distinct payloads), Inf and denormal scales, every level bit pattern, and
integer lanes that wrap around int32 as the C's do."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_bits_equal
from refimpl import kernels, quant
from refimpl._jit import njit
from refimpl.kernels.lanes import lanes8_madd, lanes8_madd2, lanes8_madd4
from refimpl.quant.formats.kquants import _lanes_madd8

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

F16_SPECIALS = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE55, 0x0001, 0x8001, 0x03FF, 0x0000, 0x3C00, 0x7BFF]
F32_SPECIALS = np.array([np.inf, -np.inf, 1e-45, -1e-45, 1e-40, 0.0, 3.4e38, 1.0], np.float32)
F32_NANS = np.array([0x7FC00000, 0x7F800001, 0xFFC12345, 0x7FA00000], np.uint32).view(np.float32)


def _fast(op):
    return sorted(name for name, fk in kernels.table().items() if getattr(fk, op) is not None)


def _hostile_blocks(fmt, rng, n_blocks, special_rate):
    """Random bytes as blocks of ``fmt``, then some scale fields replaced by NaN/Inf/denormal/zero patterns."""
    raw = rng.integers(0, 256, n_blocks * fmt.type_size, dtype=np.uint8)
    blocks = raw.view(fmt.block_dtype)
    for f in fmt.block_dtype.names:
        sub = fmt.block_dtype.fields[f][0]
        if sub.shape:
            continue
        hit = rng.random(n_blocks) < special_rate
        if sub == np.dtype("<u2"):
            blocks[f][hit] = rng.choice(F16_SPECIALS, hit.sum())
        elif sub == np.dtype("<f4"):
            pool = np.concatenate([F32_SPECIALS, F32_NANS])
            blocks[f][hit] = rng.choice(pool, hit.sum())
            ok = ~hit
            blocks[f][ok] = rng.standard_normal(ok.sum()).astype(np.float32) * 1e-2
    return raw


def hostile_operands(name, seed, n_rows, n_blocks, n_tok, special_rate):
    """(fmt, n, w, y): n_rows x n_blocks weight blocks of ``name`` and n_tok rows of its activation type's blocks
    from _hostile_blocks (the weights drawn first); for seed % 4 == 0 the activations' levels are all -128
    (seed % 8 == 0) or 127, the integer sums' bounds."""
    fmt = quant.get_type(name)
    vfmt = quant.get_type(fmt.vec_dot_type)
    rng = np.random.default_rng(seed)
    n = n_blocks * fmt.block_size
    w = _hostile_blocks(fmt, rng, n_rows * n_blocks, special_rate).view(fmt.block_dtype).reshape(n_rows, n_blocks)
    nb_y = n // vfmt.block_size
    y_raw = _hostile_blocks(vfmt, rng, n_tok * nb_y, special_rate)
    if seed % 4 == 0:
        y_raw.view(vfmt.block_dtype)["qs"] = -128 if seed % 8 == 0 else 127
    return fmt, n, w, y_raw.view(vfmt.block_dtype).reshape(n_tok, nb_y)


def reference_dots(fmt, n, w, y):
    """(tokens, rows) float32: the reference vec_dot of every weight row against every activation row."""
    return np.array([[fmt.vec_dot(n, w[r], y[t]) for r in range(w.shape[0])] for t in range(y.shape[0])],
                    np.float32)


@pytest.mark.parametrize("name", _fast("vec_dot"))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 3), special_rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_fast_vec_dot_equals_reference(name, seed, n_blocks, special_rate):
    fmt = quant.get_type(name)
    vfmt = quant.get_type(fmt.vec_dot_type)
    rng = np.random.default_rng(seed)
    n = n_blocks * fmt.block_size
    w = _hostile_blocks(fmt, rng, n_blocks, special_rate).view(fmt.block_dtype)
    y = _hostile_blocks(vfmt, rng, n * 1 // vfmt.block_size, special_rate).view(vfmt.block_dtype)
    fk = kernels.get(name)
    ref = np.float32(fmt.vec_dot(n, w, y))
    assert_bits_equal(np.float32(fk.vec_dot(n, w, y)), ref, f"{name} fast vec_dot")
    if fk.vec_dot_work is not None:
        assert_bits_equal(np.float32(fk.vec_dot_work(n, w, y, fk.make_work(n))), ref, f"{name} vec_dot_work")


def _hostile_floats(rng, size, special_rate):
    x = (rng.standard_normal(size) * 10.0 ** rng.integers(-40, 38, size)).astype(np.float32)
    hit = rng.random(size) < special_rate
    x[hit] = rng.choice(np.concatenate([F32_SPECIALS, -F32_SPECIALS, F32_NANS]), hit.sum())
    return x


@pytest.mark.parametrize("name", _fast("quantize_ref"))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), special_rate=st.sampled_from([0.0, 0.05, 0.5]))
def test_fast_quantizers_equal_reference(name, seed, special_rate):
    fmt = quant.get_type(name)
    fk = kernels.get(name)
    rng = np.random.default_rng(seed)
    x = _hostile_floats(rng, 4 * fmt.block_size, special_rate).reshape(2, -1)
    for op in ("quantize_ref", "quantize"):
        if getattr(fk, op) is None:
            continue
        outs = []
        for kernel in (getattr(fk, op), getattr(fmt, op)):
            out = np.zeros(2 * fmt.row_size(x.shape[1]), np.uint8)
            blocks = out.view(fmt.block_dtype)
            with np.errstate(all="ignore"):
                if op == "quantize_ref":
                    kernel(x.reshape(-1), blocks)
                else:
                    kernel(x, np.zeros(0, np.float32), blocks.reshape(2, -1))
            outs.append(out)
        assert_bits_equal(outs[0], outs[1], f"{name} fast {op}")


@pytest.mark.parametrize("name", _fast("dequantize"))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), special_rate=st.sampled_from([0.0, 0.5]))
def test_fast_dequantizers_equal_reference(name, seed, special_rate):
    fmt = quant.get_type(name)
    blocks = _hostile_blocks(fmt, np.random.default_rng(seed), 5, special_rate).view(fmt.block_dtype)
    outs = []
    for kernel in (kernels.get(name).dequantize, fmt.dequantize):
        y = np.empty(5 * fmt.block_size, np.float32)
        with np.errstate(all="ignore"):
            kernel(blocks, y)
        outs.append(y)
    assert_bits_equal(outs[0], outs[1], f"{name} fast dequantize")


@njit
def _lane_step(groups, acc, a, b, off, scale):
    # the intrinsics are callable from compiled code only
    if groups == 1:
        lanes8_madd(acc, a, b, off, np.int32(scale))
    elif groups == 2:
        lanes8_madd2(acc, a, b, off, np.int32(scale))
    else:
        lanes8_madd4(acc, a, b, off, np.int32(scale))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1, 63, -128, 2**20, -2**31, 2**31 - 1]))
def test_lane_steps_wrap_around_int32_as_the_reference_loops(seed, scale):
    """lanes8_madd{,2,4} (one vector step) against the reference's aux16/aux32 loop (_lanes_madd8): int16 products
    and int32 sums wrap identically, even with scales no ggml format produces."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, 64).astype(np.int8)
    b = rng.integers(-128, 128, 64).astype(np.int8)
    start = rng.integers(-2**31, 2**31, 8).astype(np.int32)
    for groups in (1, 2, 4):
        fast = start.copy()
        _lane_step(groups, fast, a, b, 8, scale)
        ref = start.copy()
        aux16 = np.zeros(8, np.int16)
        for g in range(groups):
            _lanes_madd8(aux16, ref, b, a, 8 + 8 * g, scale)
        assert_bits_equal(fast, ref, f"lanes8_madd x{groups}, scale {scale}")
