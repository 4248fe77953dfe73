"""refimpl.quality against the pinned llama-perplexity / llama-imatrix / llama-quantize (golden/quality, made by
tools/goldens/quality.py): printed numbers compared as printed, files byte for byte."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from refimpl import quality
from refimpl.imatrix_file import write_imatrix
from refimpl.quality._common import read_text_file
from refimpl.quality.imatrix import ImatrixCollector, compute_imatrix, statistics_report

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden" / "quality"
SPEC = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
CASES = SPEC["cases"]
TEXT = read_text_file(ROOT / SPEC["text"])


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_text_is_the_one_the_goldens_used():
    assert _sha(ROOT / SPEC["text"]) == SPEC["text_sha256"]


PPL_IDS = [k for k, v in CASES.items() if k.startswith("ppl.")]


@pytest.fixture(scope="module")
def base_files(tmp_path_factory):
    """The base-logits files refimpl writes, by case id (made once; the KLD test reads one)."""
    return {}


@pytest.mark.parametrize("cid", PPL_IDS)
def test_perplexity(cid, tmp_path_factory, base_files):
    c = CASES[cid]
    base = tmp_path_factory.mktemp("base") / f"{cid}.kld" if "base_file" in c else None
    res = quality.perplexity(ROOT / c["model"], TEXT, n_ctx=c["n_ctx"], n_batch=c["n_batch"], n_chunks=c["chunks"],
                             kl_divergence_base=base)
    assert res.running_line() == c["running"]
    assert res.final_line() == c["final"]
    if base is not None:
        bf = c["base_file"]
        data = base.read_bytes()
        rows = np.load(GOLDEN / bf["rows"])
        nv = rows["rows"].shape[1]
        head = rows["head"].tobytes()
        assert data[:len(head)] == head, "header/tokens differ"
        mine = np.frombuffer(data[len(head):], "<u2").reshape(-1, nv)
        np.testing.assert_array_equal(mine[rows["row_index"]], rows["rows"])
        assert len(data) == bf["bytes"]
        assert hashlib.sha256(data).hexdigest() == bf["sha256"]
        base_files[cid] = base


@pytest.mark.parametrize("cid", [k for k in CASES if k.startswith("kld.")])
def test_kl_divergence_report(cid, tmp_path, base_files):
    from refimpl import quantize_model

    c = CASES[cid]
    q = c["quantized_model"]
    if c["base_case"] not in base_files:
        pytest.skip(f"{c['base_case']} did not produce its base file (see its own failure)")
    # the quantized model is llama-quantize's: refimpl's quantizer makes the same bytes (checked here first)
    qpath = tmp_path / f"tiny-kjv-{q['ftype']}.gguf"
    quantize_model(ROOT / q["from"], qpath, q["ftype"], allow_requantize=q["allow_requantize"], nthread=1,
                   progress=False)
    assert _sha(qpath) == q["sha256"], "refimpl.quantize_model differs from llama-quantize (test_quantize_model*)"
    res = quality.kl_divergence(qpath, base_files[c["base_case"]])
    mine = [quality.KLD_TABLE_HEADER, *res.chunk_lines, "", *res.report().splitlines()]
    assert mine == c["report"]
    s = res.statistics()
    assert f"{s['kld_mean']:10.6f}" in next(ln for ln in c["report"] if ln.startswith("Mean    KLD"))


IMATRIX_IDS = [k for k in CASES if k.startswith("imatrix.") and "outputs" in CASES[k]]


@pytest.fixture(scope="module")
def imatrix_runs():
    return {}


@pytest.mark.parametrize("cid", IMATRIX_IDS)
def test_imatrix_files(cid, tmp_path, imatrix_runs):
    c = CASES[cid]
    p = c["params"]
    in_files = [GOLDEN / f for f in p.get("in_files", ())]
    if "model" in p:
        res = compute_imatrix(ROOT / p["model"], TEXT, n_ctx=p["n_ctx"], n_batch=p.get("n_batch", 2048),
                              n_ubatch=p.get("n_ubatch", 512), n_chunks=p["chunks"],
                              process_output=p.get("process_output", False), in_files=in_files)
        assert "".join(f"[{i + 1}]{x:.4f}," for i, x in enumerate(res.chunk_ppl)) == c["running"]
        assert f"Final estimate: PPL = {res.ppl:.4f} +/- {res.ppl_error:.5f}" == c["final"]
        imat = res.imatrix(SPEC["text"])
    else:
        col = ImatrixCollector(512)
        for f in in_files:
            col.load(f)
        imat = col.to_imatrix("")
    imatrix_runs[cid] = imat
    for fmt, o in c["outputs"].items():
        out = tmp_path / o["file"]
        write_imatrix(out, imat, fmt)
        assert out.read_bytes() == (GOLDEN / o["file"]).read_bytes(), f"{o['file']} differs"


def test_show_statistics():
    c = CASES["imatrix.show-statistics"]
    col = ImatrixCollector(512)
    col.load(GOLDEN / c["in_file"])
    assert statistics_report(col, c["in_file"]).rstrip("\n") == c["stderr"].rstrip("\n")


@pytest.mark.parametrize("cid", [k for k in CASES if k.startswith("quantize.")])
def test_refimpl_imatrix_drives_the_quantizer(cid, tmp_path, monkeypatch, imatrix_runs):
    """An imatrix made by refimpl, given to refimpl.quantize_model, gives llama-quantize's file made with
    llama-imatrix's matrix (the matrix path is stored in the file: both name it imatrix.gguf)."""
    from refimpl import quantize_model

    c = CASES[cid]
    if c["imatrix_case"] not in imatrix_runs:
        pytest.skip(f"{c['imatrix_case']} did not run (see its own failure)")
    monkeypatch.chdir(tmp_path)
    write_imatrix("imatrix.gguf", imatrix_runs[c["imatrix_case"]], "gguf")
    quantize_model(ROOT / c["argv"][3], "out.gguf", c["ftype"], imatrix="imatrix.gguf", allow_requantize=True,
                   nthread=1, progress=False)
    assert _sha("out.gguf") == c["sha256"]
