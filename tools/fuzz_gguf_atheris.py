"""Coverage-guided fuzzing of refimpl.gguf's reader with atheris (libFuzzer): only GGUFError may escape.

    /work/venv/bin/python tools/fuzz_gguf_atheris.py [-runs=N] [-max_total_time=S] [-max_len=8192] [CORPUS_DIR]

Seeds: the committed malformed corpus (golden/gguf/corpus.npz) is written into a temporary seed directory
unless corpus directories are given.  An input is parsed, every string array decoded, every tensor's data
viewed, and the metadata re-serialised; any exception other than GGUFError is a crash (libFuzzer saves the
input as crash-*).  At exit it prints how many inputs ran.  The CI equivalent (bounded, mutation-based, no
coverage feedback) is tests/test_gguf_props.py::test_fuzz_only_gguf_error_escapes.
"""
from __future__ import annotations

import atexit
import sys
import tempfile
import zlib
from pathlib import Path

import atheris
import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# The numba-compiled string scan must not be instrumented (atheris rewrites bytecode, numba cannot type the
# inserted hooks); the pure-Python reader/writer are.
import refimpl._jit  # noqa: E402,F401

with atheris.instrument_imports(include=["refimpl.gguf"], exclude=["refimpl.gguf._scan"]):
    import refimpl.gguf as gguf
    from refimpl.gguf import GGUFError, GGUFValueType

RUNS = 0


def exercise(data: bytes) -> None:
    global RUNS
    RUNS += 1
    try:
        f = gguf.read_bytes(data)
    except GGUFError:
        return
    for v in f.metadata.values():
        if v.type == GGUFValueType.ARRAY and v.element_type == GGUFValueType.STRING:
            v.value.to_list()
    for t in f.tensors.values():
        try:
            t.data
        except GGUFError:
            pass
    if f.alignment <= 1 << 20:     # a legal 2^31 alignment means 2 GiB of padding: not worth re-serialising
        gguf.meta_bytes(f.metadata, f.tensors, alignment=f.alignment, version=f.version)


def seed_dir() -> str:
    z = np.load(ROOT / "golden" / "gguf" / "corpus.npz")
    data = zlib.decompress(z["data_zlib"].tobytes())
    off = z["offsets"]
    d = Path(tempfile.mkdtemp(prefix="gguf-fuzz-seeds-"))
    for i in range(len(off) - 1):
        (d / f"{i:05d}").write_bytes(data[off[i]:off[i + 1]])
    return str(d)


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(seed_dir())
    atexit.register(lambda: print(f"gguf atheris: {RUNS} inputs executed", file=sys.stderr))
    atheris.Setup(argv, exercise)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
