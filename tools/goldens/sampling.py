"""Sampling goldens: token ids picked by llama.cpp's sampler chain over sequences of random logits rows.

No model: each case builds the chain penalties -> top-k -> typical -> top-p -> min-p -> temp -> dist(seed) with
the C API (llama_sampler_chain_init / _chain_add / llama_sampler_init_*), then for every step fills a
llama_token_data_array (id, logit, p=0, selected=-1, sorted=false) from one logits row, calls
llama_sampler_apply on the chain, records ``data[selected].id`` and feeds it back with llama_sampler_accept
(so the penalty window and the mt19937 state evolve as in generation).

Logits rows are float16 values (stored as float16, used as float32) so the inputs stay small and ties between
equal logits are common; row kinds: Gaussian around a fixed per-case base row (repeats -> penalties bite),
coarse (many ties), extreme (entries at +-40 and +-1000, outside llama.cpp's [-10, 10] sort buckets),
near-uniform, wide (sigma 20).

Files: golden/sampling/cases.json (parameters per case), golden/sampling/v<vocab>.npz with
``logits`` f16[n_cases, n_steps, vocab] and ``selected`` i32[n_cases, n_steps].
"""
from __future__ import annotations

import ctypes

import numpy as np

DESCRIPTION = ("token ids selected by llama.cpp's sampler chain (penalties, top-k, typical, top-p, min-p, temp, "
               "dist(seed)) over sequences of random logits rows, accepting each pick")

#: parameter sets: (name, dict) — the chain's parameters; min_keep is shared by typical/top-p/min-p
PARAM_SETS = [
    ("default", dict(penalty_last_n=64, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                     top_k=40, typical_p=1.0, top_p=0.95, min_p=0.05, temp=0.8, min_keep=1)),
    ("typical", dict(penalty_last_n=64, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                     top_k=40, typical_p=0.9, top_p=0.95, min_p=0.05, temp=0.8, min_keep=1)),
    ("no_top_k_hot", dict(penalty_last_n=64, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                          top_k=0, typical_p=1.0, top_p=0.95, min_p=0.05, temp=1.5, min_keep=1)),
    ("typical_full", dict(penalty_last_n=16, repeat_penalty=1.2, frequency_penalty=0.1, presence_penalty=0.2,
                          top_k=0, typical_p=0.9, top_p=0.9, min_p=0.0, temp=1.0, min_keep=1)),
    ("big_k_min_keep", dict(penalty_last_n=64, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                            top_k=200, typical_p=1.0, top_p=0.5, min_p=0.3, temp=0.7, min_keep=5)),
    ("min_p_fallback", dict(penalty_last_n=8, repeat_penalty=1.5, frequency_penalty=0.0, presence_penalty=0.5,
                            top_k=0, typical_p=1.0, top_p=1.0, min_p=0.1, temp=1.2, min_keep=50)),
    ("top_k_1", dict(penalty_last_n=64, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                     top_k=1, typical_p=1.0, top_p=0.95, min_p=0.05, temp=0.8, min_keep=1)),
    ("low_p_keep3", dict(penalty_last_n=0, repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                         top_k=0, typical_p=0.5, top_p=0.3, min_p=0.0, temp=1.0, min_keep=3)),
]

SEEDS = [0, 42, 1234567, 0xFFFFFFFE, 7]
#: vocab size -> (row kinds, steps per case)
VOCABS = {64: (("base", "coarse", "extreme", "flat", "wide"), 32), 2000: (("base", "coarse"), 24)}


def make_rows(kind: str, vocab: int, n_steps: int, rng) -> np.ndarray:
    if kind == "base":
        base = rng.standard_normal(vocab) * 2.0
        rows = base + rng.standard_normal((n_steps, vocab)) * 0.7
    elif kind == "coarse":
        base = rng.standard_normal(vocab) * 2.0
        rows = np.round((base + rng.standard_normal((n_steps, vocab))) * 2.0) / 2.0
    elif kind == "extreme":
        rows = rng.standard_normal((n_steps, vocab)) * 3.0
        for r in rows:
            n = min(8, vocab)
            idx = rng.choice(vocab, n, replace=False)
            r[idx] = rng.choice([40.0, -40.0, 1000.0, -1000.0, 12.0, -12.0, 40.0, 40.0], n)
    elif kind == "flat":
        rows = rng.uniform(-0.01, 0.01, (n_steps, vocab))
    elif kind == "wide":
        rows = rng.standard_normal((n_steps, vocab)) * 20.0
    else:
        raise ValueError(kind)
    return rows.astype(np.float16)


