"""python -m refimpl.conformance export DIR [--families ...] | run --impl "CMD ..." [--ops ...] [--types ...]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .export import FAMILIES, export
from .runner import OPS, ImplError, run
from .vectors import VectorsError

DEFAULT_VECTORS = Path("conformance-vectors")


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refimpl.conformance",
                                 description="Conformance vectors from llama.cpp's answers, and a runner that checks "
                                             "any implementation against them (spec/conformance.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write the vectors (raw .bin + manifest.json) into DIR")
    ex.add_argument("dir", type=Path)
    ex.add_argument("--families", type=_csv, default=None,
                    help=f"comma-separated subset of: {','.join(FAMILIES)} (default: all)")
    ex.add_argument("--types", type=_csv, default=None, help="only these ggml types (comma-separated)")
    ex.add_argument("--quick", action="store_true",
                    help="a few cases per type and operation (seconds to run; for CI)")
    ex.add_argument("--golden", type=Path, default=None, help="the golden/ directory (default: the checkout's)")
    ex.add_argument("--vocab-dir", type=Path, default=None,
                    help="where the pinned release's models/ggml-vocab-*.gguf are (copied into the vectors)")
    rn = sub.add_parser("run", help="check an implementation against the vectors")
    rn.add_argument("--impl", required=True, help='the program, as one shell-quoted string: "python my_impl.py"')
    rn.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS, help=f"vectors directory (default "
                                                                          f"./{DEFAULT_VECTORS})")
    rn.add_argument("--ops", type=_csv, default=None, help=f"comma-separated subset of: {','.join(OPS)}")
    rn.add_argument("--types", type=_csv, default=None, help="comma-separated ggml types: Q4_0,Q4_K,...")
    rn.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    rn.add_argument("--nan", choices=("exact", "any"), default="exact",
                    help="exact: NaNs must match bit for bit (payload and sign); any: any NaN matches any NaN")
    rn.add_argument("--timeout", type=float, default=600.0, help="seconds per call of the program")
    rn.add_argument("-q", "--quiet", action="store_true", help="no failure reports, no progress bar")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "export":
            m = export(a.dir, families=a.families, golden=a.golden, types=a.types, quick=a.quick,
                       vocab_dir=a.vocab_dir, progress=lambda f: print(f"[{f}]", file=sys.stderr, flush=True))
            n_bytes = sum(f["bytes"] for f in m["files"].values())
            print(f"{len(m['cases'])} cases, {len(m['files'])} files, {n_bytes:,} bytes -> {a.dir}")
            for fam, note in m["notes"].items():
                print(f"note ({fam}): {note}", file=sys.stderr)
            return 0
        return run(a.vectors, a.impl, ops=a.ops, types=[t.upper() for t in a.types] if a.types else None,
                   as_json=a.json, nan=a.nan, timeout=a.timeout, verbose=not a.quiet)
    except (VectorsError, ImplError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
