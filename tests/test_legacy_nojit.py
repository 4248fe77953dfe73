"""The float/legacy kernels are plain Python: with NUMBA_DISABLE_JIT=1 they give the same bits (a few golden cases
per type, in a subprocess so the interpreter-mode kernels are really used)."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
from conftest import assert_bits_equal
from quant_cases import case_input, cases, golden
from refimpl import quant
CASES = ["quantize.gauss.one", "quantize.subnormal.one", "quantize.ties.several", "quantize_ref.huge",
         "quantize_imatrix.random.outlier", "quantize_imatrix.with_zeros.ties"]
for name in ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]:
    g, fmt = golden("quant", name), quant.get_type(name)
    for cname in CASES:
        if cname not in g:
            continue
        x, im = case_input(cases()[cname], fmt.block_size)
        ours = quant.quantize_ref(x, name) if cname.startswith("quantize_ref") else quant.quantize(x, name, imatrix=im)
        assert_bits_equal(ours, g[cname], name + " " + cname)
    for cname in ("dequantize.random_raw", "dequantize.special_raw"):
        if cname in g:
            raw = g[cases()[cname]["raw"]]
            assert_bits_equal(quant.dequantize(raw, name), g[cname], name + " " + cname)
print("ok")
"""


def test_legacy_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT.format(tests=tests)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
