"""Writing a GGUF file byte for byte as llama.cpp's ``gguf_write_to_file`` (gguf_writer_base, gguf.cpp).

Layout (always little-endian, like llama.cpp on every host it supports):

    "GGUF" | u32 version | i64 n_tensors | i64 n_kv
    n_kv x  (string key | i32 type | [i32 element type | u64 n] | value bytes)
    n_tensors x (string name | u32 n_dims | n_dims x i64 ne | i32 ggml type | u64 offset)
    zero padding to a multiple of the alignment (always, even with no tensors)
    n_tensors x (data | zero padding to a multiple of the alignment)

where a string is u64 length + bytes, BOOL is one byte 0/1, and ``n_dims`` is ``ggml_n_dims`` of the shape
(trailing dimensions of size <= 1 are dropped, minimum 1), whatever the source file declared.  Tensor data is
streamed one tensor (and one chunk) at a time into a temporary file that is renamed over the target at the end.

A file whose tensors use experimental (plugin) types gets the ``refimpl.experimental_types.*`` keys describing
them, set here from the tensors themselves (replacing stale values in place, or appended after the given metadata);
a file without such tensors never carries those keys.  See refimpl/gguf/types.py.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .._atomic import atomic_output
from .types import (DTYPE_TO_GGML, EXPERIMENTAL_KEYS, VALUE_TYPE_DTYPE, GGMLType, GGUFValueType, ggml_type,
                    is_experimental_id)
from .values import GGUFValue, StringArray, encode_str

GGUF_DEFAULT_ALIGNMENT = 32
_CHUNK = 64 << 20   # bytes of tensor data written per call

_SCALAR_FMT = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class Tensor(NamedTuple):
    """A tensor to write: ggml type name (or id), shape in numpy order, and its data (array or bytes-like) of
    exactly ``nbytes``: typed elements for plain types, raw block bytes for quantized types."""
    ggml_type: str | int
    shape: tuple
    data: Any


def as_value(v) -> GGUFValue:
    """A GGUFValue as is; a plain Python value with gguf-py's type inference (int -> INT32, or INT64 when it does
    not fit; float -> FLOAT32; numpy arrays by dtype; lists of str -> string arrays)."""
    if isinstance(v, GGUFValue):
        return v
    if isinstance(v, (bool, np.bool_)):
        return GGUFValue(GGUFValueType.BOOL, bool(v))
    if isinstance(v, (int, np.integer)):
        t = GGUFValueType.INT32 if -2**31 <= int(v) < 2**31 else GGUFValueType.INT64
        return GGUFValue(t, int(v))
    if isinstance(v, (float, np.floating)):
        return GGUFValue(GGUFValueType.FLOAT32, float(v))
    if isinstance(v, (str, bytes)):
        return GGUFValue(GGUFValueType.STRING, v)
    if isinstance(v, StringArray):
        return GGUFValue(GGUFValueType.ARRAY, v, GGUFValueType.STRING)
    if isinstance(v, np.ndarray):
        kind = {"b": "BOOL"}.get(v.dtype.kind)
        if kind is None:
            code = v.dtype.kind + str(v.dtype.itemsize)
            kind = {"u1": "UINT8", "i1": "INT8", "u2": "UINT16", "i2": "INT16", "u4": "UINT32", "i4": "INT32",
                    "u8": "UINT64", "i8": "INT64", "f4": "FLOAT32", "f8": "FLOAT64"}.get(code)
        if kind is None:
            raise ValueError(f"cannot store a numpy array of dtype {v.dtype} as GGUF metadata")
        return GGUFValue(GGUFValueType.ARRAY, v, GGUFValueType[kind])
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, str) for x in v):
            return GGUFValue(GGUFValueType.ARRAY, v, GGUFValueType.STRING)
        if all(isinstance(x, bool) for x in v):
            return GGUFValue(GGUFValueType.ARRAY, v, GGUFValueType.BOOL)
        if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return GGUFValue(GGUFValueType.ARRAY, np.asarray(v, dtype=np.int64)
                             if any(not -2**31 <= x < 2**31 for x in v) else np.asarray(v, dtype=np.int32),
                             GGUFValueType.INT64 if any(not -2**31 <= x < 2**31 for x in v) else GGUFValueType.INT32)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return GGUFValue(GGUFValueType.ARRAY, np.asarray(v, dtype=np.float32), GGUFValueType.FLOAT32)
    raise ValueError(f"cannot infer a GGUF type for {type(v).__name__}; pass a GGUFValue")


def _string(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def encode_value(v: GGUFValue) -> bytes:
    """The value's bytes after its type tag (gguf_writer_base::write(const gguf_kv &))."""
    t = v.type
    if t == GGUFValueType.ARRAY:
        et = v.element_type
        head = struct.pack("<iQ", int(et), len(v.value))
        if et == GGUFValueType.STRING:
            sa = v.value
            if getattr(sa, "_wire_le", False):          # read from a little-endian file: bytes already on the wire
                return head + sa._data
            return head + b"".join(_string(r) for r in sa.raw_list())
        if et == GGUFValueType.BOOL:
            return head + np.asarray(v.value, dtype=np.bool_).astype(np.uint8).tobytes()
        return head + np.asarray(v.value).astype("<" + VALUE_TYPE_DTYPE[et], copy=False).tobytes()
    if t == GGUFValueType.STRING:
        return _string(encode_str(v.value))
    if t == GGUFValueType.BOOL:
        return b"\x01" if v.value else b"\x00"
    if t == GGUFValueType.FLOAT32:
        return struct.pack("<I", v.f32_bits())
    return struct.pack(_SCALAR_FMT[t], v.value)


