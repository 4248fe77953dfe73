"""python -m refimpl.gguf dump / diff."""
from __future__ import annotations

import json

import numpy as np

import refimpl.gguf as gguf
from refimpl.gguf import GGUFValue, GGUFValueType as T
from refimpl.gguf.__main__ import main


def _file(path, name="x", tokens=20):
    md = {"general.name": GGUFValue(T.STRING, name), "n": GGUFValue(T.UINT32, 5),
          "tokens": GGUFValue(T.ARRAY, [f"tok{i}" for i in range(tokens)], T.STRING)}
    gguf.write(path, md, {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
                          "q": gguf.Tensor("Q8_0", (2, 32), np.zeros(68, np.uint8))})


def test_dump_text_and_json(tmp_path, capsys):
    p = tmp_path / "a.gguf"
    _file(p)
    assert main(["dump", str(p)]) == 0
    out = capsys.readouterr().out
    assert "GGUF v3" in out and "general.name" in out and "... (20 items)" in out
    assert "Q8_0" in out and "2x32" in out and "3x4" in out
    assert main(["dump", str(p), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["version"] == 3 and obj["metadata"][2]["value"]["n"] == 20
    assert [t["name"] for t in obj["tensors"]] == ["w", "q"] and obj["tensors"][1]["nbytes"] == 68


def test_diff(tmp_path, capsys):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    _file(a)
    _file(b, name="y", tokens=21)
    assert main(["diff", str(a), str(a)]) == 0
    assert "0 differences" in capsys.readouterr().out
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "general.name" in out and "tokens" in out and "2 differences" in out


def test_malformed_file_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    assert main(["dump", str(p)]) == 2
    assert "offset 0x8" in capsys.readouterr().err
