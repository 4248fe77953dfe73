#!/usr/bin/env python3
"""Quantize / dequantize throughput, single thread: refimpl vs ggml (the oracle, same process) vs gguf-py.

    python tools/bench_quant.py                  # every type refimpl implements
    python tools/bench_quant.py Q4_0 Q4_K IQ4_XS # some types
    REFIMPL_ORACLE_LIB=/path/to/simd/llama_cpp/lib python tools/bench_quant.py --allow-simd   # against a SIMD build

Figures are Melem/s (million float elements per second, best of --repeat runs) on a 256 x 4096 Gaussian matrix.
ggml's figure is `type_traits.to_float` / `ggml_quantize_chunk` called through ctypes on the whole matrix, so the
ctypes overhead is one call.  gguf-py is the vendored `gguf.quants` (numpy) where it has the type.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up (numba compilation, ggml table init)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def load_gguf_py():
    for p in (ROOT / "vendor" / "llama.cpp" / "gguf-py",):
        if p.exists():
            sys.path.insert(0, str(p))
    try:
        import gguf
        import gguf.quants

        return gguf
    except Exception:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("types", nargs="*")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--allow-simd", action="store_true", help="measure against a SIMD build of ggml")
    ap.add_argument("--no-gguf-py", action="store_true")
    args = ap.parse_args(argv)

    import numba

    numba.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ggml_oracle
    from refimpl import quant

    oracle = ggml_oracle.get(require_scalar=not args.allow_simd)
    gguf = None if args.no_gguf_py else load_gguf_py()
    names = args.types or [n for n in quant.TYPES.names()
                           if quant.get_type(n).is_quantized or n in ("F16", "BF16")]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    imatrix = rng.uniform(0.1, 2.0, args.cols).astype(np.float32)
    n = x.size
    build = "SIMD" if not oracle.is_scalar() else "scalar"
    print(f"# {args.rows}x{args.cols} float32, single thread, Melem/s (best of {args.repeat}); ggml = {build} build "
          f"of llama-cpp-python {oracle.version}")
    hdr = (f"{'type':8s} | {'deq refimpl':>11s} {'deq ggml':>9s} {'ratio':>6s} {'deq gguf-py':>11s} | "
           f"{'q refimpl':>10s} {'q ggml':>9s} {'ratio':>6s} {'q gguf-py':>10s}")
    print(hdr)
    print("-" * len(hdr))
    for name in names:
        fmt = quant.get_type(name)
        tid = fmt.type_id
        needs_im = fmt.requires_imatrix
        im = imatrix if needs_im else None
        row = {}
        can_chunk = oracle.type_traits(tid).is_quantized and name not in ("Q8_1", "Q8_K") or name in ("F16", "BF16")
        if can_chunk:
            raw = oracle.quantize_chunk(tid, x, im)
            row["q_ggml"] = n / best_time(lambda: oracle.quantize_chunk(tid, x, im), args.repeat) / 1e6
        else:
            raw = quant.quantize(x, name)
        try:
            row["q_ref"] = n / best_time(lambda: quant.quantize(x, name, imatrix=im), args.repeat) / 1e6
        except ValueError:
            pass
        if oracle.type_traits(tid).to_float:
            flat = np.ascontiguousarray(raw).reshape(-1)
            row["d_ggml"] = n / best_time(lambda: oracle.to_float(tid, flat, n), args.repeat) / 1e6
        try:
            row["d_ref"] = n / best_time(lambda: quant.dequantize(raw, name), args.repeat) / 1e6
        except ValueError:
            pass
        if gguf is not None:
            qt = getattr(gguf.GGMLQuantizationType, name, None)
            if qt is not None:
                try:
                    gguf.quants.dequantize(np.asarray(raw), qt)
                    row["d_py"] = n / best_time(lambda: gguf.quants.dequantize(np.asarray(raw), qt), 1) / 1e6
                except Exception:
                    pass
                try:
                    gguf.quants.quantize(x, qt)
                    row["q_py"] = n / best_time(lambda: gguf.quants.quantize(x, qt), 1) / 1e6
                except Exception:
                    pass

        def f(k):
            return f"{row[k]:.1f}" if k in row else "-"

        def ratio(a, b):
            return f"{row[a] / row[b]:.2f}x" if a in row and b in row else "-"

        print(f"{name:8s} | {f('d_ref'):>11s} {f('d_ggml'):>9s} {ratio('d_ref', 'd_ggml'):>6s} {f('d_py'):>11s} | "
              f"{f('q_ref'):>10s} {f('q_ggml'):>9s} {ratio('q_ref', 'q_ggml'):>6s} {f('q_py'):>10s}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
