"""How far llama.cpp's SIMD build lands from the scalar path: ggml_mul_mat of the matmul family's cases, computed
by a SIMD build of the same llama-cpp-python release (what users actually run).

Needs REFIMPL_SIMD_LIB=<site-packages>/llama_cpp/lib of a SIMD install (e.g. a plain `pip install
llama-cpp-python==0.3.36`).  The SIMD library is loaded in a child process so that it never mixes with the scalar
oracle.  The features the SIMD build reports are recorded in simd/build.json: results depend on them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DESCRIPTION = "ggml_mul_mat from a SIMD build on the matmul cases, to bound the SIMD-vs-scalar deviation"
ENV = "REFIMPL_SIMD_LIB"



def generate(oracle, w) -> None:
    lib = os.environ.get(ENV)
    if not lib:
        raise RuntimeError(f"the simd family needs {ENV}=<path to a SIMD build's llama_cpp/lib>")
    from . import matmul as M

    tools = str(Path(__file__).resolve().parent.parent)
    # the weights are ggml's scalar-build quantizations (the committed matmul goldens, regenerated here)
    acts = M.make_activations()
    weights = {}
    for name, tid in M.weight_types(oracle).items():
        for case in M.CASES:
            weights[f"{name}.{case}"] = M.quantize_weights(oracle, tid, M.make_weights(case))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/in.npz", **weights, **{f"x.{c}": a for c, a in acts.items()})
        script = (
            "import sys, json, numpy as np\n"
            f"sys.path.insert(0, {tools!r})\n"
            "import ggml_oracle\n"
            "o = ggml_oracle.Oracle(require_scalar=False)\n"
            f"z = np.load({tmp!r} + '/in.npz')\n"
            "from goldens import matmul as M\n"
            "out = {}\n"
            "for name, tid in M.weight_types(o).items():\n"
            "    for case, (_, n_rows, n, _, n_tok) in M.CASES.items():\n"
            "        out[f'mul_mat.{name}.{case}'] = o.mul_mat(tid, z[f'{name}.{case}'], n, z[f'x.{case}'])\n"
            f"np.savez({tmp!r} + '/out.npz', **out)\n"
            f"open({tmp!r} + '/build.json', 'w').write(json.dumps({{'llama_cpp_python': o.version, "
            "'ggml_simd_features': {k: v for k, v in o.simd.items() if v}, 'scalar_build': o.is_scalar()}))\n"
        )
        env = dict(os.environ, REFIMPL_ORACLE_LIB=lib)
        subprocess.run([sys.executable, "-c", script], env=env, check=True)
        build = json.loads(Path(f"{tmp}/build.json").read_text())
        if build["scalar_build"]:
            raise RuntimeError(f"{ENV} points at a scalar build; the simd family needs a SIMD one")
        out = dict(np.load(f"{tmp}/out.npz"))
    by_type: dict[str, dict] = {}
    for key, y in out.items():
        _, name, case = key.split(".")
        by_type.setdefault(name, {})[f"mul_mat.{case}"] = y
    for name, arrays in by_type.items():
        w.npz(f"{name}.npz", arrays, f"{name}: ggml_mul_mat on the matmul/{name}.npz cases, by a SIMD build")
    w.json("build.json", build, "the SIMD build that produced simd/*.npz: version and the features it reports")
