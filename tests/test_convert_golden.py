"""refimpl.convert against the pinned convert_hf_to_gguf.py: every golden conversion (9 checkpoints: six
architectures, SPM and BPE tokenizers, single-file and sharded safetensors; outtypes f32/f16/bf16/q8_0 plus
auto, tq1_0/tq2_0, --vocab-only and --model-name; and the vocabularies of two checkpoints with Llama 3's and
Qwen2's real pre-tokenizers) must give a byte-identical file."""
from __future__ import annotations

import hashlib
import json

import pytest

from convert_cases import (METADATA_OVERRIDE, VOCAB_CHECKPOINTS, build_vocab_checkpoint, describe, extract_checkpoints,
                           first_difference, golden_cases)

try:
    import tokenizers  # noqa: F401
    HAVE_TOKENIZERS = True
except ImportError:
    HAVE_TOKENIZERS = False

CASES = golden_cases()


class Checkpoints:
    """The committed checkpoints, extracted once; the vocab-only ones built from the pinned release's ggml-vocab
    files (tests/sdist.py finds or fetches them) when first asked for."""

    def __init__(self, root):
        self.root = extract_checkpoints(root)

    def __truediv__(self, name):
        if not (self.root / name).exists() and name in VOCAB_CHECKPOINTS:
            from sdist import vocab_dir
            build_vocab_checkpoint(self.root, name, vocab_dir())
        return self.root / name


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return Checkpoints(tmp_path_factory.mktemp("hf"))


def test_there_are_golden_cases():
    assert len(CASES) >= 32


@pytest.mark.parametrize("name,case,entry", CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_byte_identical_to_convert_hf_to_gguf(checkpoints, tmp_path, name, case, entry):
    from refimpl.convert import convert
    if name.endswith("-bpe") and not HAVE_TOKENIZERS:
        pytest.skip("BPE (tokenizer.json) checkpoints need the optional extra refimpl[convert] (tokenizers)")
    flags = entry["flags"]
    kwargs = {"vocab_only": "--vocab-only" in flags, "progress": False}
    if "--model-name" in flags:
        kwargs["model_name"] = flags[flags.index("--model-name") + 1]
    if "--metadata" in flags:
        kwargs["metadata"] = tmp_path / "metadata.json"
        kwargs["metadata"].write_text(json.dumps(METADATA_OVERRIDE))
    out = tmp_path / "out.gguf"
    convert(checkpoints / name, out, entry["outtype"], **kwargs)
    data = out.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        pytest.fail(f"{name} {case}: " + first_difference(entry, describe(out)))
    assert len(data) == entry["bytes"]
