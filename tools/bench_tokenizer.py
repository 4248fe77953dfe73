"""Tokenizer speed: refimpl vs llama.cpp on ~1 MB of English text, in tokens/s.

The text is the English Markdown documentation shipped in the pinned llama.cpp (vendor/llama.cpp/**/*.md, sorted,
concatenated and cut at 1 MiB), so the measurement is reproducible without network access.  refimpl is timed on a
freshly loaded Tokenizer (its word cache starts empty; load time is reported separately); llama.cpp through
llama-cpp-python's ``Llama(vocab_only=True).tokenize`` (the scalar oracle build).  Both must give the same ids.

    /work/venv/bin/python tools/bench_tokenizer.py [--vocab llama-bpe llama-spm] [--size 1048576]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def english_text(size: int) -> bytes:
    docs = sorted((ROOT / "vendor" / "llama.cpp").rglob("*.md"))
    data = b"\n\n".join(p.read_bytes() for p in docs)
    if len(data) < size:
        data = data * (size // len(data) + 1)
    return data[:size].decode("utf-8", "ignore").encode("utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", nargs="+", default=["llama-bpe", "llama-spm"])
    ap.add_argument("--size", type=int, default=1 << 20)
    args = ap.parse_args(argv)

    import llama_cpp
    from sdist import vocab_dir

    from refimpl.tokenizer import Tokenizer

    text = english_text(args.size)
    print(f"text: {len(text)} bytes of English Markdown from vendor/llama.cpp")
    print("| vocab | tokens | refimpl load s | refimpl tok/s | llama.cpp tok/s | ratio | equal |")
    print("|---|---|---|---|---|---|---|")
    for name in args.vocab:
        path = vocab_dir() / f"ggml-vocab-{name}.gguf"
        Tokenizer.from_gguf(path).encode("warm up numba and regex caches 123 's", add_special=False)
        t0 = time.perf_counter()
        tok = Tokenizer.from_gguf(path)
        t1 = time.perf_counter()
        ours = tok.encode(text, add_special=False)
        t2 = time.perf_counter()
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        t3 = time.perf_counter()
        theirs = llm.tokenize(text, add_bos=False, special=False)
        t4 = time.perf_counter()
        ours_rate = len(ours) / (t2 - t1)
        theirs_rate = len(theirs) / (t4 - t3)
        print(f"| {name} | {len(ours)} | {t1 - t0:.2f} | {ours_rate:,.0f} | {theirs_rate:,.0f} | "
              f"{ours_rate / theirs_rate:.2f} | {ours == theirs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
