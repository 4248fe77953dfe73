"""refimpl.gguf against llama.cpp's gguf.cpp: verdicts on the malformed corpus, parsed facts, re-written bytes,
and every models/ggml-vocab-*.gguf of the pinned sdist (value by value, and byte-identical re-writes)."""
from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest
from conftest import GOLDEN, load_golden, load_golden_json

import refimpl.gguf as gguf
from refimpl.gguf import GGUFError, GGUFValueType
from refimpl.gguf.types import GGML_TYPES

pytestmark = pytest.mark.skipif(not (GOLDEN / "gguf" / "corpus.json").exists(), reason="gguf goldens missing")


def corpus():
    z = load_golden("gguf/corpus.npz")
    data = zlib.decompress(z["data_zlib"].tobytes())
    offsets = z["offsets"]
    cases = load_golden_json("gguf/corpus.json")["cases"]
    assert len(cases) == len(offsets) - 1
    return [(c, data[offsets[i]:offsets[i + 1]]) for i, c in enumerate(cases)]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_ggml_type_table_matches_ggml_type_traits():
    golden = load_golden_json("gguf/ggml_types.json")
    assert len(golden) == len(GGML_TYPES) == 43
    for g, t in zip(golden, GGML_TYPES):
        assert (g["id"], g["blck_size"], g["type_size"]) == (t.type_id, t.block_size, t.type_size), g
        if t.block_size:      # live types: our name is ggml's, upper-cased
            assert g["name"].upper() == t.name
        assert (t.block_size == 0) == t.removed


def test_type_table_agrees_with_quant_registry():
    """Where a format module already exists, its block size and type size are the container's."""
    try:
        from refimpl.quant.registry import TYPES as reg
        formats = list(reg.values())
    except Exception:
        pytest.skip("quant registry not importable")
    from refimpl.gguf.types import experimental_type, is_experimental_id
    by_id = {t.type_id: t for t in GGML_TYPES}
    assert formats, "registry is empty"
    for fmt in formats:
        # plugin types registered by other tests live in the experimental range, outside ggml's fixed table
        t = experimental_type(fmt.type_id) if is_experimental_id(fmt.type_id) else by_id[fmt.type_id]
        assert (fmt.type_id, fmt.block_size, fmt.type_size) == (t.type_id, t.block_size, t.type_size), t.name


def test_corpus_verdicts_and_facts_equal_llama_cpp(tmp_path):
    cases = corpus()
    agree = 0
    mismatches = []
    for c, blob in cases:
        try:
            f = gguf.read_bytes(blob)
        except GGUFError as e:
            if c["accepted"]:
                mismatches.append(f"{c['name']}: llama.cpp accepts, refimpl rejects: {e}")
            else:
                agree += 1
            continue
        if not c["accepted"]:
            mismatches.append(f"{c['name']}: llama.cpp rejects, refimpl accepts")
            continue
        agree += 1
        facts = c["facts"]
        got = {"version": f.version, "alignment": f.alignment, "data_offset": f.data_offset,
               "n_kv": len(f.metadata), "tensor_nbytes": [t.nbytes for t in f.tensors.values()],
               "meta_sha256": None if facts["meta_sha256"] is None else
               sha(gguf.meta_bytes(f.metadata, f.tensors, alignment=f.alignment, version=f.version))}
        want = {k: facts[k] for k in got}
        if got != want:
            mismatches.append(f"{c['name']}: facts differ: {got} != {want}")
            continue
        out = tmp_path / "rewrite.gguf"
        if facts["rewrite_sha256"] is not None:
            f.save(out)
            if sha(out.read_bytes()) != facts["rewrite_sha256"]:
                mismatches.append(f"{c['name']}: re-written bytes differ from llama.cpp's")
        elif "outside the file" in facts.get("rewrite_note", ""):
            with pytest.raises(GGUFError):
                f.save(out)
    assert not mismatches, f"{len(mismatches)} of {len(cases)} disagree:\n" + "\n".join(mismatches[:20])
    assert agree == len(cases)


