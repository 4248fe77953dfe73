"""``python -m refimpl.conformance export DIR``: llama.cpp's committed answers (golden/) as language-neutral vectors.

Every expected value is copied from a golden file, and every golden file was made by llama.cpp (tools/make_golden.py
through tools/ggml_oracle.py); nothing here runs refimpl's kernels.  refimpl is used only for the block layouts
(field names and offsets, to describe the raw bytes) and the vec_dot activation type of each ggml type.

One exporter per family, in reading order: ``export_quant`` (quantize with and without imatrix, quantize_ref,
dequantize, validate), ``export_edge`` (edge blocks), ``export_vec_dot``, ``export_gguf``, ``export_tokenizer``,
``export_model``, ``export_trace``.  Each appends case dicts (spec/conformance.md, "The manifest") and writes
``.bin`` files through a ``VectorWriter``.
"""
from __future__ import annotations

import json
import re
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .vectors import FORMAT, FORMAT_VERSION, VectorWriter, commit_directory, sha256

FAMILIES = ("quant", "edge", "vec_dot", "gguf", "tokenizer", "model", "trace")

#: the cmake flags of the scalar build every golden pins (README.md, "The oracle")
SCALAR_BUILD_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_AVX512=OFF",
                      "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_SSE42=OFF", "-DGGML_BMI2=OFF",
                      "-DGGML_AVX_VNNI=OFF"]

#: inputs whose cases are edge cases rather than ordinary data (they go to the ``edge`` family)
EDGE_INPUTS = {"zeros", "constant", "subnormal", "huge", "ties", "outlier"}
EDGE_RAW = {"random_raw", "special_raw"}

#: the subset --quick keeps per type (enough to tell pass from fail for every op, in seconds)
QUICK_CASES = {"quantize.gauss.one", "quantize.gauss.several", "quantize.zeros.one", "quantize.constant.one",
               "quantize_imatrix.random.gauss", "quantize_imatrix.with_zeros.gauss", "quantize_ref.gauss",
               "dequantize.quantized.gauss", "dequantize.random_raw", "dequantize.special_raw", "validate"}


def default_golden_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "golden"


