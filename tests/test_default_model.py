"""refimpl's embedded default model (refimpl/data/tiny-kjv-q8_0.gguf) against llama.cpp (golden/default_model).

- the golden was made from the very file refimpl ships (sha256), with the prompt the generate CLI uses;
- refimpl's tokenizer gives llama.cpp's tokens for the default prompt;
- refimpl's greedy continuation of the default prompt (argmax of its own logits, one token per eval through the
  KV cache) is llama.cpp's, all 64 tokens, and detokenizes to llama.cpp's bytes;
- refimpl's logits (every prompt position; every greedy step) are llama.cpp's bit for bit, as in
  tests/test_model_golden.py (the distance and the number of differing floats are printed with pytest -s).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import KERNEL_LAYERS, load_golden, load_golden_json

def _package_data() -> Path:
    """The data folder of the refimpl that is imported (site-packages in CI, the checkout when editable)."""
    import refimpl

    return Path(refimpl.__file__).resolve().parent / "data"


DATA = _package_data()
GOLDEN = load_golden_json("default_model/tiny-kjv.json")


@pytest.fixture(scope="module")
def golden():
    return load_golden("default_model/tiny-kjv.npz")


@pytest.fixture(scope="module")
def model_path():
    import refimpl.generate

    return refimpl.generate.DEFAULT_MODEL


@pytest.fixture(scope="module", params=KERNEL_LAYERS)
def run(request, golden, model_path):
    """refimpl's prompt logits, greedy tokens and the logits each greedy token came from, under each kernel layer
    (so the logits are bit-identical with either layer: both are llama.cpp's)."""
    from refimpl import model, quant

    before = quant.get_kernels()
    quant.set_kernels(request.param)
    try:
        m = model.load(str(model_path), n_ctx=GOLDEN["settings"]["n_ctx"])
        prompt_logits = m.eval(golden["tokens"], n_past=0)
        last = prompt_logits[-1]
        greedy, greedy_logits = [], []
        for _ in range(len(golden["greedy"])):
            tok = int(np.argmax(last))             # first maximum, as llama.cpp's greedy sampler
            greedy.append(tok)
            greedy_logits.append(last)
            last = m.eval([tok])[-1]
    finally:
        quant.set_kernels(before)
    return prompt_logits, greedy, np.stack(greedy_logits)


def test_default_prompt_and_file_are_the_goldens(model_path):
    info = json.loads((DATA / "tiny-kjv.json").read_text(encoding="utf-8"))
    assert info["prompt"] == GOLDEN["prompt"]
    assert Path(model_path).resolve() == (DATA / info["file"]).resolve()
    assert model_path.stat().st_size < 10 * 2**20
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == GOLDEN["model_sha256"], \
        "the shipped model is not the one the golden was made from: run tools/make_golden.py default_model"


def test_tokenizer_matches_llama_cpp(golden, model_path):
    from refimpl.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(str(model_path))
    assert tok.encode(GOLDEN["prompt"], add_special=True, parse_special=False) == golden["tokens"].tolist()


def test_greedy_continuation_matches_llama_cpp(golden, run, model_path):
    from refimpl.tokenizer import Tokenizer

    ours = run[1]
    theirs = golden["greedy"].tolist()
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    assert ours == theirs, f"greedy continuation differs from llama.cpp's at step {first}"
    tok = Tokenizer.from_gguf(str(model_path))
    text = b"".join(tok.token_to_piece(t, special=False) for t in ours)
    assert text == bytes.fromhex(GOLDEN["continuation_hex"])


@pytest.mark.parametrize("which", ["prompt", "greedy_steps"])
def test_logits_match_llama_cpp(golden, run, which, record_property):
    ours = run[0] if which == "prompt" else run[2]
    theirs = golden["logits"] if which == "prompt" else golden["greedy_logits"]
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.isfinite(ours).all()
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    n_bits = int(np.count_nonzero(ours.view(np.uint32) != theirs.view(np.uint32)))
    record_property("rel_max_abs_diff", diff / scale)
    record_property("differing_floats", n_bits)
    print(f"\n{which}: max|d| {diff:.3e}  max|logit| {scale:.3f}  differing floats {n_bits}/{ours.size}")
    assert n_bits == 0, f"{n_bits}/{ours.size} logits differ from llama.cpp's; max|d| {diff:.3e}"


def test_generate_cli_without_arguments_uses_the_embedded_model(capsys):
    """`python -m refimpl.generate` (greedy here, and 8 tokens) prints the default prompt and llama.cpp's text."""
    from refimpl import generate
    from refimpl.tokenizer import Tokenizer

    assert generate.main(["--temp", "0", "-n", "8"]) == 0
    out = capsys.readouterr().out
    tok = Tokenizer.from_gguf(str(generate.DEFAULT_MODEL))
    golden = load_golden("default_model/tiny-kjv.npz")["greedy"][:8]
    expected = GOLDEN["prompt"] + b"".join(tok.token_to_piece(int(t), special=False) for t in golden).decode()
    assert out == expected + "\n"


@pytest.mark.parametrize("case", range(len(GOLDEN["tokenized"])))
def test_tokenizer_matches_llama_cpp_on_texts(case, model_path):
    from refimpl.tokenizer import Tokenizer

    g = GOLDEN["tokenized"][case]
    tok = Tokenizer.from_gguf(str(model_path))
    assert tok.encode(g["text"], add_special=True, parse_special=False) == g["tokens"]
