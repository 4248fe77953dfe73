"""GGUF container verdicts and facts from llama.cpp's gguf.cpp (gguf_init_from_file, gguf_write_to_file).

Two parts:

* ``corpus.npz`` + ``corpus.json``: small synthetic GGUF files (built byte by byte here, NOT with refimpl) and
  systematic mutations of them -- truncation at every field boundary, corrupted counts/lengths/types/dims/offsets/
  alignment, duplicates, overflow shapes, removed types, big-endian, random byte damage -- each with llama.cpp's
  verdict (gguf_init_from_file with no_alloc, as the oracle opens files) and, when accepted, what llama.cpp made
  of it: version, alignment, data offset, keys and types, tensor table, sha256 of gguf_get_meta_data and sha256
  of the file gguf_write_to_file writes (tensor data pointed at the file's bytes) when every tensor's data lies
  inside the file.
* ``vocab/<name>.json`` for every ``models/ggml-vocab-*.gguf`` of the pinned sdist: llama.cpp's metadata value by
  value (sha256 of each value's bytes as gguf.cpp holds them, plus a readable preview) and the sha256 and size of
  the file llama.cpp re-writes after gguf_init_from_file.  The vocab files themselves are not copied (tests fetch
  the sdist, see tests/sdist.py).
"""
from __future__ import annotations

import ctypes as C
import hashlib
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

DESCRIPTION = ("GGUF container: llama.cpp's accept/reject verdict and parsed facts on a synthetic + mutated corpus, "
               "and metadata/re-write digests of every models/ggml-vocab-*.gguf")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

# --------------------------------------------------------------------------------------------- a tiny builder
# An independent serializer (struct only) that remembers where every field is, so mutations can target fields.

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B", U64: "Q", I64: "q", F64: "d"}
GGML_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 24: (1, 1), 26: (1, 4), 28: (1, 8),
              30: (1, 2), 39: (32, 17), 40: (64, 36), 41: (128, 18)}


class Builder:
    def __init__(self, order="<"):
        self.o = order
        self.buf = bytearray()
        self.fields = []       # (offset, size, kind)

    def put(self, fmt, v, kind):
        self.fields.append((len(self.buf), struct.calcsize(fmt), kind))
        self.buf += struct.pack(self.o + fmt, v)

    def raw(self, b, kind):
        if b:
            self.fields.append((len(self.buf), len(b), kind))
        self.buf += b

    def string(self, b, kind):
        self.put("Q", len(b), kind + "_len")
        self.raw(b, kind)

    def value(self, t, v, kind="val"):
        if t == STR:
            self.string(v, kind + "_str")
        else:
            self.put(FMT[t], v, kind)


def build(kvs, tensors, version=3, alignment=32, order="<", data=True, n_tensors=None, n_kv=None, offsets=None):
    """kvs: [(key bytes, type, value)] with value for ARR = (elem type, [values]); tensors: [(name, type, ne list)]."""
    b = Builder(order)
    b.raw(b"GGUF", "magic")
    b.put("I", version, "version")
    b.put("q", len(tensors) if n_tensors is None else n_tensors, "n_tensors")
    b.put("q", len(kvs) if n_kv is None else n_kv, "n_kv")
    for key, t, v in kvs:
        b.string(key, "key")
        b.put("i", t, "kv_type")
        if t == ARR:
            et, items = v
            b.put("i", et, "arr_type")
            b.put("Q", len(items), "arr_n")
            for it in items:
                b.value(et, it, "arr_item")
        else:
            b.value(t, v)
    sizes = []
    off = 0
    for i, (name, t, ne) in enumerate(tensors):
        b.string(name, "tname")
        b.put("I", len(ne), "n_dims")
        for d in ne:
            b.put("q", d, "ne")
        b.put("i", t, "ggml_type")
        bs, ts = GGML_SIZES.get(t, (1, 1))
        n = 1
        for d in ne:
            n *= d
        nbytes = max(n, 0) // bs * ts
        b.put("Q", off if offsets is None else offsets[i], "tensor_offset")
        sizes.append(nbytes)
        off += nbytes + (-nbytes % alignment)
    if tensors:
        pad = -len(b.buf) % alignment
        b.raw(b"\0" * pad, "meta_pad")
    if data:
        rng = np.random.default_rng(len(b.buf))
        for nbytes in sizes:
            b.raw(rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes(), "tensor_data")
            b.raw(b"\0" * (-nbytes % alignment), "data_pad")
    return bytes(b.buf), b.fields


