"""refimpl's engine against llama.cpp on the tiny golden models (golden/model, tools/goldens/model.py).

For every model: refimpl's logits for every prompt position (one eval of the whole prompt) are llama.cpp's bit for
bit (0 differing float32 patterns), and refimpl's greedy continuation (argmax of its own logits, one token per eval
through the KV cache) is the same 32 tokens as llama.cpp's.  The measured distance is printed (pytest -s) and
attached to the test report (record_property "rel_max_abs_diff", "differing_floats").

Bit-identity holds on this platform: refimpl reproduces ggml's SSE2 expf/softmax sums and its operation order
(spec/model.md), and the remaining transcendental calls (tanhf for soft-capping, expf on softmax tails) go to
the same libm the oracle called.  A libm whose expf/tanhf round differently in the last place would show here as
a few differing floats -- the assertion then names the count and the distance.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import KERNEL_LAYERS, golden_path, load_golden, load_golden_json

INDEX = load_golden_json("model/models.json")
MODELS = sorted(INDEX["models"])


def _load(name: str):
    from refimpl import model

    info = INDEX["models"][name]
    model._import_architectures()
    if info["arch"] not in model.ARCHITECTURES:
        pytest.skip(f"architecture {info['arch']!r} is not implemented in refimpl.model yet")
    return model.load(golden_path(info["gguf"]), n_ctx=INDEX["settings"]["n_ctx"])


@pytest.mark.parametrize("kernel_layer", KERNEL_LAYERS, indirect=True)
@pytest.mark.parametrize("name", MODELS)
def test_prompt_logits(name, record_property, kernel_layer):
    g = load_golden(INDEX["models"][name]["golden"])
    m = _load(name)
    ours = m.eval(g["tokens"])
    theirs = g["logits"]
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    rel = diff / scale
    n_bits = int(np.count_nonzero(ours.view(np.uint32) != theirs.view(np.uint32)))
    record_property("rel_max_abs_diff", rel)
    record_property("differing_floats", n_bits)
    print(f"\n{name}: max|d| {diff:.3e}  max|logit| {scale:.3f}  rel {rel:.3e}  differing floats {n_bits}")
    assert np.isfinite(ours).all()
    assert n_bits == 0, (f"{name}: {n_bits}/{ours.size} logits differ from llama.cpp's; "
                         f"max|d| {diff:.3e} = {rel:.3e} x max|logit|")


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
