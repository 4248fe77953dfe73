#!/usr/bin/env python3
"""Matvec / matmul throughput: refimpl vs llama.cpp (a ggml graph with ggml_mul_mat, same threads, same process)
vs numpy float32 matmul on dequantized weights.

    REFIMPL_ORACLE_LIB=/path/to/simd-build/llama_cpp/lib python tools/bench_matmul.py [TYPES…] [-t 2]

llama.cpp's figure here is NOT its repacked path: a one-node ``ggml_mul_mat`` graph on plain CPU buffers, so the
weights stay in the file's layout.  The model loader (``llama_cpp.Llama``, use_extra_bufts on by default) puts
Q4_0/Q4_K/IQ4_NL/... weights in REPACK buffers (rearranged for AVX2/AVX-512, e.g. Q4_0x8), which is faster; that
path is what tools/bench_generate.py measures, on whole models.

Point REFIMPL_ORACLE_LIB at the lib/ folder of a *SIMD* llama-cpp-python install (built by
`CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-cache-dir llama-cpp-python==0.3.36` in its own venv): that is what users run.  Shapes: matvec
4096x4096 · 4096, matmul 4096x4096 · 4096x32.  Figures are GFLOP/s (2·rows·cols·tokens / time, best of --repeat).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def best(fn, repeat):
    # The previous contender's worker threads (numpy's BLAS, ggml's OpenMP) keep spinning for a while after their
    # last call and take cores from the next one (measured: Q4_K matvec 15 instead of 23 GFLOP/s right after numpy).
    # Let them go idle first, so that each contender is timed on a quiet machine.
    time.sleep(0.5)
    fn()
    t_best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("types", nargs="*", default=["Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_XS"])
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import ggml_oracle
    from refimpl import quant

    quant.set_num_threads(args.threads)
    oracle = ggml_oracle.Oracle(require_scalar=False)
    build = "scalar" if oracle.is_scalar() else "SIMD (" + ",".join(k for k, v in oracle.simd.items() if v) + ")"
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    im = rng.uniform(0.1, 2, args.cols).astype(np.float32)
    print(f"# {args.rows}x{args.cols} weights, {args.threads} threads, GFLOP/s (best of {args.repeat}); "
          f"llama.cpp = {build} build at {oracle.libdir}")
    print("# llama.cpp column: a one-node ggml_mul_mat graph, weights in the file's layout -- NOT llama.cpp's repacked "
          "(REPACK buffer) path, which its model loader uses; see tools/bench_generate.py for that")
    hdr = (f"{'type':8s} {'shape':7s} | {'refimpl':>8s} {'llama.cpp':>9s} {'ratio':>6s} | {'numpy f32':>9s}")
    print(hdr)
    print("-" * len(hdr))
    for name in args.types:
        fmt = quant.get_type(name)
        raw = quant.quantize(w, name, imatrix=im if fmt.requires_imatrix else None) if name != "F32" \
            else w.view(np.uint8)
        deq = quant.dequantize(raw, name) if name != "F32" else w
        for shape, n_tok in (("matvec", 1), ("matmul", args.tokens)):
            x = rng.standard_normal((n_tok, args.cols)).astype(np.float32)
            flop = 2.0 * args.rows * args.cols * n_tok
            t_ref = best(lambda: quant.matmul(raw, name, x), args.repeat)
            t_cpp = best(lambda: oracle.mul_mat(fmt.type_id, raw, args.cols, x, n_threads=args.threads), args.repeat)
            t_np = best(lambda: x @ deq.T, args.repeat)
            g_ref, g_cpp, g_np = flop / t_ref / 1e9, flop / t_cpp / 1e9, flop / t_np / 1e9
            print(f"{name:8s} {shape:7s} | {g_ref:8.2f} {g_cpp:9.2f} {g_ref / g_cpp:5.2f}x | {g_np:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
