"""The kernels are plain Python: with NUMBA_DISABLE_JIT=1 they must still give the same bits (slowly)."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import numpy as np, sys
sys.path.insert(0, {tests!r})
from conftest import load_golden, assert_bits_equal
from refimpl import floats
for name, fn in [("f32_to_f16", floats.fp32_to_fp16_row), ("f16_to_f32", floats.fp16_to_fp32_row),
                 ("f32_to_bf16", floats.fp32_to_bf16_row), ("bf16_to_f32", floats.bf16_to_fp32_row)]:
    g = load_golden(f"floats/{{name}}.npz")
    idx = np.linspace(0, g["x"].size - 1, 3000).astype(int)
    assert_bits_equal(fn(g["x"][idx]), g["y"][idx], name)
print("ok")
"""


def test_floats_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
