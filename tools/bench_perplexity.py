#!/usr/bin/env python3
"""Perplexity throughput (tokens/s): refimpl.quality.perplexity vs llama-perplexity, same model, text and options.

    python tools/bench_perplexity.py [--type Q8_0|Q4_K] [--threads 2] [--chunks 4] [--llama-bin DIR]

The model is a ~110M-parameter llama with random weights (n_embd 768, 12 layers, 12 heads / 4 KV heads, n_ff 2048,
vocab 32000, untied output; built once into build/bench/), the text refimpl/data/kjv-heldout.txt, `-c 512` (default batch 2048:
four sequences per batch).  llama-perplexity comes from a SIMD build (``--llama-bin``, default
/work/build/simd/bin or $REFIMPL_SIMD_TOOLS; falls back to the scalar tools, and says so), run with the same
thread count, flash attention off (what refimpl computes) and, for reference, llama.cpp's default (-fa auto, on).
Its figure is the time of its first pass ("seconds per pass": the first batch of min(4, chunks) chunks, evaluated
together), so use --chunks <= 4; refimpl's is the wall time of the whole perplexity loop after a one-chunk warm-up
(numba compilation excluded), split into model evaluation and log-softmax.
Both print the same perplexity, which the script checks.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

SHAPE = dict(n_vocab=32000, n_embd=768, n_layer=12, n_head=12, n_head_kv=4, n_ff=2048, n_ctx=2048)
TEXT = ROOT / "refimpl" / "data" / "kjv-heldout.txt"


def build_model(qtype: str, seed: int = 0) -> Path:
    """The random-weight model, written once: tools/bench_generate.py's recipe at this shape, with a vocabulary that
    has SentencePiece's 256 byte tokens (the text is tokenized; anything not in the vocabulary falls back to bytes)."""
    import numpy as np

    from refimpl import gguf, quant

    path = ROOT / "build" / "bench" / f"llama-100m-{qtype}.gguf"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    s = SHAPE
    rng = np.random.default_rng(seed)
    hd = s["n_embd"] // s["n_head"]

    def mat(rows, cols, scale=0.05):
        x = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(scale)
        return gguf.Tensor(qtype, (rows, cols), quant.quantize(x, qtype))

    u32 = lambda v: gguf.GGUFValue(gguf.GGUFValueType.UINT32, int(v))  # noqa: E731  (llama.cpp checks key types)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"t{i}" for i in range(s["n_vocab"] - len(tokens))]
    types += [1] * (s["n_vocab"] - len(types))
    meta = {
        "general.architecture": "llama",
        "llama.context_length": u32(s["n_ctx"]),
        "llama.embedding_length": u32(s["n_embd"]),
        "llama.block_count": u32(s["n_layer"]),
        "llama.feed_forward_length": u32(s["n_ff"]),
        "llama.attention.head_count": u32(s["n_head"]),
        "llama.attention.head_count_kv": u32(s["n_head_kv"]),
        "llama.rope.dimension_count": u32(hd),
        "llama.rope.freq_base": np.float32(10000.0),
        "llama.attention.layer_norm_rms_epsilon": np.float32(1e-5),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.zeros(s["n_vocab"], np.float32),
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.bos_token_id": u32(1),
        "tokenizer.ggml.eos_token_id": u32(2),
    }
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    tensors = {"token_embd.weight": mat(s["n_vocab"], s["n_embd"]), "output_norm.weight": ones(s["n_embd"]),
               "output.weight": mat(s["n_vocab"], s["n_embd"])}
    kv = s["n_head_kv"] * hd
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = ones(s["n_embd"])
        tensors[p + "attn_q.weight"] = mat(s["n_embd"], s["n_embd"])
        tensors[p + "attn_k.weight"] = mat(kv, s["n_embd"])
        tensors[p + "attn_v.weight"] = mat(kv, s["n_embd"])
        tensors[p + "attn_output.weight"] = mat(s["n_embd"], s["n_embd"])
        tensors[p + "ffn_norm.weight"] = ones(s["n_embd"])
        tensors[p + "ffn_gate.weight"] = mat(s["n_ff"], s["n_embd"])
        tensors[p + "ffn_up.weight"] = mat(s["n_ff"], s["n_embd"])
        tensors[p + "ffn_down.weight"] = mat(s["n_embd"], s["n_ff"])
    gguf.write(path, meta, tensors)
    return path


def llama_bin(arg: str | None) -> tuple[Path, str]:
    for cand, kind in ((arg, "given"), (os.environ.get("REFIMPL_SIMD_TOOLS"), "SIMD"), ("/work/build/simd/bin", "SIMD"),
                       (str(ROOT / "build" / "llama-tools-simd" / "bin"), "SIMD"),
                       (os.environ.get("REFIMPL_LLAMA_TOOLS"), "scalar"), ("/work/build/scalar/bin", "scalar")):
        if cand and (Path(cand) / "llama-perplexity").exists():
            return Path(cand), kind
    raise SystemExit("no llama-perplexity found: build one with tools/build_llama_tools.py [--simd]")


