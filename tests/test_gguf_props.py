"""Properties of refimpl.gguf: write -> read round-trips anything, and malformed bytes only ever raise GGUFError.

The fuzz test mutates the committed corpus (golden/gguf/corpus.npz) for a bounded time
(REFIMPL_GGUF_FUZZ_SECONDS, default 45 s); tools/fuzz_gguf_atheris.py runs the same oracle-free check for hours.
"""
from __future__ import annotations

import os
import time
import zlib

import numpy as np
import pytest
from conftest import GOLDEN, load_golden
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refimpl.gguf as gguf
from refimpl.gguf import GGUFError, GGUFValue, GGUFValueType as T
from refimpl.gguf.types import GGML_TYPES

INT_RANGES = {T.UINT8: (0, 255), T.INT8: (-128, 127), T.UINT16: (0, 2**16 - 1), T.INT16: (-2**15, 2**15 - 1),
              T.UINT32: (0, 2**32 - 1), T.INT32: (-2**31, 2**31 - 1), T.UINT64: (0, 2**64 - 1),
              T.INT64: (-2**63, 2**63 - 1)}
DTYPES = {T.UINT8: "u1", T.INT8: "i1", T.UINT16: "u2", T.INT16: "i2", T.UINT32: "u4", T.INT32: "i4",
          T.UINT64: "u8", T.INT64: "i8", T.FLOAT32: "f4", T.FLOAT64: "f8"}
any_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.binary(max_size=12).map(
    lambda b: b.decode("utf-8", "surrogateescape"))


def scalar(t):
    if t in INT_RANGES:
        return st.integers(*INT_RANGES[t])
    if t == T.FLOAT32:
        return st.integers(0, 2**32 - 1).map(
            lambda u: GGUFValue._trusted(T.FLOAT32, float(np.uint32(u).view(np.float32)), f32_bits=u))
    if t == T.FLOAT64:
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == T.BOOL:
        return st.booleans()
    return any_text


@st.composite
def values(draw):
    t = draw(st.sampled_from([x for x in T if x != T.ARRAY] + [T.ARRAY] * 4))
    if t != T.ARRAY:
        v = draw(scalar(t))
        return v if isinstance(v, GGUFValue) else GGUFValue(t, v)
    et = draw(st.sampled_from([x for x in T if x != T.ARRAY]))
    n = draw(st.integers(0, 20))
    if et == T.STRING:
        return GGUFValue(T.ARRAY, draw(st.lists(any_text, min_size=n, max_size=n)), et)
    if et == T.BOOL:
        return GGUFValue(T.ARRAY, draw(st.lists(st.booleans(), min_size=n, max_size=n)), et)
    raw = draw(st.binary(min_size=n * np.dtype(DTYPES[et]).itemsize, max_size=n * np.dtype(DTYPES[et]).itemsize))
    return GGUFValue(T.ARRAY, np.frombuffer(raw, dtype="<" + DTYPES[et]), et)


LIVE = [t for t in GGML_TYPES if not t.removed]


@st.composite
def tensors(draw):
    out = {}
    for i in range(draw(st.integers(0, 4))):
        g = draw(st.sampled_from(LIVE))
        nd = draw(st.integers(1, 4))
        shape = [draw(st.integers(0, 3)) for _ in range(nd - 1)] + [g.block_size * draw(st.integers(0, 3))]
        n = int(np.prod(shape))
        nbytes = n // g.block_size * g.type_size
        raw = np.frombuffer(draw(st.binary(min_size=nbytes, max_size=nbytes)), dtype=np.uint8)
        out[f"t{i}." + draw(st.text(alphabet="abc.xyz_", max_size=8))] = gguf.Tensor(g.name, tuple(shape), raw)
    return out


