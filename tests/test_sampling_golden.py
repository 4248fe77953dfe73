"""refimpl.sampling picks exactly the token ids llama.cpp's sampler chain picks (golden/sampling, from
tools/goldens/sampling.py): same chain parameters, same dist seed, same logits rows, each pick accepted."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_golden, load_golden_json
from refimpl.sampling import Sampler, SamplerParams

CASES = load_golden_json("sampling/cases.json")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"v{c['vocab']}-{c['params_name']}-{c['kind']}-s{c['seed']}")
def test_sampler_picks_llama_cpp_tokens(case):
    gold = load_golden(f"sampling/v{case['vocab']}.npz")
    rows = gold["logits"][case["index"]].astype(np.float32)
    expected = gold["selected"][case["index"]]
    sampler = Sampler(SamplerParams(seed=case["seed"], **case["params"]))
    picked = []
    for row in rows:
        tok = sampler.sample(row)
        picked.append(tok)
        sampler.accept(tok)
    assert picked == [int(t) for t in expected], f"first difference at step {np.argmax(np.array(picked) != expected)}"
