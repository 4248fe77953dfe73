"""``python -m refimpl.conformance run --impl "CMD ..."``: checks an external program against the vectors.

The command-line protocol (spec/conformance.md, "The runner's protocol") — refimpl runs, with files it writes in
a temporary directory:

    CMD dequantize TYPE IN.bin OUT.bin                    IN: raw blocks; OUT: float32 LE, block_size per block
    CMD quantize TYPE N_PER_ROW IN.bin OUT.bin [IMAT.bin] IN: float32 LE rows of N_PER_ROW; OUT: the raw rows;
                                                          IMAT: N_PER_ROW float32 importance weights (imatrix)
    CMD vec_dot TYPE N X.bin Y.bin OUT.bin                X: R rows of TYPE; Y: R rows of TYPE's vec_dot type
                                                          (both N elements); OUT: R float32, dot(X[i], Y[i])
    CMD gguf LIST.txt OUT.jsonl                           LIST: one GGUF path per line; OUT: one JSON object
                                                          per line, same order (see the spec for its keys)

Exit status 0 and the output file present = an answer; anything else = "unsupported" for that type and operation.
Cases of one type and operation are batched into one call (rows and blocks are independent in ggml); when a batch
is refused, each case is retried alone, so one rejected input cannot hide the rest.

Reading order: ``run`` -> ``_run_op`` (batching) -> ``_check_*`` (comparison and first-difference report).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .explain import decode_block, explain_element, field_at, fmt_float
from .vectors import Vectors, VectorsError

OPS = ("dequantize", "quantize", "quantize_imatrix", "vec_dot", "gguf")


class ImplError(ValueError):
    """The --impl command cannot be run at all (not found, not executable)."""


@dataclass
class Outcome:
    """The verdict for one (type, op): pass / fail / unsupported, with counts and the first failure's report."""
    type: str
    op: str
    status: str = "pass"
    n_cases: int = 0
    n_pass: int = 0
    n_fail: int = 0
    n_unsupported: int = 0
    n_skipped: int = 0
    first_failure: str | None = None
    first_failure_case: str | None = None
    unsupported_detail: str = ""     # the first refusal: case id and why
    kinds: dict = field(default_factory=dict)   # failure kind -> number of cases (e.g. GGUF verdict mismatches)
    examples: dict = field(default_factory=dict)  # failure kind -> the first case's first report line
    failed: list = field(default_factory=list)    # (case id, kind) of every failing case
    report: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"type": self.type, "op": self.op, "status": self.status, "cases": self.n_cases,
                "passed": self.n_pass, "failed": self.n_fail, "unsupported": self.n_unsupported,
                "skipped": self.n_skipped, "failure_kinds": self.kinds,
                "failure_examples": self.examples, "failed_cases": self.failed, "first_failure_case": self.first_failure_case,
                "first_failure": self.first_failure, "report": self.report}


@dataclass
class Malformed:
    """An answer that does not follow the protocol (wrong size, unparsable JSON lines)."""
    reason: str


class Impl:
    """The external program: ``call(args)`` -> (ok, detail)."""

    def __init__(self, command: str, timeout: float, workdir: Path):
        self.argv = shlex.split(command)
        if not self.argv:
            raise ImplError("--impl is empty")
        exe = self.argv[0]
        found = shutil.which(exe) if os.sep not in exe else (exe if os.access(exe, os.X_OK) else None)
        if found is None:
            raise ImplError(f"--impl: {exe!r} is not an executable on PATH (or not executable)")
        self.timeout = timeout
        self.workdir = workdir
        self.calls = 0

    def call(self, args: list[str], out: Path) -> tuple[bool, str]:
        self.calls += 1
        if out.exists():
            out.unlink()
        try:
            p = subprocess.run(self.argv + args, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {self.timeout:g} s"
        except OSError as e:
            raise ImplError(f"--impl: cannot run {self.argv[0]!r}: {e.strerror}") from None
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace").strip().splitlines()
            return False, f"exit status {p.returncode}" + (f": {err[-1][:200]}" if err else "")
        if not out.exists():
            return False, "exit status 0 but no output file"
        return True, ""


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype="<f4").view("<u4")


