"""The conformance kit (refimpl.conformance): export is a faithful copy of the goldens, the runner's verdicts and
reports, bad input.  The run against gguf-py (an implementation refimpl did not write) is
tests/test_conformance_gguf_py.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import GOLDEN, load_golden

ROOT = Path(__file__).resolve().parent.parent


def kit(*args, check=False):
    p = subprocess.run([sys.executable, "-m", "refimpl.conformance", *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("conf") / "vectors"
    kit("export", d, "--quick", "--families", "quant,edge,gguf", check=True)
    return d


def read_ref(root: Path, ref: dict) -> np.ndarray:
    data = (root / ref["file"]).read_bytes()
    off = ref.get("offset", 0)
    data = data[off:off + ref["bytes"]]
    dt = {"uint8": "u1", "float32": "<f4", "int32": "<i4"}[ref["dtype"]]
    return np.frombuffer(data, dt).reshape(ref["shape"])


def test_export_copies_goldens_byte_for_byte(vectors):
    """Every expected array of the exported vectors is the golden array it names (no refimpl output)."""
    m = json.loads((vectors / "manifest.json").read_text())
    assert m["provenance"]["llama_cpp_python"] == "0.3.36" and m["provenance"]["scalar_build"] is True
    assert "-DGGML_AVX2=OFF" in m["provenance"]["build_flags"]
    checked = 0
    for case in m["cases"]:
        src = case["source"]
        if case["operation"] not in ("quantize", "dequantize") or "key" not in src or case.get("expect"):
            continue
        g = load_golden(src["golden"].removeprefix("golden/"))
        exp = read_ref(vectors, case["expected"]["y"])
        assert exp.tobytes() == np.ascontiguousarray(g[src["key"]]).tobytes(), case["id"]
        checked += 1
    assert checked > 100
    # every file's sha256 is in the manifest and right
    import hashlib
    for rel, entry in m["files"].items():
        assert hashlib.sha256((vectors / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    # the edge family holds the edge_blocks golden for every block type that has one
    edge = {c["type"] for c in m["cases"] if c["id"].endswith("dequantize.edge_blocks")}
    assert edge == {p.stem for p in (GOLDEN / "edge_blocks").glob("*.npz")}


def test_runner_passes_refimpl_and_reports_a_corrupted_output(vectors, tmp_path):
    """refimpl behind the protocol passes; the same adapter with one float flipped fails, and the report names
    the block, the element, the fields and the reference expression; exit status 1."""
    adapter = ROOT / "tools" / "conformance" / "refimpl_adapter.py"
    p = kit("run", "--vectors", vectors, "--ops", "dequantize,quantize,gguf", "--types", "Q4_K,Q8_0,IQ4_NL",
            "--impl", f"{sys.executable} {adapter}", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(p.stdout)
    assert {(r["type"], r["op"]): r["status"] for r in res["results"]} == {
        ("Q4_K", "dequantize"): "pass", ("Q8_0", "dequantize"): "pass", ("IQ4_NL", "dequantize"): "pass",
        ("Q4_K", "quantize"): "pass", ("Q8_0", "quantize"): "pass", ("IQ4_NL", "quantize"): "pass",
        ("GGUF", "gguf"): "pass"}

    broken = tmp_path / "broken.py"
    broken.write_text(
        "import subprocess, sys, numpy as np\n"
        f"r = subprocess.run([sys.executable, {str(adapter)!r}] + sys.argv[1:])\n"
        "if sys.argv[1] == 'dequantize':\n"
        "    y = np.fromfile(sys.argv[4], '<f4'); y[300] = np.nextafter(y[300], np.float32(np.inf)); "
        "y.tofile(sys.argv[4])\n"
        "sys.exit(r.returncode)\n")
    p = kit("run", "--vectors", vectors, "--ops", "dequantize", "--types", "Q4_K",
            "--impl", f"{sys.executable} {broken}")
    assert p.returncode == 1
    out = p.stdout
    assert "Q4_K" in out and "FAIL" in out and "block 1, element 44 (y[300])" in out
    assert "get_scale_min_k4(" in out and "expected (llama.cpp)" in out and "dmin = 0x" in out
    assert out.strip().splitlines()[-1].startswith("conformance: 0 pass, 1 fail")


def test_explain_matches_llama_cpp(vectors):
    """The reference expression the report prints evaluates to llama.cpp's value (every type that has one,
    every element of the random and edge blocks; NaNs compared as NaN)."""
    from refimpl.conformance.explain import _EXPLAIN, explain_element
    from refimpl.quant import TYPES

    for name in _EXPLAIN:
        fmt = TYPES[name]
        g = load_golden(f"{'iquant' if name.startswith('IQ') else 'quant'}/{name}.npz")
        raw, y = g["random_raw"], g["dequantize.random_raw"].reshape(-1)
        if (GOLDEN / "edge_blocks" / f"{name}.npz").exists():   # block types: the edge blocks too
            e = load_golden(f"edge_blocks/{name}.npz")
            raw, y = np.concatenate([raw, e["raw"]]), np.concatenate([y, e["y"].reshape(-1)])
        for b in range(raw.shape[0]):
            for j in range(0, fmt.block_size, 7 if fmt.block_size > 32 else 1):
                text, v = explain_element(fmt, raw[b].tobytes(), j)
                want = y[b * fmt.block_size + j]
                assert (np.isnan(v) and np.isnan(want)) or np.float32(v).view(np.uint32) == want.view(np.uint32), \
                    (name, b, j, text, want)


def test_bad_input(vectors, tmp_path):
    # the impl does not exist
    p = kit("run", "--vectors", vectors, "--impl", "no-such-program-xyz dequantize")
    assert p.returncode == 2 and "no-such-program-xyz" in p.stderr
    # no vectors directory
    p = kit("run", "--vectors", tmp_path / "missing", "--impl", "true")
    assert p.returncode == 2 and "no such vectors directory" in p.stderr
    # a malformed manifest
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    p = kit("run", "--vectors", bad, "--impl", "true")
    assert p.returncode == 2 and "not valid JSON" in p.stderr
    (bad / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    p = kit("run", "--vectors", bad, "--impl", "true")
    assert p.returncode == 2 and "format" in p.stderr
    # a vector file edited after export: its sha256 no longer matches
    m = json.loads((vectors / "manifest.json").read_text())
    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(vectors, copy)
    case = next(c for c in m["cases"] if c["id"] == "quant/Q8_0/dequantize.quantized.gauss")
    f = copy / case["expected"]["y"]["file"]
    data = f.read_bytes()
    f.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    p = kit("run", "--vectors", copy, "--types", "Q8_0", "--ops", "dequantize", "--impl", "true")
    assert p.returncode == 2 and "sha256" in p.stderr
    # unknown --ops / --types / --families
    assert kit("run", "--vectors", vectors, "--ops", "transmogrify", "--impl", "true").returncode == 2
    assert kit("run", "--vectors", vectors, "--types", "Q9_9", "--impl", "true").returncode == 2
    assert kit("export", tmp_path / "v2", "--families", "nonsense").returncode == 2
    # an impl that answers nothing: everything unsupported, exit 0 (nothing failed), summary says so
    p = kit("run", "--vectors", vectors, "--types", "Q4_0", "--ops", "dequantize,quantize", "--impl", "false")
    assert p.returncode == 0 and "0 pass, 0 fail, 2 unsupported" in p.stdout
    # an impl that answers with a file of the wrong size: a failure (malformed output), not "unsupported"
    short = tmp_path / "short.py"
    short.write_text("import sys\nopen(sys.argv[-1], 'wb').write(b'abc')\n")
    p = kit("run", "--vectors", vectors, "--types", "Q4_0", "--ops", "dequantize", "--impl",
            f"{sys.executable} {short}")
    assert p.returncode == 1 and "malformed" in p.stdout and "FAIL" in p.stdout
    # export refuses to replace a directory that is not a vectors directory, and leaves it alone
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    p = kit("export", other, "--families", "gguf", "--quick")
    assert p.returncode == 2 and (other / "keep.txt").read_text() == "mine"
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".other")] == []


def test_trace_family_is_llama_cpp_trace_in_dump_layout(tmp_path):
    """The per-op family: one case per golden/trace model, in refimpl.trace's dump layout, each tensor the golden's
    bits (read back with refimpl.trace.read_dump, the reader `--compare` uses)."""
    from refimpl import trace as tracing

    d = tmp_path / "v"
    kit("export", d, "--families", "trace", check=True)
    m = json.loads((d / "manifest.json").read_text())
    index = json.loads((GOLDEN / "trace" / "index.json").read_text())
    assert sorted(c["id"] for c in m["cases"]) == sorted(f"trace/{n}" for n in index["models"])
    for name in index["models"]:
        _, ours = tracing.read_dump(d / "trace" / name)
        _, theirs = tracing.read_golden(GOLDEN, name)
        assert [(t.name, t.occurrence) for t in ours] == [(t.name, t.occurrence) for t in theirs]
        for a, b in zip(ours, theirs):
            assert np.asarray(a.array, "<f4").tobytes() == np.asarray(b.array, "<f4").tobytes(), (name, a.name)
