"""Reading a GGUF file: a check-for-check transcription of ``gguf_init_from_file_impl`` (ggml/src/gguf.cpp).

The verdict (accept / reject) is llama.cpp's ``gguf_init_from_file(path, {no_alloc=true, ctx=NULL})``.  In that
mode llama.cpp never looks at the tensor data section, so a file whose data section is truncated is *accepted*;
refimpl accepts it too and raises ``GGUFError`` only when such a tensor's ``.data`` is asked for.

Every size read from the file is checked against the bytes that remain before anything is allocated, so a
header claiming 2^60 tensors or a 2^40-byte string fails at once.  Where llama.cpp would fail later on the same
file (it reads until it runs out of bytes) refimpl fails early with the same verdict: each tensor info takes at
least 24 bytes and each key/value pair at least 14, so counts that cannot fit are rejected up front.

One deliberate difference: tensor types in refimpl's experimental range (``EXPERIMENTAL_TYPE_BASE`` and up, the
plugin types of refimpl.quant.register) are accepted when the file describes them in its
``refimpl.experimental_types.*`` metadata and a plugin of that name, block size and block bytes is registered;
otherwise the file is rejected with a ``GGUFError`` naming the type.  llama.cpp rejects every such file.
"""
from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import _scan
from .types import (EXPERIMENTAL_KEY_PREFIX, EXPERIMENTAL_KEYS, EXPERIMENTAL_TYPE_BASE, EXPERIMENTAL_TYPE_LIMIT,
                    GGML_TYPE_COUNT, GGML_TYPES, VALUE_TYPE_DTYPE, VALUE_TYPE_SHORT_NAME, GGMLType, GGUFValueType,
                    dtype_for, experimental_type, is_experimental_id)
from .values import GGUFValue, StringArray, decode_str

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3                      # the newest version gguf.cpp reads
GGUF_DEFAULT_ALIGNMENT = 32
GGUF_KEY_GENERAL_ALIGNMENT = "general.alignment"
GGUF_MAX_STRING_LENGTH = 1024 * 1024 * 1024
GGUF_MAX_ARRAY_ELEMENTS = 1024 * 1024 * 1024
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64
SIZE_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
# sizeof(struct gguf_tensor_info) and sizeof(struct gguf_kv) on a 64-bit build: the header counts are bounded by
# SIZE_MAX / sizeof(...) in gguf.cpp (ggml_tensor is 336 bytes = ggml_tensor_overhead() 368 - ggml_object 32).
SIZEOF_GGUF_TENSOR_INFO = 336 + 8
SIZEOF_GGUF_KV = 88
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8   # name length, n_dims, type, offset
MIN_KV_BYTES = 8 + 1 + 4 + 1            # key length, 1-byte key, type, smallest value


class GGUFError(ValueError):
    """A malformed GGUF file: ``.offset`` is the byte offset where reading failed, ``.reason`` says why."""

    def __init__(self, offset: int, reason: str):
        self.offset = int(offset)
        self.reason = reason
        super().__init__(f"offset {self.offset:#x}: {reason}")


def _pow2(n: int) -> str:
    """Write big counts as powers of two when they are one (2^60 reads better than 1152921504606846976)."""
    return f"2^{n.bit_length() - 1}" if n > 1024 and n & (n - 1) == 0 else str(n)


class TensorInfo:
    """One tensor of a GGUF file.

    ``shape`` is in numpy order (ggml's ``ne`` reversed, as many dims as the file declares); ``ne`` is ggml's
    4-element order.  ``data`` is a zero-copy read-only view into the file: typed for F32/F16/BF16(raw uint16)/
    F64/I8..I64, raw uint8 rows ``shape[:-1] + (row_bytes,)`` for block-quantized types.
    """

    __slots__ = ("name", "raw_name", "shape", "ne", "ggml", "offset", "nbytes", "_file")

    def __init__(self, name, raw_name, shape, ne, ggml, offset, nbytes, file):
        self.name = name
        self.raw_name = raw_name
        self.shape = shape
        self.ne = ne
        self.ggml = ggml
        self.offset = offset
        self.nbytes = nbytes
        self._file = file

    @property
    def ggml_type(self) -> str:
        return self.ggml.name

    @property
    def type_id(self) -> int:
        return self.ggml.type_id

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def file_offset(self) -> int:
        """Absolute byte offset of the tensor's data in the file."""
        return self._file.data_offset + self.offset

    @property
    def data(self) -> np.ndarray:
        return self._file._tensor_data(self)

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {self.ggml_type}, shape={self.shape}, offset={self.offset}, nbytes={self.nbytes})"


