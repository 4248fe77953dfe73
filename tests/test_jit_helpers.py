"""refimpl.kernels.lanes' integer vector steps (lanes8_madd, dot32_i8, dot32_nibbles) against plain Python integers."""
import numpy as np
from numba import njit

from refimpl.kernels.lanes import (dot32_i8, dot32_nibbles, dot32_q5, lanes8_madd, lanes8_madd2, lanes8_madd4,
                                  lanes8_madd4_nibbles, make_dot32_lut16)

LUT = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
dot32_lut = make_dot32_lut16(LUT)


@njit
def _run(acc, a, b, offs, scales, groups):
    for i in range(offs.size):
        if groups == 1:
            lanes8_madd(acc, a, b, offs[i], scales[i])
        elif groups == 2:
            lanes8_madd2(acc, a, b, offs[i], scales[i])
        else:
            lanes8_madd4(acc, a, b, offs[i], scales[i])


def _expected(acc, a, b, offs, scales, groups):
    # acc[l] += scale * int16(a[o+8g+l] * b[o+8g+l]) for each group g, wrapped to int32 like the C's int arithmetic
    out = [int(v) for v in acc]
    for o, s in zip(offs, scales):
        for g in range(groups):
            for lane in range(8):
                p = int(a[o + 8 * g + lane]) * int(b[o + 8 * g + lane])
                p = (p + 2**15) % 2**16 - 2**15
                out[lane] = (out[lane] + int(s) * p + 2**31) % 2**32 - 2**31
    return np.array(out, dtype=np.int32)


def test_lanes8_madd_matches_integer_arithmetic():
    rng = np.random.default_rng(7)
    for a_dtype in (np.int8, np.uint8):
        a = rng.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1, 256).astype(a_dtype)
        b = rng.integers(-128, 128, 256).astype(np.int8)
        a[:8] = np.iinfo(a_dtype).min                  # extreme products
        b[:8] = -128
        for groups in (1, 2, 4):
            offs = rng.integers(0, 256 - 8 * groups, 500)
            offs[:3] = [0, 0, 256 - 8 * groups]
            # scales large enough that the int32 sums wrap, as the C's would
            scales = rng.integers(-2**31, 2**31, 500).astype(np.int32)
            acc = rng.integers(-2**31, 2**31, 8).astype(np.int32)
            want = _expected(acc.copy(), a, b, offs, scales, groups)
            got = acc.copy()
            _run(got, a, b, offs, scales, groups)
            assert np.array_equal(got, want), (a_dtype, groups)


@njit
def _run_nibbles(acc, q4, q4_offs, shifts, b, b_offs, scales):
    for i in range(q4_offs.size):
        lanes8_madd4_nibbles(acc, q4, q4_offs[i], shifts[i], b, b_offs[i], scales[i])


def test_lanes8_madd4_nibbles_matches_integer_arithmetic():
    rng = np.random.default_rng(9)
    q4 = rng.integers(0, 256, 128).astype(np.uint8)
    q4[:32] = 0xFF
    b = rng.integers(-128, 128, 256).astype(np.int8)
    n = 300
    q4_offs = rng.integers(0, 128 - 32, n)
    shifts = rng.choice([0, 4], n)
    b_offs = rng.integers(0, 256 - 32, n)
    scales = rng.integers(-2**31, 2**31, n).astype(np.int32)
    acc = rng.integers(-2**31, 2**31, 8).astype(np.int32)
    want = [int(v) for v in acc]
    for qo, sh, bo, s in zip(q4_offs, shifts, b_offs, scales):
        for k in range(32):
            level = (int(q4[qo + k]) >> int(sh)) & 15
            want[k % 8] = (want[k % 8] + int(s) * level * int(b[bo + k]) + 2**31) % 2**32 - 2**31
    got = acc.copy()
    _run_nibbles(got, q4, q4_offs, shifts, b, b_offs, scales)
    assert np.array_equal(got, np.array(want, dtype=np.int32))


@njit
def _dots(a, b, qs, qh, offset, out):
    for i in range(a.shape[0]):
        out[i, 0] = dot32_i8(a[i], b[i])
        out[i, 1] = dot32_nibbles(qs[i], b[i], offset)
        out[i, 2] = dot32_q5(qs[i], qh[i], b[i], 2 * offset)
        out[i, 3] = dot32_lut(qs[i], b[i])


def test_dot32_match_integer_arithmetic():
    rng = np.random.default_rng(8)
    a = rng.integers(-128, 128, (300, 32)).astype(np.int8)
    b = rng.integers(-128, 128, (300, 32)).astype(np.int8)
    qs = rng.integers(0, 256, (300, 16)).astype(np.uint8)
    qh = rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
    a[0], b[0], qs[0], qh[0] = -128, -128, 0xFF, 0xFFFFFFFF            # the extremes
    for offset in (8, 0):
        out = np.zeros((300, 4), np.int32)
        _dots(a, b, qs, qh, offset, out)
        for i in range(300):
            assert out[i, 0] == sum(int(p) * int(q) for p, q in zip(a[i], b[i]))
            nib = [int(q) & 15 for q in qs[i]] + [int(q) >> 4 for q in qs[i]]
            assert out[i, 1] == sum((v - offset) * int(q) for v, q in zip(nib, b[i]))
            five = [v | (((int(qh[i]) >> j) & 1) << 4) for j, v in enumerate(nib)]
            assert out[i, 2] == sum((v - 2 * offset) * int(q) for v, q in zip(five, b[i]))
            assert out[i, 3] == sum(LUT[v] * int(q) for v, q in zip(nib, b[i]))


def test_interpreter_fallbacks_agree():
    # the numpy fallback used under NUMBA_DISABLE_JIT must give the same integers
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    code = ("import test_jit_helpers as t; t.test_lanes8_madd_matches_integer_arithmetic(); "
            "t.test_lanes8_madd4_nibbles_matches_integer_arithmetic(); "
            "t.test_dot32_match_integer_arithmetic(); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.path.dirname(__file__),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
