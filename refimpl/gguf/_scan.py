"""The one hot loop of the reader: walking a GGUF string array's length prefixes.

A vocabulary is an array of up to ~10^6 strings, each ``uint64 length`` + bytes.  The prefixes are sequential,
so they cannot be vectorised with numpy; this scalar loop (compiled with numba) records where each string
starts and how long it is, so the strings themselves are decoded lazily.  It applies, per string, the same two
checks as gguf.cpp's ``gguf_reader::read(std::string &)``: length <= GGUF_MAX_STRING_LENGTH and length <= the
bytes remaining in the file.
"""
from __future__ import annotations

import numpy as np

from refimpl._jit import njit

SCAN_OK = 0
SCAN_TRUNCATED_PREFIX = 1   # fewer than 8 bytes left for a length prefix
SCAN_TOO_LONG = 2           # length > GGUF_MAX_STRING_LENGTH (1 GiB)
SCAN_PAST_END = 3           # length > bytes remaining

MAX_STRING_LENGTH = 1024 * 1024 * 1024  # GGUF_MAX_STRING_LENGTH (gguf.cpp)


@njit
def scan_string_array(buf, pos, n, big_endian, starts, lengths):
    """Fill ``starts[i]``/``lengths[i]`` for ``n`` strings beginning at ``buf[pos]``.

    Returns ``(status, index, position)``: on success ``(SCAN_OK, n, end position)``; on failure the status, the
    index of the bad string and the offset of its length prefix.
    # mirrors gguf_reader::read(std::vector<std::string> &, n) -> read(std::string &) (gguf.cpp)
    """
    end = buf.shape[0]
    for i in range(n):
        if end - pos < 8:
            return SCAN_TRUNCATED_PREFIX, i, pos
        # uint64 prefix as two 32-bit halves (int64 arithmetic, no uint64 wrap-around questions)
        lo = 0
        hi = 0
        for k in range(4):
            if big_endian:
                hi = (hi << 8) | int(buf[pos + k])
                lo = (lo << 8) | int(buf[pos + 4 + k])
            else:
                lo |= int(buf[pos + k]) << (8 * k)
                hi |= int(buf[pos + 4 + k]) << (8 * k)
        if hi != 0 or lo > MAX_STRING_LENGTH:
            return SCAN_TOO_LONG, i, pos
        if lo > end - pos - 8:
            return SCAN_PAST_END, i, pos
        starts[i] = pos + 8
        lengths[i] = lo
        pos += 8 + lo
    return SCAN_OK, n, pos


def scan(buf: np.ndarray, pos: int, n: int, big_endian: bool):
    starts = np.empty(n, dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    status, index, where = scan_string_array(buf, pos, n, big_endian, starts, lengths)
    return int(status), int(index), int(where), starts, lengths
