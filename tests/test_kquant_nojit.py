"""The K-quant kernels are plain Python: with NUMBA_DISABLE_JIT=1 they give the same bits (the first super-block of
a few golden cases per type, in a subprocess so the interpreter-mode kernels are really used; the vec_dot results
of the subprocess are compared with the jitted ones)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from quant_cases import golden
from refimpl import quant

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]

SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import assert_bits_equal
from quant_cases import case_input, cases, golden
from refimpl import quant
CASES = ["quantize.gauss.one", "quantize.huge.one", "quantize_ref.subnormal", "quantize_imatrix.random.outlier",
         "quantize_imatrix.range_1e6.ties"]
dots = {{}}
for name in {types!r}:
    g, fmt = golden("quant", name), quant.get_type(name)
    for cname in CASES:
        if cname not in g:
            continue
        x, im = case_input(cases()[cname], fmt.block_size)
        x = x[:1, :fmt.block_size]  # one super-block: blocks (and imatrix rows) are independent
        im = None if im is None else im[:fmt.block_size]
        ours = quant.quantize_ref(x, name) if cname.startswith("quantize_ref") else quant.quantize(x, name, imatrix=im)
        assert_bits_equal(ours.reshape(-1), g[cname].reshape(-1)[:fmt.type_size], name + " " + cname)
    for cname in ("dequantize.random_raw", "dequantize.special_raw"):
        if cname in g:
            raw = g[cases()[cname]["raw"]][:2]
            assert_bits_equal(quant.dequantize(raw, name), g[cname][:2], name + " " + cname)
    if fmt.vec_dot is not None:
        w = g["random_raw"].reshape(-1)[:2 * fmt.type_size]
        y = golden("quant", "Q8_K")["random_raw"].reshape(-1)[:2 * 292]
        dots[name] = int(np.float32(quant.vec_dot(name, w, y)).view(np.uint32))
print(json.dumps(dots))
print("ok")
"""


def test_kquant_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT.format(tests=tests, types=TYPES)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    dots = json.loads(r.stdout.strip().splitlines()[-2])
    y = golden("quant", "Q8_K")["random_raw"].reshape(-1)[:2 * 292]
    for name, bits in dots.items():
        fmt = quant.get_type(name)
        w = golden("quant", name)["random_raw"].reshape(-1)[:2 * fmt.type_size]
        assert int(np.float32(quant.vec_dot(name, w, y)).view(np.uint32)) == bits, name
