"""unicode_regex_split (src/unicode.cpp): cut a text into words with a list of regexes, as llama.cpp does.

Each regex refines the current list of pieces (initially the whole text): inside every piece, the regex matches and
the gaps between them become pieces of their own -- nothing is ever dropped.  llama.cpp has two engines:

* hand-written splitters for the most common regexes (gpt2, llama3, qwen2, qwen35, kimi-k2, afmoe digits,
  newline runs).  They are NOT exactly the regex they are named after (e.g. ``\\s+(?!\\S)`` is approximated by
  "all but the last whitespace if something follows"), so refimpl mirrors the C++ loops line by line
  (numba-compiled, over an int array of code points and llama.cpp's flag table);
* everything else goes through ``std::regex`` (libstdc++, ECMAScript, DFS backtracking).  Regexes with ``\\p{..}``
  run on a "collapsed" text where every non-ASCII code point is replaced by one byte naming its category
  (0xD1 number, 0xD2 letter, 0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 other, 0x0B whitespace) and the
  ``\\p{..}`` classes by that byte plus the ASCII members; the others run on code points with non-ASCII whitespace
  replaced by 0x0B.  refimpl builds the same collapsed text/regex and runs it with Python's ``re`` (also a
  backtracking, leftmost-first engine), in bytes mode / ASCII mode so that ``\\s``, ``\\d``, ``\\w`` and ``\\b``
  mean what they mean in the C locale.  ``$`` becomes ``\\Z`` (ECMAScript ``$`` never matches before a final
  newline).  The iteration over matches mirrors ``std::regex_iterator`` (empty matches included).
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from .._jit import njit
from . import _unicode as U

_FLAGS = U.FLAGS
_LOWER_KEYS = U.LOWER_KEYS
_LOWER_VALUES = U.LOWER_VALUES

OUT_OF_RANGE = 0xFFFFFFFF


@njit
def _flags_at(cpts, flags_table, lo, hi, pos):
    # _get_flags: flags inside the current piece, 0 (no flag at all) outside
    if lo <= pos < hi:
        c = cpts[pos]
        if c < 0x110000:
            return np.int64(flags_table[c])
        return np.int64(1)  # UNDEFINED
    return np.int64(0)


@njit
def _cpt_at(cpts, lo, hi, pos):
    if lo <= pos < hi:
        return np.int64(cpts[pos])
    return np.int64(0xFFFFFFFF)


@njit
def _tolower(cpt, keys, values):
    # unicode_tolower: binary search in unicode_map_lowercase
    a = 0
    b = keys.shape[0]
    while a < b:
        m = (a + b) // 2
        if keys[m] < cpt:
            a = m + 1
        else:
            b = m
    if a < keys.shape[0] and keys[a] == cpt:
        return values[a]
    return cpt


@njit
def _is_han(c):
    # unicode_cpt_is_han
    return ((0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or (0x20000 <= c <= 0x2A6DF)
            or (0x2A700 <= c <= 0x2B73F) or (0x2B740 <= c <= 0x2B81F) or (0x2B820 <= c <= 0x2CEAF)
            or (0x2CEB0 <= c <= 0x2EBEF) or (0xF900 <= c <= 0xFAFF) or (0x2F800 <= c <= 0x2FA1F))


# flag bits (unicode.h)
_NUM = 0x2
_LET = 0x4
_MARK = 0x10
_WS = 0x100


@njit
def _split_gpt2(cpts, offsets, flags_table):
    # mirrors unicode_regex_split_custom_gpt2 (unicode.cpp)
    out = np.empty(cpts.shape[0] + offsets.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for k in range(offsets.shape[0]):
        lo = start
        hi = start + offsets[k]
        start = hi
        prev_end = lo
        pos = lo
        while pos < hi:
            cpt = _cpt_at(cpts, lo, hi, pos)
            flags = _flags_at(cpts, flags_table, lo, hi, pos)
            if cpt == 39 and pos + 1 < hi:  # '\''
                nxt = _cpt_at(cpts, lo, hi, pos + 1)
                if nxt == 115 or nxt == 116 or nxt == 109 or nxt == 100:  # s t m d
                    end = pos + 2
                    if end - prev_end > 0:
                        out[n_out] = end - prev_end
                        n_out += 1
                    pos += end - prev_end
                    prev_end = end
                    continue
                if pos + 2 < hi:
                    nn = _cpt_at(cpts, lo, hi, pos + 2)
                    if (nxt == 114 and nn == 101) or (nxt == 118 and nn == 101) or (nxt == 108 and nn == 108):
                        end = pos + 3
                        if end - prev_end > 0:
                            out[n_out] = end - prev_end
                            n_out += 1
                        pos += end - prev_end
                        prev_end = end
                        continue
            flags2 = _flags_at(cpts, flags_table, lo, hi, pos + 1) if cpt == 32 else flags
            if flags2 & _LET:
                if cpt == 32:
                    pos += 1
                while flags2 & _LET:
                    pos += 1
                    flags2 = _flags_at(cpts, flags_table, lo, hi, pos)
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if flags2 & _NUM:
                if cpt == 32:
                    pos += 1
                while flags2 & _NUM:
                    pos += 1
                    flags2 = _flags_at(cpts, flags_table, lo, hi, pos)
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if not (flags2 & (_WS | _LET | _NUM)) and flags2 != 0:
                if cpt == 32:
                    pos += 1
                while not (flags2 & (_WS | _LET | _NUM)) and flags2 != 0:
                    pos += 1
                    flags2 = _flags_at(cpts, flags_table, lo, hi, pos)
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            num_ws = 0
            while _flags_at(cpts, flags_table, lo, hi, pos + num_ws) & _WS:
                num_ws += 1
            if num_ws > 1 and _cpt_at(cpts, lo, hi, pos + num_ws) != 0xFFFFFFFF:
                pos += num_ws - 1
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if num_ws > 0:
                pos += num_ws
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            pos += 1
            if pos - prev_end > 0:
                out[n_out] = pos - prev_end
                n_out += 1
            prev_end = pos
    return out[:n_out].copy()


@njit
def _split_llama3_family(cpts, offsets, flags_table, lower_keys, lower_values, variant):
    # variant 0: unicode_regex_split_custom_llama3   (\p{N}{1,3})
    # variant 1: unicode_regex_split_custom_qwen2    (\p{N})
    # variant 2: unicode_regex_split_custom_qwen35   (\p{N}, letters runs take \p{M} too)
    out = np.empty(cpts.shape[0] + offsets.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for k in range(offsets.shape[0]):
        lo = start
        hi = start + offsets[k]
        start = hi
        prev_end = lo
        pos = lo
        while pos < hi:
            cpt = _cpt_at(cpts, lo, hi, pos)
            flags = _flags_at(cpts, flags_table, lo, hi, pos)
            # (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if cpt == 39 and pos + 1 < hi:
                nxt = _tolower(_cpt_at(cpts, lo, hi, pos + 1), lower_keys, lower_values)
                if nxt == 115 or nxt == 116 or nxt == 109 or nxt == 100:
                    end = pos + 2
                    if end - prev_end > 0:
                        out[n_out] = end - prev_end
                        n_out += 1
                    pos += end - prev_end
                    prev_end = end
                    continue
                if pos + 2 < hi:
                    nn = _tolower(_cpt_at(cpts, lo, hi, pos + 2), lower_keys, lower_values)
                    if (nxt == 114 and nn == 101) or (nxt == 118 and nn == 101) or (nxt == 108 and nn == 108):
                        end = pos + 3
                        if end - prev_end > 0:
                            out[n_out] = end - prev_end
                            n_out += 1
                        pos += end - prev_end
                        prev_end = end
                        continue
            # [^\r\n\p{L}\p{N}]?\p{L}+   (qwen35: [\p{L}\p{M}]+)
            if not (cpt == 13 or cpt == 10 or (flags & _NUM)):
                if variant == 2:
                    nf = _flags_at(cpts, flags_table, lo, hi, pos + 1)
                    starts_word = (flags & _LET) or (flags & _MARK) or (nf & _MARK) or (nf & _LET)
                else:
                    starts_word = (flags & _LET) or (_flags_at(cpts, flags_table, lo, hi, pos + 1) & _LET)
                if starts_word:
                    pos += 1
                    if variant == 2:
                        while _flags_at(cpts, flags_table, lo, hi, pos) & (_LET | _MARK):
                            pos += 1
                    else:
                        while _flags_at(cpts, flags_table, lo, hi, pos) & _LET:
                            pos += 1
                    if pos - prev_end > 0:
                        out[n_out] = pos - prev_end
                        n_out += 1
                    prev_end = pos
                    continue
            if flags & _NUM:
                if variant == 0:
                    # \p{N}{1,3}
                    ini = pos
                    while _flags_at(cpts, flags_table, lo, hi, pos) & _NUM:
                        pos += 1
                        if pos - ini >= 3:
                            if pos - prev_end > 0:
                                out[n_out] = pos - prev_end
                                n_out += 1
                            prev_end = pos
                            ini = pos
                    if pos - prev_end > 0:
                        out[n_out] = pos - prev_end
                        n_out += 1
                    prev_end = pos
                    continue
                else:
                    pos += 1
                    if pos - prev_end > 0:
                        out[n_out] = pos - prev_end
                        n_out += 1
                    prev_end = pos
                    continue
            # <space>?[^\s\p{L}\p{N}]+[\r\n]*   (qwen35 also excludes \p{M})
            excl = (_WS | _LET | _NUM | _MARK) if variant == 2 else (_WS | _LET | _NUM)
            flags2 = _flags_at(cpts, flags_table, lo, hi, pos + 1) if cpt == 32 else flags
            # NB: the C++ tests flags.as_uint() (the current code point), not flags2, on entry
            if not (flags2 & excl) and flags != 0:
                if cpt == 32:
                    pos += 1
                while not (flags2 & excl) and flags2 != 0:
                    pos += 1
                    flags2 = _flags_at(cpts, flags_table, lo, hi, pos)
                cpt2 = _cpt_at(cpts, lo, hi, pos)
                while cpt2 == 13 or cpt2 == 10:
                    pos += 1
                    cpt2 = _cpt_at(cpts, lo, hi, pos)
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            num_ws = 0
            last_end_r_or_n = 0
            while _flags_at(cpts, flags_table, lo, hi, pos + num_ws) & _WS:
                cpt2 = _cpt_at(cpts, lo, hi, pos + num_ws)
                if cpt2 == 13 or cpt2 == 10:
                    last_end_r_or_n = pos + num_ws + 1
                num_ws += 1
            if last_end_r_or_n > 0:
                pos = last_end_r_or_n
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if num_ws > 1 and _cpt_at(cpts, lo, hi, pos + num_ws) != 0xFFFFFFFF:
                pos += num_ws - 1
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if num_ws > 0:
                pos += num_ws
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            pos += 1
            if pos - prev_end > 0:
                out[n_out] = pos - prev_end
                n_out += 1
            prev_end = pos
    return out[:n_out].copy()


@njit
def _split_kimi_k2(cpts, offsets, flags_table, lower_keys, lower_values):
    # mirrors unicode_regex_split_custom_kimi_k2 (unicode.cpp)
    out = np.empty(cpts.shape[0] + offsets.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for k in range(offsets.shape[0]):
        lo = start
        hi = start + offsets[k]
        start = hi
        prev_end = lo
        pos = lo
        while pos < hi:
            cpt = _cpt_at(cpts, lo, hi, pos)
            flags = _flags_at(cpts, flags_table, lo, hi, pos)
            if _is_han(cpt):
                while _is_han(_cpt_at(cpts, lo, hi, pos)):
                    pos += 1
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            is_letter_pattern = ((flags & _LET) and not _is_han(cpt)) or (
                not (cpt == 13 or cpt == 10 or (flags & _LET) or (flags & _NUM))
                and (_flags_at(cpts, flags_table, lo, hi, pos + 1) & _LET)
                and not _is_han(_cpt_at(cpts, lo, hi, pos + 1)))
            if is_letter_pattern:
                has_leading_char = False
                if not (cpt == 13 or cpt == 10 or (flags & _LET) or (flags & _NUM)):
                    has_leading_char = True
                    pos += 1
                has_letters = False
                while (_flags_at(cpts, flags_table, lo, hi, pos) & _LET) and not _is_han(_cpt_at(cpts, lo, hi, pos)):
                    has_letters = True
                    pos += 1
                if has_letters or ((not has_leading_char) and (_flags_at(cpts, flags_table, lo, hi, pos) & _LET)
                                   and not _is_han(_cpt_at(cpts, lo, hi, pos))):
                    if not has_letters:
                        pos += 1
                    while ((_flags_at(cpts, flags_table, lo, hi, pos) & _LET)
                           and not _is_han(_cpt_at(cpts, lo, hi, pos))):
                        pos += 1
                    if _cpt_at(cpts, lo, hi, pos) == 39 and pos + 1 < hi:
                        nxt = _tolower(_cpt_at(cpts, lo, hi, pos + 1), lower_keys, lower_values)
                        if nxt == 115 or nxt == 116 or nxt == 109 or nxt == 100:
                            pos += 2
                        elif pos + 2 < hi:
                            nn = _tolower(_cpt_at(cpts, lo, hi, pos + 2), lower_keys, lower_values)
                            if (nxt == 114 and nn == 101) or (nxt == 118 and nn == 101) or (nxt == 108 and nn == 108):
                                pos += 3
                    if pos - prev_end > 0:
                        out[n_out] = pos - prev_end
                        n_out += 1
                    prev_end = pos
                    continue
                elif has_leading_char:
                    pos -= 1
            if flags & _NUM:
                ini = pos
                while _flags_at(cpts, flags_table, lo, hi, pos) & _NUM:
                    pos += 1
                    if pos - ini >= 3:
                        if pos - prev_end > 0:
                            out[n_out] = pos - prev_end
                            n_out += 1
                        prev_end = pos
                        ini = pos
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            flags2 = _flags_at(cpts, flags_table, lo, hi, pos + 1) if cpt == 32 else flags
            if not (flags2 & (_WS | _LET | _NUM)) and flags2 != 0:
                if cpt == 32:
                    pos += 1
                while not (flags2 & (_WS | _LET | _NUM)) and flags2 != 0:
                    pos += 1
                    flags2 = _flags_at(cpts, flags_table, lo, hi, pos)
                cpt2 = _cpt_at(cpts, lo, hi, pos)
                while cpt2 == 13 or cpt2 == 10:
                    pos += 1
                    cpt2 = _cpt_at(cpts, lo, hi, pos)
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            num_ws = 0
            last_end_r_or_n = 0
            while _flags_at(cpts, flags_table, lo, hi, pos + num_ws) & _WS:
                cpt2 = _cpt_at(cpts, lo, hi, pos + num_ws)
                if cpt2 == 13 or cpt2 == 10:
                    last_end_r_or_n = pos + num_ws + 1
                num_ws += 1
            if last_end_r_or_n > 0:
                pos = last_end_r_or_n
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if num_ws > 1 and _cpt_at(cpts, lo, hi, pos + num_ws) != 0xFFFFFFFF:
                pos += num_ws - 1
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            if num_ws > 0:
                pos += num_ws
                if pos - prev_end > 0:
                    out[n_out] = pos - prev_end
                    n_out += 1
                prev_end = pos
                continue
            pos += 1
            if pos - prev_end > 0:
                out[n_out] = pos - prev_end
                n_out += 1
            prev_end = pos
    return out[:n_out].copy()


@njit
def _split_afmoe(cpts, offsets, flags_table):
    # mirrors unicode_regex_split_custom_afmoe (unicode.cpp): digit runs split as 1-2 leading digits + groups of 3;
    # NB: non-digit text is NOT cut at digit boundaries before it -- only the digit groups are emitted, and the
    # text between them is merged into the next emitted piece (the C++ only calls _add_token for digits).
    out = np.empty(cpts.shape[0] + offsets.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for k in range(offsets.shape[0]):
        lo = start
        hi = start + offsets[k]
        start = hi
        prev_end = lo
        pos = lo
        while pos < hi:
            flags = _flags_at(cpts, flags_table, lo, hi, pos)
            if flags & _NUM:
                digit_start = pos
                digit_count = 0
                while (_flags_at(cpts, flags_table, lo, hi, pos) & _NUM) and pos < hi:
                    digit_count += 1
                    pos += 1
                remainder = digit_count % 3
                current = digit_start
                if remainder > 0:
                    end = current + remainder
                    if end - prev_end > 0:
                        out[n_out] = end - prev_end
                        n_out += 1
                    prev_end = end
                    current += remainder
                while current < digit_start + digit_count:
                    end = current + 3
                    if end - prev_end > 0:
                        out[n_out] = end - prev_end
                        n_out += 1
                    prev_end = end
                    current += 3
                continue
            pos += 1
        if prev_end < hi:
            out[n_out] = hi - prev_end
            n_out += 1
            prev_end = hi
    return out[:n_out].copy()


@njit
def _split_newlines(cpts, offsets):
    # mirrors unicode_regex_split_custom_newlines (unicode.cpp): runs of '\n' and runs of anything else
    out = np.empty(cpts.shape[0] + offsets.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for k in range(offsets.shape[0]):
        lo = start
        hi = start + offsets[k]
        start = hi
        pos = lo
        while pos < hi:
            is_nl = cpts[pos] == 10
            run = pos
            while pos < hi and (cpts[pos] == 10) == is_nl:
                pos += 1
            out[n_out] = pos - run
            n_out += 1
    return out[:n_out].copy()


_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
_LLAMA3_A = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_LLAMA3_B = ("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
             "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_QWEN2 = ("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
          "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_QWEN35 = ("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"
           "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def _custom(regex_expr: str, cpts: np.ndarray, offsets: np.ndarray):
    """unicode_regex_split_custom: the hand-written splitter for this exact regex string, or None."""
    if regex_expr == _GPT2:
        return _split_gpt2(cpts, offsets, _FLAGS)
    if regex_expr in (_LLAMA3_A, _LLAMA3_B):
        return _split_llama3_family(cpts, offsets, _FLAGS, _LOWER_KEYS, _LOWER_VALUES, 0)
    if regex_expr == _QWEN2:
        return _split_llama3_family(cpts, offsets, _FLAGS, _LOWER_KEYS, _LOWER_VALUES, 1)
    if regex_expr == _QWEN35:
        return _split_llama3_family(cpts, offsets, _FLAGS, _LOWER_KEYS, _LOWER_VALUES, 2)
    if regex_expr == "\\p{Han}+":
        return _split_kimi_k2(cpts, offsets, _FLAGS, _LOWER_KEYS, _LOWER_VALUES)
    if regex_expr in ("\\p{AFMoE_digits}", "\\d{1,3}(?=(?:\\d{3})*\\b)"):
        return _split_afmoe(cpts, offsets, _FLAGS)
    if regex_expr == "[^\\n]+|[\\n]+":
        return _split_newlines(cpts, offsets)
    return None


# ---------------------------------------------------------------------------------------------------------------
# std::regex fallback

_UCAT_ENUM = {"\\p{N}": U.NUMBER, "\\p{L}": U.LETTER, "\\p{P}": U.PUNCTUATION, "\\p{M}": U.ACCENT_MARK,
              "\\p{S}": U.SYMBOL, "\\p{Lu}": U.LETTER, "\\p{Ll}": U.LETTER, "\\p{Lt}": U.LETTER,
              "\\p{Lm}": U.LETTER, "\\p{Lo}": U.LETTER}
_UCAT_CPT = {U.NUMBER: 0xD1, U.LETTER: 0xD2, U.PUNCTUATION: 0xD3, U.ACCENT_MARK: 0xD4, U.SYMBOL: 0xD5}
_UCAT_MAP = {
    U.NUMBER: b"\x30-\x39",
    U.LETTER: b"\x41-\x5A\x61-\x7A",
    U.PUNCTUATION: b"\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D",
    U.ACCENT_MARK: b"",
    U.SYMBOL: b"\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E",
}
# collapsed byte of each code point >= 128 (unicode_regex_split): whitespace -> 0x0B, category byte, else 0xD0
_COLLAPSE = np.full(0x110000, 0xD0, dtype=np.uint8)
for _flag, _byte in _UCAT_CPT.items():
    _COLLAPSE[(U.FLAGS & U.MASK_CATEGORIES) == _flag] = _byte
_COLLAPSE[(U.FLAGS & U.WHITESPACE) != 0] = 0x0B
_COLLAPSE[:128] = np.arange(128, dtype=np.uint8)


def _uses_categories(regex_expr: str) -> bool:
    return any(cat in regex_expr for cat in _UCAT_ENUM)


def _collapse_regex(regex_expr: str) -> bytes:
    """The collapsed regex, built byte by byte exactly as unicode_regex_split does."""
    src = regex_expr.encode("utf-8")
    if any(b >= 128 for b in src):
        raise ValueError("Regex includes both unicode categories and non-ASCII characters - not supported")
    out = bytearray()
    inside = False
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == 0x5B and (i == 0 or src[i - 1] != 0x5C):  # '[' not escaped
            out.append(c)
            inside = True
            i += 1
            continue
        if inside and c == 0x5D and src[i - 1] != 0x5C:  # ']'
            out.append(c)
            inside = False
            i += 1
            continue
        if c == 0x5C and i + 3 < n and src[i + 1] == 0x70 and src[i + 2] == 0x7B:  # '\p{'
            close = src.find(b"}", i + 3)
            if close != -1 and close <= i + 10:
                pat = src[i:close + 1].decode()
                if pat in _UCAT_ENUM:
                    cat = _UCAT_ENUM[pat]
                    if not inside:
                        out.append(0x5B)
                    out.append(_UCAT_CPT[cat])
                    out += _UCAT_MAP[cat]
                    if not inside:
                        out.append(0x5D)
                    i = close + 1
                    continue
        out.append(c)
        i += 1
    return bytes(out)


def _ecma_to_python(pattern):
    """ECMAScript -> Python re syntax for the constructs llama.cpp's regexes use.

    Only ``$`` differs in meaning (Python's also matches before a trailing newline): outside brackets it becomes
    ``\\Z``.  ``\\s \\S \\d \\w \\b`` keep their spelling; the bytes / re.ASCII compilation gives them C-locale
    meaning.
    """
    is_bytes = isinstance(pattern, bytes)
    chars = [bytes((b,)) for b in pattern] if is_bytes else list(pattern)
    bs, dollar, lb, rb = (b"\\", b"$", b"[", b"]") if is_bytes else ("\\", "$", "[", "]")
    out = []
    inside = False
    i = 0
    while i < len(chars):
        c = chars[i]
        if c == bs and i + 1 < len(chars):
            out.append(c + chars[i + 1])
            i += 2
            continue
        if not inside and c == lb:
            inside = True
            out.append(c)
            # a ']' right after '[' or '[^' is a literal in Python but ends an empty class in ECMAScript;
            # none of llama.cpp's regexes do this
            i += 1
            continue
        if inside and c == rb:
            inside = False
        elif not inside and c == dollar:
            c = b"\\Z" if is_bytes else "\\Z"
        out.append(c)
        i += 1
    return (b"" if is_bytes else "").join(out)


_COMPILED: dict[str, tuple] = {}


def _compile(regex_expr: str):
    entry = _COMPILED.get(regex_expr)
    if entry is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Python's "possible nested set" FutureWarnings
            if _uses_categories(regex_expr):
                entry = (True, re.compile(_ecma_to_python(_collapse_regex(regex_expr))))
            else:
                entry = (False, re.compile(_ecma_to_python(regex_expr), re.ASCII))
        _COMPILED[regex_expr] = entry
    return entry


def _regex_iterate(pattern, subject, offset_len):
    """The pieces std::regex_iterator yields over one piece, as unicode_regex_split_stl records them."""
    pieces = []
    start_idx = 0
    m = pattern.search(subject, 0)
    while m is not None:
        if m.start() > start_idx:
            pieces.append(m.start() - start_idx)
        pieces.append(m.end() - m.start())
        start_idx = m.end()
        # regex_iterator::operator++: after an empty match try a non-empty match anchored there, else move on one
        pos = m.end()
        if m.start() == m.end():
            if pos == len(subject):
                break
            m2 = pattern.match(subject, pos)
            if m2 is not None and m2.end() > pos:
                m = m2
                continue
            pos += 1
        m = pattern.search(subject, pos)
    if start_idx < offset_len:
        pieces.append(offset_len - start_idx)
    return pieces


def _split_stl(regex_expr: str, cpts: np.ndarray, offsets: np.ndarray, ustr: str) -> np.ndarray:
    collapsed, pattern = _compile(regex_expr)
    if collapsed:
        subject_all = _COLLAPSE[np.minimum(cpts, 0x10FFFF)].tobytes()
    else:
        # std::wregex \s does not match non-ASCII whitespace: those become 0x0B
        ws = (cpts > 0x7F) & ((U.FLAGS[np.minimum(cpts, 0x10FFFF)] & U.WHITESPACE) != 0)
        if ws.any():
            chars = list(ustr)
            for i in np.nonzero(ws)[0].tolist():
                chars[i] = "\x0b"
            subject_all = "".join(chars)
        else:
            subject_all = ustr
    out = []
    start = 0
    for off in offsets.tolist():
        out += _regex_iterate(pattern, subject_all[start:start + off], off)
        start += off
    return np.asarray(out, dtype=np.int64)


def regex_split_offsets(cpts: np.ndarray, regex_exprs: list[str], ustr: str) -> np.ndarray:
    """unicode_regex_split without the final string building: the lengths (in code points) of the words."""
    offsets = np.asarray([cpts.shape[0]], dtype=np.int64)
    for regex_expr in regex_exprs:
        tmp = _custom(regex_expr, cpts, offsets)
        # the C++ falls back to std::regex when the custom splitter returned an empty list
        if tmp is not None and tmp.shape[0] > 0:
            offsets = tmp
            continue
        offsets = _split_stl(regex_expr, cpts, offsets, ustr)
    return offsets