class TensorTable(Mapping):
    """Ordered name -> TensorInfo.  Like ``gguf_find_tensor``, lookup by name returns the first match.

    (gguf.cpp deduplicates tensor names on the full length-prefixed string but then keeps only the part before
    the first NUL byte -- ``ggml_set_name`` is a strncpy -- so two accepted tensors can end up with one name.
    ``len``/iteration/``values()`` see every tensor; ``list()`` gives them in file order.)
    """

    def __init__(self, infos: list[TensorInfo]):
        self._infos = infos
        self._index: dict[str, int] = {}
        for i, t in enumerate(infos):
            self._index.setdefault(t.name, i)

    def __getitem__(self, name: str) -> TensorInfo:
        return self._infos[self._index[name]]

    def __iter__(self):
        return (t.name for t in self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name) -> bool:
        return name in self._index

    def values(self):
        return list(self._infos)

    def items(self):
        return [(t.name, t) for t in self._infos]

    def list(self) -> list[TensorInfo]:
        return list(self._infos)


class GGUFFile:
    """A parsed GGUF file: ``version``, ``alignment``, ``metadata`` (key -> GGUFValue), ``tensors``, ``data_offset``.

    Holds a read-only mmap of the file for tensor data; ``close()`` (or a ``with`` block) releases it.
    """

    def __init__(self, path, version, byteorder, metadata, tensors, alignment, data_offset, data_size, file_size,
                 mm):
        self.path = path
        self.version = version
        self.byteorder = byteorder          # "<" little-endian (what llama.cpp writes) or ">" big-endian
        self.metadata: dict[str, GGUFValue] = metadata
        self.tensors = TensorTable(tensors)
        for t in tensors:
            t._file = self
        self.alignment = alignment
        self.data_offset = data_offset      # absolute offset of the data section (ctx->offset)
        self.data_size = data_size          # padded size of all tensor data (ctx->size)
        self.file_size = file_size
        self._mm = mm

    def get(self, key: str, default=None):
        v = self.metadata.get(key)
        return default if v is None else v.value

    def _raw_tensor_bytes(self, t: TensorInfo) -> np.ndarray:
        """The tensor's ggml_nbytes bytes as a flat read-only uint8 view (what gguf_write_to_file copies)."""
        start = self.data_offset + t.offset
        if start + t.nbytes > self.file_size:
            raise GGUFError(start, f"tensor {t.name!r} data [{start:#x}, {start + t.nbytes:#x}) extends past the "
                                   f"end of the file ({self.file_size:#x} bytes); llama.cpp's gguf reader does not "
                                   f"check this, its model loader does")
        if t.nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        if self._mm is None:
            raise ValueError("the file is closed")
        return np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=start)

    def _tensor_data(self, t: TensorInfo) -> np.ndarray:
        start = self.data_offset + t.offset
        buf = self._raw_tensor_bytes(t)
        if t.n_elements // t.ggml.block_size * t.ggml.type_size != t.nbytes:
            raise GGUFError(start, f"tensor {t.name!r}: ggml_nbytes of shape {t.ne} wraps around size_t "
                                   f"({t.nbytes} bytes); no array can be made of it")
        dt = dtype_for(t.ggml, self.byteorder)
        row_bytes = t.ne[0] // t.ggml.block_size * t.ggml.type_size
        try:
            if t.ggml.dtype is not None:
                return buf.view(dt).reshape(t.shape)
            return buf.reshape(t.shape[:-1] + (row_bytes,)) if t.shape else buf
        except ValueError:      # e.g. shape (2^62, 0): zero bytes, but more elements per axis than numpy allows
            raise GGUFError(start, f"tensor {t.name!r}: numpy cannot represent shape {t.shape}") from None

    def save(self, path, *, alignment: int | None = None) -> None:
        """Write this file (metadata, tensors, version) as llama.cpp's gguf_write_to_file would."""
        from .writer import write
        write(path, self.metadata, self.tensors.values(), alignment=alignment or self.alignment,
              version=self.version)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if isinstance(mm, mmap.mmap):
            try:
                mm.close()
            except BufferError:     # numpy views of tensor data are still alive; the GC will close it
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile({str(self.path)!r}, version={self.version}, {len(self.metadata)} keys, "
                f"{len(self.tensors)} tensors)")