def encode_kv(key: str, v: GGUFValue) -> bytes:
    raw_key = encode_str(key)
    if not raw_key:
        raise ValueError("GGUF keys must not be empty")
    tag = struct.pack("<i", int(GGUFValueType.ARRAY if v.type == GGUFValueType.ARRAY else v.type))
    return _string(raw_key) + tag + encode_value(v)


def ggml_n_dims(ne: tuple[int, ...]) -> int:
    """ggml_n_dims: index of the last dimension > 1, plus one (minimum 1)."""
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


class _Planned(NamedTuple):
    name: bytes
    ne: tuple
    ggml: GGMLType
    nbytes: int
    source: Any     # a TensorInfo-like (with .data) or the data itself
    big_endian: bool


def _plan_tensor(name: str, t) -> _Planned:
    big = False
    if isinstance(t, np.ndarray):
        code = t.dtype.kind + str(t.dtype.itemsize)
        if code not in DTYPE_TO_GGML:
            raise ValueError(f"tensor {name!r}: numpy dtype {t.dtype} has no ggml type; pass Tensor(type, shape, data)")
        g = ggml_type(DTYPE_TO_GGML[code])
        shape, data = t.shape, t
    else:
        g = ggml_type(t.ggml_type if not hasattr(t, "type_id") else t.type_id)
        shape, data = tuple(t.shape), t
        big = getattr(getattr(t, "_file", None), "byteorder", "<") == ">"
    if len(shape) > 4:
        raise ValueError(f"tensor {name!r}: {len(shape)} dimensions, GGUF allows at most 4")
    ne = tuple(int(d) for d in reversed(shape)) + (1,) * (4 - len(shape))
    if any(d < 0 for d in ne):
        raise ValueError(f"tensor {name!r}: negative dimension in shape {shape}")
    if ne[0] % g.block_size:
        raise ValueError(f"tensor {name!r}: row length {ne[0]} is not a multiple of {g.name}'s block size {g.block_size}")
    n_el = ne[0] * ne[1] * ne[2] * ne[3]
    nbytes = n_el // g.block_size * g.type_size
    if not (hasattr(t, "ne") and hasattr(t, "nbytes")) and any(d == 0 for d in ne[ggml_n_dims(ne):]):
        # gguf.cpp stores ggml_n_dims(ne) dimensions, which drops a trailing run of 0s and 1s: (0, 1) would be
        # stored as ne0 = 1 and read back as a different, non-empty tensor.  (save() of a file that already has
        # such a tensor reproduces llama.cpp byte for byte; new files are not written broken.)
        raise ValueError(f"tensor {name!r}: shape {tuple(shape)} has a zero dimension that GGUF's n_dims "
                         f"(ggml_n_dims) cannot store; put the zero in the last numpy axis or drop the tensor")
    if hasattr(t, "ne") and hasattr(t, "nbytes"):
        # a tensor read from a GGUF file: keep llama.cpp's ggml_nbytes (size_t arithmetic) so that offsets are
        # the ones gguf.cpp stored, even for shapes whose byte count wraps around
        ne, nbytes = tuple(t.ne), int(t.nbytes)
    raw_name = encode_str(name)
    if len(raw_name) >= 64:
        raise ValueError(f"tensor name {name!r} is {len(raw_name)} bytes; ggml allows at most 63")
    return _Planned(raw_name, ne, g, nbytes, data, big)