def base_files():
    """(name, bytes, fields) of the valid-looking starting points."""
    scalars = [
        (b"test.u8", U8, 200), (b"test.i8", I8, -100), (b"test.u16", U16, 65000), (b"test.i16", I16, -30000),
        (b"test.u32", U32, 4000000000), (b"test.i32", I32, -2000000000), (b"test.f32", F32, 1.5),
        (b"test.bool", BOOL, 1), (b"test.str", STR, b"hello \xff\xfe world"), (b"test.u64", U64, 2**64 - 1),
        (b"test.i64", I64, -2**63), (b"test.f64", F64, -0.1),
        (b"test.bool2", BOOL, 2),                       # non-0/1 bool: gguf.cpp normalises it to 1
        (b"test.nan", F32, float("nan")),
    ]
    arrays = [(f"arr.{i}".encode(), ARR, (t, items)) for i, (t, items) in enumerate([
        (U8, [1, 2, 255]), (I8, [-1, 0, 1]), (U16, [1, 65535]), (I16, [-5]), (U32, [7, 8, 9]), (I32, []),
        (F32, [0.5, -2.0, 3e38]), (BOOL, [0, 1, 3]), (STR, [b"a", b"", b"\xe2\x82\xac", b"\x00nul"]),
        (U64, [2**63]), (I64, [-1, 1]), (F64, [1e300])])]
    rng = np.random.default_rng(1700)
    vocab = [bytes(rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8)) for _ in range(40)]
    tensors = [(b"tok_embd.weight", 0, [8, 3]), (b"norm", 1, [5]), (b"q4", 2, [64, 2]), (b"q8", 8, [32]),
               (b"ints", 26, [2, 3, 2]), (b"bf", 30, [2, 1, 2, 2]), (b"empty", 0, [0, 4]), (b"scalar", 0, []),
               (b"trail1", 28, [3, 1, 1, 1]), (b"qk", 12, [256, 1])]
    out = []

    def add(name, *a, **k):
        data, fields = build(*a, **k)
        out.append((name, data, fields))

    add("empty_v3", [], [])
    add("kv_all_types", scalars + arrays, [])
    add("vocab", [(b"general.architecture", STR, b"llama"), (b"tokenizer.ggml.tokens", ARR, (STR, vocab)),
                  (b"tokenizer.ggml.scores", ARR, (F32, list(rng.standard_normal(40).astype(np.float32))))], [])
    add("tensors", [(b"general.architecture", STR, b"test")], tensors)
    add("tensors_v2", [(b"general.name", STR, b"v2")], tensors[:3], version=2)
    add("align64", [(b"general.alignment", U32, 64)], tensors[:4], alignment=64)
    add("align1", [(b"general.alignment", U32, 1)], [(b"a", 24, [3]), (b"b", 24, [5])], alignment=1)
    add("align8_nul_key", [(b"general.alignment\0x", U32, 8)], [(b"a", 0, [3])], alignment=8)
    add("align_second", [(b"general.alignment.x", U32, 3), (b"general.alignment", U32, 16)], [(b"a", 0, [5])],
        alignment=16)
    add("align_u64", [(b"general.alignment", U64, 64)], [(b"a", 0, [4])])
    add("align_arr", [(b"general.alignment", ARR, (U32, [64]))], [(b"a", 0, [4])])
    for a in (0, 3, 48, 2**31):
        add(f"align_{a}", [(b"general.alignment", U32, a)], [(b"a", 0, [4])])
    add("align_no_tensors_4096", [(b"general.alignment", U32, 4096)], [])
    add("dup_key", [(b"k", U8, 1), (b"k", U8, 2)], [])
    add("dup_key_nul", [(b"k\0a", U8, 1), (b"k\0b", U8, 2)], [])
    add("empty_key", [(b"", U8, 1)], [])
    add("dup_tensor", [], [(b"t", 0, [4]), (b"t", 0, [4])])
    add("dup_tensor_nul", [], [(b"t\0a", 0, [4]), (b"t\0b", 0, [4])])
    add("empty_tensor_name", [], [(b"", 0, [4])])
    add("name63", [], [(b"n" * 63, 0, [4])])
    add("name64", [], [(b"n" * 64, 0, [4])])
    add("nested_array", [(b"nested", ARR, (ARR, []))], [])
    add("bad_row_q4", [], [(b"q", 2, [16])])
    add("removed_type4", [], [(b"q", 4, [32])])
    add("removed_type31", [], [(b"q", 31, [32])])
    add("type43", [], [(b"q", 43, [32])])
    add("zero_dims_tensor", [], [(b"z", 0, [0, 0, 0, 0]), (b"after", 0, [4])])
    add("zero_mid_dim", [], [(b"z", 0, [4, 0]), (b"after", 0, [4])])
    add("five_dims", [], [(b"f", 0, [1, 1, 1, 1, 1])])
    add("negative_dim", [], [(b"f", 0, [4, -1])])
    add("overflow_ne", [], [(b"f", 0, [2**32, 2**32])], data=False)
    add("overflow_ne_max", [], [(b"f", 0, [2**62, 2])], data=False)
    add("huge_ok_shape", [], [(b"f", 24, [2**62, 1])], data=False)             # accepted: no data check
    add("huge_bytes", [], [(b"f", 0, [2**62, 1])], data=False)                # 2^64 bytes: > SIZE_MAX
    add("nbytes_wrap", [], [(b"f", 2, [2**62, 1])], data=False)               # ne0*type_size wraps in size_t
    add("offset_gap", [], [(b"a", 0, [4]), (b"b", 0, [4])], offsets=[0, 64])
    add("offset_overlap", [], [(b"a", 0, [16]), (b"b", 0, [4])], offsets=[0, 32])
    add("offset_nonzero_first", [], [(b"a", 0, [4])], offsets=[32])
    add("truncated_data", [], [(b"a", 0, [64])], data=False)
    add("big_endian", scalars[:6], tensors[:2], order=">")
    add("big_endian_v3_only", [], [], order=">")
    add("version_big", [], [], version=4)
    add("version_1", [], [], version=1)
    return out


