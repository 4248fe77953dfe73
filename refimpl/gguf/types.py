"""The two type tables GGUF needs: GGUF value types (gguf.h) and ggml tensor types (ggml.h / ggml.c).

The ggml table mirrors ``ggml_get_type_traits`` for every id below ``GGML_TYPE_COUNT`` (43), including the ids
whose support was removed: they keep a slot with block size 0, which is exactly why gguf.cpp rejects them
("not a multiple of block size (0)").  It is a fact table, checked against the oracle in tests/test_gguf.py,
so that the container reader does not depend on any quantization format being implemented.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np


class GGUFValueType(enum.IntEnum):
    """enum gguf_type (gguf.h): the type tag stored before every metadata value."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


#: gguf_type_name() of gguf.cpp, used by the dump CLI and in error messages.
VALUE_TYPE_SHORT_NAME = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16", GGUFValueType.INT16: "i16",
    GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32", GGUFValueType.FLOAT32: "f32",
    GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "str", GGUFValueType.ARRAY: "arr",
    GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64", GGUFValueType.FLOAT64: "f64",
}

#: Fixed-size value types -> numpy dtype character code (byte order is added by the reader/writer).
#: BOOL is read as int8 and normalised to 0/1 like gguf.cpp's ``read(bool &)`` (``tmp != 0``).
VALUE_TYPE_DTYPE = {
    GGUFValueType.UINT8: "u1", GGUFValueType.INT8: "i1", GGUFValueType.UINT16: "u2", GGUFValueType.INT16: "i2",
    GGUFValueType.UINT32: "u4", GGUFValueType.INT32: "i4", GGUFValueType.FLOAT32: "f4", GGUFValueType.BOOL: "i1",
    GGUFValueType.UINT64: "u8", GGUFValueType.INT64: "i8", GGUFValueType.FLOAT64: "f8",
}


class GGMLType(NamedTuple):
    """One row of ggml's type_traits: the facts the container needs to size a tensor."""
    type_id: int
    name: str          # upper case as in the GGML_TYPE_* enum ("Q4_K"); removed ids are named after their enum
    block_size: int    # elements per block; 0 for removed types (gguf.cpp rejects them)
    type_size: int     # bytes per block
    removed: bool = False
    dtype: str | None = None   # numpy dtype code of one element for the plain float/int types (no byte order)


# mirrors type_traits[] in ggml/src/ggml.c (blck_size, type_size) for ids 0 .. GGML_TYPE_COUNT-1
GGML_TYPES: tuple[GGMLType, ...] = (
    GGMLType(0, "F32", 1, 4, dtype="f4"),
    GGMLType(1, "F16", 1, 2, dtype="f2"),
    GGMLType(2, "Q4_0", 32, 18),
    GGMLType(3, "Q4_1", 32, 20),
    GGMLType(4, "Q4_2", 0, 0, removed=True),
    GGMLType(5, "Q4_3", 0, 0, removed=True),
    GGMLType(6, "Q5_0", 32, 22),
    GGMLType(7, "Q5_1", 32, 24),
    GGMLType(8, "Q8_0", 32, 34),
    GGMLType(9, "Q8_1", 32, 36),
    GGMLType(10, "Q2_K", 256, 84),
    GGMLType(11, "Q3_K", 256, 110),
    GGMLType(12, "Q4_K", 256, 144),
    GGMLType(13, "Q5_K", 256, 176),
    GGMLType(14, "Q6_K", 256, 210),
    GGMLType(15, "Q8_K", 256, 292),
    GGMLType(16, "IQ2_XXS", 256, 66),
    GGMLType(17, "IQ2_XS", 256, 74),
    GGMLType(18, "IQ3_XXS", 256, 98),
    GGMLType(19, "IQ1_S", 256, 50),
    GGMLType(20, "IQ4_NL", 32, 18),
    GGMLType(21, "IQ3_S", 256, 110),
    GGMLType(22, "IQ2_S", 256, 82),
    GGMLType(23, "IQ4_XS", 256, 136),
    GGMLType(24, "I8", 1, 1, dtype="i1"),
    GGMLType(25, "I16", 1, 2, dtype="i2"),
    GGMLType(26, "I32", 1, 4, dtype="i4"),
    GGMLType(27, "I64", 1, 8, dtype="i8"),
    GGMLType(28, "F64", 1, 8, dtype="f8"),
    GGMLType(29, "IQ1_M", 256, 56),
    GGMLType(30, "BF16", 1, 2, dtype="u2"),   # raw bfloat16 bits: numpy has no bfloat16
    GGMLType(31, "Q4_0_4_4", 0, 0, removed=True),
    GGMLType(32, "Q4_0_4_8", 0, 0, removed=True),
    GGMLType(33, "Q4_0_8_8", 0, 0, removed=True),
    GGMLType(34, "TQ1_0", 256, 54),
    GGMLType(35, "TQ2_0", 256, 66),
    GGMLType(36, "IQ4_NL_4_4", 0, 0, removed=True),
    GGMLType(37, "IQ4_NL_4_8", 0, 0, removed=True),
    GGMLType(38, "IQ4_NL_8_8", 0, 0, removed=True),
    GGMLType(39, "MXFP4", 32, 17),
    GGMLType(40, "NVFP4", 64, 36),
    GGMLType(41, "Q1_0", 128, 18),
    GGMLType(42, "Q2_0", 64, 18),
)
GGML_TYPE_COUNT = len(GGML_TYPES)
GGML_TYPE_BY_NAME = {t.name: t for t in GGML_TYPES if not t.removed}