def _tensor_bytes(p: _Planned) -> np.ndarray:
    """The tensor's data as a flat little-endian uint8 array of exactly nbytes (zero-copy when possible)."""
    src = p.source
    if hasattr(src, "_file") and hasattr(src._file, "_raw_tensor_bytes"):
        # a tensor of a file we read: copy its ggml_nbytes bytes as gguf_write_to_file does
        raw = src._file._raw_tensor_bytes(src)
        if p.big_endian:
            if p.ggml.dtype is None:
                raise ValueError(f"tensor {p.name!r}: block-quantized data from a big-endian file cannot be "
                                 f"converted to little-endian by the container writer")
            if np.dtype(p.ggml.dtype).itemsize > 1:
                raw = raw.view(">" + p.ggml.dtype).astype("<" + p.ggml.dtype).view(np.uint8)
        return raw
    data = src if isinstance(src, np.ndarray) else getattr(src, "data", src)
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(memoryview(data), dtype=np.uint8)
    if p.big_endian and p.ggml.dtype is None:
        raise ValueError(f"tensor {p.name!r}: block-quantized data from a big-endian file cannot be converted "
                         f"to little-endian by the container writer")
    if data.dtype.itemsize > 1 and data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))     # llama.cpp writes little-endian
    data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if data.size != p.nbytes:
        raise ValueError(f"tensor {p.name.decode('utf-8', 'replace')!r}: data has {data.size} bytes, "
                         f"{p.ggml.name} shape needs {p.nbytes}")
    return data


def _iter_tensors(tensors) -> list[tuple[str, Any]]:
    if tensors is None:
        return []
    if isinstance(tensors, Mapping):
        if hasattr(tensors, "values") and hasattr(tensors, "list"):      # a TensorTable (duplicates allowed)
            return [(t.name, t) for t in tensors.list()]
        return list(tensors.items())
    out = []
    for t in tensors:
        if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str):
            out.append(t)
        else:
            out.append((t.name, t))
    return out


def write(path: str | os.PathLike, metadata: Mapping[str, Any] | None = None, tensors=None, *,
          alignment: int | None = None, version: int = 3) -> None:
    """Write a GGUF file atomically (temporary file + rename), streaming tensor data one tensor at a time.

    ``metadata``: key -> GGUFValue (or a plain value, see ``as_value``), written in iteration order.
    ``tensors``: name -> numpy array (typed) / ``Tensor`` / TensorInfo, or a sequence of TensorInfo.
    ``alignment``: defaults to the ``general.alignment`` value in ``metadata`` (UINT32), else 32; when both are
    given they must agree (readers take the alignment from the key).
    """
    metadata = dict(metadata or {})
    values = {k: as_value(v) for k, v in metadata.items()}
    key_alignment = None
    for k, v in values.items():
        if k.split("\0", 1)[0] == "general.alignment":
            if v.type != GGUFValueType.UINT32:
                raise ValueError("general.alignment must be a UINT32 value")
            key_alignment = v.value
            break
    if alignment is None:
        alignment = key_alignment if key_alignment is not None else GGUF_DEFAULT_ALIGNMENT
    elif alignment != (key_alignment if key_alignment is not None else GGUF_DEFAULT_ALIGNMENT):
        raise ValueError(f"alignment={alignment} disagrees with metadata general.alignment={key_alignment}: "
                         f"set the key (UINT32) to the alignment you want")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment} is not a power of 2")
    if version not in (2, 3):
        raise ValueError(f"version must be 2 or 3, not {version}")

    planned = [_plan_tensor(name, t) for name, t in _iter_tensors(tensors)]
    values = _describe_experimental_types(values, planned)

    with atomic_output(path) as f:
        written = _write_meta(f, values, planned, alignment, version)
        for p in planned:
            data = _tensor_bytes(p)
            for s in range(0, data.size, _CHUNK):
                f.write(memoryview(data[s:s + _CHUNK]))
            written += data.size
            written += _write_zeros(f, -written % alignment)