def mutations(name, data, fields, rng):
    """(label, bytes) mutations of one base file."""
    out = []
    n = len(data)
    # array elements: only the first two and the last of each array are mutated (the rest repeat them)
    keep, run = [], []
    for f in fields + [(None, None, "end")]:
        if f[2].startswith("arr_item"):
            run.append(f)
            continue
        if run:
            items = [g for g in run if not g[2].endswith("_str")]
            strs = [g for g in run if g[2].endswith("_str")]
            keep += items[:2] + items[-1:] + strs[:2] + strs[-1:]
            run = []
        if f[0] is not None:
            keep.append(f)
    fields = sorted(set(keep))
    cuts = sorted({f[0] for f in fields} | {f[0] + f[1] for f in fields} | {f[0] + 1 for f in fields} | {0, 1, n - 1})
    for c in cuts:
        if 0 <= c < n:
            out.append((f"truncate@{c}", data[:c]))
    evil64 = [0, 1, 2, 7, 2**30, 2**30 + 1, 2**31, 2**32, 2**40, 2**60, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
    evil32 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14, 31, 36, 42, 43, 44, 255, 2**31 - 1, 2**31, 2**32 - 1]
    for off, size, kind in fields:
        if kind in ("magic", "meta_pad", "tensor_data", "data_pad", "arr_item_str", "val_str", "key", "tname"):
            continue
        orig = data[off:off + size]
        vals = evil64 if size == 8 else evil32 if size == 4 else [0, 1, 2, 127, 128, 255] if size == 1 else []
        if kind in ("val", "arr_item"):      # plain values: a few are enough (counts, types, lengths get them all)
            vals = [0, 1, 2**(8 * size) - 1]
        if size == 8 and kind not in ("val", "arr_item"):
            old = int.from_bytes(orig, "little")
            vals = vals + [(old + 1) % 2**64, (old - 1) % 2**64, (old + 32) % 2**64, (old - 32) % 2**64]
        for v in vals:
            new = v.to_bytes(size, "little") if size in (1, 4, 8) else None
            if new is None or new == orig:
                continue
            out.append((f"{kind}@{off}={v:#x}", data[:off] + new + data[off + size:]))
    for i in range(4):
        for v in (0x00, ord("g"), 0xFF):
            if data[i] != v:
                out.append((f"magic[{i}]={v:#x}", data[:i] + bytes([v]) + data[i + 1:]))
    # random damage: one to four random bytes
    for k in range(12):
        m = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            m[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        out.append((f"random{k}", bytes(m)))
    # extra trailing bytes are fine for llama.cpp
    out.append(("trailing_garbage", data + b"\x01\x02\x03"))
    return out


def corpus():
    rng = np.random.default_rng(1701)
    cases = []
    seen = set()
    for name, data, fields in base_files():
        # a 2^31 alignment is valid, but every re-write of it is 4 GiB of padding: the base file only
        muts = [] if name == "align_2147483648" else mutations(name, data, fields, rng)
        for label, blob in [("base", data)] + muts:
            if blob in seen:
                continue
            seen.add(blob)
            cases.append((f"{name}/{label}", blob))
    return cases


# --------------------------------------------------------------------------------------------- llama.cpp facts

def _bind(oracle):
    b = oracle.base
    b.gguf_set_tensor_data.restype = None
    b.gguf_set_tensor_data.argtypes = [C.c_void_p, C.c_char_p, C.c_void_p]
    b.gguf_get_tensor_name.restype = C.c_char_p
    return b


def llama_facts(oracle, path: Path, blob: bytes, tmpdir: Path):
    """None when gguf_init_from_file rejects the file, else a dict of what llama.cpp read."""
    ctx = oracle.gguf_open(path)
    if ctx is None:
        return None
    b = _bind(oracle)
    try:
        tensors = ctx.tensors()
        # meta_sha256 pins every key, type, value and tensor info exactly as llama.cpp parsed them (it is the
        # byte image gguf_get_meta_data makes of its parsed state); the rest is what the meta does not show.
        facts = {"version": ctx.version, "alignment": ctx.alignment, "data_offset": ctx.data_offset,
                 "n_kv": int(b.gguf_get_n_kv(ctx.ctx)), "tensor_nbytes": [t["size"] for t in tensors],
                 "meta_sha256": hashlib.sha256(ctx.meta_bytes()).hexdigest()}
        names = [t["name"] for t in tensors]     # the C names (cut at the first NUL)
        if ctx.alignment > 1 << 20:
            facts["meta_sha256"] = facts["rewrite_sha256"] = None
            facts["rewrite_note"] = "alignment > 1 MiB: the padding alone is too big to keep re-writing"
            return facts
        in_file = all(ctx.data_offset + t["offset"] + t["size"] <= len(blob) for t in tensors)
        if not in_file:
            facts["rewrite_sha256"] = None
            facts["rewrite_note"] = "tensor data outside the file (llama.cpp's gguf reader does not check)"
        elif len(set(names)) != len(names):
            facts["rewrite_sha256"] = None
            facts["rewrite_note"] = "two tensors share a C name: gguf_set_tensor_data cannot address both"
        else:
            keep = C.create_string_buffer(blob, len(blob) + 1)
            base = C.addressof(keep)
            for i, t in enumerate(tensors):
                # gguf_init_from_reader leaves gguf_tensor_info::t uninitialised except name/ne/nb/type
                # (``struct gguf_tensor_info info;``), and the writer calls ggml_backend_tensor_get when
                # t.buffer is non-null: garbage there segfaults.  Zero the buffer pointer -- it sits right before
                # ne[] in struct ggml_tensor, and gguf_get_tensor_ne points at ne[] of the stored info.
                ne_addr = C.cast(b.gguf_get_tensor_ne(ctx.ctx, i), C.c_void_p).value
                C.c_void_p.from_address(ne_addr - C.sizeof(C.c_void_p)).value = None
                b.gguf_set_tensor_data(ctx.ctx, b.gguf_get_tensor_name(ctx.ctx, i),
                                       base + ctx.data_offset + t["offset"])
            out = tmpdir / "rewrite.gguf"
            ok = ctx.write(out)
            facts["rewrite_sha256"] = hashlib.sha256(out.read_bytes()).hexdigest() if ok else None
            out.unlink(missing_ok=True)
            del keep
        return facts
    finally:
        ctx.close()


def _digest_value(t, at, value) -> tuple[str, object]:
    """sha256 of a value's bytes as gguf.cpp holds them (LE numbers, bool 0/1, strings u64 length + bytes)."""
    h = hashlib.sha256()
    if t == ARR:
        if at == STR:
            for s in value:
                h.update(struct.pack("<Q", len(s)) + s)
            preview = [s.decode("utf-8", "replace") for s in value[:8]]
        else:
            arr = np.asarray(value)
            h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes() if arr.dtype != np.bool_
                     else arr.astype(np.uint8).tobytes())
            preview = [float(x) if arr.dtype.kind == "f" else int(x) for x in arr[:8]]
        return h.hexdigest(), preview
    if t == STR:
        h.update(struct.pack("<Q", len(value)) + value)
        return h.hexdigest(), value[:200].decode("utf-8", "replace")
    if t == F32:
        raw = struct.pack("<f", value)
    elif t == F64:
        raw = struct.pack("<d", value)
    elif t == BOOL:
        raw = b"\x01" if value else b"\x00"
    else:
        raw = struct.pack("<" + FMT[t], value)
    h.update(raw)
    return h.hexdigest(), value


