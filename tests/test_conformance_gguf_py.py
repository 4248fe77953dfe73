"""Export, then run the conformance kit against gguf-py (``gguf.quants``, pip ``gguf``: llama.cpp's own Python
package, an implementation refimpl did not write) through tools/conformance/gguf_py_adapter.py, and require the
kit's verdict per type to be gguf-py's known state (docs/conformance-findings.md has the full run).

gguf is in the ``test`` extra, pinned: the known state below is that release's.  NaNs are compared with
``--nan any`` here: which NaN payload numpy's float16 conversion yields depends on the CPU features numpy
dispatches to, so the exact-NaN verdicts are machine-dependent (the findings document reports them)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="gguf-py (pip 'gguf', in the test extra) is not installed")

ROOT = Path(__file__).resolve().parent.parent
GGUF_PY_VERSION = "0.19.0"

P, F, U = "pass", "fail", "unsupported"
#: gguf-py 0.19.0 on the --quick vectors (families quant + edge): (dequantize, quantize)
KNOWN = {
    "F32": (None, P), "F16": (P, P), "BF16": (P, P),
    "Q4_0": (P, P), "Q4_1": (P, P), "Q5_0": (P, P), "Q5_1": (P, P), "Q8_0": (P, P), "Q8_1": (None, U),
    "Q2_K": (P, U), "Q3_K": (P, U), "Q4_K": (P, U), "Q5_K": (P, U), "Q6_K": (P, U), "Q8_K": (U, U),
    "IQ2_XXS": (P, None), "IQ2_XS": (P, None), "IQ3_XXS": (P, U), "IQ1_S": (P, None), "IQ4_NL": (P, U),
    "IQ3_S": (P, U), "IQ2_S": (P, U), "IQ4_XS": (P, U), "IQ1_M": (P, U),
    "TQ1_0": (P, P), "TQ2_0": (P, P), "MXFP4": (P, P), "NVFP4": (P, U), "Q1_0": (U, U), "Q2_0": (U, U),
}


def test_gguf_py_known_state(tmp_path):
    assert gguf.__version__ if hasattr(gguf, "__version__") else True
    from importlib.metadata import version

    if version("gguf") != GGUF_PY_VERSION:
        pytest.fail(f"gguf {version('gguf')} installed; the known state is gguf {GGUF_PY_VERSION} (pyproject pins it)")
    vectors = tmp_path / "vectors"
    p = subprocess.run([sys.executable, "-m", "refimpl.conformance", "export", vectors, "--quick",
                        "--families", "quant,edge"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    adapter = ROOT / "tools" / "conformance" / "gguf_py_adapter.py"
    p = subprocess.run([sys.executable, "-m", "refimpl.conformance", "run", "--vectors", vectors, "--json",
                        "--nan", "any", "--ops", "dequantize,quantize", "--impl", f"{sys.executable} {adapter}"],
                       capture_output=True, text=True, cwd=ROOT)
    res = json.loads(p.stdout)
    got = {(r["type"], r["op"]): r["status"] for r in res["results"]}
    want = {(t, op): s for t, pair in KNOWN.items() for op, s in zip(("dequantize", "quantize"), pair) if s}
    assert got == want, "\n".join(f"{k}: kit says {got.get(k)}, known {want.get(k)}"
                                  for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
    assert p.returncode == (1 if F in want.values() else 0)
    assert res["summary"].startswith("conformance: ")