def float_mismatch(exp: np.ndarray, got: np.ndarray, nan: str) -> np.ndarray:
    """Elements whose float32 bit patterns differ; with nan='any' two NaNs match whatever their payload/sign."""
    diff = _bits(exp) != _bits(got)
    if nan == "any":
        diff &= ~(np.isnan(exp) & np.isnan(got))
    return diff


class Runner:
    def __init__(self, vectors: Vectors, impl: Impl, nan: str = "exact", progress=None):
        from ..quant import TYPES

        self.v = vectors
        self.impl = impl
        self.nan = nan
        self.TYPES = TYPES
        self.tmp = impl.workdir
        self.progress = progress

    # -- batching -----------------------------------------------------------------------------------------------
    def _attempt(self, op: str, type_name: str, groups: list[list[dict]], build, check, outcome: Outcome):
        """Run each group as one call; a refused group is retried case by case."""
        for group in groups:
            ok, detail, results = self._call_group(op, type_name, group, build)
            if not ok and len(group) > 1:
                for case in group:
                    self._account(outcome, case, *self._call_group(op, type_name, [case], build), check)
                continue
            if not ok:
                self._account(outcome, group[0], ok, detail, results, check)
                continue
            for case, res in zip(group, results):
                self._account(outcome, case, True, "", [res], check)

    def _account(self, outcome, case, ok, detail, results, check):
        if isinstance(results, Malformed):
            # exit 0 and an output file, but not the size the protocol defines: a wrong answer, not a refusal
            outcome.n_fail += 1
            kind = "malformed output"
            outcome.kinds[kind] = outcome.kinds.get(kind, 0) + 1
            line = f"{case['id']}: the output file is malformed: {results.reason}"
            outcome.examples.setdefault(kind, line)
            outcome.failed.append([case["id"], kind])
            if outcome.first_failure is None:
                outcome.first_failure_case, outcome.first_failure, outcome.report = case["id"], line, [line]
            return
        if not ok:
            outcome.n_unsupported += 1
            if not outcome.unsupported_detail:
                outcome.unsupported_detail = f"{case['id']}: {detail}"
            return
        problem = check(case, results[0])
        if problem is None:
            outcome.n_pass += 1
        else:
            kind = "differs"
            if isinstance(problem, tuple):
                problem, kind = problem
            outcome.kinds[kind] = outcome.kinds.get(kind, 0) + 1
            outcome.examples.setdefault(kind, problem[0])
            outcome.failed.append([case["id"], kind])
            outcome.n_fail += 1
            if outcome.first_failure is None:
                outcome.first_failure_case = case["id"]
                outcome.first_failure = problem[0]
                outcome.report = problem

    def _call_group(self, op, type_name, group, build):
        """Write the concatenated inputs, call the program, split its output per case."""
        args, out, split = build(type_name, group)
        ok, detail = self.impl.call(args, out)
        if not ok:
            return False, detail, None
        data = out.read_bytes()
        try:
            return True, "", split(data)
        except (ValueError, UnicodeDecodeError) as e:
            return False, "malformed output", Malformed(str(e))

    # -- dequantize ---------------------------------------------------------------------------------------------
    def _build_dequantize(self, type_name, group):
        fin, fout = self.tmp / "in.bin", self.tmp / "out.bin"
        raws = [self.v.raw(c["inputs"]["blocks"]) for c in group]
        fin.write_bytes(b"".join(raws))
        sizes = [c["expected"]["y"]["bytes"] for c in group]

        def split(data):
            if len(data) != sum(sizes):
                raise ValueError(f"{len(data)} bytes written, expected {sum(sizes)} (float32 per element)")
            out, o = [], 0
            for s in sizes:
                out.append(np.frombuffer(data[o:o + s], "<f4"))
                o += s
            return out
        return ["dequantize", type_name, str(fin), str(fout)], fout, split

    def _check_dequantize(self, case, got):
        exp = self.v.load(case["expected"]["y"]).reshape(-1)
        diff = float_mismatch(exp, got, self.nan)
        if not diff.any():
            return None
        fmt = self.TYPES[case["type"]]
        e = int(np.flatnonzero(diff)[0])
        blk, j = divmod(e, fmt.block_size)
        raw = self.v.raw(case["inputs"]["blocks"])
        block = raw[blk * fmt.type_size:(blk + 1) * fmt.type_size]
        labels = case.get("params", {}).get("block_labels")
        text, value = explain_element(fmt, block, j)
        lines = [f"{case['id']}: {int(diff.sum())} of {diff.size} elements differ; first: block {blk}"
                 + (f" ({labels[blk]})" if labels else "") + f", element {j} (y[{e}])",
                 f"  expected (llama.cpp): {fmt_float(exp[e])}", f"  got:                  {fmt_float(got[e])}",
                 f"  reference: {text}" + (f" = {fmt_float(value)}" if value is not None else ""),
                 f"  block {blk} ({fmt.type_size} bytes):"]
        lines += ["    " + s for s in decode_block(fmt, block)]
        return lines

    # -- quantize -----------------------------------------------------------------------------------------------
    def _build_quantize(self, type_name, group):
        fin, fout = self.tmp / "in.bin", self.tmp / "out.bin"
        n = group[0]["params"]["n_per_row"]
        fin.write_bytes(b"".join(self.v.raw(c["inputs"]["x"]) for c in group))
        args = ["quantize", type_name, str(n), str(fin), str(fout)]
        if "imatrix" in group[0]["inputs"]:
            fim = self.tmp / "imatrix.bin"
            fim.write_bytes(self.v.raw(group[0]["inputs"]["imatrix"]))
            args.append(str(fim))
        sizes = [c["expected"]["y"]["bytes"] for c in group]

        def split(data):
            if len(data) != sum(sizes):
                raise ValueError(f"{len(data)} bytes written, expected {sum(sizes)}")
            out, o = [], 0
            for s in sizes:
                out.append(np.frombuffer(data[o:o + s], np.uint8))
                o += s
            return out
        return args, fout, split

    def _check_quantize(self, case, got):
        exp = self.v.load(case["expected"]["y"]).reshape(-1)
        diff = exp != got
        if "unspecified" in case["expected"]:
            diff &= self.v.load(case["expected"]["unspecified"]).reshape(-1) == 0
        if not diff.any():
            return None
        fmt = self.TYPES[case["type"]]
        b = int(np.flatnonzero(diff)[0])
        row_bytes = exp.size // case["params"]["rows"]
        row, in_row = divmod(b, row_bytes)
        blk, off = divmod(in_row, fmt.type_size)
        nblk_diff = int(diff.reshape(-1, fmt.type_size).any(axis=1).sum())
        s = (row * row_bytes + blk * fmt.type_size)
        eb, gb = exp[s:s + fmt.type_size].tobytes(), got[s:s + fmt.type_size].tobytes()
        changed = {field_at(fmt, k).split("[")[0] for k in range(fmt.type_size) if eb[k] != gb[k]}
        x = self.v.load(case["inputs"]["x"])[row, blk * fmt.block_size:(blk + 1) * fmt.block_size]
        lines = [f"{case['id']}: {nblk_diff} of {exp.size // fmt.type_size} blocks differ; first: row {row}, "
                 f"block {blk}, byte {off} = {field_at(fmt, off)} (expected {eb[off]}, got {gb[off]})",
                 f"  input x[{blk * fmt.block_size}..{(blk + 1) * fmt.block_size - 1}] of row {row}: "
                 + " ".join(f"{v:.6g}" for v in x[:8]) + (" …" if x.size > 8 else ""),
                 f"  expected block (llama.cpp ggml_quantize_chunk"
                 + (", with imatrix" if "imatrix" in case["inputs"] else "") + "):"]
        lines += ["    " + t for t in decode_block(fmt, eb, changed)]
        lines += ["  got:"] + ["    " + t for t in decode_block(fmt, gb, changed)]
        lines += [f"  reference: quantize_{fmt.name.lower()} as described in spec/quant/{fmt.name}.md "
                  f"(fields marked * differ)"]
        return lines

    # -- vec_dot ------------------------------------------------------------------------------------------------
    def _pairs(self, case):
        x = self.v.load(case["inputs"]["x"])
        y = self.v.load(case["inputs"]["y"])
        if case["params"].get("pairs") == "all":   # expected[t, r] = vec_dot(x[r], y[t])
            t, r = np.meshgrid(np.arange(y.shape[0]), np.arange(x.shape[0]), indexing="ij")
            return x[r.reshape(-1)], y[t.reshape(-1)]
        return x, y

    def _build_vec_dot(self, type_name, group):
        fx, fy, fout = self.tmp / "x.bin", self.tmp / "y.bin", self.tmp / "out.bin"
        xs, ys = zip(*(self._pairs(c) for c in group))
        fx.write_bytes(b"".join(a.tobytes() for a in xs))
        fy.write_bytes(b"".join(a.tobytes() for a in ys))
        counts = [a.shape[0] for a in xs]

        def split(data):
            if len(data) != 4 * sum(counts):
                raise ValueError(f"{len(data)} bytes written, expected {4 * sum(counts)} (one float32 per pair)")
            v = np.frombuffer(data, "<f4")
            return list(np.split(v, np.cumsum(counts)[:-1]))
        n = group[0]["params"]["n"]
        return ["vec_dot", type_name, str(n), str(fx), str(fy), str(fout)], fout, split

    def _check_vec_dot(self, case, got):
        exp = self.v.load(case["expected"]["dot"]).reshape(-1)
        diff = float_mismatch(exp, got, self.nan)
        if not diff.any():
            return None
        i = int(np.flatnonzero(diff)[0])
        rel = abs(float(got[i]) - float(exp[i])) / max(abs(float(exp[i])), 1e-30)
        return [f"{case['id']}: {int(diff.sum())} of {diff.size} dot products differ; first: pair {i}",
                f"  expected (llama.cpp vec_dot, scalar build): {fmt_float(exp[i])}",
                f"  got:                                        {fmt_float(got[i])} (relative {rel:.3g})",
                f"  vec_dot type: {case['params']['vec_dot_type']}; the scalar kernels' summation order is in "
                f"spec/matmul.md (SIMD builds differ: see the bound table there)"]

    # -- gguf ---------------------------------------------------------------------------------------------------
    def _build_gguf(self, type_name, group):
        flist, fout = self.tmp / "list.txt", self.tmp / "out.jsonl"
        gdir = self.tmp / "gguf"
        gdir.mkdir(exist_ok=True)
        paths = []
        for i, c in enumerate(group):
            p = gdir / f"{i:05d}.gguf"
            p.write_bytes(self.v.raw(c["inputs"]["file"]))
            paths.append(str(p))
        flist.write_text("\n".join(paths) + "\n")

        def split(data):
            lines = [ln for ln in data.decode().splitlines() if ln.strip()]
            if len(lines) != len(group):
                raise ValueError(f"{len(lines)} JSON lines for {len(group)} files")
            return [json.loads(ln) for ln in lines]
        return ["gguf", str(flist), str(fout)], fout, split

    def _check_gguf(self, case, got):
        exp = case["expected_json"]
        name = case["params"]["name"]
        if not isinstance(got, dict) or "accepted" not in got:
            return [f"{case['id']} ({name}): the answer has no 'accepted' key"]
        if bool(got["accepted"]) != exp["accepted"]:
            verdict = "accepts" if got["accepted"] else "rejects"
            return ([f"{case['id']} ({name}): the implementation {verdict} a file llama.cpp "
                     f"{'accepts' if exp['accepted'] else 'rejects'}"
                     + (f" (its error: {str(got.get('error'))[:160]})" if got.get("error") else "")],
                    f"{verdict} what llama.cpp {'accepts' if exp['accepted'] else 'rejects'}")
        facts = exp.get("facts", {})
        for key, want in facts.items():
            if key in got and got[key] is not None and got[key] != want:
                return [f"{case['id']} ({name}): {key} = {got[key]!r}, llama.cpp says {want!r}"], f"{key} differs"
        if "tensors" in got and "tensor_nbytes" in facts and "tensor_nbytes" not in got:
            # tensor infos as (type id, shape): their byte sizes by llama.cpp's type table (ggml_types.json)
            table = self._ggml_types()
            sizes = []
            for t in got["tensors"]:
                tt = table.get(int(t["type"]))
                if tt is None or not tt["blck_size"]:
                    sizes.append(f"type {t['type']}?")
                    continue
                n = int(np.prod([int(s) for s in t["shape"]], dtype=object))
                sizes.append(n // tt["blck_size"] * tt["type_size"])
            if sizes != facts["tensor_nbytes"]:
                return ([f"{case['id']} ({name}): tensor sizes from its tensor infos {sizes[:8]}, llama.cpp's "
                         f"{facts['tensor_nbytes'][:8]}"], "tensor sizes differ")
        return None

    def _ggml_types(self) -> dict[int, dict]:
        if not hasattr(self, "_types_cache"):
            data = json.loads(self.v._file("gguf/ggml_types.json"))
            self._types_cache = {int(t["id"]): t for t in data}
        return self._types_cache

    # -- driver -------------------------------------------------------------------------------------------------
    def run(self, ops, types) -> list[Outcome]:
        plan: dict[tuple[str, str], list[dict]] = {}
        for case in self.v.cases:
            op = case["operation"]
            if op == "quantize" and "imatrix" in case.get("inputs", {}):
                op = "quantize_imatrix"
            if op == "gguf_parse":
                op = "gguf"
            if op not in OPS or (ops and op not in ops):
                continue
            t = case.get("type") or "GGUF"
            if types and t not in types and op != "gguf":
                continue
            plan.setdefault((t, op), []).append(case)
        # every file the selected cases name is checked against its sha256 before the program runs: a corrupt or
        # edited vectors directory is an error, not a string of failures
        for cases in plan.values():
            for case in cases:
                for group in ("inputs", "expected"):
                    for ref in case.get(group, {}).values():
                        if isinstance(ref, dict) and ref.get("file"):
                            self.v._file(ref["file"])
        outcomes = []
        keys = sorted(plan, key=lambda k: (OPS.index(k[1]), self._type_order(k[0])))
        it = keys
        if self.progress:
            it = self.progress(keys)
        for t, op in it:
            cases = plan[(t, op)]
            o = Outcome(type=t, op=op, n_cases=len(cases))
            runnable = [c for c in cases if c.get("expect") != "abort"]
            o.n_skipped = len(cases) - len(runnable)
            if op == "dequantize":
                self._attempt(op, t, [runnable], self._build_dequantize, self._check_dequantize, o)
            elif op in ("quantize", "quantize_imatrix"):
                groups: dict = {}
                for c in runnable:
                    key = (c["params"]["n_per_row"], json.dumps(c["inputs"].get("imatrix"), sort_keys=True))
                    groups.setdefault(key, []).append(c)
                self._attempt(op, t, list(groups.values()), self._build_quantize, self._check_quantize, o)
            elif op == "vec_dot":
                groups = {}
                for c in runnable:
                    groups.setdefault(c["params"]["n"], []).append(c)
                self._attempt(op, t, list(groups.values()), self._build_vec_dot, self._check_vec_dot, o)
            elif op == "gguf":
                chunks = [runnable[i:i + 2000] for i in range(0, len(runnable), 2000)]
                self._attempt(op, t, chunks, self._build_gguf, self._check_gguf, o)
            if o.n_fail:
                o.status = "fail"
            elif o.n_unsupported and o.n_pass:
                # it answers for some inputs and refuses others llama.cpp handles: a conformance failure
                o.status = "fail"
                o.first_failure = (f"refused {o.n_unsupported} of {o.n_cases - o.n_skipped} cases llama.cpp "
                                   f"answers; " + o.unsupported_detail)
                o.first_failure_case = o.unsupported_detail.split(":")[0] or None
                o.report = [o.first_failure]
            elif o.n_unsupported:
                o.status = "unsupported"
                o.report = [o.unsupported_detail]
            elif not o.n_pass:
                o.status = "skipped"
            outcomes.append(o)
        return outcomes

    def _type_order(self, t):
        try:
            return self.TYPES[t].type_id
        except KeyError:
            return 10 ** 6


def summary_line(outcomes: list[Outcome]) -> str:
    from collections import Counter

    c = Counter(o.status for o in outcomes)
    return (f"conformance: {c.get('pass', 0)} pass, {c.get('fail', 0)} fail, {c.get('unsupported', 0)} unsupported"
            + (f", {c['skipped']} skipped" if c.get("skipped") else "")
            + f" ({len(outcomes)} type/op pairs, {sum(o.n_cases for o in outcomes)} cases)")


def run(vectors_dir: Path, impl_command: str, ops=None, types=None, as_json: bool = False, nan: str = "exact",
        timeout: float = 600.0, out=sys.stdout, verbose: bool = True) -> int:
    vectors = Vectors(vectors_dir)
    if ops:
        bad = [o for o in ops if o not in OPS]
        if bad:
            raise ValueError(f"unknown --ops {', '.join(bad)}; known: {', '.join(OPS)}")
    if types:
        from ..quant import TYPES

        bad = [t for t in types if t not in TYPES]
        if bad:
            raise ValueError(f"unknown --types {', '.join(bad)}; known: {', '.join(TYPES.names())}")
    with tempfile.TemporaryDirectory(prefix="refimpl-conformance-") as tmp:
        impl = Impl(impl_command, timeout, Path(tmp))
        progress = None
        if not as_json and verbose:
            from tqdm import tqdm

            def progress(keys):
                return tqdm(keys, desc="conformance", unit="type/op", file=sys.stderr, leave=False)
        outcomes = Runner(vectors, impl, nan, progress).run(set(ops or ()), set(types or ()))
    failed = any(o.status == "fail" for o in outcomes)
    if as_json:
        json.dump({"impl": impl_command, "vectors": str(vectors_dir), "nan": nan,
                   "provenance": vectors.manifest.get("provenance"),
                   "results": [o.as_json() for o in outcomes], "summary": summary_line(outcomes),
                   "ok": not failed}, out, indent=1)
        out.write("\n")
    else:
        width = max([len(o.type) for o in outcomes] + [4])
        for o in outcomes:
            extra = f"  {o.n_pass}/{o.n_cases - o.n_skipped} cases" + (f", {o.n_skipped} skipped (llama.cpp "
                                                                        f"aborts)" if o.n_skipped else "")
            out.write(f"{o.type:<{width}}  {o.op:<16} {o.status.upper():<11}{extra}\n")
            if o.status == "fail" and verbose:
                if len(o.kinds) > 1 or o.op == "gguf":
                    out.write("    failing cases by kind: " + ", ".join(f"{k}: {v}" for k, v in
                                                                     sorted(o.kinds.items())) + "\n")
                for line in o.report:
                    out.write(f"    {line}\n")
        if not outcomes:
            out.write("no cases selected (check --ops / --types against the vectors' families)\n")
        out.write(summary_line(outcomes) + "\n")
    return 1 if failed else 0
