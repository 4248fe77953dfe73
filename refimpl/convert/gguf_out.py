"""The output file, laid out byte for byte as gguf-py's ``GGUFWriter`` lays it out (gguf-py/gguf/gguf_writer.py).

What matters for identical bytes:

* metadata is a dict in insertion order; adding a key a second time replaces its value but keeps its first place
  (``add_key_value`` assigns into a dict) — Gemma3 writes the context length twice, for example;
* ``add_string("")`` and ``add_array([])`` write nothing; ``add_chat_template(None)`` removes the key;
* array element types are inferred from the first element like ``GGUFValueType.get_type``: str -> STRING,
  bool -> BOOL, int -> INT32, float -> FLOAT32;
* each tensor info stores ``len(shape)`` dimensions (gguf-py does not drop trailing 1s, unlike ggml), offsets
  advance by the data size padded to 32, and the data section starts at the next multiple of 32;
* every tensor's data, the last included, is followed by zero padding to a multiple of 32.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .._atomic import atomic_output
from ..gguf.types import GGUFValueType

ALIGNMENT = 32
GGUF_MAGIC = 0x46554747  # "GGUF"
GGUF_VERSION = 3

_PACK = {GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
         GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f",
         GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
         GGUFValueType.BOOL: "?"}


_U64 = struct.Struct("<Q").pack


def _pad(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def element_type(value) -> GGUFValueType:
    """GGUFValueType.get_type of gguf-py (bool is tested after float and before int, as there)."""
    if isinstance(value, (str, bytes, bytearray)):
        return GGUFValueType.STRING
    if isinstance(value, list):
        return GGUFValueType.ARRAY
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        return GGUFValueType.INT32
    raise ValueError(f"no GGUF type for {type(value).__name__}")


def _string(s) -> bytes:
    raw = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(raw)) + raw


def pack_value(value, vtype: GGUFValueType) -> bytes:
    """GGUFWriter._pack_val without the type tag."""
    if vtype in _PACK:
        return struct.pack(_PACK[vtype], value)
    if vtype == GGUFValueType.STRING:
        return _string(value)
    if vtype == GGUFValueType.ARRAY:
        if len(value) == 0:
            raise ValueError("empty GGUF array")
        etype = element_type(value[0])
        if any(element_type(v) is not etype for v in value[1:]):
            raise ValueError("all items in a GGUF array must have the same type")
        head = struct.pack("<IQ", int(etype), len(value))
        if etype == GGUFValueType.STRING:
            parts = []
            for v in value:
                raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)
                parts.append(_U64(len(raw)))
                parts.append(raw)
            return head + b"".join(parts)
        if etype == GGUFValueType.INT32:
            return head + np.asarray(value, dtype="<i4").tobytes()
        if etype == GGUFValueType.FLOAT32:
            return head + np.asarray(value, dtype="<f4").tobytes()
        return head + b"".join(pack_value(v, etype) for v in value)
    raise ValueError(f"cannot pack GGUF type {vtype!r}")


class GGUFOutput:
    """Metadata and tensors collected in the order the converter adds them, then written in one go."""

    def __init__(self, arch: str):
        self.arch = arch
        self.kv: dict[str, tuple[GGUFValueType, object]] = {}
        # name -> (ggml type id, shape in numpy order, data or None while only planned)
        self.tensors: dict[str, tuple[int, tuple[int, ...], np.ndarray | None]] = {}
        self.add_string("general.architecture", arch)

    # ---------------------------------------------------------------- metadata (GGUFWriter.add_*)
    def add(self, key: str, value, vtype: GGUFValueType) -> None:
        self.kv[key.replace("{arch}", self.arch)] = (vtype, value)

    def add_uint32(self, key, value): self.add(key, int(value), GGUFValueType.UINT32)
    def add_int32(self, key, value): self.add(key, int(value), GGUFValueType.INT32)
    def add_float32(self, key, value): self.add(key, float(value), GGUFValueType.FLOAT32)
    def add_bool(self, key, value): self.add(key, bool(value), GGUFValueType.BOOL)

    def add_string(self, key, value):
        if value:
            self.add(key, value, GGUFValueType.STRING)

    def add_array(self, key, values):
        if len(values) > 0:
            self.add(key, list(values), GGUFValueType.ARRAY)

    def remove(self, key: str) -> None:
        self.kv.pop(key, None)

    def add_chat_template(self, value) -> None:
        """GGUFWriter.add_chat_template: a string, or a list of {name, template} (named templates get their own
        keys, ``default`` becomes tokenizer.chat_template); None removes the key."""
        if value is None:
            self.remove("tokenizer.chat_template")
            return
        if not isinstance(value, str):
            default, names = None, set()
            for choice in value:
                name = "".join(c if c.isascii() and c.isalnum() else "_" for c in choice.get("name", ""))
                template = choice.get("template")
                if name and template is not None:
                    if name == "default":
                        default = template
                    else:
                        names.add(name)
                        self.add_string(f"tokenizer.chat_template.{name}", template)
            if names:
                self.add_array("tokenizer.chat_templates", list(names))
            if default is None:
                return
            value = default
        self.add_string("tokenizer.chat_template", value)

    # ---------------------------------------------------------------- tensors
    def tensor_nbytes(self, name: str) -> int:
        from .tensors import nbytes
        ggml_type, shape, data = self.tensors[name]
        if data is not None:
            return data.nbytes
        return nbytes(shape, _TYPE_NAMES[ggml_type])

    # ---------------------------------------------------------------- bytes
    def header_bytes(self, vocab_only: bool = False) -> bytes:
        """Header, metadata and tensor infos, padded to the alignment (a vocab-only file stops after the metadata,
        unpadded: write_vocab writes no tensor infos and no padding)."""
        out = bytearray(struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(self.tensors), len(self.kv)))
        for key, (vtype, value) in self.kv.items():
            out += _string(key) + struct.pack("<I", int(vtype)) + pack_value(value, vtype)
        if vocab_only:
            return bytes(out)
        offset = 0
        for name, (ggml_type, shape, _) in self.tensors.items():
            out += _string(name) + struct.pack("<I", len(shape))
            out += b"".join(struct.pack("<Q", n) for n in reversed(shape))
            out += struct.pack("<IQ", ggml_type, offset)
            offset += _pad(self.tensor_nbytes(name))
        out += bytes(_pad(len(out)) - len(out))
        return bytes(out)

    def chunks(self, streamed=None, vocab_only: bool = False):
        """The file as byte chunks: header, then each tensor's data and padding.  ``streamed`` yields
        (name, data) in tensor order for tensors planned without data."""
        yield self.header_bytes(vocab_only)
        if vocab_only:
            return
        items = streamed if streamed is not None else ((n, t[2]) for n, t in self.tensors.items())
        names = iter(self.tensors)
        for name, data in items:
            expected = next(names)
            if name != expected or data.nbytes != self.tensor_nbytes(name):
                raise RuntimeError(f"tensor {name!r} ({data.nbytes} bytes) does not match its plan "
                                   f"({expected!r}, {self.tensor_nbytes(expected)} bytes)")
            yield memoryview(np.ascontiguousarray(data)).cast("B")
            if _pad(data.nbytes) != data.nbytes:
                yield bytes(_pad(data.nbytes) - data.nbytes)

    def to_bytes(self) -> bytearray:
        buf = bytearray()
        for chunk in self.chunks():
            buf += chunk
        return buf

    def write(self, path: Path, streamed=None, use_temp_file: bool = False, vocab_only: bool = False) -> None:
        """Write atomically: a temporary file in the target's directory, renamed over the target at the end, so an
        error or Ctrl-C never leaves a partial file at the target.  (The script's ``--use-temp-file`` spools tensor
        data through a temporary file to save memory; here data is always streamed one tensor at a time, so the
        flag changes nothing and the output is the same.)"""
        del use_temp_file
        with atomic_output(path) as f:
            for chunk in self.chunks(streamed, vocab_only):
                f.write(chunk)


_TYPE_NAMES = {0: "F32", 1: "F16", 8: "Q8_0", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0"}
