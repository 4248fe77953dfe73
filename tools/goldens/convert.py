"""convert_hf_to_gguf.py's output on the committed tiny checkpoints (tests/data/convert/checkpoints.tar.xz, made by
tools/make_hf_checkpoints.py) and, --vocab-only, on two checkpoints whose tokenizer.json is rebuilt from the
release's ggml-vocab-llama-bpe / -qwen2 files (tests/convert_cases.build_vocab_checkpoint: Llama 3 and Qwen2
pre-tokenizers, 128k/152k tokens), described instead of committed: whole-file sha256 and size, every metadata key in
file order with its type and value (long arrays: element type, length and sha256 of their canonical JSON), and
every tensor in file order with its ggml type, shape (ggml order), data offset and data sha256.

The oracle is the pinned release's own script (vendor/convert_hf_to_gguf.py with vendor/gguf-py and
vendor/conversion), run unmodified by a Python that has torch and transformers (the script's requirements):
set REFIMPL_CONVERT_PYTHON to it.  The output is read back with the same release's gguf-py GGUFReader.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DESCRIPTION = ("convert_hf_to_gguf.py (pinned release, run by $REFIMPL_CONVERT_PYTHON) on the tiny HF checkpoints: "
               "per-file sha256, metadata and per-tensor sha256/type/shape")

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor"
CHECKPOINTS = ROOT / "tests" / "data" / "convert" / "checkpoints.tar.xz"
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
#: extra cases: (checkpoint, outtype, extra CLI flags)
EXTRA = (("tiny-llama3-bpe", "auto", ()), ("tiny-mistral-spm", "auto", ()), ("tiny-llama2-spm", "tq2_0", ()),
         ("tiny-qwen2-bpe", "tq1_0", ()), ("tiny-llama2-spm", "f16", ("--vocab-only",)),
         ("tiny-qwen3-spm", "f16", ("--model-name", "Tiny Qwen3 Test")),
         ("tiny-llama-tq-spm", "tq1_0", ()), ("tiny-llama-tq-spm", "tq2_0", ()),
         ("tiny-qwen3-spm", "f16", ("--metadata", "{metadata}")))
LONG = 16         # arrays longer than this are described by length + sha256


def case_name(outtype: str, flags=()) -> str:
    name = outtype
    if "--vocab-only" in flags:
        name += "+vocab-only"
    if "--model-name" in flags:
        name += "+model-name"
    if "--metadata" in flags:
        name += "+metadata"
    return name


def canonical(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def describe(path: Path) -> dict:
    """The GGUF at ``path`` as gguf-py's reader of the pinned release sees it."""
    sys.path.insert(0, str(VENDOR / "gguf-py"))
    try:
        from gguf import GGUFReader, GGUFValueType
    finally:
        sys.path.pop(0)
    data = path.read_bytes()
    r = GGUFReader(str(path))
    kvs = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = GGUFValueType(f.types[0]).name
        if f.types[0] == GGUFValueType.ARRAY:
            etype = GGUFValueType(f.types[-1]).name
            value = f.contents()
            entry = {"key": key, "type": "ARRAY", "element_type": etype, "length": len(f.data)}
            if len(f.data) > LONG:
                entry["sha256"] = hashlib.sha256(canonical(value).encode()).hexdigest()
            else:
                entry["value"] = value
        else:
            entry = {"key": key, "type": vtype, "value": f.contents()}
        kvs.append(entry)
    tensors = []
    for t in r.tensors:
        raw = data[t.data_offset:t.data_offset + t.n_bytes]
        tensors.append({"name": t.name, "type": t.tensor_type.name, "shape": [int(n) for n in t.shape],
                        "offset": int(t.data_offset), "bytes": int(t.n_bytes),
                        "sha256": hashlib.sha256(raw).hexdigest()})
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "metadata": kvs, "tensors": tensors}


def run_script_cases(python: str, cases: list[list[str]], workdir: Path) -> None:
    """Run convert_hf_to_gguf.py's main() on every argv of ``cases`` in one interpreter (tools/goldens/_convert_driver.py)."""
    listing = workdir / "cases.json"
    listing.write_text(json.dumps(cases))
    env = dict(os.environ, PYTHONPATH=str(VENDOR / "gguf-py"))
    res = subprocess.run([python, str(Path(__file__).with_name("_convert_driver.py")), str(listing)],
                         env=env, capture_output=True, text=True)
    verdicts = res.stdout.split("\n")
    bad = [(c, v) for c, v in zip(cases, verdicts) if v != "OK"]
    if res.returncode != 0 or bad or len([v for v in verdicts if v]) != len(cases):
        raise RuntimeError(f"convert_hf_to_gguf.py failed: {bad[:3]}\n{res.stderr[-4000:]}")


def extract(dest: Path) -> Path:
    with tarfile.open(CHECKPOINTS, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def generate(oracle, writer) -> None:
    del oracle  # the oracle here is the script, not the library
    python = os.environ.get("REFIMPL_CONVERT_PYTHON")
    if not python:
        raise RuntimeError("set REFIMPL_CONVERT_PYTHON to a Python with torch and transformers installed")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ck = extract(tmp / "ck")
        cases: dict[str, list] = {}
        for name in sorted(p.name for p in ck.iterdir()):
            cases[name] = [(t, ()) for t in OUTTYPES]
        # vocab-only checkpoints with real BPE pre-tokenizers, rebuilt from the release's ggml-vocab files
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            from convert_cases import METADATA_OVERRIDE, VOCAB_CHECKPOINTS, build_vocab_checkpoint
        finally:
            sys.path.pop(0)
        for name in VOCAB_CHECKPOINTS:
            build_vocab_checkpoint(ck, name, VENDOR / "models")
            cases[name] = [("f16", ("--vocab-only",))]
        for name, outtype, flags in EXTRA:
            cases[name].append((outtype, flags))
        metadata_file = tmp / "metadata.json"
        metadata_file.write_text(json.dumps(METADATA_OVERRIDE))
        argvs, outs = [], []
        for name, todo in cases.items():
            for outtype, flags in todo:
                out = tmp / f"{name}.{case_name(outtype, flags)}.gguf"
                argv = [f.replace("{metadata}", str(metadata_file)) for f in flags]
                argvs.append([str(ck / name), "--outfile", str(out), "--outtype", outtype, *argv])
                outs.append((name, outtype, flags, out))
        run_script_cases(python, argvs, tmp)
        described: dict[str, dict] = {name: {} for name in cases}
        for name, outtype, flags, out in outs:
            described[name][case_name(outtype, flags)] = {"outtype": outtype, "flags": list(flags), **describe(out)}
        for name, entries in described.items():
            writer.json(f"{name}.json", entries,
                        f"convert_hf_to_gguf.py on checkpoint {name}: one entry per outtype/flags")
