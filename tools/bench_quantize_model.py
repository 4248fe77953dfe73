#!/usr/bin/env python3
"""Whole-model quantization speed and memory: refimpl.quantize vs llama-quantize, same model, same threads.

    python tools/bench_quantize_model.py [--threads 2] [--types Q4_K_M Q6_K IQ4_XS] [--llama-quantize PATH]

The model is a ~110M-parameter llama with random weights (n_embd 768, 12 blocks, n_ff 2048, vocab 32000, tied
embeddings, F16), written once to build/bench-quantize/ with a random imatrix for the i-quants.  llama-quantize
is the SIMD build (default /work/build/simd/bin/llama-quantize, or $REFIMPL_SIMD_TOOLS/llama-quantize, or
--llama-quantize); both run as separate processes, one after the other, and each one's wall clock and peak RSS
(wait4's ru_maxrss, which covers the worker processes refimpl forks) are printed with the ratio
llama.cpp time / refimpl time (>= 1 means refimpl is as fast).  refimpl's numba kernels are compiled (or loaded
from numba's cache) by a warm-up run on a tiny model first, so the figures are steady-state.  The outputs are
compared byte for byte (the SIMD build quantizes with the same reference C, so they should agree).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / "build" / "bench-quantize"
N_EMBD, N_LAYER, N_FF, N_VOCAB, N_HEAD = 768, 12, 2048, 32000, 12


def _model(path: Path, n_embd=N_EMBD, n_layer=N_LAYER, n_ff=N_FF, n_vocab=N_VOCAB) -> None:
    from refimpl.floats import fp32_to_fp16_row
    from refimpl.gguf import GGUFValue, GGUFValueType as T, Tensor, write

    rng = np.random.default_rng(0)

    def w(rows, cols):
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).reshape(-1)
        return Tensor("F16", (rows, cols), fp32_to_fp16_row(x).reshape(rows, cols))

    meta = {"general.architecture": GGUFValue(T.STRING, "llama"), "general.name": GGUFValue(T.STRING, "bench"),
            "general.file_type": GGUFValue(T.UINT32, 1)}
    for k, v in {"context_length": 2048, "embedding_length": n_embd, "block_count": n_layer,
                 "feed_forward_length": n_ff, "attention.head_count": N_HEAD, "attention.head_count_kv": N_HEAD,
                 "rope.dimension_count": n_embd // N_HEAD}.items():
        meta[f"llama.{k}"] = GGUFValue(T.UINT32, v)
    meta["llama.attention.layer_norm_rms_epsilon"] = GGUFValue(T.FLOAT32, 1e-5)
    tensors = [("token_embd.weight", w(n_vocab, n_embd)), ("output_norm.weight", np.ones(n_embd, np.float32))]
    for i in range(n_layer):
        tensors += [(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32)),
                    (f"blk.{i}.attn_q.weight", w(n_embd, n_embd)), (f"blk.{i}.attn_k.weight", w(n_embd, n_embd)),
                    (f"blk.{i}.attn_v.weight", w(n_embd, n_embd)),
                    (f"blk.{i}.attn_output.weight", w(n_embd, n_embd)),
                    (f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32)),
                    (f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd)), (f"blk.{i}.ffn_up.weight", w(n_ff, n_embd)),
                    (f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))]
    write(path, meta, tensors)


def _imatrix(model: Path, path: Path) -> None:
    from refimpl import gguf
    from refimpl.imatrix_file import Imatrix, ImatrixEntry, write_imatrix

    rng = np.random.default_rng(1)
    entries = {}
    with gguf.read(model) as f:
        for t in f.tensors.list():
            if len(t.shape) == 2 and t.name != "token_embd.weight":
                entries[t.name] = ImatrixEntry(rng.random((1, t.ne[0]), dtype=np.float32) * 50, [512.0 * 40])
    write_imatrix(path, Imatrix(entries, ["bench.txt"], 40, 512))


def _run(cmd, env=None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MiB (the process and the children it waited for), exit code."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        print(err[-3000:], file=sys.stderr)
    return dt, ru.ru_maxrss / 1024.0, code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", nargs="+", default=["Q4_K_M", "Q6_K", "IQ4_XS"])
    ap.add_argument("--llama-quantize", type=Path)
    args = ap.parse_args()

    exe = args.llama_quantize or Path(os.environ.get("REFIMPL_SIMD_TOOLS", "/work/build/simd/bin")) / "llama-quantize"
    if not exe.exists():
        print(f"error: {exe} not found (build a SIMD llama-quantize: tools/build_llama_tools.py --simd)",
              file=sys.stderr)
        return 1
    env = dict(os.environ, LD_LIBRARY_PATH=str(exe.parent) + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
    WORK.mkdir(parents=True, exist_ok=True)
    model, imat = WORK / "bench-F16.gguf", WORK / "bench.imatrix.gguf"
    if not model.exists():
        print("writing the benchmark model ...", flush=True)
        _model(model)
    if not imat.exists():
        _imatrix(model, imat)
    n_params = 0
    from refimpl import gguf
    with gguf.read(model) as f:
        n_params = sum(t.n_elements for t in f.tensors.list())
    in_mib = model.stat().st_size / 2**20

    # warm-up: compile (or load) refimpl's kernels for these types on a tiny model of the same kind
    tiny = WORK / "tiny-F16.gguf"
    if not tiny.exists():
        _model(tiny, n_embd=256, n_layer=2, n_ff=512, n_vocab=64)
    for t in args.types:       # (the same kernels run with or without an imatrix)
        _run([sys.executable, "-m", "refimpl.quantize", "--no-progress", str(tiny), str(WORK / "tiny.out"), t, "1"])

    print(f"model: {n_params / 1e6:.1f}M parameters, F16, {in_mib:.0f} MiB; {args.threads} threads; "
          f"llama-quantize: {exe}")
    print(f"{'type':8s} {'llama.cpp s':>11s} {'refimpl s':>10s} {'ratio':>6s} {'llama RSS':>10s} {'refimpl RSS':>12s} "
          f"{'RSS budget':>11s} {'out MiB':>8s} same")
    for t in args.types:
        extra = ["--imatrix", str(imat)] if t.startswith("IQ") else []
        ref_out, my_out = WORK / f"llama-{t}.gguf", WORK / f"refimpl-{t}.gguf"
        lt, lrss, lc = _run([str(exe), *extra, str(model), str(ref_out), t, str(args.threads)], env=env)
        mt, mrss, mc = _run([sys.executable, "-m", "refimpl.quantize", "--no-progress", *extra, str(model),
                             str(my_out), t, str(args.threads)])
        if lc or mc:
            print(f"{t}: failed (llama-quantize {lc}, refimpl {mc})")
            continue
        out_mib = my_out.stat().st_size / 2**20
        same = hashlib.sha256(ref_out.read_bytes()).digest() == hashlib.sha256(my_out.read_bytes()).digest()
        print(f"{t:8s} {lt:11.2f} {mt:10.2f} {lt / mt:6.2f} {lrss:10.0f} {mrss:12.0f} {in_mib + out_mib + 200:11.0f} "
              f"{out_mib:8.1f} {'yes' if same else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
