"""python -m refimpl.perplexity: llama-perplexity's perplexity and KL-divergence runs, with its numbers.

    python -m refimpl.perplexity -m MODEL.gguf -f TEXT [-c 512] [-b 2048] [--chunks N] [-t N]
    python -m refimpl.perplexity -c 128          # tiny-kjv on held-out KJV chapters (refimpl/data)
    python -m refimpl.perplexity -m BASE.gguf -f TEXT --kl-divergence-base base.kld     # also writes the logits
    python -m refimpl.perplexity -m QUANT.gguf --kl-divergence-base base.kld --kl-divergence

stdout gets what llama-perplexity prints there (the ``[i]ppl,`` line; the KL-divergence table and report), plus
the ``Final estimate`` line (llama.cpp logs it to stderr).  Progress (tqdm, with ETA) goes to stderr.  The
computation is ``refimpl.quality`` (spec/quality.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
#: with no -m/-f: the embedded model on held-out chapters of its own corpus
DEFAULT_MODEL = DATA / "tiny-kjv-q8_0.gguf"
DEFAULT_TEXT = DATA / "kjv-heldout.txt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refimpl.perplexity",
                                description="Perplexity and KL-divergence exactly as the pinned llama-perplexity "
                                            "computes them (flash attention off).")
    p.add_argument("-m", "--model", help="GGUF model (default: the embedded tiny-kjv)")
    p.add_argument("-f", "--file", help="text file to evaluate (one trailing newline is dropped, as llama.cpp "
                                        "does; default with no -m: refimpl/data/kjv-heldout.txt)")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default: 512)")
    p.add_argument("-b", "--batch-size", type=int, default=2048, help="logical batch size (default: 2048)")
    p.add_argument("--chunks", type=int, default=-1, help="max number of chunks to process (default: -1 = all)")
    p.add_argument("-t", "--threads", type=int, default=0, help="threads for refimpl's matmul (default: all)")
    p.add_argument("--kl-divergence-base", "--save-all-logits", dest="kl_divergence_base", metavar="FNAME",
                   help="file of the base model's log-probabilities: written by a perplexity run, read by "
                        "--kl-divergence")
    p.add_argument("--kl-divergence", action="store_true",
                   help="compute the KL-divergence to the logits in --kl-divergence-base")
    p.add_argument("-fa", "--flash-attn", choices=("on", "off", "auto"), default="off",
                   help="only 'off': refimpl computes attention as llama.cpp does without flash attention")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="load a quant-type plugin (a file or module name; repeatable), see spec/plugins.md")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = "refimpl.perplexity"
    if args.flash_attn != "off":
        print(f"{prog}: error: -fa {args.flash_attn}: refimpl reproduces llama.cpp's non-flash-attention graph; "
              "use -fa off (and run llama-perplexity with -fa off to compare)", file=sys.stderr)
        return 2
    if args.ctx_size <= 0:
        print(f"{prog}: error: perplexity tool requires '--ctx-size' > 0", file=sys.stderr)
        return 2
    if args.model is None:
        args.model = str(DEFAULT_MODEL)
        if args.file is None and not args.kl_divergence:
            args.file = str(DEFAULT_TEXT)
    from . import quality, set_num_threads
    from .quality._common import read_text_file

    if args.threads:
        set_num_threads(args.threads)
    try:
        from .quant import load_plugins
        load_plugins(args.plugin)
        if args.kl_divergence:
            if not args.kl_divergence_base:
                print(f"{prog}: error: you must provide a name of a file containing the log probabilities of the "
                      "base model (--kl-divergence-base FNAME)", file=sys.stderr)
                return 2
            quality.kl_divergence(args.model, args.kl_divergence_base, n_batch=args.batch_size, n_ctx=args.ctx_size,
                                  progress=not args.no_progress, out=sys.stdout)
            print()
            return 0
        if not args.file:
            print(f"{prog}: error: -f TEXT is required (the text to evaluate)", file=sys.stderr)
            return 2
        text = read_text_file(args.file)
        res = quality.perplexity(args.model, text, n_ctx=args.ctx_size, n_batch=args.batch_size,
                                 n_chunks=args.chunks, kl_divergence_base=args.kl_divergence_base,
                                 progress=not args.no_progress, out=sys.stdout)
        print(res.final_line())
        print()
        return 0
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
