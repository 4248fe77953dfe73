"""The vectors directory: one ``manifest.json`` plus raw little-endian ``.bin`` files (spec/conformance.md).

A *file reference* in the manifest is ``{"file", "dtype", "shape", "sha256", "bytes"}`` and, for a slice of a
shared file, ``"offset"`` (bytes into the file); ``dtype`` is one of ``DTYPES`` (``uint8`` for raw ggml blocks and
other byte strings).  This module writes and reads them; it knows nothing about where the data came from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "refimpl-conformance-vectors"
FORMAT_VERSION = 1
DTYPES = {"uint8": "u1", "int8": "i1", "uint16": "<u2", "int16": "<i2", "uint32": "<u4", "int32": "<i4",
          "uint64": "<u8", "int64": "<i8", "float32": "<f4", "float64": "<f8"}


class VectorsError(ValueError):
    """A vectors directory or manifest that does not follow the format (what was expected, where)."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class VectorWriter:
    """Writes ``.bin`` files under a staging directory and hands out file references; identical arrays written
    under the same name are stored once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.files: dict[str, dict] = {}

    def array(self, rel: str, a: np.ndarray) -> dict:
        a = np.asarray(a)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        name = next((k for k, v in DTYPES.items() if np.dtype(v) == a.dtype.newbyteorder("<")
                     or np.dtype(v) == a.dtype), None)
        if name is None:
            raise ValueError(f"{rel}: dtype {a.dtype} has no language-neutral name")
        data = np.ascontiguousarray(a.astype(DTYPES[name], copy=False)).tobytes()
        ref = self.raw(rel, data)
        return {**ref, "dtype": name, "shape": list(a.shape)}

    def raw(self, rel: str, data: bytes) -> dict:
        digest = sha256(data)
        if rel in self.files:
            if self.files[rel]["sha256"] != digest:
                raise ValueError(f"{rel}: written twice with different content")
        else:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.files[rel] = {"sha256": digest, "bytes": len(data)}
        return {"file": rel, "sha256": digest, "bytes": len(data)}

    def copy(self, rel: str, src: Path) -> dict:
        return self.raw(rel, Path(src).read_bytes())


def commit_directory(staging: Path, target: Path) -> None:
    """Move a finished staging directory to ``target``: a previous export there is replaced, anything else
    refused, so an interrupted export never leaves a half-written vectors directory."""
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise VectorsError(f"{target}: exists and is not a directory")
        if any(target.iterdir()) and not (target / "manifest.json").is_file():
            raise VectorsError(f"{target}: exists, is not empty and holds no manifest.json (not a vectors "
                               f"directory); refusing to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


# ---------------------------------------------------------------------------------------------------------------
# reading

class Vectors:
    """A vectors directory opened for reading: ``cases`` (list of dicts) and ``load(ref)``."""

    def __init__(self, root: Path, verify: bool = True):
        self.root = Path(root)
        path = self.root / "manifest.json"
        if not self.root.is_dir():
            raise VectorsError(f"{self.root}: no such vectors directory (make one with "
                               f"`python -m refimpl.conformance export DIR`)")
        if not path.is_file():
            raise VectorsError(f"{path}: missing; a vectors directory holds manifest.json")
        try:
            self.manifest = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VectorsError(f"{path}: not valid JSON ({e})") from None
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise VectorsError(f"{path}: expected an object with format = {FORMAT!r}")
        if m.get("format_version") != FORMAT_VERSION:
            raise VectorsError(f"{path}: format_version {m.get('format_version')!r}, this reader knows "
                               f"{FORMAT_VERSION}")
        if not isinstance(m.get("cases"), list) or not isinstance(m.get("files"), dict):
            raise VectorsError(f"{path}: expected a 'cases' list and a 'files' object")
        for i, case in enumerate(m["cases"]):
            if not isinstance(case, dict) or not all(k in case for k in ("id", "family", "operation")):
                raise VectorsError(f"{path}: cases[{i}] lacks id/family/operation")
        self.cases = m["cases"]
        self._verified: set[str] = set()
        self.verify = verify

    def _file(self, rel: str) -> bytes:
        entry = self.manifest["files"].get(rel)
        if entry is None:
            raise VectorsError(f"{rel}: referenced by a case but not listed in manifest.json 'files'")
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise VectorsError(f"{rel}: file reference leaves the vectors directory")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise VectorsError(f"{rel}: cannot read ({e.strerror})") from None
        if self.verify and rel not in self._verified:
            if len(data) != entry.get("bytes") or sha256(data) != entry.get("sha256"):
                raise VectorsError(f"{rel}: size or sha256 differs from manifest.json (corrupt or edited)")
            self._verified.add(rel)
        return data

    def raw(self, ref: dict) -> bytes:
        data = self._file(ref["file"])
        off = int(ref.get("offset", 0))
        n = int(ref.get("bytes", len(data) - off))
        if off < 0 or off + n > len(data):
            raise VectorsError(f"{ref['file']}: slice {off}+{n} outside the file ({len(data)} bytes)")
        part = data[off:off + n]
        if self.verify and "offset" in ref and ref.get("sha256") and sha256(part) != ref["sha256"]:
            raise VectorsError(f"{ref['file']}: the slice at {off} (+{n}) does not match its sha256")
        return part

    def load(self, ref: dict) -> np.ndarray:
        if ref.get("dtype") not in DTYPES:
            raise VectorsError(f"{ref.get('file')}: unknown dtype {ref.get('dtype')!r}; known: {', '.join(DTYPES)}")
        data = self.raw(ref)
        dt = np.dtype(DTYPES[ref["dtype"]])
        shape = tuple(int(s) for s in ref["shape"])
        if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(data):
            raise VectorsError(f"{ref['file']}: {len(data)} bytes do not hold {ref['dtype']} {list(shape)}")
        return np.frombuffer(data, dt).reshape(shape)
