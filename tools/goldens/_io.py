"""Deterministic, language-neutral golden containers.

``.npz`` here is a plain ZIP (stored, no compression, fixed 1980-01-01 timestamps, sorted members) of ``.npy``
files, so the same arrays always give the same bytes and any NPY reader (numpy, cnpy, ndarray-npy, npyjs) can
open it.  numpy's own ``savez`` stamps the current time into the archive, which would break ``--check``.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, npy_bytes(arrays[name]))
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GoldenWriter:
    """Collects the files one family writes, under ``root/<family>/``."""

    def __init__(self, root: Path, family: str):
        self.root = Path(root)
        self.family = family
        self.entries: dict[str, dict] = {}

    def _put(self, rel: str, data: bytes, description: str) -> str:
        rel = f"{self.family}/{rel}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.entries[rel] = {"family": self.family, "description": description,
                             "sha256": sha256(data), "bytes": len(data)}
        return rel

    def npz(self, rel: str, arrays: dict[str, np.ndarray], description: str) -> str:
        return self._put(rel, npz_bytes(arrays), description)

    def json(self, rel: str, obj, description: str) -> str:
        return self._put(rel, json_bytes(obj), description)

    def raw(self, rel: str, data: bytes, description: str) -> str:
        return self._put(rel, bytes(data), description)