def cases():
    """(case list for json, {vocab: logits f16[n_cases, n_steps, vocab]}) — deterministic."""
    out, logits = [], {}
    rng = np.random.default_rng(20261122)
    k = 0
    for vocab, (kinds, n_steps) in VOCABS.items():
        rows = []
        for pname, params in PARAM_SETS:
            for kind in kinds:
                seed = SEEDS[k % len(SEEDS)]
                k += 1
                out.append(dict(vocab=vocab, index=len(rows), params_name=pname, params=params, kind=kind,
                                seed=seed, n_steps=n_steps))
                rows.append(make_rows(kind, vocab, n_steps, rng))
        logits[vocab] = np.stack(rows)
    return out, logits


def run_chain(llama_cpp, params: dict, seed: int, vocab: int, rows: np.ndarray) -> np.ndarray:
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    add(chain, llama_cpp.llama_sampler_init_penalties(vocab, params["penalty_last_n"], params["repeat_penalty"],
                                                      params["frequency_penalty"], params["presence_penalty"]))
    add(chain, llama_cpp.llama_sampler_init_top_k(params["top_k"]))
    add(chain, llama_cpp.llama_sampler_init_typical(params["typical_p"], params["min_keep"]))
    add(chain, llama_cpp.llama_sampler_init_top_p(params["top_p"], params["min_keep"]))
    add(chain, llama_cpp.llama_sampler_init_min_p(params["min_p"], params["min_keep"]))
    add(chain, llama_cpp.llama_sampler_init_temp(params["temp"]))
    add(chain, llama_cpp.llama_sampler_init_dist(seed))
    out = np.empty(len(rows), dtype=np.int32)
    try:
        for step, row in enumerate(rows):
            data = (llama_cpp.llama_token_data * vocab)()
            for i, v in enumerate(row.astype(np.float32)):
                data[i].id = i
                data[i].logit = float(v)
                data[i].p = 0.0
            arr = llama_cpp.llama_token_data_array(data=data, size=vocab, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
            if not 0 <= arr.selected < arr.size:
                raise RuntimeError(f"llama.cpp selected {arr.selected} of {arr.size}")
            tok = int(data[arr.selected].id)
            out[step] = tok
            llama_cpp.llama_sampler_accept(chain, tok)
    finally:
        llama_cpp.llama_sampler_free(chain)
    return out


def generate(oracle, writer) -> None:
    import llama_cpp

    case_list, logits = cases()
    for vocab, rows in logits.items():
        sel = np.stack([run_chain(llama_cpp, c["params"], c["seed"], vocab, rows[c["index"]])
                        for c in case_list if c["vocab"] == vocab])
        writer.npz(f"v{vocab}.npz", {"logits": rows, "selected": sel},
                   f"vocab {vocab}: logits f16[case, step, vocab] and the ids llama.cpp's chain selected")
    writer.json("cases.json", case_list, "sampling cases: vocab, index into v<vocab>.npz, chain parameters, "
                "row kind, dist seed, steps")


def fresh(oracle, rng) -> list[str]:
    """Random chains (random parameters, vocab sizes, row kinds, seeds) compared against refimpl's Sampler."""
    import llama_cpp

    from refimpl.sampling import Sampler, SamplerParams

    fails = []
    kinds = ("base", "coarse", "extreme", "flat", "wide")
    for _ in range(40):
        vocab = int(rng.choice([2, 17, 64, 129, 300, 1025, 3000]))
        params = dict(penalty_last_n=int(rng.choice([0, 4, 64])),
                      repeat_penalty=float(np.float32(rng.choice([1.0, 1.1, 1.3]))),
                      frequency_penalty=float(np.float32(rng.choice([0.0, 0.25]))),
                      presence_penalty=float(np.float32(rng.choice([0.0, 0.5]))),
                      top_k=int(rng.choice([0, 1, 5, 40, 130, 400])),
                      typical_p=float(np.float32(rng.choice([1.0, 0.95, 0.5]))),
                      top_p=float(np.float32(rng.choice([1.0, 0.95, 0.6]))),
                      min_p=float(np.float32(rng.choice([0.0, 0.05, 0.2]))),
                      temp=float(np.float32(rng.choice([0.5, 1.0, 1.7]))),
                      min_keep=int(rng.choice([0, 1, 3, 20])))
        seed = int(rng.integers(0, 0xFFFFFFFF))
        kind = str(rng.choice(kinds))
        rows = make_rows(kind, vocab, 12, rng).astype(np.float32)
        want = run_chain(llama_cpp, params, seed, vocab, rows)
        s = Sampler(SamplerParams(seed=seed, **params))
        got = []
        for row in rows:
            got.append(s.sample(row))
            s.accept(got[-1])
        if got != [int(t) for t in want]:
            fails.append(f"sampling: vocab {vocab} {kind} seed {seed} {params}: {got} != {list(want)}")
    return fails
