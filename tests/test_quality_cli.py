"""python -m refimpl.perplexity / refimpl.imatrix: output as llama.cpp prints it, and bad input (clear error,
non-zero exit, nothing half-written)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl import imatrix as imatrix_cli
from refimpl import perplexity as ppl_cli
from refimpl import quality

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden" / "quality"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
TINY = str(ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf")
TEXT = str(ROOT / "refimpl" / "data" / "kjv-heldout.txt")
RANDOM = str(ROOT / "golden" / "model" / "llama-Q4_K.gguf")


def test_perplexity_cli_prints_llama_perplexity_lines(capsys):
    c = CASES["ppl.tiny-kjv.c64.b32"]
    assert ppl_cli.main(["-m", TINY, "-f", TEXT, "-c", "64", "-b", "32", "--chunks", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == c["running"]
    assert out[1] == c["final"]


@pytest.fixture(scope="module")
def small_base(tmp_path_factory):
    """A base-logits file of tiny-kjv (-c 32, 4 chunks)."""
    path = tmp_path_factory.mktemp("kld") / "tiny.kld"
    quality.perplexity(TINY, Path(TEXT).read_text(), n_ctx=32, n_chunks=4, kl_divergence_base=path)
    return path


def test_base_file_header(small_base):
    b = quality.read_base_logits(small_base)
    assert (b.n_ctx, b.n_vocab, b.n_chunk) == (32, 2048, 4)
    assert b.nv == 2048 + 4
    assert small_base.stat().st_mode & 0o777 != 0o600        # a normal file mode, not mkstemp's


def test_kld_against_itself_is_zero(small_base, capsys):
    assert ppl_cli.main(["-m", TINY, "--kl-divergence-base", str(small_base), "--kl-divergence",
                         "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert quality.KLD_TABLE_HEADER in out
    res = quality.kl_divergence(TINY, small_base)
    s = res.statistics()
    assert res.n_same_top == res.count
    assert s["ppl_ratio"] == pytest.approx(1.0, abs=1e-3)   # only the uint16 quantization of the base differs


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_text_too_short(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("In the beginning God created the heaven and the earth.\n")
    out = tmp_path / "base.kld"
    assert ppl_cli.main(["-m", TINY, "-f", str(short), "-c", "128", "--kl-divergence-base", str(out)]) == 1
    assert "you need at least 256 tokens" in _err(capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == [short]     # nothing half-written
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert imatrix_cli.main(["-m", TINY, "-f", str(empty), "-c", "64", "-o", str(tmp_path / "i.gguf")]) == 1
    assert "you need at least 128 tokens" in _err(capsys)
    assert not (tmp_path / "i.gguf").exists()


def test_base_from_another_vocabulary(small_base, capsys):
    assert ppl_cli.main(["-m", RANDOM, "--kl-divergence-base", str(small_base), "--kl-divergence"]) == 1
    assert "inconsistent vocabulary (2048 vs 264" in _err(capsys)


def test_base_from_a_larger_context(small_base, capsys):
    # made with -c 32; -c 16 -b 16 gives one sequence of 16 cells
    assert ppl_cli.main(["-m", TINY, "--kl-divergence-base", str(small_base), "--kl-divergence", "-c", "16",
                         "-b", "16"]) == 1
    assert "has been computed with 32, while the current context is 16" in _err(capsys)


@pytest.mark.parametrize("damage", ["magic", "truncated", "header", "token"])
def test_corrupt_base_file(small_base, tmp_path, damage):
    data = bytearray(small_base.read_bytes())
    if damage == "magic":
        data[:8] = b"_LOGITS_"
    elif damage == "truncated":
        data = data[:-100]
    elif damage == "header":
        data[8:12] = np.int32(64).tobytes()            # another context: the sizes no longer add up
    else:
        data[20:24] = np.int32(99999).tobytes()
    bad = tmp_path / "bad.kld"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match={"magic": "does not look like", "truncated": "truncated",
                                          "header": "expected", "token": "token ids"}[damage]):
        quality.read_base_logits(bad)


def test_kld_needs_base_file(capsys):
    assert ppl_cli.main(["-m", TINY, "--kl-divergence"]) == 2
    assert "log probabilities of the base model" in _err(capsys)


def test_flash_attention_refused(capsys):
    assert ppl_cli.main(["-m", TINY, "-f", TEXT, "-fa", "on"]) == 2
    assert "-fa off" in _err(capsys)


def test_corrupt_imatrix_in_file(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    out = tmp_path / "merged.gguf"
    assert imatrix_cli.main(["--in-file", str(bad), "-o", str(out)]) == 1
    assert "not a valid imatrix file" in _err(capsys)
    assert not out.exists()
    assert imatrix_cli.main(["--in-file", str(bad), "--show-statistics"]) == 1
    assert imatrix_cli.main(["--show-statistics"]) == 2
    assert "a single imatrix file" in _err(capsys)


def test_imatrix_cli_merge_matches_llama_imatrix(tmp_path):
    c = CASES["imatrix.merge"]
    out = tmp_path / "merged.gguf"
    args = [a for f in c["params"]["in_files"] for a in ("--in-file", str(GOLDEN / f))]
    assert imatrix_cli.main([*args, "-o", str(out)]) == 0
    assert out.read_bytes() == (GOLDEN / c["outputs"]["gguf"]["file"]).read_bytes()


def test_micro_batches_follow_split_equal():
    from refimpl.quality.imatrix import micro_batches

    # 5 sequences of 128 in one batch, n_ubatch 512: 102 tokens of each, then the remaining 26 of each
    ub = list(micro_batches(128, 640, 512, 5, 16))
    assert ub == [[(s, 0, 102) for s in range(5)], [(s, 102, 128) for s in range(5)]]
    # one stream: n_ubatch consecutive tokens of each n_batch batch
    assert list(micro_batches(96, 64, 48, 1, 1)) == [[(0, 0, 48)], [(0, 48, 64)], [(0, 64, 96)]]
