#!/usr/bin/env python3
"""llama.cpp's own per-op trace of any GGUF model, written in refimpl.trace's dump layout.

    python tools/llama_trace.py -m MODEL.gguf -p "In the beginning" --dump DIR_LLAMA
    python -m refimpl.trace      -m MODEL.gguf -p "In the beginning" --dump DIR_REFIMPL
    python -m refimpl.trace --compare DIR_LLAMA DIR_REFIMPL         # first op where they part, if any

llama.cpp runs as the trace goldens run it (tools/goldens/trace.py: the scheduler eval callback ``cb_eval``, every
named F32 node, tools/goldens/model.py SETTINGS: flash attention off, F16 KV cache, one thread) through the
installed llama_cpp package; set LLAMA_CPP_LIB_PATH to choose its libraries (the scalar build for bit-exact
comparisons: /work/build/scalar/bin or the package built as README.md says).  The prompt is tokenized by
refimpl's tokenizer (llama.cpp's, bit for bit), or give ids with --tokens.  Needs llama.cpp; not used by CI.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", "--prompt")
    ap.add_argument("--tokens", help="comma-separated token ids instead of a prompt")
    ap.add_argument("--dump", required=True, metavar="DIR")
    ap.add_argument("-c", "--ctx-size", type=int, default=256)
    args = ap.parse_args(argv)
    from goldens.trace import run_llama

    from refimpl.trace import TraceTensor, write_dump

    if (args.prompt is None) == (args.tokens is None):
        ap.error("give exactly one of -p PROMPT or --tokens IDS")
    if args.tokens is not None:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    else:
        from refimpl import gguf
        from refimpl.tokenizer import Tokenizer

        tokens = list(Tokenizer.from_gguf(gguf.read(args.model)).encode(args.prompt, add_special=True,
                                                                         parse_special=True))
    records = run_llama(args.model, tokens, overrides={"n_ctx": args.ctx_size})
    tensors = [TraceTensor(name, occ, a) for name, occ, op, ne, a in records]
    write_dump(args.dump, tensors, producer="llama.cpp (tools/llama_trace.py)", model=os.path.basename(args.model),
               tokens=tokens, n_ctx=args.ctx_size,
               llama_cpp_lib=os.environ.get("LLAMA_CPP_LIB_PATH", "(llama_cpp package)"))
    print(f"{len(tensors)} tensors for {len(tokens)} tokens -> {args.dump}/trace.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
