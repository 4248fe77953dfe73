"""refimpl's per-op trace against llama.cpp's eval callback (golden/trace, tools/goldens/trace.py): for the tiny
model of each architecture in F32 and Q8_0, every tensor llama.cpp's graph names (views and ggml's positional
node_N names aside; see golden/README.md) must come out of ``Model.eval(trace=)`` under the same name and
occurrence, with the same ggml ne and the same float bits — and refimpl must trace nothing llama.cpp does not."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import golden_path, load_golden, load_golden_json
from refimpl import model
from refimpl.trace import ne_of, trace

INDEX = load_golden_json("trace/index.json")
MODELS = sorted(INDEX["models"])


def test_every_architecture_has_a_float_and_a_quantized_trace():
    archs = {name.split("-")[0] for name in MODELS}
    assert archs == {"llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2"}
    for arch in archs:
        assert {f"{arch}-F32", f"{arch}-Q8_0"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_trace_matches_llama_cpp(name):
    info = INDEX["models"][name]
    golden = load_golden(f"trace/{name}.npz")
    m = model.load(golden_path(info["gguf"]), n_ctx=INDEX["settings"]["n_ctx"])
    ours = {t.key: t for t in trace(m, info["tokens"])}
    theirs = {(e["name"], e["occurrence"]): e for e in info["tensors"]}

    missing = [k for k in theirs if k not in ours]
    assert not missing, f"{name}: llama.cpp names tensors refimpl does not trace: {missing}"
    extra = [k for k in ours if k not in theirs]
    assert not extra, f"{name}: refimpl traces tensors llama.cpp's graph does not name: {extra}"
    failures = []
    for key, e in theirs.items():
        t, g = ours[key], golden[e["key"]]
        if t.ne != e["ne"] or ne_of(g.shape) != e["ne"]:
            failures.append(f"{key}: ne {t.ne}, llama.cpp {e['ne']}")
            continue
        a, b = t.array.reshape(-1).view(np.uint32), g.reshape(-1).view(np.uint32)
        n = int(np.count_nonzero(a != b))
        if n:
            d = float(np.abs(t.array.reshape(-1).astype(np.float64) - g.reshape(-1)).max())
            failures.append(f"{key}: {n}/{a.size} floats differ, max |d| {d:.3e}")
    assert not failures, f"{name}: " + "; ".join(failures)
