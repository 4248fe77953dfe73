"""Single-thread speed of refimpl's ternary / FP4 / Q1_0 / Q2_0 kernels against ggml's scalar C (the oracle).

    /work/venv/bin/python tools/bench_lowbit_quant.py [TYPE ...] [--n ELEMENTS] [--repeat R]

For each type: dequantize (refimpl ``quant.dequantize`` vs ``Oracle.to_float``), quantize (``quant.quantize`` vs
``Oracle.quantize_chunk``, no imatrix), and, where registered, vec_dot (vs ``Oracle.vec_dot``).  Prints the best
of R runs in Melem/s and the ratio refimpl/ggml (> 1 means refimpl is faster).  Numba compilation happens in a
warm-up call before timing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ggml_oracle  # noqa: E402

from refimpl import quant  # noqa: E402

DEFAULT_TYPES = ["TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0"]


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up (numba compilation, page faults)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", default=DEFAULT_TYPES)
    ap.add_argument("--n", type=int, default=1 << 20, help="elements per measurement (default 2^20)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    o = ggml_oracle.get()
    rng = np.random.default_rng(0)
    print(f"{'type':7} {'op':11} {'refimpl Me/s':>12} {'ggml Me/s':>10} {'ratio':>6}")
    for name in args.types:
        fmt = quant.get_type(name)
        n = args.n // 4096 * 4096
        x = rng.standard_normal((n // 4096, 4096)).astype(np.float32)
        raw = o.quantize_chunk(fmt.type_id, x)
        rows = [
            ("dequantize", lambda: quant.dequantize(raw, name), lambda: o.to_float(fmt.type_id, raw, n)),
            ("quantize", lambda: quant.quantize(x, name), lambda: o.quantize_chunk(fmt.type_id, x)),
        ]
        if fmt.vec_dot is not None and fmt.vec_dot_type is not None:
            ytype = quant.get_type(fmt.vec_dot_type)
            yq = o.from_float_cpu(ytype.type_id, x.reshape(-1))
            xb = raw.reshape(-1).view(fmt.block_dtype)
            yb = yq.reshape(-1).view(ytype.block_dtype)
            rows.append(("vec_dot", lambda: fmt.vec_dot(n, xb, yb), lambda: o.vec_dot(fmt.type_id, n, raw, yq)))
        for op, ours, theirs in rows:
            t_ours = best_time(ours, args.repeat)
            t_ggml = best_time(theirs, args.repeat)
            print(f"{name:7} {op:11} {n / t_ours / 1e6:12.1f} {n / t_ggml / 1e6:10.1f} {t_ggml / t_ours:6.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
