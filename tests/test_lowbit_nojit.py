"""The ternary / FP4 / Q1_0 / Q2_0 kernels are plain Python: with NUMBA_DISABLE_JIT=1 they give the same bits
(golden quantize, dequantize and vec_dot cases per type, in a subprocess so the interpreter-mode kernels run)."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import assert_bits_equal, load_golden
from quant_cases import case_input, cases, golden
from refimpl import quant
CASES = ["quantize.gauss.one", "quantize.subnormal.several", "quantize.huge.one", "quantize.ties.several",
         "quantize_ref.outlier", "quantize_imatrix.random.gauss"]
acts = load_golden("matmul/activations.npz")
for name in ["TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0"]:
    g, fmt = golden("quant", name), quant.get_type(name)
    for cname in CASES:
        x, im = case_input(cases()[cname], fmt.block_size)
        ours = quant.quantize_ref(x, name) if cname.startswith("quantize_ref") else quant.quantize(x, name, imatrix=im)
        assert_bits_equal(ours, g[cname], name + " " + cname)
    for cname in ("dequantize.random_raw", "dequantize.special_raw"):
        if cname in g:
            raw = g[cases()[cname]["raw"]]
            assert_bits_equal(quant.dequantize(raw, name), g[cname], name + " " + cname)
    m = load_golden(f"matmul/{{name}}.npz")
    w, xq, vd = m["w.small"], acts[f"xq.{{fmt.vec_dot_type}}.small"], m["vec_dot.small"]
    for t in range(2):
        for r in range(2):
            ours = np.float32(quant.vec_dot(name, w[r], xq[t]))
            assert ours.view(np.uint32) == vd[t, r].view(np.uint32), (name, t, r, ours, vd[t, r])
print("ok")
"""


def test_lowbit_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT.format(tests=tests)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
