"""Metadata values that remember their GGUF type, so a file can be written back unchanged."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .types import VALUE_TYPE_DTYPE, VALUE_TYPE_SHORT_NAME, GGUFValueType


def decode_str(raw: bytes) -> str:
    """GGUF strings are bytes; decode as UTF-8 and keep invalid bytes as lone surrogates (exact round trip)."""
    return raw.decode("utf-8", "surrogateescape")


def encode_str(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


class StringArray(Sequence):
    """A GGUF string array decoded lazily: the bytes of the whole array plus where each string starts.

    ``len(a)``, ``a[i] -> str``, iteration, ``a.to_list()``, ``a.raw(i) -> bytes``.  Opening a 262k-token
    vocabulary only records offsets; a string becomes a Python object when it is asked for.
    """

    __slots__ = ("_data", "_starts", "_lengths", "_wire_le")

    def __init__(self, data: bytes, starts: np.ndarray, lengths: np.ndarray, *, wire_le: bool = False):
        self._data = data
        self._starts = starts
        self._lengths = lengths
        # True when _data is exactly the little-endian on-disk form (u64 length + bytes, back to back), so the
        # writer can copy it unchanged.
        self._wire_le = wire_le

    @classmethod
    def from_strings(cls, items) -> "StringArray":
        raws = [encode_str(s) if isinstance(s, str) else bytes(s) for s in items]
        lengths = np.fromiter((len(r) for r in raws), dtype=np.int64, count=len(raws))
        starts = np.zeros(len(raws), dtype=np.int64)
        if len(raws) > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        return cls(b"".join(raws), starts, lengths)

    def __len__(self) -> int:
        return int(self._lengths.shape[0])

    def raw(self, i: int) -> bytes:
        s = int(self._starts[i])
        return self._data[s:s + int(self._lengths[i])]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return decode_str(self.raw(i))

    def __iter__(self):
        data = self._data
        for s, n in zip(self._starts.tolist(), self._lengths.tolist()):
            yield data[s:s + n].decode("utf-8", "surrogateescape")

    def to_list(self) -> list[str]:
        return list(self)

    def raw_list(self) -> list[bytes]:
        data = self._data
        return [data[s:s + n] for s, n in zip(self._starts.tolist(), self._lengths.tolist())]

    def lengths(self) -> np.ndarray:
        """Byte length of every string (int64, read-only)."""
        out = self._lengths.view()
        out.flags.writeable = False
        return out

    def __eq__(self, other) -> bool:
        if isinstance(other, StringArray):
            return len(self) == len(other) and self.raw_list() == other.raw_list()
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:5])
        return f"StringArray([{head}{', ...' if len(self) > 5 else ''}], n={len(self)})"


class GGUFValue:
    """One metadata value: ``.type`` (GGUFValueType), ``.value``, and for arrays ``.element_type``.

    ``.value`` is a Python int/float/bool, a ``str`` for STRING, a read-only numpy array for numeric arrays and a
    ``StringArray`` for string arrays.  Immutable.  A FLOAT32 scalar read from a file also keeps its exact bit
    pattern (a Python float cannot carry every float32 NaN payload through a round trip).
    """

    __slots__ = ("type", "value", "element_type", "_f32_bits")

    def __init__(self, type: GGUFValueType | int, value: Any, element_type: GGUFValueType | int | None = None,
                 *, _f32_bits: int | None = None):
        type = GGUFValueType(type)
        if type == GGUFValueType.ARRAY:
            if element_type is None:
                raise ValueError("an ARRAY value needs element_type")
            element_type = GGUFValueType(element_type)
            value = _normalise_array(value, element_type)
        else:
            if element_type is not None:
                raise ValueError(f"element_type is only for ARRAY values, not {type.name}")
            value = _normalise_scalar(value, type)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "element_type", element_type)
        object.__setattr__(self, "_f32_bits", _f32_bits)

    @classmethod
    def _trusted(cls, type, value, element_type=None, f32_bits=None) -> "GGUFValue":
        """The reader's constructor: the value is already in normal form (read-only array, StringArray...)."""
        self = object.__new__(cls)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "element_type", element_type)
        object.__setattr__(self, "_f32_bits", f32_bits)
        return self

    def __setattr__(self, name, value):
        raise AttributeError("GGUFValue is immutable; make a new one")

    @property
    def type_name(self) -> str:
        if self.type == GGUFValueType.ARRAY:
            return f"arr[{VALUE_TYPE_SHORT_NAME[self.element_type]}]"
        return VALUE_TYPE_SHORT_NAME[self.type]

    def __len__(self) -> int:
        if self.type != GGUFValueType.ARRAY:
            raise TypeError(f"{self.type.name} value has no length")
        return len(self.value)

    def __eq__(self, other) -> bool:
        if not isinstance(other, GGUFValue):
            return NotImplemented
        if (self.type, self.element_type) != (other.type, other.element_type):
            return False
        if self.type == GGUFValueType.ARRAY:
            if self.element_type == GGUFValueType.STRING:
                return self.value == other.value
            a, b = self.value, other.value
            return a.shape == b.shape and a.tobytes() == b.tobytes()   # bitwise: NaN == NaN, -0.0 != 0.0
        if self.type == GGUFValueType.FLOAT32:
            return self.f32_bits() == other.f32_bits()
        if self.type == GGUFValueType.FLOAT64:
            return np.float64(self.value).tobytes() == np.float64(other.value).tobytes()
        return self.value == other.value

    def f32_bits(self) -> int:
        """The float32 bit pattern of a FLOAT32 scalar (as read, or converted from ``.value``)."""
        if self._f32_bits is not None:
            return self._f32_bits
        return int(np.array([self.value], dtype=np.float32).view(np.uint32)[0])

    def __repr__(self) -> str:
        if self.type == GGUFValueType.ARRAY:
            return f"GGUFValue({self.type_name}, n={len(self.value)})"
        r = repr(self.value)
        return f"GGUFValue({self.type_name}, {r if len(r) <= 80 else r[:77] + '...'})"


