"""refimpl.quantize's command line and its refusals: each bad input is a clear error, a non-zero exit and no file
at the target (nor a temporary one); Ctrl-C leaves nothing.  The byte-for-byte checks are in
test_quantize_golden.py."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parent.parent
MODEL = GOLDEN / "model" / "llama-F32.gguf"
MODEL_Q8 = GOLDEN / "model" / "llama-Q8_0.gguf"


class _Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def _cli(*args, cwd=None):
    """refimpl.quantize's main() in this process (a subprocess per case would cost seconds of start-up each)."""
    import contextlib
    import io

    from refimpl.quantize.__main__ import main

    err = io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stderr(err):
            code = main(["--no-progress", *map(str, args)])
    finally:
        os.chdir(old)
    return _Result(code, err.getvalue())


def _model256(folder: Path) -> Path:
    """A one-block model with 256-wide rows (the golden models are 64 wide: every 256-block type falls back)."""
    from refimpl.gguf import write

    path = folder / "m256.gguf"
    rng = np.random.default_rng(0)
    write(path, {"general.architecture": "llama", "llama.block_count": 1},
          {"token_embd.weight": rng.standard_normal((8, 256)).astype(np.float32),
           "blk.0.attn_q.weight": rng.standard_normal((4, 256)).astype(np.float32),
           "blk.0.ffn_down.weight": rng.standard_normal((4, 256)).astype(np.float32)})
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_default_output_name_and_summary(tmp_path):
    src = tmp_path / "in.gguf"
    src.write_bytes(MODEL.read_bytes())
    r = _cli(src, "q8_0", "1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ggml-model-Q8_0.gguf").exists()     # llama-quantize's name, the ftype as listed
    assert "model size" in r.stderr and "BPW" in r.stderr and "quant size" in r.stderr
    r = _cli(src, "12", "1")        # 12 is listed first as the alias Q3_K
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ggml-model-Q3_K.gguf").exists()


def test_verbose_lines(tmp_path):
    r = _cli("--verbose", MODEL, tmp_path / "out.gguf", "Q4_K_M")
    assert r.returncode == 0, r.stderr
    assert "blk.0.attn_q.weight" in r.stderr and "converting to" in r.stderr and "MiB" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["NOT_A_TYPE"], "invalid ftype"),
    (["--keep-split", "Q4_K_M"], "not supported"),
    (["--max-buffer-size", "64", "Q4_K_M"], "not supported"),
    (["--tensor-type", "attn_q=q9_9", "Q4_K_M"], "invalid ggml_type"),
    (["--tensor-type", "(?<!x)attn_q=q8_0", "Q4_K_M"], "std::regex"),
    (["--override-kv", "general.name=text:x", "Q4_K_M"], "invalid type for KV override"),
    (["--include-weights", "a", "--exclude-weights", "b", "Q4_K_M"], "cannot be used together"),
    (["IQ2_XS"], "requires an importance matrix"),
])
def test_refusals_leave_no_file(tmp_path, args, message):
    out = tmp_path / "out.gguf"
    opts = [a for a in args[:-1]]
    r = _cli(*opts, _model256(tmp_path), out, args[-1])
    assert r.returncode != 0
    assert message in r.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_requantize_needs_the_flag(tmp_path):
    out = tmp_path / "out.gguf"
    r = _cli(MODEL_Q8, out, "Q4_K_M")
    assert r.returncode != 0 and "requantizing from type Q8_0 is disabled" in r.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_corrupt_input(tmp_path):
    bad = tmp_path / "bad.gguf"
    data = bytearray(MODEL.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))       # truncated: tensor data past the end of the file
    out = tmp_path / "out.gguf"
    r = _cli(bad, out, "Q4_K_M")
    assert r.returncode != 0 and "error" in r.stderr
    assert not out.exists() and _leftovers(tmp_path) == []
    bad.write_bytes(b"GGUF" + bytes(20))                   # a header that says nothing sensible
    r = _cli(bad, out, "Q4_K_M")
    assert r.returncode != 0 and not out.exists()


def test_unsupported_shape(tmp_path):
    """Q1_0 (128-element blocks) has no smaller-block fallback: llama-quantize throws for 64-wide rows."""
    out = tmp_path / "out.gguf"
    r = _cli(MODEL, out, "Q1_0")
    assert r.returncode != 0 and "no tensor type fallback is defined for type Q1_0" in r.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_imatrix_errors(tmp_path):
    from refimpl.imatrix_file import Imatrix, ImatrixEntry, write_imatrix
    from refimpl.quantize import quantize_model

    wrong = Imatrix({"blk.0.attn_q.weight": ImatrixEntry(np.ones((1, 32), np.float32), [512.0])},
                    ["d.txt"], 1, 512)
    write_imatrix(tmp_path / "wrong.gguf", wrong)
    out = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match="imatrix size 32 is different from tensor size 64"):
        quantize_model(MODEL, out, "IQ4_XS", imatrix=tmp_path / "wrong.gguf", progress=False, nthread=1)
    with pytest.raises(ValueError, match="Missing importance matrix for tensor blk.0.ffn_down.weight"):
        partial = Imatrix({"blk.0.attn_q.weight": ImatrixEntry(np.ones((1, 256), np.float32), [512.0])},
                          ["d.txt"], 1, 512)
        quantize_model(_model256(tmp_path), out, "IQ2_XXS", imatrix=partial, progress=False, nthread=1)
    (tmp_path / "junk.dat").write_bytes(b"\x05\x00\x00\x00junk")
    with pytest.raises(ValueError, match="not an imatrix file"):
        quantize_model(MODEL, out, "IQ4_XS", imatrix=tmp_path / "junk.dat", progress=False, nthread=1)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_dry_run_writes_nothing(tmp_path):
    r = _cli("--dry-run", MODEL, "IQ2_XS", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process is POSIX")
def test_ctrl_c_leaves_nothing(tmp_path):
    """A bigger model (so there is time to interrupt), SIGINT while it is being written: exit 130, no file."""
    from refimpl.gguf import write

    rng = np.random.default_rng(0)
    tensors = {f"blk.{i}.ffn_down.weight": rng.standard_normal((512, 1024)).astype(np.float32) for i in range(24)}
    src = tmp_path / "big.gguf"
    write(src, {"general.architecture": "llama", "llama.block_count": np.uint32(24)}, tensors)
    out = tmp_path / "out.gguf"
    # the child gets SIGINT's default disposition, as a process started from a terminal has: a job started in the
    # background by a non-interactive shell (a CI script's `cmd &`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler
    p = subprocess.Popen([sys.executable, "-m", "refimpl.quantize", "--no-progress", "--verbose", str(src), str(out),
                          "IQ4_XS", "1"], stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # wait until the first tensor is written, then interrupt
    for line in p.stderr:
        if "converting to" in line:
            break
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=120)[1]
    assert p.returncode != 0, rest
    assert not out.exists() and _leftovers(tmp_path) == []
