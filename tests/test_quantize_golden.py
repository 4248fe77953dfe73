"""refimpl.quantize against llama-quantize, byte for byte: golden/quantize_model/cases.json.

Every case re-runs refimpl on the same inputs (rebuilt from fixed seeds by tools/goldens/quantize_model.py; their
sha256 must match the ones the goldens were made from) with the same command line, and compares the output with
llama-quantize's: the header (metadata + tensor infos), each KV pair, then each tensor (the first differing one is
named), then the whole file.  Cases llama-quantize refuses must be refused too, leaving no file.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from goldens import quantize_model as G  # noqa: E402

DOC = json.loads((GOLDEN / "quantize_model" / "cases.json").read_text())
CASES = {c.id: c for c in G.cases()}
# a few cases run with two worker processes (the fork pool), the rest in-process
TWO_THREADS = {"qwen2-576/Q4_K_M", "moe8/IQ2_XS", "opt/requantize-Q8_0-Q4_K_M"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize_inputs")
    shas = G.build_inputs(folder)
    bad = [name for name, sha in DOC["inputs"].items() if shas.get(name) != sha]
    assert not bad, f"inputs differ from the ones the goldens were made from: {bad}"
    return folder


def _run_refimpl(case, folder: Path, monkeypatch):
    from refimpl.quantize import quantize_model
    from refimpl.quantize.__main__ import parse_args

    if case.model.startswith("@"):
        dep = case.model[1:]
        src_path = folder / (dep.replace("/", "__") + ".out.gguf")
        if not src_path.exists():
            _run_refimpl(CASES[dep], folder, monkeypatch)
        assert G.describe(src_path)["file_sha256"] == DOC["cases"][dep]["file_sha256"], \
            f"the input of this case (refimpl's output for {dep}) differs from llama-quantize's"
        src = src_path.name
    else:
        src = case.model + ".gguf"
    dst = case.id.replace("/", "__") + ".out.gguf"
    monkeypatch.chdir(folder)
    a = parse_args(case.argv(src, dst))
    a["nthread"] = 2 if case.id in TWO_THREADS else 1
    if case.id in TWO_THREADS:       # these models are too small for the pool to be used unless told to
        import refimpl.quantize as Q
        monkeypatch.setattr(Q, "POOL_MIN_ELEMENTS", 0)
    a["progress"] = False
    quantize_model(a.pop("src"), a.pop("dst"), a.pop("ftype"), **a)
    return folder / dst


@pytest.mark.parametrize("case_id", list(DOC["cases"]))
def test_case_matches_llama_quantize(case_id, inputs, monkeypatch):
    want = DOC["cases"][case_id]
    case = CASES[case_id]
    dst = inputs / (case.id.replace("/", "__") + ".out.gguf")
    if "error" in want:
        with pytest.raises(ValueError):
            _run_refimpl(case, inputs, monkeypatch)
        assert not dst.exists(), "a refused case must leave no file"
        assert not [p for p in inputs.iterdir() if p.name.startswith("." + dst.name)], "temporary file left behind"
        return
    got = G.describe(_run_refimpl(case, inputs, monkeypatch))
    if got["header_sha256"] != want["header_sha256"]:
        assert got["kv"] == want["kv"], "metadata differs"
        assert [t.rsplit(" ", 1)[0] for t in got["tensors"]] == [t.rsplit(" ", 1)[0] for t in want["tensors"]], \
            "tensor infos (name, type, ne, offset) differ"
        pytest.fail("header bytes differ")
    for g, w in zip(got["tensors"], want["tensors"]):
        assert g == w, f"first differing tensor: {w.rsplit(' ', 1)[0]}"
    assert got["file_sha256"] == want["file_sha256"] and got["file_size"] == want["file_size"]


@pytest.mark.parametrize("name", list(DOC["imatrix_roundtrip"]))
def test_imatrix_writer_matches_llama_imatrix(name, inputs, tmp_path):
    """llama-imatrix loads each input imatrix and saves it again (GGUF and .dat): refimpl's reader + writer give
    the same bytes."""
    from refimpl.imatrix_file import read_imatrix, write_imatrix

    imat = read_imatrix(inputs / name)
    for fmt, sha in DOC["imatrix_roundtrip"][name].items():
        out = tmp_path / f"{name}.{fmt}"
        write_imatrix(out, imat, fmt=fmt)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == sha, f"{fmt} differs from llama-imatrix's"