def test_corpus_through_files_and_mmap(tmp_path):
    """The same verdicts through read(path) (mmap) for a sample, including the tensor data views."""
    cases = corpus()
    for c, blob in cases[::97]:
        p = tmp_path / "case.gguf"
        p.write_bytes(blob)
        try:
            with gguf.read(p) as f:
                for t in f.tensors.values():
                    try:
                        assert t.data.nbytes == t.nbytes
                    except GGUFError as e:     # data past the end, or a shape numpy cannot hold
                        assert f.data_offset + t.offset + t.nbytes > len(blob) or "shape" in str(e)
            assert c["accepted"], c["name"]
        except GGUFError:
            assert not c["accepted"], c["name"]


def _digest(v) -> str:
    """sha256 of a value's bytes as gguf.cpp holds them (tools/goldens/gguf.py: _digest_value)."""
    h = hashlib.sha256()
    if v.type == GGUFValueType.ARRAY:
        if v.element_type == GGUFValueType.STRING:
            for r in v.value.raw_list():
                h.update(struct.pack("<Q", len(r)) + r)
        elif v.element_type == GGUFValueType.BOOL:
            h.update(v.value.astype(np.uint8).tobytes())
        else:
            h.update(v.value.astype(v.value.dtype.newbyteorder("<")).tobytes())
    else:
        from refimpl.gguf.writer import encode_value
        h.update(encode_value(v))
    return h.hexdigest()


def _vocab_goldens():
    d = GOLDEN / "gguf" / "vocab"
    return sorted(p.name for p in d.glob("*.json")) if d.exists() else []


@pytest.mark.parametrize("golden_name", _vocab_goldens())
def test_vocab_file_metadata_and_rewrite_equal_llama_cpp(golden_name, tmp_path):
    from sdist import vocab_dir

    g = load_golden_json(f"gguf/vocab/{golden_name}")
    path = vocab_dir() / g["file"]
    with gguf.read(path) as f:
        assert (f.version, f.alignment, f.data_offset, len(f.tensors)) == \
               (g["version"], g["alignment"], g["data_offset"], g["n_tensors"])
        assert list(f.metadata) == [kv["key"] for kv in g["kv"]]
        for kv in g["kv"]:
            v = f.metadata[kv["key"]]
            is_array = v.type == GGUFValueType.ARRAY
            assert int(v.type) == kv["type"], kv["key"]
            assert (int(v.element_type) if is_array else None) == kv["element_type"], kv["key"]
            assert (len(v.value) if is_array else 1) == kv["n"], kv["key"]
            assert _digest(v) == kv["sha256"], kv["key"]
        out = tmp_path / "rewrite.gguf"
        f.save(out)
    data = out.read_bytes()
    assert len(data) == g["rewrite_bytes"]
    assert sha(data) == g["rewrite_sha256"]


def test_string_array_api():
    path = None
    from sdist import vocab_dir
    path = vocab_dir() / "ggml-vocab-llama-spm.gguf"
    f = gguf.read(path)
    toks = f.metadata["tokenizer.ggml.tokens"]
    assert toks.type == GGUFValueType.ARRAY and toks.element_type == GGUFValueType.STRING
    sa = toks.value
    assert len(sa) == 32000
    lst = sa.to_list()
    assert lst[:3] == ["<unk>", "<s>", "</s>"] and sa[1] == "<s>" and list(sa)[:3] == lst[:3]
    assert sa.raw(1) == b"<s>"
    assert f.get("tokenizer.ggml.model") == "llama"
    assert f.get("no.such.key", 7) == 7
    scores = f.metadata["tokenizer.ggml.scores"].value
    assert scores.dtype == np.float32 and not scores.flags.writeable


def test_malformed_messages_name_offset_and_reason():
    hdr = b"GGUF" + struct.pack("<Iqq", 3, 2**60, 0)
    with pytest.raises(GGUFError) as e:
        gguf.read_bytes(hdr)
    assert e.value.offset == 8 and "2^60" in str(e.value) and str(e.value).startswith("offset 0x8:")
    s = b"GGUF" + struct.pack("<Iqq", 3, 0, 1) + struct.pack("<Q", 2**40) + b"x" * 16
    with pytest.raises(GGUFError) as e:
        gguf.read_bytes(s)
    assert e.value.offset == 24 and "2^40" in str(e.value)