_INT_RANGES = {
    GGUFValueType.UINT8: (0, 2**8 - 1), GGUFValueType.INT8: (-2**7, 2**7 - 1),
    GGUFValueType.UINT16: (0, 2**16 - 1), GGUFValueType.INT16: (-2**15, 2**15 - 1),
    GGUFValueType.UINT32: (0, 2**32 - 1), GGUFValueType.INT32: (-2**31, 2**31 - 1),
    GGUFValueType.UINT64: (0, 2**64 - 1), GGUFValueType.INT64: (-2**63, 2**63 - 1),
}


def _normalise_scalar(value, type: GGUFValueType):
    if type in _INT_RANGES:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{type.name} value must be an int, got {value!r}")
        lo, hi = _INT_RANGES[type]
        value = int(value)
        if not lo <= value <= hi:
            raise ValueError(f"{type.name} value {value} out of range [{lo}, {hi}]")
        return value
    if type in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
            raise ValueError(f"{type.name} value must be a number, got {value!r}")
        if type == GGUFValueType.FLOAT32 and math.isfinite(float(value)) and not math.isfinite(float(np.float32(value))):
            raise ValueError(f"FLOAT32 value {value!r} overflows float32")
        return float(value)
    if type == GGUFValueType.BOOL:
        if not isinstance(value, (bool, np.bool_, int, np.integer)):
            raise ValueError(f"BOOL value must be a bool, got {value!r}")
        return bool(value)
    if type == GGUFValueType.STRING:
        if isinstance(value, (bytes, bytearray)):
            return decode_str(bytes(value))
        if not isinstance(value, str):
            raise ValueError(f"STRING value must be str or bytes, got {type(value).__name__}")
        return value
    raise ValueError(f"invalid scalar type {type!r}")


def _normalise_array(value, element_type: GGUFValueType):
    if element_type == GGUFValueType.ARRAY:
        raise ValueError("arrays of arrays are not supported by llama.cpp's gguf.cpp")
    if element_type == GGUFValueType.STRING:
        if isinstance(value, StringArray):
            return value
        if isinstance(value, (str, bytes)):
            raise ValueError("a STRING array needs a sequence of strings, not one string")
        return StringArray.from_strings(list(value))
    code = VALUE_TYPE_DTYPE[element_type]
    if element_type == GGUFValueType.BOOL:
        arr = np.asarray(value)
        arr = arr.astype(np.bool_) if arr.dtype != np.bool_ else arr
    else:
        arr = np.asarray(value)
        want = np.dtype(code)
        if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and want.kind in "iu"):
            if arr.size or arr.dtype.kind not in "biufO":
                raise ValueError(f"{element_type.name} array needs numbers, got dtype {arr.dtype}")
        if arr.dtype.kind in "iub" and want.kind in "iu" and arr.size:
            lo, hi = _INT_RANGES[element_type]
            if int(arr.min()) < lo or int(arr.max()) > hi:
                raise ValueError(f"{element_type.name} array values out of range [{lo}, {hi}]")
        if arr.dtype.newbyteorder("=") != want.newbyteorder("=") or not arr.dtype.isnative:
            arr = arr.astype(want.newbyteorder("="))
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.flags.writeable:
        arr = arr.copy()
        arr.flags.writeable = False
    return arr
