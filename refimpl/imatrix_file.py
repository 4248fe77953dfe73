"""Importance-matrix files: llama-imatrix's GGUF format and its legacy ``.dat`` format.

Reading mirrors ``common_imatrix_load`` (common/imatrix-loader.cpp), which the pinned llama-quantize calls from
``load_imatrix`` (tools/quantize/quantize.cpp): a file is tried as GGUF first and, when it is not one, as ``.dat``.
Writing mirrors ``IMatrixCollector::save_imatrix`` / ``save_imatrix_legacy`` (tools/imatrix/imatrix.cpp) byte for
byte, except that the file appears atomically (temporary name + ``os.replace``).

    imat = read_imatrix("imatrix.gguf")
    imat.entries["blk.0.ffn_down.weight"].sums      # float32 (n_mat, n_col): sums of squared activations
    imat.entries["blk.0.ffn_down.weight"].counts    # float32 (n_mat,): how many activations each sum holds
    write_imatrix("copy.dat", imat, fmt="dat")
    imatrix_for_quantize(imat)                      # name -> float32 (n_mat * n_col,), what ggml_quantize_chunk gets

Formats (little-endian):

* GGUF (``save_imatrix``): KV ``general.type = "imatrix"``, ``imatrix.datasets`` (string array),
  ``imatrix.chunk_count`` (u32), ``imatrix.chunk_size`` (u32); per entry, in byte order of the names, two F32
  tensors ``<name>.in_sum2`` (ne = [n_col, n_mat]) and ``<name>.counts`` (ne = [1, n_mat]).
* ``.dat`` (``save_imatrix_legacy``): i32 n_entries; per entry i32 name length, name bytes, i32 ncall, i32 nval,
  nval f32 values ``(sum / count) * ncall``; then i32 chunk count, i32 dataset-name length, dataset-name bytes.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from ._atomic import atomic_write_bytes

__all__ = ["Imatrix", "ImatrixEntry", "read_imatrix", "write_imatrix", "imatrix_for_quantize"]

KEY_DATASETS = "imatrix.datasets"        # LLM_KV_IMATRIX_DATASETS (common/imatrix-loader.h)
KEY_CHUNK_COUNT = "imatrix.chunk_count"  # LLM_KV_IMATRIX_CHUNK_COUNT
KEY_CHUNK_SIZE = "imatrix.chunk_size"    # LLM_KV_IMATRIX_CHUNK_SIZE
SUFFIX_SUMS = ".in_sum2"
SUFFIX_COUNTS = ".counts"


@dataclass
class ImatrixEntry:
    """One weight's statistics: ``sums[e, c]`` = sum over the activations routed to expert ``e`` of x[c]^2,
    ``counts[e]`` = how many activations that is (one row, ``n_mat == 1``, for a dense weight)."""
    sums: np.ndarray     # float32 (n_mat, n_col)
    counts: np.ndarray   # float32 (n_mat,)

    def __post_init__(self):
        self.sums = np.asarray(self.sums, dtype=np.float32)
        self.counts = np.asarray(self.counts, dtype=np.float32).reshape(-1)
        if self.sums.ndim == 1:
            self.sums = self.sums.reshape(len(self.counts) or 1, -1)
        if self.sums.ndim != 2 or self.sums.shape[0] != self.counts.shape[0]:
            raise ValueError(f"imatrix entry: sums of shape {self.sums.shape} do not match {self.counts.shape[0]} "
                             f"counts (expected sums (n_mat, n_col), counts (n_mat,))")


@dataclass
class Imatrix:
    """An importance matrix as llama-imatrix stores it.

    ``entries`` keeps file order.  ``is_legacy`` marks data read from a ``.dat`` file: there ``sums`` already hold
    ``(sum / count) * ncall`` in one row (``n_mat == 1`` even for expert tensors) and ``counts == [ncall]``, and
    llama-quantize normalises them differently (``imatrix_for_quantize``).  ``has_metadata`` is False for a GGUF
    imatrix missing one of the three ``imatrix.*`` keys, which llama-quantize refuses.  ``path`` is where it was
    read from (llama-quantize stores it as ``quantize.imatrix.file``).
    """
    entries: dict[str, ImatrixEntry] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False
    has_metadata: bool = True
    path: str | None = None


# --------------------------------------------------------------------------------------------------------- reading

def read_imatrix(path: str | os.PathLike) -> Imatrix:
    """Read an imatrix file as llama-quantize does (``common_imatrix_load``): GGUF if it parses as GGUF, else the
    legacy ``.dat`` format.  ValueError (saying what was expected) for a file that is neither."""
    from .gguf import GGUFError, read

    path = os.fspath(path)
    try:
        f = read(path)
    except GGUFError as gguf_error:
        try:
            imat = _read_legacy(path)
        except ValueError as legacy_error:
            raise ValueError(f"{path}: not an imatrix file: as GGUF: {gguf_error}; as legacy .dat: {legacy_error}") \
                from None
        imat.path = path
        return imat
    with f:
        imat = _from_gguf(f, path)
    imat.path = path
    return imat


def _from_gguf(f, path: str) -> Imatrix:
    """common_imatrix_load's GGUF branch."""
    from .gguf import GGUFValueType

    if len(f.tensors) < 1:
        raise ValueError(f"{path}: no data in imatrix file (a GGUF imatrix has at least one tensor)")
    imat = Imatrix()
    ds = f.metadata.get(KEY_DATASETS)
    if ds is not None and ds.type == GGUFValueType.ARRAY and ds.element_type == GGUFValueType.STRING:
        imat.datasets = list(ds.value)
    imat.has_metadata = all(k in f.metadata for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE))
    for key in (KEY_CHUNK_COUNT, KEY_CHUNK_SIZE):
        v = f.metadata.get(key)
        if v is not None and v.type != GGUFValueType.UINT32:
            # gguf_get_val_u32 aborts on another type
            raise ValueError(f"{path}: {key} is {v.type_name}, expected UINT32")
    # gguf_get_val_u32 into an int32_t field
    imat.chunk_count = _as_i32(f.get(KEY_CHUNK_COUNT, 0))
    imat.chunk_size = _as_i32(f.get(KEY_CHUNK_SIZE, 0))

    # pair <name>.in_sum2 with <name>.counts; the C collects them in a std::map (byte order of the names), the
    # entries here keep the order of the first tensor of each pair in the file
    pairs: dict[str, list] = {}
    for t in f.tensors.list():
        name = t.name
        if not name:
            continue
        if name.endswith(SUFFIX_SUMS):
            pairs.setdefault(name[:-len(SUFFIX_SUMS)], [None, None])[0] = t
        elif name.endswith(SUFFIX_COUNTS):
            pairs.setdefault(name[:-len(SUFFIX_COUNTS)], [None, None])[1] = t
    for name, (sums_t, counts_t) in pairs.items():
        if sums_t is None or counts_t is None:
            raise ValueError(f"{path}: mismatched sums and counts for {name} (expected both {name}{SUFFIX_SUMS} "
                             f"and {name}{SUFFIX_COUNTS})")
        if sums_t.ggml_type != "F32" or counts_t.ggml_type != "F32":
            raise ValueError(f"{path}: sums and counts for {name} must be F32")
        sums = np.array(sums_t.data, dtype=np.float32).reshape(-1)
        counts = np.array(counts_t.data, dtype=np.float32).reshape(-1)
        n_mat = counts.size
        if n_mat == 0 or sums.size % n_mat:
            raise ValueError(f"{path}: {name}: {sums.size} sums cannot be split over {n_mat} counts")
        imat.entries[name] = ImatrixEntry(sums.reshape(n_mat, -1), counts)
    return imat