class _Cursor:
    """A position in the file with gguf_reader's rule: never read past the end (``nbytes_remain``)."""

    __slots__ = ("buf", "mv", "pos", "size", "order")

    def __init__(self, buf: np.ndarray, mv, order: str):
        self.buf = buf
        self.mv = mv
        self.pos = 0
        self.size = buf.shape[0]
        self.order = order

    @property
    def remain(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFError(self.pos, f"{what}: needs {n} bytes but only {self.size - self.pos} remain")

    def unpack(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(self.order + fmt, self.mv, self.pos)[0]
        self.pos += n
        return v

    def string(self, what: str) -> bytes:
        """gguf_reader::read(std::string &): uint64 length, <= 1 GiB, <= remaining bytes, then the bytes."""
        at = self.pos
        n = self.unpack("Q", f"{what} length")
        if n > GGUF_MAX_STRING_LENGTH:
            raise GGUFError(at, f"{what} length {_pow2(n)} exceeds GGUF_MAX_STRING_LENGTH (2^30)")
        if n > self.remain:
            raise GGUFError(at, f"{what} length {_pow2(n)} exceeds the {self.remain} bytes left in the file")
        s = bytes(self.mv[self.pos:self.pos + n])
        self.pos += n
        return s


_SCALAR_FMT = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "b",
    GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}
_VALID_VALUE_TYPES = frozenset(_SCALAR_FMT) | {GGUFValueType.STRING}


def read(path: str | os.PathLike, *, byteorder: str = "little") -> GGUFFile:
    """Parse a GGUF file; ``GGUFError`` (with the byte offset) if llama.cpp's gguf_init_from_file would reject it.

    ``byteorder``: "little" (default) reads exactly as llama.cpp on a little-endian host, which rejects a
    big-endian file at the version field; "big" reads a big-endian file; "auto" picks by the version field like
    gguf-py.  Files llama.cpp writes are always little-endian.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    try:
        buf = np.frombuffer(mm, dtype=np.uint8) if mm is not None else np.zeros(0, dtype=np.uint8)
        return _parse(path, buf, mm, byteorder)
    except BaseException:
        buf = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass
        raise


def read_bytes(data: bytes, *, byteorder: str = "little") -> GGUFFile:
    """Parse GGUF from memory (the verdict is gguf_init_from_buffer's)."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    return _parse("<bytes>", buf, buf, byteorder)


def _parse(path, buf: np.ndarray, mm, byteorder: str) -> GGUFFile:
    if byteorder not in ("little", "big", "auto"):
        raise ValueError(f"byteorder must be 'little', 'big' or 'auto', not {byteorder!r}")
    mv = memoryview(buf)
    order = ">" if byteorder == "big" else "<"
    cur = _Cursor(buf, mv, order)

    # --- magic
    if cur.remain < 4:
        raise GGUFError(0, f"failed to read magic: file has only {cur.remain} bytes")
    magic = bytes(mv[0:4])
    if magic != GGUF_MAGIC:
        raise GGUFError(0, f"invalid magic {magic!r}, expected b'GGUF'")
    cur.pos = 4

    # --- header: version, n_tensors, n_kv
    if byteorder == "auto" and cur.remain >= 4:
        le = struct.unpack_from("<I", mv, 4)[0]
        if le & 0x0000FFFF == 0 and le != 0:     # the version reads as 0xVV000000: a big-endian file (gguf-py rule)
            order = cur.order = ">"
    version = cur.unpack("I", "version")
    if version == 0:
        raise GGUFError(4, "bad GGUF version 0")
    if version & 0x0000FFFF == 0:
        raise GGUFError(4, f"GGUF version {version:#x} is extremely large: the file is probably big-endian "
                           f"(llama.cpp reads host byte order; refimpl reads it with byteorder='big' or 'auto')")
    if version == 1:
        raise GGUFError(4, "GGUFv1 is no longer supported (llama.cpp rejects it)")
    if version > GGUF_VERSION:
        raise GGUFError(4, f"GGUF version {version} is newer than the supported version {GGUF_VERSION}")

    at = cur.pos
    n_tensors = cur.unpack("q", "tensor count")
    if n_tensors < 0 or n_tensors > SIZE_MAX // SIZEOF_GGUF_TENSOR_INFO:
        raise GGUFError(at, f"tensor count {_pow2(n_tensors)} must be in [0, {SIZE_MAX // SIZEOF_GGUF_TENSOR_INFO}]")
    at = cur.pos
    n_kv = cur.unpack("q", "key-value count")
    if n_kv < 0 or n_kv > SIZE_MAX // SIZEOF_GGUF_KV:
        raise GGUFError(at, f"key-value count {_pow2(n_kv)} must be in [0, {SIZE_MAX // SIZEOF_GGUF_KV}]")
    # Fail fast (same verdict as reading on until the bytes run out, see the module docstring).
    if n_kv * MIN_KV_BYTES > cur.remain:
        raise GGUFError(at, f"key-value count {_pow2(n_kv)} exceeds what the file can hold ({cur.remain} bytes left)")
    if n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES > cur.remain:
        raise GGUFError(at - 8, f"tensor count {_pow2(n_tensors)} exceeds what the file can hold "
                                f"({cur.remain} bytes left after the header)")

    # --- key-value pairs
    metadata: dict[str, GGUFValue] = {}
    big = order == ">"
    for i in range(n_kv):
        at = cur.pos
        key_raw = cur.string(f"key {i}")
        if not key_raw:
            raise GGUFError(at, f"key {i} is empty")
        key = decode_str(key_raw)
        if key in metadata:
            raise GGUFError(at, f"duplicate key {key!r} for key-value pair {i}")
        at = cur.pos
        vtype = cur.unpack("i", f"type of key {key!r}")
        if vtype == GGUFValueType.ARRAY:
            at = cur.pos
            etype = cur.unpack("i", f"element type of array {key!r}")
            n_at = cur.pos
            n = cur.unpack("Q", f"element count of array {key!r}")
            if etype not in _VALID_VALUE_TYPES:
                raise GGUFError(at, f"key {key!r} has invalid GGUF type {etype}"
                                    + (" (arrays of arrays are not supported)" if etype == GGUFValueType.ARRAY else ""))
            metadata[key] = _read_array(cur, key, GGUFValueType(etype), n, n_at, big)
        else:
            if vtype not in _VALID_VALUE_TYPES:
                raise GGUFError(at, f"key {key!r} has invalid GGUF type {vtype}")
            metadata[key] = _read_scalar(cur, key, GGUFValueType(vtype))

    # --- alignment: the first key whose C string is "general.alignment" (gguf_find_key uses strcmp)
    alignment = GGUF_DEFAULT_ALIGNMENT
    for key, v in metadata.items():
        if key.split("\0", 1)[0] == GGUF_KEY_GENERAL_ALIGNMENT:
            if v.type != GGUFValueType.UINT32:
                raise GGUFError(cur.pos, f"key {GGUF_KEY_GENERAL_ALIGNMENT!r} must be of type u32 but is "
                                         f"{VALUE_TYPE_SHORT_NAME[v.type]}")
            alignment = v.value
            break
    if alignment == 0 or alignment & (alignment - 1):
        raise GGUFError(cur.pos, f"alignment {alignment} is not a power of 2")

    # --- tensor infos
    file_experimental = _experimental_table(metadata, cur.pos)
    infos: list[TensorInfo] = []
    seen_names: set[bytes] = set()
    for i in range(n_tensors):
        at = cur.pos
        raw_name = cur.string(f"name of tensor {i}")
        if len(raw_name) >= GGML_MAX_NAME:
            raise GGUFError(at, f"tensor name {i} is too long: {len(raw_name)} >= {GGML_MAX_NAME} bytes")
        if raw_name in seen_names:
            raise GGUFError(at, f"duplicate tensor name {decode_str(raw_name)!r} for tensor {i}")
        seen_names.add(raw_name)
        # ggml_set_name copies a C string: the name stops at the first NUL byte.
        name = decode_str(raw_name.split(b"\0", 1)[0])

        at = cur.pos
        n_dims = cur.unpack("I", f"n_dims of tensor {name!r}")
        if n_dims > GGML_MAX_DIMS:
            raise GGUFError(at, f"tensor {name!r} has invalid number of dimensions: {n_dims} > {GGML_MAX_DIMS}")
        ne = [1] * GGML_MAX_DIMS
        for j in range(n_dims):
            at = cur.pos
            ne[j] = cur.unpack("q", f"dimension {j} of tensor {name!r}")
            if ne[j] < 0:
                raise GGUFError(at, f"tensor {name!r} dimension {j} has invalid number of elements: {ne[j]} < 0")
        # the element count must be representable in int64 (a zero-element tensor trivially is)
        n_elements = ne[0]
        for j in range(1, GGML_MAX_DIMS):
            if ne[j] > 1 and INT64_MAX // ne[j] < n_elements:
                raise GGUFError(at, f"tensor {name!r} shape {tuple(ne)} has more than INT64_MAX elements")
            n_elements *= ne[j]

        at = cur.pos
        type_id = cur.unpack("i", f"type of tensor {name!r}")
        if is_experimental_id(type_id):
            ggml = _experimental_tensor_type(file_experimental, name, type_id, at)
        elif type_id < 0 or type_id >= GGML_TYPE_COUNT:
            raise GGUFError(at, f"tensor {name!r} has invalid ggml type {type_id}, should be in [0, {GGML_TYPE_COUNT})")
        else:
            ggml = GGML_TYPES[type_id]
        if ggml.block_size == 0 or ne[0] % ggml.block_size != 0:
            why = "support for this type was removed" if ggml.removed else \
                f"{ne[0]} elements per row is not a multiple of the block size {ggml.block_size}"
            raise GGUFError(at, f"tensor {name!r} of type {type_id} ({ggml.name}): {why}")
        if n_elements // ggml.block_size > SIZE_MAX // ggml.type_size:
            raise GGUFError(at, f"tensor {name!r} shape {tuple(ne)} has a size in bytes > SIZE_MAX")
        at = cur.pos
        offset = cur.unpack("Q", f"data offset of tensor {name!r}")
        shape = tuple(reversed(ne[:n_dims]))
        infos.append(TensorInfo(name, raw_name, shape, tuple(ne), ggml, offset, _ggml_nbytes(ne, ggml), None))

    # --- data section: aligned (relative to the start of the file) when there are tensors
    if n_tensors > 0:
        padded = _pad(cur.pos, alignment)
        if padded > cur.size:
            raise GGUFError(cur.pos, f"the data section would start at {padded:#x} (aligned to {alignment}), "
                                     f"past the end of the file ({cur.size:#x} bytes)")
        cur.pos = padded
    data_offset = cur.pos

    # --- tensor offsets: each tensor starts exactly where the previous one (padded to alignment) ends
    data_size = 0
    for t in infos:
        if t.offset != data_size:
            raise GGUFError(data_offset, f"tensor {t.name!r} has offset {t.offset}, expected {data_size} "
                                         f"(tensors must be packed in order, each padded to {alignment})")
        if t.nbytes > SIZE_MAX - (alignment - 1):
            raise GGUFError(data_offset, f"tensor {t.name!r} size {t.nbytes} overflows after padding")
        padded_size = _pad(t.nbytes, alignment)
        if SIZE_MAX - data_size < padded_size:
            raise GGUFError(data_offset, f"tensor {t.name!r}: data section size overflows size_t")
        data_size += padded_size

    return GGUFFile(path, version, order, metadata, infos, alignment, data_offset, data_size, cur.size, mm)


def _experimental_table(metadata: dict, at: int) -> dict[int, GGMLType]:
    """The file's description of its experimental types (id -> GGMLType as the file states it), checked."""
    present = [k for k in EXPERIMENTAL_KEYS if k in metadata]
    if not present:
        return {}
    if len(present) != len(EXPERIMENTAL_KEYS):
        missing = sorted(set(EXPERIMENTAL_KEYS) - set(present))
        raise GGUFError(at, f"experimental type metadata is incomplete: missing {', '.join(missing)}")
    columns = []
    for key in EXPERIMENTAL_KEYS:
        v = metadata[key]
        want_str = key.endswith(".name")
        ok = v.type == GGUFValueType.ARRAY and (
            v.element_type == GGUFValueType.STRING if want_str else
            v.element_type in (GGUFValueType.INT32, GGUFValueType.UINT32, GGUFValueType.INT64, GGUFValueType.UINT64))
        if not ok:
            raise GGUFError(at, f"metadata {key!r} must be an array of {'strings' if want_str else 'integers'}")
        columns.append(list(v.value) if want_str else [int(x) for x in v.value])
    if len({len(c) for c in columns}) != 1:
        raise GGUFError(at, f"metadata {EXPERIMENTAL_KEY_PREFIX}* arrays differ in length "
                            f"({', '.join(str(len(c)) for c in columns)})")
    table: dict[int, GGMLType] = {}
    for type_id, name, block_size, type_size in zip(*columns):
        if not EXPERIMENTAL_TYPE_BASE <= type_id < EXPERIMENTAL_TYPE_LIMIT or type_id in table:
            raise GGUFError(at, f"experimental type {name!r}: id {type_id} is outside "
                                f"[{EXPERIMENTAL_TYPE_BASE:#x}, {EXPERIMENTAL_TYPE_LIMIT:#x}) or listed twice")
        if block_size <= 0 or type_size <= 0:
            raise GGUFError(at, f"experimental type {name!r}: block size {block_size} and bytes per block "
                                f"{type_size} must be positive")
        table[type_id] = GGMLType(type_id, name, block_size, type_size)
    return table


def _experimental_tensor_type(file_table: dict[int, GGMLType], name: str, type_id: int, at: int) -> GGMLType:
    """The registered plugin type a tensor's experimental type id stands for in this file."""
    described = file_table.get(type_id)
    if described is None:
        raise GGUFError(at, f"tensor {name!r} has type {type_id}, in refimpl's experimental range "
                            f"[{EXPERIMENTAL_TYPE_BASE:#x}, {EXPERIMENTAL_TYPE_LIMIT:#x}), but the file's "
                            f"{EXPERIMENTAL_KEY_PREFIX}* metadata does not describe it")
    registered = experimental_type(described.name)
    if registered is None:
        raise GGUFError(at, f"tensor {name!r} has experimental type {described.name!r} (id {type_id}, "
                            f"{described.block_size}-element blocks of {described.type_size} bytes), which is not "
                            f"registered: load its plugin first (refimpl.quant.load_plugin('PLUGIN.py'), or "
                            f"--plugin PLUGIN.py on the command line)")
    if (registered.block_size, registered.type_size) != (described.block_size, described.type_size):
        raise GGUFError(at, f"tensor {name!r}: the file's experimental type {described.name!r} has "
                            f"{described.block_size}-element blocks of {described.type_size} bytes, the registered "
                            f"plugin of that name {registered.block_size}-element blocks of {registered.type_size} "
                            f"bytes: another version of the plugin?")
    return registered


def _pad(x: int, n: int) -> int:
    """GGML_PAD(x, n) in size_t arithmetic."""
    return ((x + n - 1) & ~(n - 1)) & SIZE_MAX


def _ggml_nbytes(ne: list[int], ggml: GGMLType) -> int:
    """ggml_nbytes() with its size_t (mod 2^64) arithmetic, strides as gguf.cpp computes them."""
    if any(d <= 0 for d in ne):
        return 0
    M = SIZE_MAX
    nb = [ggml.type_size, (ggml.type_size * (ne[0] // ggml.block_size)) & M, 0, 0]
    for j in range(2, GGML_MAX_DIMS):
        nb[j] = (nb[j - 1] * ne[j - 1]) & M
    if ggml.block_size == 1:
        nbytes = ggml.type_size
        for j in range(GGML_MAX_DIMS):
            nbytes = (nbytes + (ne[j] - 1) * nb[j]) & M
    else:
        nbytes = ((ne[0] * nb[0]) & M) // ggml.block_size
        for j in range(1, GGML_MAX_DIMS):
            nbytes = (nbytes + (ne[j] - 1) * nb[j]) & M
    return nbytes


def _read_scalar(cur: _Cursor, key: str, vtype: GGUFValueType) -> GGUFValue:
    if vtype == GGUFValueType.STRING:
        return GGUFValue._trusted(vtype, decode_str(cur.string(f"value of key {key!r}")))
    fmt = _SCALAR_FMT[vtype]
    at = cur.pos
    v = cur.unpack(fmt, f"value of key {key!r}")
    if vtype == GGUFValueType.BOOL:
        return GGUFValue._trusted(vtype, v != 0)
    if vtype == GGUFValueType.FLOAT32:
        bits = struct.unpack_from(cur.order + "I", cur.mv, at)[0]
        return GGUFValue._trusted(vtype, v, f32_bits=bits)
    return GGUFValue._trusted(vtype, v)


def _read_array(cur: _Cursor, key: str, etype: GGUFValueType, n: int, n_at: int, big: bool) -> GGUFValue:
    """gguf_reader::read(std::vector<T> &, n): n <= 2^30, n * sizeof(T) <= remaining bytes, then the elements."""
    if n > GGUF_MAX_ARRAY_ELEMENTS:
        raise GGUFError(n_at, f"array {key!r} has {_pow2(n)} elements, more than GGUF_MAX_ARRAY_ELEMENTS (2^30)")
    item = 8 if etype == GGUFValueType.STRING else np.dtype(VALUE_TYPE_DTYPE[etype]).itemsize
    if n * item > cur.remain:
        raise GGUFError(n_at, f"array {key!r} of {n} {VALUE_TYPE_SHORT_NAME[etype]} needs at least {n * item} "
                              f"bytes but only {cur.remain} remain")
    if etype == GGUFValueType.STRING:
        start = cur.pos
        status, index, where, starts, lengths = _scan.scan(cur.buf, start, n, big)
        if status != _scan.SCAN_OK:
            if status == _scan.SCAN_TRUNCATED_PREFIX:
                raise GGUFError(where, f"string {index} of array {key!r}: length needs 8 bytes but only "
                                       f"{cur.size - where} remain")
            length = struct.unpack_from(cur.order + "Q", cur.mv, where)[0]
            if status == _scan.SCAN_TOO_LONG:
                raise GGUFError(where, f"string {index} of array {key!r} has length {_pow2(length)}, more than "
                                       f"GGUF_MAX_STRING_LENGTH (2^30)")
            raise GGUFError(where, f"string {index} of array {key!r} has length {_pow2(length)}, more than the "
                                   f"{cur.size - where - 8} bytes left in the file")
        # one copy of the array's bytes; the strings are sliced out of it on demand
        data = bytes(cur.mv[start:where])
        starts -= start
        cur.pos = where
        return GGUFValue._trusted(GGUFValueType.ARRAY, StringArray(data, starts, lengths, wire_le=not big), etype)
    dt = np.dtype(cur.order + VALUE_TYPE_DTYPE[etype]) if item > 1 else np.dtype(VALUE_TYPE_DTYPE[etype])
    arr = np.frombuffer(cur.mv, dtype=dt, count=n, offset=cur.pos) if n else np.zeros(0, dtype=dt)
    cur.pos += n * item
    if etype == GGUFValueType.BOOL:
        arr = arr != 0                      # gguf.cpp: dst = tmp != 0
    else:
        arr = arr.astype(dt.newbyteorder("="), copy=True)
    arr.flags.writeable = False
    return GGUFValue._trusted(GGUFValueType.ARRAY, arr, etype)
