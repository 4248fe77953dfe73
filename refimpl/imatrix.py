"""python -m refimpl.imatrix: llama-imatrix's importance matrix, byte for byte.

    python -m refimpl.imatrix -m MODEL.gguf -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N] [--process-output]
                              [--in-file A.gguf ...] [--output-format gguf|dat] [--no-ppl]
    python -m refimpl.imatrix --in-file A.gguf --in-file B.gguf -o merged.gguf      # merge only
    python -m refimpl.imatrix --in-file imatrix.gguf --show-statistics

The file written is what the pinned llama-imatrix writes for the same model, text (the ``-f`` path is stored as
given, as the dataset name) and options (flash attention off).  The computation is ``refimpl.quality.imatrix``;
the file format ``refimpl.imatrix_file``.  spec/quality.md.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refimpl.imatrix",
                                description="Importance matrix exactly as the pinned llama-imatrix computes it.")
    p.add_argument("-m", "--model", help="GGUF model (needed to compute; not to merge or show statistics)")
    p.add_argument("-f", "--file", help="calibration text (one trailing newline is dropped, as llama.cpp does)")
    p.add_argument("-o", "--output", "--output-file", dest="output", default="imatrix.gguf",
                   help="output file (default: imatrix.gguf)")
    p.add_argument("--output-format", choices=("gguf", "dat"), default=None,
                   help="gguf (default) or llama.cpp's legacy dat format")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="tokens per chunk (default: 512)")
    p.add_argument("-b", "--batch-size", type=int, default=2048, help="logical batch size (default: 2048)")
    p.add_argument("-ub", "--ubatch-size", type=int, default=512,
                   help="physical batch size (default: 512); decides the order activations are summed in")
    p.add_argument("--chunks", type=int, default=-1, help="max number of chunks to process (default: -1 = all)")
    p.add_argument("--chunk", "--from-chunk", dest="from_chunk", type=int, default=0,
                   help="start processing the input from chunk N (default: 0)")
    p.add_argument("--process-output", action="store_true", help="collect data for the output tensor")
    p.add_argument("--in-file", action="append", default=[], metavar="FNAME",
                   help="an imatrix to merge in (repeatable)")
    p.add_argument("--show-statistics", action="store_true",
                   help="show the statistics of the single --in-file and exit")
    p.add_argument("--no-ppl", dest="ppl", action="store_false", help="do not compute perplexity")
    p.add_argument("--ppl", dest="ppl", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--parse-special", action="store_true", help="parse special tokens in the text")
    p.add_argument("-t", "--threads", type=int, default=0, help="threads for refimpl's matmul (default: all)")
    p.add_argument("-fa", "--flash-attn", choices=("on", "off", "auto"), default="off",
                   help="only 'off': refimpl computes attention as llama.cpp does without flash attention")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(ppl=True)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = "refimpl.imatrix"

    def fail(msg: str, code: int = 1) -> int:
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return code

    if args.flash_attn != "off":
        return fail(f"-fa {args.flash_attn}: refimpl reproduces llama.cpp's non-flash-attention graph; use -fa off", 2)
    from .imatrix_file import write_imatrix
    from .quality.imatrix import ImatrixCollector, compute_imatrix, statistics_report
    from .quality._common import read_text_file

    try:
        if args.show_statistics:
            if len(args.in_file) != 1:
                return fail("a single imatrix file is required to compute tensor statistics (--in-file)", 2)
            col = ImatrixCollector(args.ctx_size)          # chunk_size only matters for a legacy .dat file
            col.load(args.in_file[0])
            sys.stdout.write(statistics_report(col, args.in_file[0]))
            return 0
        if args.ctx_size <= 0:
            return fail("imatrix tool requires '--ctx-size' > 0", 2)
        fmt = args.output_format or "gguf"
        if args.output_format is None and not args.output.endswith(".gguf"):
            print(f"{prog}: warning: saving imatrix using GGUF format with a different suffix than .gguf; "
                  "if you want the previous imatrix format, use --output-format dat", file=sys.stderr)
        if args.threads:
            from . import set_num_threads
            set_num_threads(args.threads)
        # chunk_size = n_ctx / n_parallel: the user's context size
        col = ImatrixCollector(args.ctx_size, args.process_output)
        if not args.file:
            if not args.in_file:
                return fail("no prompt provided and no precomputed matrices (--in-file) to combine", 2)
            for p in args.in_file:
                col.load(p)
            write_imatrix(args.output, col.to_imatrix(""), fmt)
            print(f"{prog}: saved {'combined ' if len(args.in_file) > 1 else ''}imatrix to '{args.output}'",
                  file=sys.stderr)
            return 0
        if not args.model:
            return fail("-m MODEL is required to compute an imatrix", 2)
        text = read_text_file(args.file)
        res = compute_imatrix(args.model, text, n_ctx=args.ctx_size, n_batch=args.batch_size,
                              n_ubatch=args.ubatch_size, n_chunks=args.chunks, from_chunk=args.from_chunk,
                              process_output=args.process_output, compute_ppl=args.ppl,
                              parse_special=args.parse_special, in_files=args.in_file, collector=col,
                              progress=not args.no_progress, out=sys.stdout)
        print()
        if res.ppl is not None:
            if res.ppl_error is None:
                print("Unexpected negative standard deviation of log(prob)")
            else:
                print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.ppl_error:.5f}")
        write_imatrix(args.output, res.imatrix(args.file), fmt)
        print(f"{prog}: stored collected data after {col.last_chunk} chunks in {args.output}", file=sys.stderr)
        return 0
    except (ValueError, OSError) as e:
        return fail(str(e))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