def _as_i32(v: int) -> int:
    v = int(v) & 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _read_legacy(path: str) -> Imatrix:
    """common_imatrix_load_legacy."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise ValueError(f"offset {pos:#x}: file ends while reading {what}")
        b = data[pos:pos + n]
        pos += n
        return b

    if len(data) < 4 or struct.unpack_from("<i", data)[0] < 1:
        raise ValueError("no data in file (expected a positive i32 entry count)")
    n_entries = struct.unpack("<i", take(4, "the entry count"))[0]
    imat = Imatrix(is_legacy=True)
    for i in range(n_entries):
        (length,) = struct.unpack("<i", take(4, f"the name length of entry {i + 1}"))
        raw = take(length, f"the name of entry {i + 1}")
        name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")   # std::string{char *}: up to a NUL
        ncall, nval = struct.unpack("<ii", take(8, f"ncall and nval of entry {i + 1}"))
        if nval < 1:
            raise ValueError(f"entry {i + 1} ({name!r}) has {nval} values, expected at least 1")
        sums = np.frombuffer(take(4 * nval, f"the {nval} values of entry {i + 1}"), dtype="<f4").astype(np.float32)
        imat.entries.pop(name, None)      # a repeated name replaces the earlier entry
        imat.entries[name] = ImatrixEntry(sums.reshape(1, -1), np.array([ncall], dtype=np.float32))
    # the trailing chunk count and dataset name are optional
    if pos < len(data):
        if pos + 4 <= len(data):
            imat.chunk_count = struct.unpack_from("<i", data, pos)[0]
            pos += 4
            if pos + 4 <= len(data):
                (length,) = struct.unpack_from("<i", data, pos)
                pos += 4
                if length > 0 and pos + length <= len(data):
                    imat.datasets.append(data[pos:pos + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
        else:
            # std::istream::read of a short int32 fails but still stores the bytes it got... into a value the C
            # then uses: the partial bytes over a zero-initialised int32
            imat.chunk_count = int.from_bytes(data[pos:] + b"\0" * (4 - (len(data) - pos)), "little", signed=True)
    return imat


# --------------------------------------------------------------------------------------------------------- writing

def write_imatrix(path: str | os.PathLike, imatrix: Imatrix, fmt: str = "gguf") -> None:
    """Write ``imatrix`` byte for byte as llama-imatrix does: ``fmt="gguf"`` (save_imatrix) or ``"dat"``
    (save_imatrix_legacy).  Atomic: written to a temporary file in the target's directory, then renamed.

    For ``"dat"`` the per-entry call count is ``ceil(max(counts) / chunk_size)``, so ``chunk_size`` must be > 0;
    the dataset name written is the last of ``datasets`` (the prompt file, or the last loaded dataset), as in C.
    """
    if fmt not in ("gguf", "dat"):
        raise ValueError(f"fmt must be 'gguf' or 'dat', not {fmt!r}")
    if imatrix.is_legacy:
        raise ValueError("this imatrix was read from a legacy .dat file: its sums are already normalised, and "
                         "llama-imatrix would convert them (load_imatrix) before saving; write a GGUF/fresh one")
    if fmt == "gguf":
        _write_gguf(path, imatrix)
    else:
        atomic_write_bytes(path, _legacy_bytes(imatrix))


def _sorted_names(imatrix: Imatrix) -> list[str]:
    # std::sort of std::string: byte order
    return sorted(imatrix.entries, key=lambda n: n.encode("utf-8", "surrogateescape"))


def _write_gguf(path, imatrix: Imatrix) -> None:
    from .gguf import GGUFValue, GGUFValueType, Tensor, write

    metadata = {
        "general.type": GGUFValue(GGUFValueType.STRING, "imatrix"),
        KEY_DATASETS: GGUFValue(GGUFValueType.ARRAY, list(imatrix.datasets), GGUFValueType.STRING),
        KEY_CHUNK_COUNT: GGUFValue(GGUFValueType.UINT32, int(imatrix.chunk_count) & 0xFFFFFFFF),
        KEY_CHUNK_SIZE: GGUFValue(GGUFValueType.UINT32, int(imatrix.chunk_size) & 0xFFFFFFFF),
    }
    tensors = []
    for name in _sorted_names(imatrix):
        e = imatrix.entries[name]
        n_mat, n_col = e.sums.shape
        if n_mat * n_col == 0 or n_mat == 0:
            continue        # "if (nval > 0 && nmat > 0)"
        # ggml_new_tensor_2d(F32, nval / nmat, nmat) and (F32, 1, nmat); numpy shape is ne reversed
        tensors.append((name + SUFFIX_SUMS, Tensor("F32", (n_mat, n_col), np.ascontiguousarray(e.sums, "<f4"))))
        tensors.append((name + SUFFIX_COUNTS, Tensor("F32", (n_mat, 1), np.ascontiguousarray(e.counts, "<f4"))))
    write(path, metadata, tensors)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _legacy_bytes(imatrix: Imatrix) -> bytes:
    chunk_size = int(imatrix.chunk_size)
    if chunk_size <= 0:
        raise ValueError("writing a .dat imatrix needs chunk_size > 0 (ncall = ceil(max count / chunk_size))")
    stored = []
    for name in _sorted_names(imatrix):
        e = imatrix.entries[name]
        counts = e.counts.astype(np.int64)      # Stats::counts are int64 in llama-imatrix
        if counts.size == 0 or not counts.any():
            continue        # "entry has no data - skipping"
        stored.append(name)
    parts = [struct.pack("<i", len(stored))]
    for name in stored:
        e = imatrix.entries[name]
        raw = name.encode("utf-8", "surrogateescape")
        counts = e.counts.astype(np.int64)
        # ceiling division to avoid accidental zeros, stored as int32
        ncall = _as_i32((int(counts.max()) + (chunk_size - 1)) // chunk_size)
        values = e.sums.reshape(-1)
        nval, nmat = values.size, counts.size
        parts.append(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, nval))
        if nval > 0 and nmat > 0:
            count = counts.astype(np.float32)[np.arange(nval) // (nval // nmat)]
            value = values.astype(np.float32).copy()
            partial = count == 0.0      # store 1 for partial data
            value[partial] = 1.0
            count[partial] = 1.0
            tmp = (value / count) * np.float32(ncall)   # float32 arithmetic, as in C
            parts.append(tmp.astype("<f4").tobytes())
    parts.append(struct.pack("<i", _as_i32(imatrix.chunk_count)))
    dataset = imatrix.datasets[-1].encode("utf-8", "surrogateescape") if imatrix.datasets else b""
    parts.append(struct.pack("<i", len(dataset)) + dataset)
    return b"".join(parts)


# ------------------------------------------------------------------------------------------ llama-quantize's view

def imatrix_for_quantize(imatrix: Imatrix) -> dict[str, np.ndarray]:
    """name -> float32 vector of ``n_mat * n_col`` per-column weights, as load_imatrix (tools/quantize/quantize.cpp)
    hands them to llama_model_quantize: GGUF ``sums / lround(count)`` per expert (1 where the count is 0);
    legacy ``sums / ncall`` (the sums as they are when ncall <= 0)."""
    out: dict[str, np.ndarray] = {}
    for name, e in imatrix.entries.items():
        sums = e.sums.astype(np.float32)
        if imatrix.is_legacy:
            ncall = int(e.counts[0]) if e.counts.size else 0
            v = sums.reshape(-1) / np.float32(ncall) if ncall > 0 else sums.reshape(-1).copy()
        else:
            # counts were rounded to int64 on load (std::lround: half away from zero), then cast back to float
            counts = np.where(e.counts >= 0, np.floor(e.counts.astype(np.float64) + 0.5),
                              np.ceil(e.counts.astype(np.float64) - 0.5)).astype(np.float32)
            v = np.empty_like(sums)
            for j in range(sums.shape[0]):
                v[j] = sums[j] / counts[j] if counts[j] > 0.0 else np.float32(1.0)
            v = v.reshape(-1)
        out[name] = v.astype(np.float32, copy=False)
    return out
