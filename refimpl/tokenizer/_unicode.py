"""llama.cpp's Unicode layer (src/unicode.cpp), driven by its own tables (refimpl/data/llama_unicode.npz).

Python's ``unicodedata`` follows whatever Unicode version CPython ships and classifies some code points differently
from the tables llama.cpp was generated with; refimpl therefore never asks ``unicodedata``: every flag, lower-case
mapping and "NFD" comes from the extracted tables (tools/extract_unicode_tables.py).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

MAX_CODEPOINTS = 0x110000

# unicode_cpt_flags bits (unicode.h)
UNDEFINED = 0x0001
NUMBER = 0x0002
LETTER = 0x0004
SEPARATOR = 0x0008
ACCENT_MARK = 0x0010
PUNCTUATION = 0x0020
SYMBOL = 0x0040
CONTROL = 0x0080
MASK_CATEGORIES = 0x00FF
WHITESPACE = 0x0100
LOWERCASE = 0x0200
UPPERCASE = 0x0400
NFD = 0x0800


def _load():
    with resources.files("refimpl.data").joinpath("llama_unicode.npz").open("rb") as fh:
        data = np.load(fh)
        tables = {k: data[k] for k in data.files}
    starts = tables["RANGES_FLAGS_START"].astype(np.int64)
    # mirrors unicode_cpt_flags_array (unicode.cpp): ranges, then the helper bits
    flags = np.repeat(tables["RANGES_FLAGS_FLAGS"][:-1], np.diff(starts)).astype(np.uint16)
    assert flags.shape[0] == MAX_CODEPOINTS
    flags[tables["WHITESPACE"]] |= WHITESPACE
    flags[tables["LOWERCASE"][:, 1]] |= LOWERCASE
    flags[tables["UPPERCASE"][:, 1]] |= UPPERCASE
    flags[tables["NFD"][:, 2]] |= NFD
    return flags, tables


FLAGS, _TABLES = _load()
LOWER_KEYS = np.ascontiguousarray(_TABLES["LOWERCASE"][:, 0].astype(np.int64))
LOWER_VALUES = np.ascontiguousarray(_TABLES["LOWERCASE"][:, 1].astype(np.int64))
_LOWER = dict(zip(LOWER_KEYS.tolist(), LOWER_VALUES.tolist()))
_NFD = _TABLES["NFD"].astype(np.int64)
_NFD_FIRST = np.ascontiguousarray(_NFD[:, 0])


def flags_of(cpt: int) -> int:
    """unicode_cpt_flags_from_cpt: out-of-range code points are UNDEFINED."""
    return int(FLAGS[cpt]) if 0 <= cpt < MAX_CODEPOINTS else UNDEFINED


def tolower(cpt: int) -> int:
    """unicode_tolower: the table's mapping, else the code point itself (no full case folding)."""
    return _LOWER.get(cpt, cpt)


def normalize_nfd(cpts: list[int]) -> list[int]:
    """unicode_cpts_normalize_nfd: each code point maps to ONE code point (the first of its decomposition)."""
    idx = np.searchsorted(_NFD_FIRST, np.asarray(cpts, dtype=np.int64), side="right") - 1
    out = []
    for cpt, i in zip(cpts, idx.tolist()):
        first, last, nfd = _NFD[i]
        out.append(int(nfd) if first <= cpt <= last else cpt)
    return out


def len_utf8(byte: int) -> int:
    """unicode_len_utf8: sequence length from the lead byte's high nibble (continuation bytes count as 1)."""
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[byte >> 4]


def cpts_from_utf8(data: bytes) -> list[int]:
    """unicode_cpts_from_utf8: lenient decoding; each invalid byte becomes U+FFFD and decoding resumes one byte on.

    Unlike a strict decoder it accepts overlong forms, surrogates and values up to 0x1FFFFF (4-byte leads F0-F7).
    """
    try:
        return [ord(c) for c in data.decode("utf-8")]  # valid UTF-8 decodes identically
    except UnicodeDecodeError:
        pass
    out = []
    n = len(data)
    i = 0
    while i < n:
        cpt, i = cpt_from_utf8(data, i)
        out.append(cpt)
    return out


def cpt_from_utf8(data: bytes, i: int) -> tuple[int, int]:
    """One step of unicode_cpts_from_utf8: (code point, next offset); invalid -> (0xFFFD, i + 1)."""
    n = len(data)
    b0 = data[i]
    if not b0 & 0x80:
        return b0, i + 1
    if not b0 & 0x40:
        return 0xFFFD, i + 1
    if not b0 & 0x20:
        if i + 1 >= n or (data[i + 1] & 0xC0) != 0x80:
            return 0xFFFD, i + 1
        return ((b0 & 0x1F) << 6) | (data[i + 1] & 0x3F), i + 2
    if not b0 & 0x10:
        if i + 2 >= n or (data[i + 1] & 0xC0) != 0x80 or (data[i + 2] & 0xC0) != 0x80:
            return 0xFFFD, i + 1
        return ((b0 & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), i + 3
    if not b0 & 0x08:
        if (i + 3 >= n or (data[i + 1] & 0xC0) != 0x80 or (data[i + 2] & 0xC0) != 0x80
                or (data[i + 3] & 0xC0) != 0x80):
            return 0xFFFD, i + 1
        return (((b0 & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6)
                | (data[i + 3] & 0x3F)), i + 4
    return 0xFFFD, i + 1


def cpt_to_utf8(cpt: int) -> bytes:
    """unicode_cpt_to_utf8 (encodes surrogates too; > 0x10FFFF throws in llama.cpp -> ValueError here)."""
    if cpt <= 0x7F:
        return bytes((cpt,))
    if cpt <= 0x7FF:
        return bytes((0xC0 | ((cpt >> 6) & 0x1F), 0x80 | (cpt & 0x3F)))
    if cpt <= 0xFFFF:
        return bytes((0xE0 | ((cpt >> 12) & 0x0F), 0x80 | ((cpt >> 6) & 0x3F), 0x80 | (cpt & 0x3F)))
    if cpt <= 0x10FFFF:
        return bytes((0xF0 | ((cpt >> 18) & 0x07), 0x80 | ((cpt >> 12) & 0x3F), 0x80 | ((cpt >> 6) & 0x3F),
                      0x80 | (cpt & 0x3F)))
    raise ValueError(f"invalid codepoint 0x{cpt:X} (llama.cpp throws std::invalid_argument here)")


def cpts_to_str(cpts: list[int]) -> str:
    """A Python str holding exactly these code points (lone surrogates included); encode with 'surrogatepass'."""
    for cpt in cpts:
        if cpt > 0x10FFFF:
            raise ValueError(f"invalid codepoint 0x{cpt:X} (llama.cpp throws std::invalid_argument here)")
    return "".join(map(chr, cpts))


def _gpt2_byte_map() -> list[int]:
    """unicode_byte_to_utf8_map: GPT-2's printable stand-in code point for every byte."""
    mapping = {}
    for ch in list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)):
        mapping[ch] = ch
    n = 0
    for ch in range(256):
        if ch not in mapping:
            mapping[ch] = 256 + n
            n += 1
    return [mapping[b] for b in range(256)]


BYTE_TO_CPT = _gpt2_byte_map()
CPT_TO_BYTE = {cpt: b for b, cpt in enumerate(BYTE_TO_CPT)}
# str.translate table taking a latin-1 decoded byte string to its GPT-2 byte-level form
BYTE_ENCODE_TABLE = {b: BYTE_TO_CPT[b] for b in range(256)}
