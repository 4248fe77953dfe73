"""Random-string goldens from llama.cpp (golden/tokenizer/, tools/goldens/tokenizer.py): encode in two modes and
detokenize in two modes must equal llama.cpp's answers exactly, for every ggml-vocab file."""
from __future__ import annotations

import json

import pytest
from conftest import golden_path
from sdist import vocab_dir

from refimpl.tokenizer import Tokenizer

VOCABS = sorted(p.stem for p in golden_path("tokenizer").glob("ggml-vocab-*.json"))


@pytest.mark.parametrize("vocab", VOCABS)
def test_tokenizer_goldens(vocab):
    data = json.loads(golden_path(f"tokenizer/{vocab}.json").read_text())
    tok = Tokenizer.from_gguf(vocab_dir() / data["vocab"])
    failures = []
    for case in data["cases"]:
        text = bytes.fromhex(case["text"])
        for key in ("ids_00", "ids_11"):
            add_special, parse_special = bool(int(key[4])), bool(int(key[5]))
            got = tok.encode(text, add_special=add_special, parse_special=parse_special)
            if got != case[key]:
                failures.append((key, text, got, case[key]))
        for key in ("detok_00", "detok_11"):
            remove_special, unparse_special = bool(int(key[6])), bool(int(key[7]))
            got = tok.detokenize(case["ids_11"], remove_special, unparse_special)
            if got != bytes.fromhex(case[key]):
                failures.append((key, text, got, bytes.fromhex(case[key])))
    assert not failures, f"{len(failures)} differences, first: {failures[0]!r}"