def test_big_endian_read_with_byteorder(tmp_path):
    md = {"a.u32": gguf.GGUFValue(GGUFValueType.UINT32, 7), "s": gguf.GGUFValue(GGUFValueType.STRING, "x"),
          "arr": gguf.GGUFValue(GGUFValueType.ARRAY, ["p", "qq"], GGUFValueType.STRING)}
    p = tmp_path / "le.gguf"
    gguf.write(p, md, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    le = p.read_bytes()
    # byte-swap every multi-byte field by hand into a big-endian file
    be = bytearray(b"GGUF" + struct.pack(">Iqq", 3, 1, 3))
    for k, t, payload in (("a.u32", 4, struct.pack(">I", 7)), ("s", 8, struct.pack(">Q", 1) + b"x"),
                          ("arr", 9, struct.pack(">iQ", 8, 2) + struct.pack(">Q", 1) + b"p" + struct.pack(">Q", 2)
                           + b"qq")):
        be += struct.pack(">Q", len(k)) + k.encode() + struct.pack(">i", t) + payload
    be += struct.pack(">Q", 1) + b"w" + struct.pack(">Iqqi", 2, 3, 2, 0) + struct.pack(">Q", 0)
    be += b"\0" * (-len(be) % 32)
    be += np.arange(6, dtype=">f4").tobytes()
    be += b"\0" * (-len(be) % 32)
    q = tmp_path / "be.gguf"
    q.write_bytes(bytes(be))
    with pytest.raises(GGUFError, match="big-endian"):
        gguf.read(q)            # llama.cpp's verdict
    for order in ("big", "auto"):
        f = gguf.read(q, byteorder=order)
        assert f.byteorder == ">" and f.get("a.u32") == 7 and f.get("arr").to_list() == ["p", "qq"]
        assert f.tensors["w"].data.tolist() == [[0, 1, 2], [3, 4, 5]]
        out = tmp_path / f"conv_{order}.gguf"
        f.save(out)
        assert out.read_bytes() == le       # saved little-endian, as llama.cpp writes


def test_experimental_type_range_is_separate_from_ggml(tmp_path):
    """ids 43..0xfff stay invalid as in llama.cpp; 0x1000..0x1fff are refimpl's plugin range (spec/plugins.md)."""
    from refimpl.gguf import EXPERIMENTAL_TYPE_BASE, GGUFError, read_bytes, write
    from refimpl.gguf.types import EXPERIMENTAL_TYPE_LIMIT, ggml_type

    assert (EXPERIMENTAL_TYPE_BASE, EXPERIMENTAL_TYPE_LIMIT) == (0x1000, 0x2000)
    assert EXPERIMENTAL_TYPE_BASE > len(GGML_TYPES)
    with pytest.raises(ValueError, match="experimental range but no plugin type has it"):
        ggml_type(EXPERIMENTAL_TYPE_LIMIT - 1)
    write(tmp_path / "a.gguf", {}, {"t": np.ones(32, np.float32)})
    data = (tmp_path / "a.gguf").read_bytes()
    at = data.index(b"t\x01\x00\x00\x00") + 1 + 4 + 8                # name, n_dims, ne[0], then the type
    for type_id, message in ((43, r"invalid ggml type 43, should be in \[0, 43\)"),
                             (EXPERIMENTAL_TYPE_BASE - 1, "invalid ggml type 4095"),
                             (EXPERIMENTAL_TYPE_BASE, "experimental range .* does not describe it"),
                             (EXPERIMENTAL_TYPE_LIMIT, "invalid ggml type 8192")):
        bad = data[:at] + np.int32(type_id).tobytes() + data[at + 4:]
        with pytest.raises(GGUFError, match=message) as e:
            read_bytes(bad)
        assert e.value.offset == at
