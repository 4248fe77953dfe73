"""Per-op traces: every intermediate tensor of a forward pass, named as llama.cpp's graph names it, dumped in a
language-neutral layout, and compared dump against dump to find the first op where two implementations diverge.

    python -m refimpl.trace -m MODEL.gguf -p "Hello" --dump DIR      # refimpl's intermediates -> DIR
    python -m refimpl.trace -m MODEL.gguf --tokens 1,42,7 --dump DIR  # explicit token ids, no tokenizer
    python -m refimpl.trace --compare DIR_A DIR_B                     # first tensor that differs; exit 1 if any

A dump directory holds one raw little-endian float32 file per tensor and ``trace.json`` (spec/model.md,
"Per-op trace"): for each tensor in graph order its llama.cpp name, occurrence of that name, ggml ``ne`` (4
sizes, ne[0] the contiguous one), dtype, file and sha256.  Write the same from another implementation and
``--compare`` names the first op where it leaves refimpl (or llama.cpp: golden/trace holds llama.cpp's own).

Python API: ``trace(model, tokens)`` -> [TraceTensor]; ``write_dump(dir, tensors, **meta)``; ``read_dump(dir)``;
``read_golden(golden_dir, name)`` (llama.cpp's trace from golden/trace); ``compare(a, b)``.  Reading order: ``trace``, ``TraceTensor.ne``, ``write_dump``, ``compare``, ``main``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes

FORMAT = "refimpl-trace/1"
MANIFEST = "trace.json"
SHOW_ALSO = 8            # --compare lists this many differing tensors after the first


@dataclass
class TraceTensor:
    """One traced tensor: llama.cpp's name for it, which occurrence of that name it is (a name is given again
    to the reshape and the RoPE of "Qcur-0", for example: occurrences 0, 1, 2 in graph order), and its values as
    a C-contiguous float32 array whose numpy shape is ggml's ne reversed."""
    name: str
    occurrence: int
    array: np.ndarray
    order: int = 0
    sha256: str = field(default="", repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.occurrence

    @property
    def ne(self) -> list[int]:
        """ggml's ne: sizes innermost first, padded with 1 to GGML_MAX_DIMS (4)."""
        return ne_of(self.array.shape)


def ne_of(shape) -> list[int]:
    """numpy shape (..., ne1, ne0) -> ggml ne [ne0, ne1, ne2, ne3]."""
    ne = [int(n) for n in reversed(tuple(shape))]
    if len(ne) > 4:
        raise ValueError(f"a ggml tensor has at most 4 dimensions, got shape {tuple(shape)}")
    return ne + [1] * (4 - len(ne))


def trace(model, tokens, n_past: int = 0) -> list[TraceTensor]:
    """Evaluate ``tokens`` after ``n_past`` cached tokens and collect every intermediate tensor, in order."""
    out: list[TraceTensor] = []
    seen: dict[str, int] = {}

    def record(name: str, array: np.ndarray) -> None:
        occ = seen.get(name, 0)
        seen[name] = occ + 1
        out.append(TraceTensor(name, occ, array, order=len(out)))

    model.eval(tokens, n_past=n_past, trace=record)
    return out


# ------------------------------------------------------------------------------------------------- dump layout

def _file_name(t: TraceTensor) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", t.name)
    return f"{t.order:04d}-{safe}.{t.occurrence}.bin"


def write_dump(directory, tensors: list[TraceTensor], **meta) -> Path:
    """Write ``tensors`` as raw little-endian float32 files plus ``trace.json`` into ``directory`` (created if
    needed).  Every file goes to a temporary name first and is renamed; trace.json is written last, so a dump
    interrupted half-way has no manifest and is never mistaken for a complete one."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    old = d / MANIFEST
    if old.exists():
        old.unlink()                       # a dump being rewritten is not a dump until its manifest is back
    entries = []
    for order, t in enumerate(tensors):
        t.order = order
        data = np.ascontiguousarray(t.array, dtype="<f4").tobytes()
        name = _file_name(t)
        atomic_write_bytes(d / name, data)
        entries.append({"order": order, "name": t.name, "occurrence": t.occurrence, "ne": t.ne, "dtype": "f32",
                        "file": name, "nbytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    doc = {"format": FORMAT, "byte_order": "little", **meta, "tensors": entries}
    atomic_write_bytes(d / MANIFEST, (json.dumps(doc, indent=1) + "\n").encode())
    return d




def read_dump(directory) -> tuple[dict, list[TraceTensor]]:
    """(metadata, tensors) of a dump; every file is checked against its size, ne and sha256.  Arrays come back
    with numpy shape = ne reversed, trailing sizes of 1 dropped (ggml_n_dims)."""
    d = Path(directory)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise ValueError(f"{d}: no {MANIFEST} (not a trace dump, or an interrupted one)")
    try:
        doc = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{mpath}: not valid JSON ({e})") from None
    if doc.get("format") != FORMAT:
        raise ValueError(f"{mpath}: format {doc.get('format')!r}, expected {FORMAT!r}")
    tensors = []
    for i, e in enumerate(doc.get("tensors", [])):
        try:
            name, occ, ne, fname = e["name"], int(e.get("occurrence", 0)), [int(n) for n in e["ne"]], e["file"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{mpath}: tensor entry {i} lacks name/ne/file ({err})") from None
        if e.get("dtype", "f32") != "f32":
            raise ValueError(f"{mpath}: tensor {name!r} has dtype {e.get('dtype')!r}; only f32 is defined")
        if len(ne) != 4 or min(ne) < 1:
            raise ValueError(f"{mpath}: tensor {name!r} has ne {ne}; expected 4 positive sizes")
        path = d / fname
        if not path.is_file():
            raise ValueError(f"{d}: tensor {name!r}: file {fname} is missing")
        data = path.read_bytes()
        n = int(np.prod(ne))
        if len(data) != 4 * n:
            raise ValueError(f"{path}: {len(data)} bytes, but ne {ne} of f32 needs {4 * n}")
        digest = hashlib.sha256(data).hexdigest()
        if e.get("sha256") and e["sha256"] != digest:
            raise ValueError(f"{path}: sha256 {digest} does not match trace.json's {e['sha256']}")
        n_dims = max([1] + [i + 1 for i in range(4) if ne[i] != 1])         # ggml_n_dims
        a = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(ne[:n_dims][::-1])
        tensors.append(TraceTensor(name, occ, a, order=int(e.get("order", i)), sha256=digest))
    meta = {k: v for k, v in doc.items() if k != "tensors"}
    return meta, tensors


def read_golden(golden_dir, name: str) -> tuple[dict, list[TraceTensor]]:
    """llama.cpp's trace of golden model ``name`` ("llama-F32", ...) from a checkout's golden/ directory
    (golden/trace/index.json + <name>.npz, written by tools/goldens/trace.py): (index entry, tensors in graph
    order).  ``write_dump(dir, tensors)`` turns it into a dump another implementation can be compared with."""
    d = Path(golden_dir) / "trace"
    index = json.loads((d / "index.json").read_text())
    if name not in index["models"]:
        raise ValueError(f"no golden trace {name!r} (have: {', '.join(sorted(index['models']))})")
    info = index["models"][name]
    with np.load(d / f"{name}.npz", allow_pickle=False) as z:
        tensors = [TraceTensor(e["name"], e["occurrence"], z[e["key"]], order=i)
                   for i, e in enumerate(info["tensors"])]
    return info, tensors


# ----------------------------------------------------------------------------------------------- comparison

@dataclass
class Difference:
    """How tensor ``name`` (occurrence ``occurrence``) of A differs from B's."""
    name: str
    occurrence: int
    order: int
    reason: str                  # "ne" (shapes differ) or "values"
    ne_a: list
    ne_b: list
    n_differing: int = 0
    first_index: tuple = ()      # ggml index (i0, i1, i2, i3) of the first differing element
    a_value: float = 0.0
    b_value: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0

    def describe(self) -> str:
        who = f"{self.name}" + (f" (occurrence {self.occurrence})" if self.occurrence else "")
        if self.reason == "ne":
            return f"{who}: ne {self.ne_a} in A, {self.ne_b} in B"
        n = int(np.prod(self.ne_a))
        return (f"{who}: {self.n_differing}/{n} elements differ; max |a-b| {self.max_abs:.6g}, "
                f"max |a-b|/|b| {self.max_rel:.6g}; first at ggml index {list(self.first_index)}: "
                f"A {self.a_value!r} B {self.b_value!r}")


def compare_tensors(a: TraceTensor, b: TraceTensor, rtol: float = 0.0, atol: float = 0.0) -> Difference | None:
    """None if equal: bit for bit (rtol = atol = 0; NaNs equal only with the same bits), else within
    |a-b| <= atol + rtol*|b|."""
    if a.ne != b.ne:
        return Difference(a.name, a.occurrence, a.order, "ne", a.ne, b.ne)
    x, y = a.array.reshape(-1), b.array.reshape(-1)
    if rtol == 0 and atol == 0:
        bad = x.view(np.uint32) != y.view(np.uint32)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~(np.abs(x.astype(np.float64) - y) <= atol + rtol * np.abs(y.astype(np.float64)))
        bad &= ~(np.isnan(x) & np.isnan(y))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d = np.abs(x.astype(np.float64) - y.astype(np.float64))
        rel = d / np.maximum(np.abs(y.astype(np.float64)), np.finfo(np.float32).tiny)
    finite = np.isfinite(d)
    ne = a.ne
    idx = (i % ne[0], i // ne[0] % ne[1], i // (ne[0] * ne[1]) % ne[2], i // (ne[0] * ne[1] * ne[2]))
    return Difference(a.name, a.occurrence, a.order, "values", a.ne, b.ne, n_differing=int(bad.sum()),
                      first_index=idx, a_value=float(x[i]), b_value=float(y[i]),
                      max_abs=float(d[finite].max()) if finite.any() else float("nan"),
                      max_rel=float(rel[finite].max()) if finite.any() else float("nan"))


@dataclass
class Comparison:
    compared: int
    differences: list            # [Difference], in A's graph order
    only_a: list                 # keys (name, occurrence) in A only
    only_b: list


def compare(a: list[TraceTensor], b: list[TraceTensor], rtol: float = 0.0, atol: float = 0.0) -> Comparison:
    """Match the tensors of two traces by (name, occurrence) and compare each, in A's order."""
    by_key = {t.key: t for t in b}
    keys_a = {t.key for t in a}
    diffs, compared, only_a = [], 0, []
    for t in sorted(a, key=lambda t: t.order):
        other = by_key.get(t.key)
        if other is None:
            only_a.append(t.key)
            continue
        compared += 1
        d = compare_tensors(t, other, rtol, atol)
        if d is not None:
            diffs.append(d)
    only_b = [t.key for t in sorted(b, key=lambda t: t.order) if t.key not in keys_a]
    return Comparison(compared, diffs, only_a, only_b)


# ------------------------------------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m refimpl.trace", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help="GGUF model file")
    ap.add_argument("-p", "--prompt", help="prompt text (tokenized with the model's vocab, BOS as the vocab says)")
    ap.add_argument("--tokens", help="comma-separated token ids instead of a prompt")
    ap.add_argument("--dump", metavar="DIR", help="write every intermediate tensor into DIR")
    ap.add_argument("-c", "--ctx-size", type=int, default=256, help="context size (default 256, as the goldens)")
    ap.add_argument("-ctk", "--cache-type-k", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("-ctv", "--cache-type-v", default="f16", choices=["f16", "f32"])
    ap.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"), help="compare two dumps")
    ap.add_argument("--rtol", type=float, default=0.0, help="--compare: relative tolerance (default 0: bit-exact)")
    ap.add_argument("--atol", type=float, default=0.0, help="--compare: absolute tolerance (default 0)")
    ap.add_argument("--strict", action="store_true", help="--compare: a tensor present in only one dump is a "
                    "difference too")
    return ap


def _tokens(args, m) -> list[int]:
    if args.tokens is not None:
        try:
            return [int(t) for t in args.tokens.replace(" ", "").split(",") if t]
        except ValueError:
            raise ValueError(f"--tokens must be comma-separated integers, got {args.tokens!r}") from None
    from .tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(m.file.gguf)
    return list(tok.encode(args.prompt, add_special=True, parse_special=True))


def _run_dump(args) -> int:
    from . import model

    if not args.model:
        raise ValueError("--dump needs -m MODEL.gguf")
    if (args.prompt is None) == (args.tokens is None):
        raise ValueError("give exactly one of -p PROMPT or --tokens IDS")
    m = model.load(args.model, n_ctx=args.ctx_size, type_k=args.cache_type_k, type_v=args.cache_type_v)
    toks = _tokens(args, m)
    if not toks:
        raise ValueError("the prompt gives no tokens")
    tensors = trace(m, toks)
    write_dump(args.dump, tensors, producer="refimpl", model=os.path.basename(args.model), tokens=toks,
               n_past=0, n_ctx=m.cache.size, type_k=args.cache_type_k, type_v=args.cache_type_v)
    total = sum(t.array.nbytes for t in tensors)
    print(f"{len(tensors)} tensors ({total:,} bytes) for {len(toks)} tokens -> {args.dump}/{MANIFEST}",
          file=sys.stderr)
    return 0


def _run_compare(args) -> int:
    dir_a, dir_b = args.compare
    _, a = read_dump(dir_a)
    _, b = read_dump(dir_b)
    c = compare(a, b, args.rtol, args.atol)
    if c.compared == 0:
        raise ValueError(f"{dir_a} and {dir_b} have no tensor in common (names and occurrences differ)")
    for key in c.only_a:
        print(f"only in A: {key[0]}" + (f" (occurrence {key[1]})" if key[1] else ""))
    for key in c.only_b:
        print(f"only in B: {key[0]}" + (f" (occurrence {key[1]})" if key[1] else ""))
    if c.differences:
        first = c.differences[0]
        print(f"first difference (graph order of A): {first.describe()}")
        for d in c.differences[1:SHOW_ALSO + 1]:
            print(f"  then: {d.describe()}")
        if len(c.differences) > SHOW_ALSO + 1:
            print(f"  ... and {len(c.differences) - SHOW_ALSO - 1} more tensors differ")
    tol = "bit-exact" if args.rtol == 0 and args.atol == 0 else f"rtol {args.rtol:g}, atol {args.atol:g}"
    missing = len(c.only_a) + len(c.only_b)
    print(f"{c.compared} tensors compared ({tol}): {len(c.differences)} differ"
          + (f"; {missing} in one dump only" if missing else ""))
    return 1 if c.differences or (args.strict and missing) else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.compare:
            if args.dump or args.model:
                raise ValueError("--compare takes two dump directories and nothing else")
            return _run_compare(args)
        if args.dump:
            return _run_dump(args)
        raise ValueError("nothing to do: give --dump DIR (with -m and -p/--tokens) or --compare DIR_A DIR_B")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