def _describe_experimental_types(values: dict[str, GGUFValue], planned: list[_Planned]) -> dict[str, GGUFValue]:
    """``values`` with the refimpl.experimental_types.* keys describing exactly the plugin types the tensors use."""
    used: dict[int, GGMLType] = {}
    for p in planned:
        if is_experimental_id(p.ggml.type_id):
            used.setdefault(p.ggml.type_id, p.ggml)
    types = [used[i] for i in sorted(used)]
    if not types and not any(k in values for k in EXPERIMENTAL_KEYS):
        return values
    described = {
        EXPERIMENTAL_KEYS[0]: GGUFValue(GGUFValueType.ARRAY, [g.type_id for g in types], GGUFValueType.INT32),
        EXPERIMENTAL_KEYS[1]: GGUFValue(GGUFValueType.ARRAY, [g.name for g in types], GGUFValueType.STRING),
        EXPERIMENTAL_KEYS[2]: GGUFValue(GGUFValueType.ARRAY, [g.block_size for g in types], GGUFValueType.INT32),
        EXPERIMENTAL_KEYS[3]: GGUFValue(GGUFValueType.ARRAY, [g.type_size for g in types], GGUFValueType.INT32),
    }
    out = {k: (described[k] if k in described else v) for k, v in values.items()
           if types or k not in described}
    for k, v in described.items():
        if types and k not in out:
            out[k] = v
    return out


def _write_meta(f, values: dict[str, GGUFValue], planned: list[_Planned], alignment: int, version: int) -> int:
    parts = [b"GGUF", struct.pack("<Iqq", version, len(planned), len(values))]
    parts.extend(encode_kv(k, v) for k, v in values.items())
    offset = 0
    for p in planned:
        n_dims = ggml_n_dims(p.ne)
        parts.append(_string(p.name) + struct.pack("<I", n_dims) + struct.pack(f"<{n_dims}q", *p.ne[:n_dims])
                     + struct.pack("<iQ", p.ggml.type_id, offset))
        offset += p.nbytes + (-p.nbytes % alignment)
    meta = b"".join(parts)
    f.write(meta)
    return len(meta) + _write_zeros(f, -len(meta) % alignment)


def _write_zeros(f, n: int) -> int:
    """Zero padding, in bounded chunks (a 2^31 alignment is legal)."""
    chunk = b"\0" * min(n, 1 << 20)
    left = n
    while left > 0:
        f.write(chunk[:left])
        left -= len(chunk)
    return n


def meta_bytes(metadata, tensors=None, *, alignment: int | None = None, version: int = 3) -> bytes:
    """The header + metadata + tensor infos + padding, as gguf_get_meta_data returns them."""
    import io
    values = {k: as_value(v) for k, v in dict(metadata or {}).items()}
    if alignment is None:
        av = next((v for k, v in values.items() if k.split("\0", 1)[0] == "general.alignment"), None)
        alignment = av.value if av is not None and av.type == GGUFValueType.UINT32 else GGUF_DEFAULT_ALIGNMENT
    buf = io.BytesIO()
    planned = [_plan_tensor(n, t) for n, t in _iter_tensors(tensors)]
    _write_meta(buf, _describe_experimental_types(values, planned), planned, alignment, version)
    return buf.getvalue()
