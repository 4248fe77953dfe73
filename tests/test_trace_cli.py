"""``python -m refimpl.trace``: --dump writes the documented layout (raw little-endian float32 + trace.json),
--compare finds the first differing tensor and sets the exit code; llama.cpp's own golden trace, written in the
same layout, compares equal to refimpl's dump."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, golden_path, load_golden_json
from refimpl import trace as tr

INDEX = load_golden_json("trace/index.json")
NAME = "qwen2-F32"
INFO = INDEX["models"][NAME]
TOKENS = ",".join(str(t) for t in INFO["tokens"])


def run(*args):
    """refimpl.trace's main in this process (the module entry point itself is run once, by the fixture)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = tr.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def golden_dump(path):
    """llama.cpp's trace of NAME (golden/trace) written in the dump layout."""
    info, tensors = tr.read_golden(ROOT / "golden", NAME)
    assert [t.ne for t in tensors] == [e["ne"] for e in INFO["tensors"]]
    return tr.write_dump(path, tensors, producer="llama.cpp (golden/trace)", tokens=info["tokens"])


@pytest.fixture(scope="module")
def refimpl_dump(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace") / "refimpl"
    r = subprocess.run([sys.executable, "-m", "refimpl.trace", "-m", str(golden_path(INFO["gguf"])),
                        "--tokens", TOKENS, "--dump", str(d)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert f"tensors" in r.stderr and "trace.json" in r.stderr
    return d


def test_dump_layout(refimpl_dump):
    doc = json.loads((refimpl_dump / "trace.json").read_text())
    assert doc["format"] == "refimpl-trace/1" and doc["byte_order"] == "little"
    assert doc["tokens"] == INFO["tokens"]
    entries = doc["tensors"]
    assert [e["order"] for e in entries] == list(range(len(entries)))
    first = entries[0]
    assert first["name"] == "embd" and first["ne"] == [64, len(INFO["tokens"]), 1, 1] and first["dtype"] == "f32"
    for e in entries:
        data = (refimpl_dump / e["file"]).read_bytes()
        assert len(data) == 4 * int(np.prod(e["ne"])) == e["nbytes"]
    kq = next(e for e in entries if e["name"] == "kq-0")
    assert kq["ne"] == [256, len(INFO["tokens"]), 4, 1]          # [n_kv, n_tokens, n_head]
    meta, tensors = tr.read_dump(refimpl_dump)
    assert len(tensors) == len(entries) and tensors[0].array.shape == (len(INFO["tokens"]), 64)


def test_compare_refimpl_with_llama_cpp_golden(refimpl_dump, tmp_path):
    golden_dump(tmp_path / "llama")
    r = run("--compare", tmp_path / "llama", refimpl_dump)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(INFO['tensors'])} tensors compared (bit-exact): 0 differ" in r.stdout


def test_compare_names_the_first_difference(refimpl_dump, tmp_path):
    meta, tensors = tr.read_dump(refimpl_dump)
    # change one float of the first kq_soft_max: earlier tensors stay equal, so that is the first difference
    k = next(i for i, t in enumerate(tensors) if t.name == "kq_soft_max-0")
    a = tensors[k].array.copy()
    a[1, 2, 0] = np.nextafter(a[1, 2, 0], np.float32(2))                 # head 1, token 2, cell 0
    tensors[k] = tr.TraceTensor(tensors[k].name, 0, a)
    tr.write_dump(tmp_path / "changed", tensors)
    r = run("--compare", refimpl_dump, tmp_path / "changed")
    assert r.returncode == 1
    first = next(line for line in r.stdout.splitlines() if line.startswith("first difference"))
    assert "kq_soft_max-0: 1/" in first and "first at ggml index [0, 2, 1, 0]" in first
    assert "0 tensors" not in r.stdout and "1 differ" in r.stdout


def test_compare_other_model_and_missing_tensors(refimpl_dump, tmp_path):
    r = run("-m", golden_path("model/qwen2-Q8_0.gguf"), "--tokens", TOKENS, "--dump", tmp_path / "q8")
    assert r.returncode == 0, r.stderr
    r = run("--compare", refimpl_dump, tmp_path / "q8")
    assert r.returncode == 1 and "first difference (graph order of A): embd:" in r.stdout
    meta, tensors = tr.read_dump(refimpl_dump)
    tr.write_dump(tmp_path / "part", tensors[:10])
    r = run("--compare", refimpl_dump, tmp_path / "part")
    assert r.returncode == 0 and "only in A:" in r.stdout
    assert run("--compare", refimpl_dump, tmp_path / "part", "--strict").returncode == 1


def test_bad_input_is_a_clear_error(refimpl_dump, tmp_path):
    r = run("--compare", refimpl_dump, tmp_path)
    assert r.returncode == 2 and "no trace.json" in r.stderr
    meta, tensors = tr.read_dump(refimpl_dump)
    d = tr.write_dump(tmp_path / "bad", tensors[:3])
    f = d / json.loads((d / "trace.json").read_text())["tensors"][1]["file"]
    f.write_bytes(f.read_bytes()[:-4])
    r = run("--compare", refimpl_dump, d)
    assert r.returncode == 2 and "bytes, but ne" in r.stderr
    r = run("-m", golden_path(INFO["gguf"]), "--tokens", "1,x", "--dump", tmp_path / "t")
    assert r.returncode == 2 and "comma-separated" in r.stderr
    r = run("-m", golden_path(INFO["gguf"]), "--tokens", "1,99999", "--dump", tmp_path / "t")
    assert r.returncode == 2 and "token ids" in r.stderr
    assert not (tmp_path / "t" / "trace.json").exists()
    assert run().returncode == 2
    with pytest.raises(ValueError, match="no golden trace"):
        tr.read_golden(ROOT / "golden", "mamba-F32")