def _loses_zero_dim(shape) -> bool:
    ne = list(reversed(shape)) + [1] * (4 - len(shape))
    n_dims = max([i + 1 for i in range(1, 4) if ne[i] > 1] + [1])
    return 0 in ne[n_dims:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(md=st.dictionaries(any_text.filter(bool), values(), max_size=8), ts=tensors(),
       alignment=st.sampled_from([None, 1, 8, 32, 64, 256]), version=st.sampled_from([2, 3]))
def test_write_read_round_trip(tmp_path_factory, md, ts, alignment, version):
    md = dict(md)
    if alignment is not None:
        md = {k: v for k, v in md.items() if k.split("\0", 1)[0] != "general.alignment"}
        md["general.alignment"] = GGUFValue(T.UINT32, alignment)
    elif any(k.split("\0", 1)[0] == "general.alignment" for k in md):
        return      # a random general.alignment key of another type or value is not a writable file
    p = tmp_path_factory.mktemp("rt") / "x.gguf"
    if any(_loses_zero_dim(t.shape) for t in ts.values()):
        with pytest.raises(ValueError, match="zero dimension"):
            gguf.write(p, md, ts, version=version)
        return
    gguf.write(p, md, ts, version=version)
    with gguf.read(p) as f:
        assert f.version == version and f.alignment == (alignment or 32)
        assert list(f.metadata) == list(md)
        for k, v in md.items():
            assert f.metadata[k] == v, k
        assert list(f.tensors) == list(ts)
        for name, t in ts.items():
            got = f.tensors[name]
            assert got.ggml_type == t.ggml_type
            assert int(np.prod(got.shape)) * (1 if got.ggml.dtype is None else 1) >= 0
            assert got.data.reshape(-1).view(np.uint8).tobytes() == bytes(t.data)
        # and re-saving is a fixed point
        q = p.with_name("y.gguf")
        f.save(q)
    assert q.read_bytes() == p.read_bytes()


def test_write_is_atomic(tmp_path):
    p = tmp_path / "keep.gguf"
    gguf.write(p, {"a": GGUFValue(T.UINT8, 1)})
    before = p.read_bytes()
    with pytest.raises(ValueError):
        gguf.write(p, {"a": GGUFValue(T.UINT8, 2)}, {"bad": gguf.Tensor("Q4_0", (2, 32), np.zeros(3, np.uint8))})
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.gguf"]


def _corpus_seeds():
    z = load_golden("gguf/corpus.npz")
    data = zlib.decompress(z["data_zlib"].tobytes())
    off = z["offsets"]
    return [data[off[i]:off[i + 1]] for i in range(len(off) - 1)]


def exercise(blob: bytes) -> None:
    """Parse and touch everything; only GGUFError may escape."""
    try:
        f = gguf.read_bytes(blob)
    except GGUFError:
        return
    for k, v in f.metadata.items():
        if v.type == T.ARRAY and v.element_type == T.STRING:
            v.value.to_list()
    for t in f.tensors.values():
        try:
            t.data
        except GGUFError:
            pass
    if f.alignment <= 1 << 20:     # a legal 2^31 alignment means 2 GiB of padding: not worth re-serialising
        gguf.meta_bytes(f.metadata, f.tensors, alignment=f.alignment, version=f.version)


def mutate(blob: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(blob)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 5))
        if not b:
            b += bytes(rng.integers(0, 256, 8, dtype=np.uint8))
        i = int(rng.integers(0, len(b)))
        if op == 0:
            b[i] = int(rng.integers(0, 256))
        elif op == 1:           # an interesting 64-bit value anywhere
            v = [0, 1, 2**30 + 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1][int(rng.integers(0, 9))]
            b[i:i + 8] = v.to_bytes(8, "little")
        elif op == 2:
            del b[i:i + int(rng.integers(1, 16))]
        elif op == 3:
            b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
        else:
            b = b[:i]
    return bytes(b)


@pytest.mark.skipif(not (GOLDEN / "gguf" / "corpus.npz").exists(), reason="gguf goldens missing")
def test_fuzz_only_gguf_error_escapes():
    seconds = float(os.environ.get("REFIMPL_GGUF_FUZZ_SECONDS", "45"))
    seeds = _corpus_seeds()
    rng = np.random.default_rng(int(os.environ.get("REFIMPL_GGUF_FUZZ_SEED", "0")) or None)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        blob = mutate(seeds[int(rng.integers(0, len(seeds)))], rng)
        try:
            exercise(blob)
        except Exception as e:  # pragma: no cover - the failure report
            raise AssertionError(f"{type(e).__name__} escaped on input {blob.hex()}") from e
        n += 1
    print(f"gguf fuzz: {n} inputs in {seconds:.0f} s")
    assert n > 100
