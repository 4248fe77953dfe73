"""How long it takes to open a GGUF file: refimpl.gguf.read vs llama.cpp's gguf_init_from_file vs gguf-py.

    /work/venv/bin/python tools/bench_gguf_open.py [--files gemma-4 command-r] [--repeat 5] [--skip-gguf-py]

All three run in this process on the same file (page cache warm: each file is read once before timing).
llama.cpp: gguf_init_from_file(path, {no_alloc=true, ctx=NULL}) + gguf_free through the oracle (ctypes).
refimpl: refimpl.gguf.read(path) (numba compiled once before timing; the string arrays are scanned, not
decoded).  gguf-py: gguf.GGUFReader(path) from the vendored llama.cpp/gguf-py (timed once: it is slow).
Reported: best of --repeat, in seconds, and the ratios to llama.cpp.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", nargs="+", default=["gemma-4", "command-r"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-gguf-py", action="store_true")
    args = ap.parse_args(argv)

    import ggml_oracle
    from sdist import vocab_dir

    import refimpl.gguf as rg

    oracle = ggml_oracle.get()
    b = oracle.base
    gguf_py = None
    if not args.skip_gguf_py:
        gp = ROOT / "vendor" / "llama.cpp" / "gguf-py"
        if gp.exists():
            sys.path.insert(0, str(gp))
            import gguf as gguf_py   # noqa: F811
        else:
            print("gguf-py not found (vendor/llama.cpp/gguf-py); skipping it")

    def llama_open(path):
        ctx = b.gguf_init_from_file(str(path).encode(), ggml_oracle.GGUFInitParams(True, None))
        assert ctx
        b.gguf_free(ctx)

    rows = []
    for name in args.files:
        path = vocab_dir() / f"ggml-vocab-{name}.gguf"
        path.read_bytes()                       # warm the page cache
        rg.read(path).close()                   # compile / load the numba scan
        t_llama = best_of(lambda: llama_open(path), args.repeat)
        t_ref = best_of(lambda: rg.read(path).close(), args.repeat)
        t_py = None
        if gguf_py is not None:
            t = time.perf_counter()
            gguf_py.GGUFReader(path)
            t_py = time.perf_counter() - t
        rows.append((name, t_ref, t_llama, t_py))

    print(f"{'file':12s} {'refimpl s':>10s} {'llama.cpp s':>12s} {'gguf-py s':>10s} {'refimpl/llama':>14s} "
          f"{'gguf-py/llama':>14s}")
    for name, t_ref, t_llama, t_py in rows:
        py = f"{t_py:10.3f}" if t_py is not None else f"{'-':>10s}"
        pyr = f"{t_py / t_llama:14.1f}" if t_py is not None else f"{'-':>14s}"
        print(f"{name:12s} {t_ref:10.4f} {t_llama:12.4f} {py} {t_ref / t_llama:14.2f} {pyr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
