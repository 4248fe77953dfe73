"""``python -m refimpl.gguf dump FILE [--json]`` and ``python -m refimpl.gguf diff A B``.

dump: the header, every key with its type and value (long arrays abbreviated) and the tensor table (name, type,
shape, offset, bytes), like gguf-py's gguf-dump.  diff: the keys and tensors that differ between two files;
exit status 0 when they hold the same metadata and tensors, 1 when they differ, 2 on a malformed file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys

import numpy as np

from .reader import GGUFError, GGUFFile, read
from .types import GGUFValueType
from .values import GGUFValue, StringArray

ARRAY_PREVIEW = 8


def _scalar_json(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def value_preview(v: GGUFValue, limit: int = ARRAY_PREVIEW, as_json: bool = False):
    """A short rendering of a value: arrays show their first ``limit`` elements."""
    if v.type == GGUFValueType.ARRAY:
        items = v.value[:limit]
        items = list(items) if isinstance(v.value, StringArray) else [x.item() for x in items]
        if as_json:
            return {"n": len(v.value), "head": [_scalar_json(x) for x in items]}
        more = f", ... ({len(v.value)} items)" if len(v.value) > limit else ""
        return "[" + ", ".join(repr(x) for x in items) + more + "]"
    if as_json:
        return _scalar_json(v.value)
    if v.type == GGUFValueType.STRING:
        s = v.value
        return repr(s if len(s) <= 120 else s[:117] + "...")
    return repr(v.value)


def dump(f: GGUFFile, as_json: bool, out) -> None:
    if as_json:
        obj = {
            "file": str(f.path), "version": f.version, "byteorder": "big" if f.byteorder == ">" else "little",
            "alignment": f.alignment, "data_offset": f.data_offset, "file_size": f.file_size,
            "metadata": [{"key": k, "type": v.type_name, "value": value_preview(v, as_json=True)}
                         for k, v in f.metadata.items()],
            "tensors": [{"name": t.name, "type": t.ggml_type, "shape": list(t.shape), "offset": t.offset,
                         "nbytes": t.nbytes} for t in f.tensors.values()],
        }
        json.dump(obj, out, indent=1, ensure_ascii=False)
        out.write("\n")
        return
    out.write(f"* {f.path}: GGUF v{f.version}, {'big' if f.byteorder == '>' else 'little'}-endian, "
              f"alignment {f.alignment}, data at {f.data_offset:#x}, {f.file_size} bytes\n")
    out.write(f"* {len(f.metadata)} key/value pairs:\n")
    width = max((len(k) for k in f.metadata), default=0)
    for i, (k, v) in enumerate(f.metadata.items(), 1):
        out.write(f"  {i:5d}: {v.type_name:10s} {k:{width}s} = {value_preview(v)}\n")
    out.write(f"* {len(f.tensors)} tensors:\n")
    for i, t in enumerate(f.tensors.values(), 1):
        shape = "x".join(str(d) for d in t.shape) or "scalar"
        out.write(f"  {i:5d}: {t.ggml_type:8s} {shape:>24s} offset {t.offset:#12x} {t.nbytes:12d} B  {t.name}\n")


def _value_digest(v: GGUFValue) -> bytes:
    from .writer import encode_value
    return hashlib.sha256(encode_value(v)).digest()


def diff(a: GGUFFile, b: GGUFFile, out) -> int:
    n = 0
    for what, x, y in (("version", a.version, b.version), ("alignment", a.alignment, b.alignment)):
        if x != y:
            out.write(f"~ {what}: {x} != {y}\n")
            n += 1
    for k, v in a.metadata.items():
        if k not in b.metadata:
            out.write(f"- key {k} ({v.type_name}) only in A\n")
            n += 1
        elif b.metadata[k].type_name != v.type_name:
            out.write(f"~ key {k}: type {v.type_name} != {b.metadata[k].type_name}\n")
            n += 1
        elif _value_digest(v) != _value_digest(b.metadata[k]):
            out.write(f"~ key {k} ({v.type_name}): {value_preview(v)} != {value_preview(b.metadata[k])}\n")
            n += 1
    for k, v in b.metadata.items():
        if k not in a.metadata:
            out.write(f"+ key {k} ({v.type_name}) only in B\n")
            n += 1
    if list(a.metadata) != list(b.metadata) and set(a.metadata) == set(b.metadata):
        out.write("~ key order differs\n")
        n += 1
    for name, t in a.tensors.items():
        if name not in b.tensors:
            out.write(f"- tensor {name} only in A\n")
            n += 1
            continue
        u = b.tensors[name]
        if (t.ggml_type, t.shape) != (u.ggml_type, u.shape):
            out.write(f"~ tensor {name}: {t.ggml_type} {t.shape} != {u.ggml_type} {u.shape}\n")
            n += 1
            continue
        try:
            same = np.array_equal(t.data.reshape(-1).view(np.uint8), u.data.reshape(-1).view(np.uint8))
        except GGUFError as e:
            out.write(f"~ tensor {name}: cannot compare data ({e})\n")
            n += 1
            continue
        if not same:
            out.write(f"~ tensor {name}: data differs\n")
            n += 1
    for name in b.tensors:
        if name not in a.tensors:
            out.write(f"+ tensor {name} only in B\n")
            n += 1
    out.write(f"{n} difference{'s' if n != 1 else ''}\n")
    return 1 if n else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refimpl.gguf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print header, metadata and tensor table")
    d.add_argument("file")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--byteorder", default="little", choices=["little", "big", "auto"])
    df = sub.add_parser("diff", help="report differing keys and tensors")
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument("--byteorder", default="little", choices=["little", "big", "auto"])
    for p in (d, df):
        p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                       help="load a quant-type plugin first, for files with experimental types (spec/plugins.md)")
    args = ap.parse_args(argv)
    try:
        if args.plugin:
            from ..quant import load_plugins      # only then: the container itself never needs refimpl.quant
            load_plugins(args.plugin)
        if args.cmd == "dump":
            with read(args.file, byteorder=args.byteorder) as f:
                dump(f, args.json, sys.stdout)
            return 0
        with read(args.a, byteorder=args.byteorder) as a, read(args.b, byteorder=args.byteorder) as b:
            return diff(a, b, sys.stdout)
    except GGUFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:      # ValueError: a plugin that cannot be loaded
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