def vocab_facts(oracle, path: Path, tmpdir: Path) -> dict:
    ctx = oracle.gguf_open(path)
    assert ctx is not None, path
    try:
        kvs = []
        for i in range(len(ctx.keys())):
            key, t, v = ctx.kv(i)
            at = None
            if t == ARR:
                at, v = v
                n = len(v)
            else:
                n = 1
            sha, preview = _digest_value(t, at, v)
            kvs.append({"key": key, "type": t, "element_type": at, "n": n, "sha256": sha, "preview": preview})
        out = tmpdir / "rewrite.gguf"
        assert ctx.write(out)
        data = out.read_bytes()
        out.unlink()
        return {"file": path.name, "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "version": ctx.version, "alignment": ctx.alignment, "data_offset": ctx.data_offset,
                "n_tensors": len(ctx.tensors()), "kv": kvs,
                "meta_sha256": hashlib.sha256(ctx.meta_bytes()).hexdigest(),
                "rewrite_sha256": hashlib.sha256(data).hexdigest(), "rewrite_bytes": len(data)}
    finally:
        ctx.close()


def generate(oracle, w) -> None:
    from sdist import vocab_dir

    w.json("ggml_types.json",
           [{"id": i, "name": oracle.type_traits(i).type_name.decode(), "blck_size": int(oracle.type_traits(i).blck_size),
             "type_size": int(oracle.type_traits(i).type_size)} for i in range(43)],
           "ggml_get_type_traits(id) for every id < GGML_TYPE_COUNT: name, block size, type size (0 = removed)")
    cases = corpus()
    blobs = [blob for _, blob in cases]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in blobs])
    records = []
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        path = td / "case.gguf"
        for (label, blob) in cases:
            path.write_bytes(blob)
            facts = llama_facts(oracle, path, blob, td)
            records.append({"name": label, "accepted": facts is not None, **({"facts": facts} if facts else {})})
        packed = zlib.compress(b"".join(blobs), 9)
        w.npz("corpus.npz", {"data_zlib": np.frombuffer(packed, dtype=np.uint8), "offsets": offsets},
              "the GGUF corpus, zlib-compressed: with data = zlib.decompress(data_zlib), file i is "
              "data[offsets[i]:offsets[i+1]] (synthetic files and their mutations)")
        w.json("corpus.json", {"about": "llama.cpp gguf_init_from_file (no_alloc) verdict per corpus file, in "
                                        "corpus.npz order; facts of accepted files (hex names/keys)",
                               "cases": records},
               "llama.cpp's verdict and parsed facts for every corpus file")
        vdir = vocab_dir()
        for p in sorted(vdir.glob("ggml-vocab-*.gguf")):
            w.json(f"vocab/{p.stem}.json", vocab_facts(oracle, p, td),
                   f"llama.cpp's metadata digests and re-written-file sha256 of models/{p.name}")