def bench_llama(bin_dir: Path, model: Path, threads: int, chunks: int, fa: str) -> dict:
    from goldens.quality import build_shim

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, LD_LIBRARY_PATH=str(bin_dir), LD_PRELOAD=str(build_shim(Path(tmp), one_cpu=False)))
        r = subprocess.run([str(bin_dir / "llama-perplexity"), "-m", str(model), "-f", str(TEXT), "-c", "512",
                            "--chunks", str(chunks), "-t", str(threads), "-fa", fa], env=env, capture_output=True,
                           text=True, errors="replace")
    if r.returncode:
        raise SystemExit(f"llama-perplexity failed: {r.stderr[-2000:]}")
    # the first pass evaluates min(n_seq, chunks) chunks in one batch (n_seq = 2048 / 512 = 4) and is timed
    # ("%.2f seconds per pass"); its log-softmax is not in that figure (it follows)
    m = re.search(r"([\d.]+) seconds per pass", r.stderr)
    final = re.search(r"Final estimate: PPL = [\d.]+ \+/- [\d.]+", r.stderr + r.stdout)
    return {"tokens": min(4, chunks) * 512, "seconds": float(m.group(1)), "final": final.group(0) if final else "?"}


def bench_refimpl(model: Path, threads: int, chunks: int) -> dict:
    from refimpl import model as model_mod, quality, set_num_threads
    from refimpl.quality import _common, logprobs

    set_num_threads(threads)
    m = model_mod.load(model, n_ctx=512)
    text = _common.read_text_file(TEXT)
    quality.perplexity(m, text, n_ctx=512, n_chunks=1)            # warm-up: numba compiles / loads its cache
    t_eval = t_softmax = 0.0
    real_eval, real_nll = _common.eval_chunk, logprobs.nll_rows

    def timed_eval(*a, **k):
        nonlocal t_eval
        t0 = time.perf_counter()
        try:
            return real_eval(*a, **k)
        finally:
            t_eval += time.perf_counter() - t0

    def timed_nll(*a, **k):
        nonlocal t_softmax
        t0 = time.perf_counter()
        try:
            return real_nll(*a, **k)
        finally:
            t_softmax += time.perf_counter() - t0

    from refimpl.quality import ppl
    ppl.eval_chunk, ppl.logprobs.nll_rows = timed_eval, timed_nll
    try:
        t0 = time.perf_counter()
        res = quality.perplexity(m, text, n_ctx=512, n_chunks=chunks)
        total = time.perf_counter() - t0
    finally:
        ppl.eval_chunk, ppl.logprobs.nll_rows = real_eval, real_nll
    return {"tokens": chunks * 512, "seconds": total, "eval": t_eval, "softmax": t_softmax,
            "final": res.final_line()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--type", default="Q8_0", choices=("Q8_0", "Q4_K"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--llama-bin", help="folder with llama-perplexity and its libraries")
    args = ap.parse_args(argv)

    model = build_model(args.type)
    bin_dir, kind = llama_bin(args.llama_bin)
    print(f"model {model.name} ({SHAPE}), text {TEXT.name}, -c 512, --chunks {args.chunks}, {args.threads} threads; "
          f"llama-perplexity: {bin_dir} ({kind} build)", flush=True)
    ref = bench_refimpl(model, args.threads, args.chunks)
    off = bench_llama(bin_dir, model, args.threads, args.chunks, "off")
    auto = bench_llama(bin_dir, model, args.threads, args.chunks, "auto")
    rate = lambda d: d["tokens"] / d["seconds"]  # noqa: E731
    print(f"\n{'':34s} {'tokens':>7s} {'seconds':>8s} {'tokens/s':>9s}  ratio refimpl/llama")
    print(f"{'refimpl.quality.perplexity':34s} {ref['tokens']:7d} {ref['seconds']:8.2f} {rate(ref):9.1f}")
    for name, d in ((f"llama-perplexity -fa off ({kind})", off), (f"llama-perplexity -fa auto ({kind})", auto)):
        print(f"{name:34s} {d['tokens']:7d} {d['seconds']:8.2f} {rate(d):9.1f}  {rate(ref) / rate(d):.2f}x")
    print(f"\nrefimpl time: model evaluation {ref['eval']:.2f} s ({100 * ref['eval'] / ref['seconds']:.0f}%), "
          f"log-softmax {ref['softmax']:.2f} s ({100 * ref['softmax'] / ref['seconds']:.0f}%), "
          f"rest {ref['seconds'] - ref['eval'] - ref['softmax']:.2f} s")
    print(f"refimpl : {ref['final']}\nllama -fa off: {off['final']}")
    if ref["final"] != off["final"] and kind == "scalar":
        print("MISMATCH against the scalar build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
