"""refimpl.model core: API behaviour, KV cache consistency, errors, sampling chain.  Bit-exactness against llama.cpp
is checked per architecture by tests/test_model_golden.py; these tests check properties that must hold whatever
the weights are."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refimpl import gguf, model
from refimpl.model import layers
from refimpl.sampling import Sampler, SamplerParams, min_p, top_k, top_p

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ROOT / "golden" / "model" / "llama-Q8_0.gguf"
QWEN3 = ROOT / "golden" / "model" / "qwen3-F32.gguf"

needs_models = pytest.mark.skipif(not LLAMA.exists(), reason="golden/model not generated")


@needs_models
@pytest.mark.parametrize("path", [LLAMA, QWEN3], ids=lambda p: p.stem)
def test_incremental_decoding_equals_one_batch(path):
    # The padded KV span only adds masked cells (exact zeros), so token-by-token decoding gives the same bits as
    # one batch, in refimpl as in llama.cpp.
    m = model.load(path, n_ctx=256)
    toks = np.array([1, 5, 9, 200, 17, 3, 44, 2, 8], dtype=np.int64) % m.n_vocab
    full = m.eval(toks, n_past=0)
    m.eval(toks[:4], n_past=0)
    rows = [m.eval(toks[4:6])] + [m.eval([t]) for t in toks[6:]]
    inc = np.concatenate(rows)
    assert np.array_equal(full[4:].view(np.uint32), inc.view(np.uint32))
    # rewinding with n_past reuses the cached prefix
    again = m.eval(toks[3:], n_past=3)
    assert np.array_equal(full[3:].view(np.uint32), again.view(np.uint32))


@needs_models
@pytest.mark.parametrize("path", [LLAMA, QWEN3], ids=lambda p: p.stem)
def test_last_logits_only_is_the_last_row(path):
    # llama.cpp's inp_out_ids: skipping the other rows changes no bit of the row that is computed
    m = model.load(path, n_ctx=64)
    toks = np.arange(12, dtype=np.int64) * 7 % m.n_vocab
    full = m.eval(toks, n_past=0)
    last = m.eval(toks, n_past=0, logits="last")
    assert last.shape == (1, m.n_vocab)
    assert np.array_equal(full[-1:].view(np.uint32), last.view(np.uint32))
    with pytest.raises(ValueError, match="logits must be"):
        m.eval(toks, n_past=0, logits="first")


@needs_models
@pytest.mark.parametrize("type_k,type_v", [("f32", "f32"), ("f32", "f16")])
def test_other_cache_types_run_and_stay_close(type_k, type_v):
    m16 = model.load(LLAMA, n_ctx=256)
    m = model.load(LLAMA, n_ctx=256, type_k=type_k, type_v=type_v)
    toks = np.arange(1, 12) % m.n_vocab
    a, b = m16.eval(toks), m.eval(toks)
    assert np.isfinite(b).all()
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()


@needs_models
def test_q8_0_k_cache_needs_whole_blocks_per_head():
    with pytest.raises(ValueError, match="divisible by 32"):       # the golden llama has head_dim 16
        model.load(LLAMA, n_ctx=256, type_k="q8_0")


def test_q8_0_v_cache_needs_flash_attention():
    with pytest.raises(ValueError, match="flash attention"):
        model.kv_cache.KVCache(1, 1, 32, 32, 16, "f16", "q8_0")


@needs_models
def test_eval_errors():
    m = model.load(LLAMA, n_ctx=256)
    with pytest.raises(ValueError, match="token ids"):
        m.eval([m.n_vocab])
    with pytest.raises(ValueError, match="at least one token"):
        m.eval([])
    with pytest.raises(ValueError, match="context full"):
        m.eval(np.zeros(257, dtype=np.int64))
    m.eval([1, 2], n_past=0)
    with pytest.raises(ValueError, match="n_past"):
        m.eval([1], n_past=5)


@needs_models
def test_unsupported_architecture_and_missing_tensor(tmp_path):
    f = gguf.read(LLAMA)
    meta = {k: v for k, v in f.metadata.items()}
    tensors = {name: f.tensors[name] for name in f.tensors}
    meta_bad = dict(meta)
    meta_bad["general.architecture"] = gguf.GGUFValue(gguf.GGUFValueType.STRING, "mamba")
    gguf.write(tmp_path / "arch.gguf", meta_bad, tensors)
    with pytest.raises(ValueError, match="unsupported architecture 'mamba'"):
        model.load(tmp_path / "arch.gguf")
    del tensors["blk.0.ffn_up.weight"]
    gguf.write(tmp_path / "miss.gguf", meta, tensors)
    with pytest.raises(ValueError, match="blk.0.ffn_up.weight"):
        model.load(tmp_path / "miss.gguf")


def test_expf_sse2_is_close_to_exp_and_saturates():
    xs = np.linspace(-100, 88, 20001, dtype=np.float32)
    got = np.array([layers.expf_sse2(x) for x in xs[::97]], dtype=np.float32)
    ref = np.exp(xs[::97].astype(np.float64))
    assert np.all(np.abs(got - ref) <= 2.0 * np.spacing(ref.astype(np.float32)))
    assert layers.expf_sse2(np.float32(-np.inf)) == 0.0
    assert layers.expf_sse2(np.float32(89.0)) == np.inf


def test_rope_position_zero_is_identity_and_rotation_preserves_norm():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 8)).astype(np.float32)
    for mode in (layers.ROPE_NORMAL, layers.ROPE_NEOX):
        y = layers.rope(x, [0, 5, 100], 8, mode, 10000.0)
        assert np.array_equal(y[0], x[0])
        assert np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    with pytest.raises(ValueError):
        layers.rope(x, [0, 1, 2], 7, layers.ROPE_NORMAL, 10000.0)


def test_rms_norm_matches_definition():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    y = layers.rms_norm(x, 1e-6)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
    assert np.allclose(y, ref, rtol=1e-6)


def test_sampling_chain():
    logits = np.array([1.0, 5.0, 3.0, 4.9, -2.0], dtype=np.float32)
    assert Sampler(SamplerParams(temp=0)).sample(logits) == 1
    ids, lg = top_k(np.arange(5), logits, 2)
    assert list(ids) == [1, 3]
    ids, _ = top_p(np.arange(5), logits, 0.4, 1)
    assert list(ids) == [1]
    ids, _ = min_p(np.arange(5), logits, 0.5, 1)
    assert sorted(ids) == [1, 3]
    s = Sampler(SamplerParams(temp=0, repeat_penalty=2.0))
    s.accept(1)
    assert s.sample(logits) == 3                     # 5.0 / 2 < 4.9
    draws = {Sampler(SamplerParams(temp=1.0, seed=7)).sample(logits) for _ in range(3)}
    assert len(draws) == 1                           # seeded


def test_generate_without_model_exits_cleanly(capsys, monkeypatch):
    from refimpl import generate
    monkeypatch.setattr(generate, "DEFAULT_MODEL", Path("/nonexistent/model.gguf"))
    assert generate.main(["-p", "x"]) == 0
    assert "not installed" in capsys.readouterr().out
