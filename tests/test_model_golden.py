"""refimpl's engine against llama.cpp on the tiny golden models (golden/model, tools/goldens/model.py).

For every model: refimpl's logits for every prompt position (one eval of the whole prompt) are within
1e-4 x max|logit| of llama.cpp's, and refimpl's greedy continuation (argmax of its own logits, one token per eval
through the KV cache) is the same 32 tokens as llama.cpp's.  The measured distance is printed (pytest -s) and
attached to the test report (record_property "rel_max_abs_diff").
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import golden_path, load_golden, load_golden_json

REL_TOL = 1e-4

INDEX = load_golden_json("model/models.json")
MODELS = sorted(INDEX["models"])


def _load(name: str):
    from refimpl import model

    info = INDEX["models"][name]
    model._import_architectures()
    if info["arch"] not in model.ARCHITECTURES:
        pytest.skip(f"architecture {info['arch']!r} is not implemented in refimpl.model yet")
    return model.load(golden_path(info["gguf"]), n_ctx=INDEX["settings"]["n_ctx"])


@pytest.mark.parametrize("name", MODELS)
def test_prompt_logits(name, record_property):
    g = load_golden(INDEX["models"][name]["golden"])
    m = _load(name)
    ours = m.eval(g["tokens"])
    theirs = g["logits"]
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    rel = diff / scale
    record_property("rel_max_abs_diff", rel)
    print(f"\n{name}: max|d| {diff:.3e}  max|logit| {scale:.3f}  rel {rel:.3e}")
    assert np.isfinite(ours).all()
    assert rel <= REL_TOL, f"{name}: max|d| {diff:.3e} = {rel:.3e} x max|logit| > {REL_TOL:g}"


@pytest.mark.parametrize("name", MODELS)
def test_greedy_continuation(name):
    g = load_golden(INDEX["models"][name]["golden"])
    m = _load(name)
    last = m.eval(g["tokens"])[-1]
    ours = []
    for _ in range(len(g["greedy"])):
        tok = int(np.argmax(last))           # first maximum, as llama.cpp's greedy sampler
        ours.append(tok)
        last = m.eval([tok])[-1]
    theirs = g["greedy"].tolist()
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    assert ours == theirs, f"{name}: greedy continuation differs from llama.cpp's at step {first}"