class Exporter:
    def __init__(self, golden: Path, staging: Path, types: list[str] | None, quick: bool):
        self.golden = Path(golden)
        self.w = VectorWriter(staging)
        self.types = {t.upper() for t in types} if types else None
        self.quick = quick
        self.cases: list[dict] = []
        self.notes: dict[str, str] = {}
        self.golden_manifest = json.loads((self.golden / "MANIFEST.json").read_text())

    # -- helpers ----------------------------------------------------------------------------------------------
    def npz(self, rel: str) -> dict[str, np.ndarray]:
        with np.load(self.golden / rel, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def source(self, rel: str, key: str | None = None) -> dict:
        entry = self.golden_manifest["files"].get(rel, {})
        out = {"golden": f"golden/{rel}", "golden_sha256": entry.get("sha256"),
               "command": entry.get("command")}
        if key is not None:
            out["key"] = key
        return out

    def want(self, type_name: str) -> bool:
        return self.types is None or type_name in self.types

    def add(self, **case) -> None:
        self.cases.append(case)

    # -- families ---------------------------------------------------------------------------------------------
    def export_quant(self, family_filter: set[str]) -> None:
        from ..quant import TYPES

        cases = json.loads((self.golden / "quant" / "cases.json").read_text())
        inputs = self.npz("quant/inputs.npz")
        for fam_dir in ("quant", "iquant"):
            for path in sorted((self.golden / fam_dir).glob("*.npz")):
                name = path.stem
                if name == "inputs" or not self.want(name):
                    continue
                fmt = TYPES[name]
                rel = f"{fam_dir}/{name}.npz"
                g = self.npz(rel)
                aborts = {s.decode() for s in g.get("aborts", np.zeros(0, "S64"))}
                for cname, case in cases.items():
                    if self.quick and cname not in QUICK_CASES:
                        continue
                    op = case["op"]
                    edge = case.get("input") in EDGE_INPUTS or case.get("raw") in EDGE_RAW
                    family = "edge" if edge else "quant"
                    if family not in family_filter:
                        continue
                    base = dict(id=f"{family}/{name}/{cname}", family=family, type=name,
                                source=self.source(rel, cname))
                    if op in ("quantize", "quantize_ref"):
                        cols = case.get("cols", case.get("blocks", 0) * fmt.block_size)
                        rows = case["rows"]
                        if cname not in g and cname not in aborts:
                            continue   # ggml has no such operation for this type
                        x = inputs[f"x.{case['input']}"][:rows, :cols]
                        ins = {"x": self.w.array(f"quant/inputs/x.{case['input']}.{rows}x{cols}.bin", x)}
                        if case.get("imatrix"):
                            im = inputs[f"imatrix.{case['imatrix']}"][:cols]
                            ins["imatrix"] = self.w.array(f"quant/inputs/imatrix.{case['imatrix']}.{cols}.bin", im)
                        params = {"n_per_row": cols, "rows": rows}
                        if cname in aborts:
                            self.add(**base, operation=op, params=params, inputs=ins, expected={}, expect="abort")
                            continue
                        exp = {"y": self.w.array(f"quant/{name}/{cname}.bin", g[cname])}
                        if f"unspecified.{cname}" in g:
                            exp["unspecified"] = self.w.array(f"quant/{name}/{cname}.unspecified.bin",
                                                              g[f"unspecified.{cname}"])
                        self.add(**base, operation=op, params=params, inputs=ins, expected=exp)
                    elif op == "dequantize":
                        src = case.get("of") or case.get("raw")
                        if cname not in g or src not in g:
                            continue
                        raw = g[src].reshape(-1, fmt.type_size)
                        blocks = self.w.array(f"quant/{name}/{src}.bin", raw)
                        y = g[cname]
                        self.add(**base, operation="dequantize",
                                 params={"n_blocks": int(raw.shape[0]), "n": int(y.size)},
                                 inputs={"blocks": blocks},
                                 expected={"y": self.w.array(f"quant/{name}/{cname}.bin", y.reshape(-1))})
                    elif op == "validate":
                        if "validate" not in g:
                            continue
                        raw = g["validate_raw"].reshape(-1, fmt.type_size)
                        self.add(**base, operation="validate", params={"n_blocks": int(raw.shape[0])},
                                 inputs={"blocks": self.w.array(f"quant/{name}/validate_raw.bin", raw)},
                                 expected={"valid": self.w.array(f"quant/{name}/validate.bin", g["validate"])})

    def export_edge(self) -> None:
        """The edge_blocks golden (special scale values, all-zero / all-0xFF blocks) and matmul/nan_scales.npz;
        quant's edge inputs and random/special raw blocks are routed here by ``export_quant``."""
        from ..quant import TYPES

        for path in sorted((self.golden / "edge_blocks").glob("*.npz")):
            name = path.stem
            if not self.want(name):
                continue
            fmt = TYPES[name]
            rel = f"edge_blocks/{name}.npz"
            g = self.npz(rel)
            labels = [s.decode() for s in g["label"]]
            self.add(id=f"edge/{name}/dequantize.edge_blocks", family="edge", type=name, operation="dequantize",
                     source=self.source(rel), params={"n_blocks": len(labels), "n": int(g["y"].size),
                                                      "block_labels": labels},
                     inputs={"blocks": self.w.array(f"edge/{name}/edge_blocks.bin", g["raw"])},
                     expected={"y": self.w.array(f"edge/{name}/edge_blocks.dequantize.bin", g["y"].reshape(-1))})
            assert g["raw"].shape[1] == fmt.type_size
        if not (self.golden / "edge_blocks").is_dir():
            self.notes["edge"] = "golden/edge_blocks is absent: only quant's edge inputs and raw blocks exported"
        rel = "matmul/nan_scales.npz"
        if (self.golden / rel).exists():
            g = self.npz(rel)
            for key in sorted(k for k in g if k.startswith("vec_dot.")):
                name = key.split(".", 1)[1]
                if not self.want(name):
                    continue
                fmt = TYPES[name]
                w, y = g[f"w.{name}"], g[f"y.{name}"]
                n = w.shape[1] // fmt.type_size * fmt.block_size
                self.add(id=f"edge/{name}/vec_dot.nan_scales", family="edge", type=name, operation="vec_dot",
                         source=self.source(rel, key), params={"n": n, "vec_dot_type": fmt.vec_dot_type,
                                                               "pairs": "rowwise"},
                         inputs={"x": self.w.array(f"edge/{name}/nan_scales.w.bin", w),
                                 "y": self.w.array(f"edge/{name}/nan_scales.y.bin", y)},
                         expected={"dot": self.w.array(f"edge/{name}/nan_scales.vec_dot.bin", g[key])})

    def export_vec_dot(self) -> None:
        from ..quant import TYPES

        acts = self.npz("matmul/activations.npz")
        bounds = simd_bounds(self.golden.parent / "spec" / "matmul.md")
        for path in sorted((self.golden / "matmul").glob("*.npz")):
            name = path.stem
            if name in ("activations", "nan_scales") or not self.want(name):
                continue
            fmt = TYPES[name]
            rel = f"matmul/{name}.npz"
            g = self.npz(rel)
            vdt = fmt.vec_dot_type
            for mcase in ("small", "long", "edge"):
                if self.quick and mcase != "small":
                    continue
                w = g[f"w.{mcase}"]
                x, xq = acts[f"x.{mcase}"], acts[f"xq.{vdt}.{mcase}"]
                n = x.shape[1]
                win = self.w.array(f"vec_dot/{name}/w.{mcase}.bin", w)
                self.add(id=f"vec_dot/{name}/vec_dot.{mcase}", family="vec_dot", type=name, operation="vec_dot",
                         source=self.source(rel, f"vec_dot.{mcase}"),
                         params={"n": n, "vec_dot_type": vdt, "pairs": "all"},
                         inputs={"x": win, "y": self.w.array(f"vec_dot/activations/xq.{vdt}.{mcase}.bin", xq)},
                         expected={"dot": self.w.array(f"vec_dot/{name}/vec_dot.{mcase}.bin", g[f"vec_dot.{mcase}"])})
                params = {"n": n, "n_threads": 1, "vec_dot_type": vdt}
                if name in bounds:
                    params["simd_relative_bound"] = bounds[name]
                self.add(id=f"vec_dot/{name}/mul_mat.{mcase}", family="vec_dot", type=name, operation="mul_mat",
                         source=self.source(rel, f"mul_mat.{mcase}"), params=params,
                         inputs={"w": win, "x": self.w.array(f"vec_dot/activations/x.{mcase}.bin", x)},
                         expected={"y": self.w.array(f"vec_dot/{name}/mul_mat.{mcase}.bin", g[f"mul_mat.{mcase}"])})
        for vdt in ("F32", "F16", "BF16", "Q8_0", "Q8_1", "Q8_K"):
            if not self.want(vdt):
                continue
            for mcase in ("small", "long", "edge"):
                if self.quick and mcase != "small":
                    continue
                x = acts[f"x.{mcase}"]
                self.add(id=f"vec_dot/{vdt}/from_float.{mcase}", family="vec_dot", type=vdt,
                         operation="from_float", source=self.source("matmul/activations.npz", f"xq.{vdt}.{mcase}"),
                         params={"n_per_row": int(x.shape[1]), "rows": int(x.shape[0])},
                         inputs={"x": self.w.array(f"vec_dot/activations/x.{mcase}.bin", x)},
                         expected={"y": self.w.array(f"vec_dot/activations/xq.{vdt}.{mcase}.bin",
                                                     acts[f"xq.{vdt}.{mcase}"])})

    def export_gguf(self) -> None:
        rel = "gguf/corpus.npz"
        g = self.npz(rel)
        data = zlib.decompress(g["data_zlib"].tobytes())
        offsets = g["offsets"]
        corpus = json.loads((self.golden / "gguf" / "corpus.json").read_text())["cases"]
        blob = self.w.raw("gguf/corpus.bin", data)
        step = 25 if self.quick else 1
        for i in range(0, len(corpus), step):
            c = corpus[i]
            start, end = int(offsets[i]), int(offsets[i + 1])
            ref = {"file": blob["file"], "offset": start, "bytes": end - start, "dtype": "uint8",
                   "shape": [end - start], "sha256": sha256(data[start:end])}
            exp = {"accepted": bool(c["accepted"])}
            if c.get("facts"):
                exp["facts"] = {k: c["facts"][k] for k in ("version", "alignment", "data_offset", "n_kv",
                                                           "tensor_nbytes")}
            self.add(id=f"gguf/corpus/{i:05d}", family="gguf", type=None, operation="gguf_parse",
                     source=self.source(rel, c["name"]), params={"name": c["name"]}, inputs={"file": ref},
                     expected_json=exp)
        types = json.loads((self.golden / "gguf" / "ggml_types.json").read_text())
        self.w.raw("gguf/ggml_types.json", (json.dumps(types, indent=1) + "\n").encode())

    def export_tokenizer(self, vocab_dir: Path | None) -> None:
        copied = 0
        for path in sorted((self.golden / "tokenizer").glob("ggml-vocab-*.json")):
            rel = f"tokenizer/{path.name}"
            g = json.loads(path.read_text())
            vocab = g["vocab"]
            facts = json.loads((self.golden / "gguf" / "vocab" / path.name).read_text())
            vocab_ref = {"name": facts["file"], "sha256": facts["source_sha256"], "file": None}
            src = vocab_dir / facts["file"] if vocab_dir else None
            if src is not None and src.is_file():
                vocab_ref = {**self.w.copy(f"tokenizer/vocab/{facts['file']}", src), "name": facts["file"]}
                if vocab_ref["sha256"] != facts["source_sha256"]:
                    raise ValueError(f"{src}: sha256 differs from golden/gguf/vocab/{path.name}: not the pinned "
                                     f"release's vocab file")
                copied += 1
            texts = [bytes.fromhex(c["text"]) for c in g["cases"]]
            blob = self.w.raw(f"tokenizer/{path.stem}.texts.bin", b"".join(texts))
            off = 0
            for i, (c, t) in enumerate(zip(g["cases"], texts)):
                if self.quick and i >= 8:
                    break
                ref = {"file": blob["file"], "offset": off, "bytes": len(t), "sha256": sha256(t),
                       "dtype": "uint8", "shape": [len(t)]}
                off += len(t)
                self.add(id=f"tokenizer/{path.stem}/{i:03d}", family="tokenizer", type=None, operation="tokenize",
                         source=self.source(rel, f"cases[{i}]"), params={"vocab": vocab},
                         inputs={"vocab": vocab_ref, "text": ref},
                         expected_json={"ids_00": c["ids_00"], "ids_11": c["ids_11"],
                                        "detok_00_hex": c["detok_00"], "detok_11_hex": c["detok_11"]})
        if not copied:
            self.notes["tokenizer"] = ("vocab files not found (pass --vocab-dir, e.g. vendor/llama.cpp/models): "
                                       "cases name them by file name and sha256 only")

    def export_model(self) -> None:
        models = json.loads((self.golden / "model" / "models.json").read_text())
        for i, (mname, m) in enumerate(sorted(models["models"].items())):
            if self.quick and i:
                break
            g = self.npz(m["golden"])
            gguf = self.w.copy(f"model/{Path(m['gguf']).name}", self.golden / m["gguf"])
            self.add(id=f"model/{mname}", family="model", type=m["type"], operation="logits",
                     source=self.source(m["golden"]), params={"arch": m["arch"], "settings": models["settings"],
                                                              "features": m["features"]},
                     inputs={"model": gguf, "tokens": self.w.array(f"model/{mname}.tokens.bin", g["tokens"])},
                     expected={"logits": self.w.array(f"model/{mname}.logits.bin", g["logits"]),
                               "greedy": self.w.array(f"model/{mname}.greedy.bin", g["greedy"])})
        dm = self.golden / "default_model" / "tiny-kjv.npz"
        if dm.exists() and not self.quick:
            g = self.npz("default_model/tiny-kjv.npz")
            meta = json.loads((self.golden / "default_model" / "tiny-kjv.json").read_text())
            src = self.golden.parent / meta["model"]
            model_ref = ({**self.w.copy("model/tiny-kjv-q8_0.gguf", src)} if src.is_file() else
                         {"file": None, "name": Path(meta["model"]).name})
            model_ref["sha256"] = meta["model_sha256"]
            self.add(id="model/tiny-kjv", family="model", type="Q8_0", operation="logits",
                     source=self.source("default_model/tiny-kjv.npz"), params={"settings": meta["settings"],
                                                                                 "prompt": meta["prompt"]},
                     inputs={"model": model_ref, "tokens": self.w.array("model/tiny-kjv.tokens.bin", g["tokens"])},
                     expected={"logits": self.w.array("model/tiny-kjv.logits.bin", g["logits"]),
                               "greedy": self.w.array("model/tiny-kjv.greedy.bin", g["greedy"]),
                               "greedy_logits": self.w.array("model/tiny-kjv.greedy_logits.bin",
                                                             g["greedy_logits"])})

    def export_trace(self) -> None:
        """golden/trace (llama.cpp's cb_eval intermediates, tools/goldens/trace.py) in the dump layout of
        ``python -m refimpl.trace --dump`` (one raw float32 .bin per tensor + trace.json), one case per model, with
        the model and the prompt tokens as inputs: an implementer dumps theirs the same way and runs
        ``python -m refimpl.trace --compare`` (or reads trace.json) to find the first op that differs."""
        root = self.golden / "trace"
        if not (root / "index.json").is_file():
            self.notes["trace"] = "golden/trace is absent in this checkout: no per-op trace vectors exported"
            return
        from .. import trace as tracing   # read_golden: golden npz -> tensors; write_dump: the dump layout

        index = json.loads((root / "index.json").read_text())
        for i, name in enumerate(sorted(index["models"])):
            if self.quick and i:
                break
            info, tensors = tracing.read_golden(self.golden, name)
            dump = self.w.root / "trace" / name
            tracing.write_dump(dump, tensors, model=name, tokens=info["tokens"], source="llama.cpp cb_eval "
                               "(golden/trace)")
            files = {f.name: self.w.raw(f"trace/{name}/{f.name}", f.read_bytes()) for f in sorted(dump.iterdir())}
            tokens = np.asarray(info["tokens"], np.int32)
            self.add(id=f"trace/{name}", family="trace", type=None, operation="trace",
                     source=self.source(f"trace/{name}.npz"),
                     params={"settings": index.get("settings"), "n_tensors": len(tensors)},
                     inputs={"model": self.w.copy(f"model/{Path(info['gguf']).name}", self.golden / info["gguf"]),
                             "tokens": self.w.array(f"trace/{name}.tokens.bin", tokens)},
                     expected={"dump": files["trace.json"], "files": files})


def simd_bounds(matmul_md: Path) -> dict[str, float]:
    """The per-type bound table spec/matmul.md carries (tools/simd_deviation.py writes it from golden/simd)."""
    out = {}
    if not matmul_md.is_file():
        return out
    text = matmul_md.read_text()
    m = re.search(r"<!-- simd-deviation:begin -->(.*?)<!-- simd-deviation:end -->", text, re.S)
    for line in (m.group(1) if m else "").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[A-Z0-9_]+", cells[0]):
            try:
                out[cells[0]] = float(cells[-1])
            except ValueError:
                pass
    return out


def type_table() -> dict[str, dict]:
    """Block layouts of every type (name, id, block size, bytes, vec_dot type, fields with offsets)."""
    from ..quant import TYPES

    out = {}
    for fmt in TYPES.values():
        dt = np.dtype(fmt.block_dtype)
        fields = []
        for fname in dt.names or ():
            ft, off = dt.fields[fname][:2]
            count = int(np.prod(ft.shape)) if ft.shape else 1
            fields.append({"name": fname, "offset": int(off), "dtype": ft.base.name, "count": count})
        out[fmt.name] = {"id": fmt.type_id, "block_size": fmt.block_size, "type_size": fmt.type_size,
                         "vec_dot_type": fmt.vec_dot_type, "fields": fields}
    return out


def export(target: Path, families=None, golden: Path | None = None, types=None, quick: bool = False,
           vocab_dir: Path | None = None, progress=None) -> dict:
    golden = Path(golden) if golden else default_golden_dir()
    if not (golden / "MANIFEST.json").is_file():
        raise ValueError(f"{golden}: not a golden directory (no MANIFEST.json); pass --golden")
    families = list(families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        ex = Exporter(golden, staging, types, quick)
        steps = []
        if {"quant", "edge"} & set(families):
            steps.append(("quant", lambda: ex.export_quant({"quant", "edge"} & set(families))))
        if "edge" in families:
            steps.append(("edge", ex.export_edge))
        if "vec_dot" in families:
            steps.append(("vec_dot", ex.export_vec_dot))
        if "gguf" in families:
            steps.append(("gguf", ex.export_gguf))
        if "tokenizer" in families:
            steps.append(("tokenizer", lambda: ex.export_tokenizer(vocab_dir or _find_vocab_dir(golden))))
        if "model" in families:
            steps.append(("model", ex.export_model))
        if "trace" in families:
            steps.append(("trace", ex.export_trace))
        for name, step in steps:
            if progress:
                progress(name)
            step()
        gm = ex.golden_manifest
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "about": "llama.cpp's answers (refimpl's golden/, made by the pinned llama.cpp's scalar build) as raw "
                     "little-endian .bin files; see spec/conformance.md in the refimpl repository",
            "provenance": {"llama_cpp": "the llama.cpp vendored in llama-cpp-python " +
                                        str(gm["oracle"].get("llama_cpp_python")),
                           "llama_cpp_python": gm["oracle"].get("llama_cpp_python"),
                           "scalar_build": gm["oracle"].get("scalar_build"),
                           "build_flags": SCALAR_BUILD_FLAGS,
                           "ggml_simd_features": gm["oracle"].get("ggml_simd_features"),
                           "golden_manifest_sha256": sha256((golden / "MANIFEST.json").read_bytes())},
            "families": families, "quick": quick, "notes": ex.notes,
            "types": type_table(),
            "cases": ex.cases,
            "files": dict(sorted(ex.w.files.items())),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        commit_directory(staging, target)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _find_vocab_dir(golden: Path) -> Path | None:
    repo = golden.parent
    for cand in (repo / "vendor" / "llama.cpp" / "models", repo / "vendor" / "models"):
        if cand.is_dir() and any(cand.glob("ggml-vocab-*.gguf")):
            return cand
    return None
