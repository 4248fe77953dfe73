"""refimpl.convert beyond the golden conversions: running a checkpoint folder directly (refimpl.model.load and
python -m refimpl.generate -m DIR convert in memory, nothing written), the engine on the F32 conversion against
transformers' own float32 logits (committed, tools/make_hf_checkpoints.py), and bad input (clear error, non-zero
exit, nothing at the target)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from convert_cases import DATA, extract_checkpoints

#: bound on max |refimpl - transformers| over the logits (first 1024 vocabulary columns, 8 positions), F32
#: conversion, F32 KV cache.  Measured (spec/convert.md): <= 2.5e-5 for the SiLU architectures (float32 sums in
#: another order), 1.3e-3 / 2.6e-3 for gemma3 / gpt2, whose GELU ggml computes through an F16 table (inputs
#: rounded to F16, 2^-11 relative).  Bounds: about 4x the largest measurement of each group.
LOGIT_BOUND = {"tiny-llama2-spm": 1e-4, "tiny-llama3-bpe": 1e-4, "tiny-mistral-spm": 1e-4, "tiny-qwen2-bpe": 1e-4,
               "tiny-qwen3-spm": 1e-4, "tiny-phi3-spm": 1e-4, "tiny-llama-tq-spm": 1e-4, "tiny-gemma3-spm": 1e-2,
               "tiny-gpt2-bpe": 1e-2}
SPM = "tiny-qwen3-spm"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return extract_checkpoints(tmp_path_factory.mktemp("hf"))


def _copy(checkpoints, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(checkpoints / name, dst)
    return dst


def _needs_tokenizers(name):
    if name.endswith("-bpe"):
        pytest.importorskip("tokenizers", reason="BPE checkpoints need the optional extra refimpl[convert]")


@pytest.mark.parametrize("name", sorted(LOGIT_BOUND))
def test_logits_match_transformers(checkpoints, name):
    """The F32 conversion run by refimpl's engine against transformers' float32 forward pass."""
    _needs_tokenizers(name)
    from refimpl import convert, model
    ref = np.load(DATA / "transformers_logits.npz")
    mf = convert.model_file(checkpoints / name, "f32")
    m = model.model_class(mf)(mf)
    m.new_context(32, "f32", "f32")
    want = ref[f"{name}.logits"]
    got = m.eval(ref[f"{name}.tokens"])[:, :want.shape[1]]
    dist = float(np.abs(got - want).max())
    assert dist <= LOGIT_BOUND[name], f"{name}: max |refimpl - transformers| = {dist:.3e}"
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_load_folder_converts_in_memory(checkpoints, tmp_path):
    from refimpl import convert, model
    ck = _copy(checkpoints, SPM, tmp_path)
    before = sorted(os.listdir(ck))
    m = model.load(ck)
    assert sorted(os.listdir(ck)) == before, "loading a folder must not write anything"
    path = convert.convert(ck, tmp_path / "x.gguf", "auto", progress=False)
    f = model.load(path)
    np.testing.assert_array_equal(m.eval([1, 5, 9]), f.eval([1, 5, 9]))


def test_generate_runs_a_checkpoint_folder(checkpoints, tmp_path, capsys):
    from refimpl.generate import main
    ck = _copy(checkpoints, SPM, tmp_path)
    before = sorted(os.listdir(ck))
    assert main(["-m", str(ck), "-p", "The model", "-n", "4", "--temp", "0"]) == 0
    assert sorted(os.listdir(ck)) == before
    assert "The model" in capsys.readouterr().out


def test_cli_writes_default_name_and_honours_ftype_template(checkpoints, tmp_path):
    from refimpl.convert.__main__ import main
    ck = _copy(checkpoints, SPM, tmp_path)
    assert main([str(ck), "--outtype", "q8_0"]) == 0
    from refimpl import gguf
    (written,) = ck.glob("*.gguf")          # gguf.naming_convention: <name>-<size label>-<OUTTYPE>.gguf
    g = gguf.read(written)
    assert written.name == f"{g.get('general.name').replace(' ', '-')}-{g.get('general.size_label')}-Q8_0.gguf"
    assert main([str(ck), "--outfile", str(tmp_path / "m-{ftype}.gguf"), "--outtype", "bf16"]) == 0
    assert (tmp_path / "m-bf16.gguf").is_file()


# ------------------------------------------------------------------------------------------------ bad input
def _fails(ck, tmp_path, match, capsys=None):
    """The API raises ValueError matching ``match``; the CLI exits 1 with it and leaves the target as it was."""
    from refimpl.convert import convert
    from refimpl.convert.__main__ import main
    target = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=match):
        convert(ck, target, "f16", progress=False)
    assert not target.exists()
    target.write_bytes(b"previous")
    assert main([str(ck), "--outfile", str(target), "--outtype", "f16"]) == 1
    assert target.read_bytes() == b"previous"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary file left behind"


def _edit_config(ck, **changes):
    cfg = json.loads((ck / "config.json").read_text())
    cfg.update(changes)
    (ck / "config.json").write_text(json.dumps(cfg))


def test_unsupported_architecture_is_named(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    _edit_config(ck, architectures=["FalconForCausalLM"])
    _fails(ck, tmp_path, r"'FalconForCausalLM' is not supported.*supported: .*LlamaForCausalLM")


def test_missing_tokenizer(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    (ck / "tokenizer.model").unlink()
    _fails(ck, tmp_path, "no tokenizer")


def test_inconsistent_tokenizer(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    (ck / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    _fails(ck, tmp_path, "not a valid SentencePiece model")


def test_broken_tokenizer_json(checkpoints, tmp_path):
    _needs_tokenizers("-bpe")
    ck = _copy(checkpoints, "tiny-qwen2-bpe", tmp_path)
    tj = ck / "tokenizer.json"
    tj.write_bytes(tj.read_bytes()[:5000])
    _fails(ck, tmp_path, "not a valid tokenizer.json")


def test_unknown_bpe_pre_tokenizer_names_its_hash(checkpoints, tmp_path):
    _needs_tokenizers("-bpe")
    ck = _copy(checkpoints, "tiny-qwen2-bpe", tmp_path)
    tj = json.loads((ck / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Whitespace"}
    (ck / "tokenizer.json").write_text(json.dumps(tj))
    _fails(ck, tmp_path, r"pre-tokenizer was not recognized \(chkhsh [0-9a-f]{64}\)")


def test_shapes_disagreeing_with_config(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    _edit_config(ck, hidden_size=96)
    _fails(ck, tmp_path, r"has shape \(514, 64\), but config.json implies \(514, 96\)")


def test_layer_shapes_disagreeing_with_config(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    _edit_config(ck, num_key_value_heads=1)
    _fails(ck, tmp_path, r"k_proj.weight' \(blk.0.attn_k.weight\) has shape \(32, 64\), which does not fit "
                         r"config.json \(expected \(16, 64\)")


def test_truncated_safetensors(checkpoints, tmp_path):
    ck = _copy(checkpoints, SPM, tmp_path)
    st = ck / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-1000])
    _fails(ck, tmp_path, "truncated safetensors file")


def test_sharded_checkpoint_with_a_missing_part(checkpoints, tmp_path):
    ck = _copy(checkpoints, "tiny-mistral-spm", tmp_path)
    sorted(ck.glob("model-*.safetensors"))[-1].unlink()
    _fails(ck, tmp_path, "missing or incomplete model files")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", tmp_path, "no config.json")


def test_bf16_rounding_is_ggmls():
    """--outtype bf16 rounds as ggml_compute_fp32_to_bf16 (gguf-py's BF16 class copies it): checked against the
    library's own ggml_fp32_to_bf16_row_ref on the floats golden (ties, NaN payloads, Inf, subnormals)."""
    from conftest import GOLDEN
    from refimpl.convert.tensors import fp32_to_bf16
    case = np.load(GOLDEN / "floats" / "f32_to_bf16.npz")
    np.testing.assert_array_equal(fp32_to_bf16(case["x"]), case["y"])
