"""python -m refimpl.convert HF_DIR [--outfile OUT.gguf] [--outtype ...] [--vocab-only] [--use-temp-file]
[--model-name NAME] [--metadata FILE] — convert_hf_to_gguf.py's flags with the same names and meanings."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import OUTTYPES, convert, supported


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refimpl.convert",
                                 description="Convert a Hugging Face model to a GGUF file, byte for byte as "
                                             "llama.cpp's convert_hf_to_gguf.py (pinned release), without torch.")
    ap.add_argument("model", nargs="?", help="directory containing the Hugging Face checkpoint")
    ap.add_argument("--outfile", type=Path,
                    help="path to write to; default: based on input. {ftype} will be replaced by the outtype.")
    ap.add_argument("--outtype", choices=OUTTYPES, default="auto",
                    help="output format: f32, f16, bf16, q8_0, tq1_0 or tq2_0, or auto for the highest-fidelity "
                         "16-bit float type of the checkpoint")
    ap.add_argument("--vocab-only", action="store_true", help="extract only the vocab")
    ap.add_argument("--use-temp-file", action="store_true",
                    help="accepted for compatibility (tensors are always streamed through a temporary file)")
    ap.add_argument("--model-name", default=None, help="name of the model")
    ap.add_argument("--metadata", type=Path, help="path of an authorship metadata override file")
    ap.add_argument("--print-supported-models", action="store_true", help="print the supported architectures")
    ap.add_argument("--verbose", action="store_true", help="increase output verbosity")
    args = ap.parse_args(argv)
    if args.print_supported_models:
        print("\n".join(supported()))
        return 0
    if args.model is None:
        ap.error("the following arguments are required: model")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    try:
        path = convert(args.model, args.outfile, args.outtype, vocab_only=args.vocab_only,
                       use_temp_file=args.use_temp_file, model_name=args.model_name, metadata=args.metadata)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    print(f"Model successfully exported to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
