"""llama.cpp's own tokenizer suite (models/ggml-vocab-*.gguf + .inp/.out, read as tests/test-tokenizer-0.cpp does):
every line must give exactly llama.cpp's token ids (add_special=false, parse_special=false)."""
from __future__ import annotations

import pytest

from sdist import vocab_dir

from refimpl.tokenizer import Tokenizer

SEP = b"\n__ggml_vocab_test__\n"
SUITE = ["bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2", "llama-bpe",
         "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder"]


def read_tests(path):
    """read_tests() of test-tokenizer-0.cpp: inputs split on the separator, outputs one line each (stripped)."""
    raw = path.with_name(path.name + ".inp").read_bytes()
    inputs = []
    pos = 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    outputs = path.with_name(path.name + ".out").read_bytes().split(b"\n")
    if outputs and outputs[-1] == b"":
        outputs.pop()
    assert len(inputs) == len(outputs)
    return [(s, [int(t) for t in o.strip().split()]) for s, o in zip(inputs, outputs)]


@pytest.mark.parametrize("name", SUITE)
def test_llama_cpp_tokenizer_suite(name):
    path = vocab_dir() / f"ggml-vocab-{name}.gguf"
    tok = Tokenizer.from_gguf(path)
    cases = read_tests(path)
    failures = [(s, want, got) for s, want in cases
                if (got := tok.encode(s, add_special=False, parse_special=False)) != want]
    assert not failures, f"{len(failures)}/{len(cases)} lines differ, first: {failures[0]!r}"


NOJIT_SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
from test_tokenizer_suite import read_tests
from sdist import vocab_dir
from refimpl.tokenizer import Tokenizer
for name in ("gpt-2", "llama-bpe", "qwen35"):
    path = vocab_dir() / f"ggml-vocab-{{name}}.gguf"
    tok = Tokenizer.from_gguf(path)
    for s, want in read_tests(path):
        assert tok.encode(s, add_special=False, parse_special=False) == want, (name, s)
print("ok")
"""


def test_splitters_without_jit():
    """The numba splitters are plain Python: the suite lines of three pre-tokenizers pass interpreted too."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    tests = str(Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", NOJIT_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
