"""The decode path's matvec kernels (FastKernels.matvec on activations rearranged by FastKernels.pack_acts) give
the reference vec_dot's bits, on random and hostile blocks (NaN/Inf/denormal scales, every level pattern, int32
lanes at their bounds), through the kernel and through quant.matmul's vec_dot path."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_bits_equal, reference_matmul
from refimpl import kernels, quant
from test_kernels_props import hostile_operands

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MATVEC = sorted(name for name, fk in kernels.table().items() if fk.matvec is not None)


@pytest.mark.parametrize("name", MATVEC)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 3), special_rate=st.sampled_from([0.0, 0.3, 1.0]))
def test_matvec_equals_reference_vec_dot(name, seed, n_blocks, special_rate):
    fmt, n, w2, y2 = hostile_operands(name, seed, 1, n_blocks, 1, special_rate)
    w, y = w2[0], y2[0]
    expected = np.float32(fmt.vec_dot(n, w, y))
    fk = kernels.get(name)
    packed = y.copy().reshape(1, -1)
    fk.pack_acts(packed)
    assert_bits_equal(np.float32(fk.matvec(n, w, packed[0], fk.make_work(n))), expected, f"{name} matvec")


@pytest.mark.parametrize("name", MATVEC)
def test_matmul_vec_dot_path_uses_matvec_with_the_reference_bits(name):
    fmt = quant.get_type(name)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 512)).astype(np.float32)
    raw = quant.quantize(x, name, imatrix=np.ones(512, np.float32) if fmt.requires_imatrix else None)
    acts = rng.standard_normal((3, 512)).astype(np.float32)
    fast = quant.matmul(raw, name, acts, path="vec_dot")
    assert_bits_equal(fast, reference_matmul(raw, name, acts), f"{name} matmul vec_dot path")


@pytest.mark.parametrize("name", ["Q8_0", "Q4_K"])
def test_matmul_group_gives_each_matrix_its_own_bits(name):
    from refimpl.kernels.drivers import matmul_group
    rng = np.random.default_rng(3)
    mats = [quant.WeightMatrix(quant.quantize(rng.standard_normal((rows, 256)).astype(np.float32), name), name)
            for rows in (40, 8, 24)]
    acts = rng.standard_normal((2, 256)).astype(np.float32)
    outs = matmul_group(mats, acts)
    assert outs is not None and len(outs) == 3
    for m, out in zip(mats, outs):
        assert_bits_equal(out, m.matmul(acts), f"{name} group output")
    assert matmul_group(mats, rng.standard_normal((8, 256)).astype(np.float32)) is None   # a prompt: intdot path
