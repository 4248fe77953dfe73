"""Extract the i-quant lookup tables from the pinned llama.cpp C source into ``refimpl/data/iq_tables.npz``.

The grids and value tables of the IQ formats are facts of the format, not code: they are copied out of the C
source mechanically (never retyped) so that refimpl uses exactly the numbers ggml uses.

Sources (paths relative to the llama.cpp checkout):

* ``ggml/src/ggml-common.h`` — ``GGML_TABLE_BEGIN(type, name, size) ... GGML_TABLE_END()`` blocks: the decoding
  grids (``iq2xxs_grid`` ... ``iq1s_grid``), ``kvalues_iq4nl``, ``ksigns_iq2xs``, ``kmask_iq2xs``, ``ksigns64``.
* ``ggml/src/ggml-quants.c`` — the ``static const uint16_t kgrid_*[N] = { ... };`` arrays inside
  ``iq2xs_init_impl`` / ``iq3xs_init_impl``: the compact grid indices the quantizers' search structures are built
  from.

Every array is stored under its C name upper-cased, with the C element type, and checked against the declared
size.  ``SOURCE_SHA256`` records the sha256 of each parsed source file (as a JSON string in a uint8 array) so a
reader can tell which source the tables came from.

Usage::

    /work/venv/bin/python tools/extract_iq_tables.py [--llama-cpp vendor/llama.cpp] [--out refimpl/data/iq_tables.npz]
    /work/venv/bin/python tools/extract_iq_tables.py --check     # exit 1 if the committed file differs
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from goldens._io import npz_bytes  # noqa: E402

DEFAULT_LLAMA = ROOT / "vendor" / "llama.cpp"
DEFAULT_OUT = ROOT / "refimpl" / "data" / "iq_tables.npz"

C_TYPES = {"uint8_t": np.uint8, "int8_t": np.int8, "uint16_t": np.uint16, "uint32_t": np.uint32,
           "uint64_t": np.uint64}

# (C name, file it is declared in) — the file is relative to the llama.cpp root.
COMMON_H = "ggml/src/ggml-common.h"
QUANTS_C = "ggml/src/ggml-quants.c"
TABLES = [
    ("kmask_iq2xs", COMMON_H), ("ksigns_iq2xs", COMMON_H), ("ksigns64", COMMON_H),
    ("iq2xxs_grid", COMMON_H), ("iq2xs_grid", COMMON_H), ("iq2s_grid", COMMON_H),
    ("iq3xxs_grid", COMMON_H), ("iq3s_grid", COMMON_H), ("iq1s_grid", COMMON_H),
    ("kvalues_iq4nl", COMMON_H),
    ("kgrid_2bit_256", QUANTS_C), ("kgrid_2bit_512", QUANTS_C), ("kgrid_1bit_2048", QUANTS_C),
    ("kgrid_2bit_1024", QUANTS_C), ("kgrid_256", QUANTS_C), ("kgrid_512", QUANTS_C),
]


def _defines(text: str) -> dict[str, int]:
    """Integer #defines (for sizes such as NGRID_IQ1S)."""
    out = {}
    for m in re.finditer(r"^\s*#define\s+(\w+)\s+(\d+)\s*$", text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def _strip_comments(s: str) -> str:
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)


def _parse_values(body: str, ctype: str) -> np.ndarray:
    items = [t.strip() for t in _strip_comments(body).split(",")]
    items = [t for t in items if t]
    vals = [int(t, 0) for t in items]
    # Parse into Python ints, then check the range so a wrong type is caught rather than wrapped.
    info = np.iinfo(C_TYPES[ctype])
    bad = [v for v in vals if not info.min <= v <= info.max]
    if bad:
        raise ValueError(f"value {bad[0]} does not fit {ctype}")
    return np.array(vals, dtype=C_TYPES[ctype])


def _size(tok: str, defines: dict[str, int]) -> int:
    tok = tok.strip()
    return int(tok, 0) if tok[0].isdigit() else defines[tok]


def find_table(text: str, name: str, defines: dict[str, int]) -> np.ndarray:
    """The array ``name`` from either table form; its length must match the declared size."""
    pats = [
        rf"GGML_TABLE_BEGIN\(\s*(\w+)\s*,\s*{name}\s*,\s*(\w+)\s*\)(.*?)GGML_TABLE_END\(\)",
        rf"static\s+const\s+(\w+)\s+{name}\s*\[\s*(\w+)\s*\]\s*=\s*\{{(.*?)\}};",
    ]
    hits = []
    for pat in pats:
        hits += list(re.finditer(pat, text, re.S))
    if len(hits) != 1:
        raise ValueError(f"expected exactly one declaration of {name}, found {len(hits)}")
    ctype, size_tok, body = hits[0].groups()
    arr = _parse_values(body, ctype)
    size = _size(size_tok, defines)
    if arr.size != size:
        raise ValueError(f"{name}: declared size {size}, parsed {arr.size} values")
    return arr


def extract(llama_root: Path) -> dict[str, np.ndarray]:
    texts = {rel: (llama_root / rel).read_text() for rel in (COMMON_H, QUANTS_C)}
    defines = {}
    for t in texts.values():
        defines.update(_defines(t))
    arrays = {name.upper(): find_table(texts[rel], name, defines) for name, rel in TABLES}
    meta = {rel: hashlib.sha256((llama_root / rel).read_bytes()).hexdigest() for rel in texts}
    arrays["SOURCE_SHA256"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    return arrays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-cpp", type=Path, default=DEFAULT_LLAMA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args(argv)
    data = npz_bytes(extract(args.llama_cpp))
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from the C source'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".iq_tables.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