#: numpy dtype (native kind, no byte order) -> the ggml type a plain array is written as.
DTYPE_TO_GGML = {"f4": "F32", "f2": "F16", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64"}


# --- experimental (plugin) types -------------------------------------------------------------------------------
#
# Types that are not ggml's (refimpl.quant.register) take ids from a reserved range far above ggml's enum, so that
# no future ggml type and no fork's type (forks have used ids into the hundreds) can mean the same id.  A GGUF
# file that uses them describes each one in its metadata (EXPERIMENTAL_KEYS: parallel arrays of id, name, block
# size and bytes per block), and a reader identifies a type by that *name*: the id is only how this file's tensor
# infos refer to the description.  llama.cpp refuses such files (gguf.cpp: "invalid ggml type").

EXPERIMENTAL_TYPE_BASE = 0x1000          # 4096: the first id of the range
EXPERIMENTAL_TYPE_LIMIT = 0x2000         # one past the last id (4096 ids)
EXPERIMENTAL_KEY_PREFIX = "refimpl.experimental_types."
EXPERIMENTAL_KEYS = tuple(EXPERIMENTAL_KEY_PREFIX + k for k in ("id", "name", "block_size", "type_size"))

#: upper-case name -> GGMLType of every experimental type registered in this process (refimpl.quant.register)
_EXPERIMENTAL_BY_NAME: dict[str, GGMLType] = {}
_EXPERIMENTAL_BY_ID: dict[int, GGMLType] = {}


def is_experimental_id(type_id: int) -> bool:
    return EXPERIMENTAL_TYPE_BASE <= int(type_id) < EXPERIMENTAL_TYPE_LIMIT


def register_experimental_type(type_id: int, name: str, block_size: int, type_size: int) -> GGMLType:
    """Make a plugin type known to the container (called by refimpl.quant.register, not by users)."""
    if not is_experimental_id(type_id):
        raise ValueError(f"experimental type {name!r}: id {type_id} is outside the experimental range "
                         f"[{EXPERIMENTAL_TYPE_BASE:#x}, {EXPERIMENTAL_TYPE_LIMIT:#x})")
    if name.upper() in GGML_TYPE_BY_NAME or name.upper() in _EXPERIMENTAL_BY_NAME or type_id in _EXPERIMENTAL_BY_ID:
        raise ValueError(f"experimental type {name!r} (id {type_id}) clashes with a type already known")
    if block_size <= 0 or type_size <= 0:
        raise ValueError(f"experimental type {name!r}: block size and bytes per block must be positive")
    g = GGMLType(int(type_id), name, int(block_size), int(type_size))
    _EXPERIMENTAL_BY_NAME[name.upper()] = g
    _EXPERIMENTAL_BY_ID[g.type_id] = g
    return g


def experimental_type(key: int | str) -> GGMLType | None:
    """The registered experimental type of this id or (case-insensitive) name, or None."""
    if isinstance(key, str):
        return _EXPERIMENTAL_BY_NAME.get(key.upper())
    return _EXPERIMENTAL_BY_ID.get(int(key))


def experimental_types() -> list[GGMLType]:
    return sorted(_EXPERIMENTAL_BY_ID.values(), key=lambda g: g.type_id)


def ggml_type(t: int | str) -> GGMLType:
    """Look up a ggml type by id or (case-insensitive) name, then the registered experimental types; ValueError
    if unknown or removed."""
    if isinstance(t, str):
        try:
            return GGML_TYPE_BY_NAME[t.upper()]
        except KeyError:
            g = experimental_type(t)
            if g is not None:
                return g
            raise ValueError(f"unknown ggml type name {t!r}; expected one of {sorted(GGML_TYPE_BY_NAME)}"
                             + (f" or a registered plugin type ({', '.join(x.name for x in experimental_types())})"
                                if _EXPERIMENTAL_BY_ID else "")) from None
    t = int(t)
    if is_experimental_id(t):
        g = experimental_type(t)
        if g is None:
            raise ValueError(f"type id {t} is in refimpl's experimental range but no plugin type has it; "
                             f"load the plugin that defines it (refimpl.quant.load_plugin / --plugin FILE.py)")
        return g
    if not 0 <= t < GGML_TYPE_COUNT or GGML_TYPES[t].removed:
        raise ValueError(f"ggml type id {t} is not a supported type")
    return GGML_TYPES[t]


def dtype_for(ggml: GGMLType, byteorder: str = "<") -> np.dtype:
    """The numpy view of a tensor's data: typed elements for plain types, raw bytes for block formats."""
    if ggml.dtype is None:
        return np.dtype(np.uint8)
    return np.dtype(byteorder + ggml.dtype) if ggml.dtype[1] != "1" else np.dtype(ggml.dtype)
