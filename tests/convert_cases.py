"""Shared helpers of the converter tests: the committed checkpoints (tests/data/convert/checkpoints.tar.xz, made
by tools/make_hf_checkpoints.py with transformers) and a description of a GGUF file in the format of
golden/convert/*.json (tools/goldens/convert.py), to name the first difference when bytes differ."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "convert"
CHECKPOINTS = DATA / "checkpoints.tar.xz"
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "convert"
LONG = 16


def extract_checkpoints(dest: Path) -> Path:
    with tarfile.open(CHECKPOINTS, "r:xz") as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:                  # Python without extraction filters (< 3.10.12 / 3.11.4)
            tar.extractall(dest)
    return dest


def golden_cases():
    """(checkpoint, case name, golden entry) for every conversion the pinned script made."""
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        for case, entry in json.loads(path.read_text()).items():
            out.append((path.stem, case, entry))
    return out


def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def describe(path: Path) -> dict:
    """Same fields as tools/goldens/convert.py's description, read with refimpl.gguf."""
    from refimpl import gguf
    data = path.read_bytes()
    g = gguf.read(path)
    kvs = []
    for key, v in g.metadata.items():
        tname = v.type.name
        if tname == "ARRAY":
            values = _plain(list(v.value))
            entry = {"key": key, "type": "ARRAY", "element_type": v.element_type.name, "length": len(values)}
            if len(values) > LONG:
                entry["sha256"] = hashlib.sha256(json.dumps(values, ensure_ascii=False,
                                                            separators=(",", ":")).encode()).hexdigest()
            else:
                entry["value"] = values
        else:
            entry = {"key": key, "type": tname, "value": _plain(v.value)}
        kvs.append(entry)
    tensors = []
    for t in g.tensors.values():
        start = g.data_offset + t.offset
        raw = data[start:start + t.nbytes]
        tensors.append({"name": t.name, "type": t.ggml_type.name if hasattr(t.ggml_type, "name") else str(t.ggml_type),
                        "shape": [int(n) for n in reversed(t.shape)],      # ggml order, as gguf-py reports
                        "sha256": hashlib.sha256(raw).hexdigest()})
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "metadata": kvs, "tensors": tensors}


def first_difference(expected: dict, got: dict) -> str:
    """The first metadata key or tensor where two descriptions differ, in file order."""
    for i, (a, b) in enumerate(zip(expected["metadata"], got["metadata"])):
        if a != b:
            return f"metadata #{i}: expected {json.dumps(a)[:300]}, got {json.dumps(b)[:300]}"
    if len(expected["metadata"]) != len(got["metadata"]):
        ka = [e["key"] for e in expected["metadata"]]
        kb = [e["key"] for e in got["metadata"]]
        return f"metadata keys differ: missing {sorted(set(ka) - set(kb))}, extra {sorted(set(kb) - set(ka))}"
    for i, (a, b) in enumerate(zip(expected["tensors"], got["tensors"])):
        for field in ("name", "type", "shape", "sha256"):
            if a[field] != b[field]:
                return f"tensor #{i} {a['name']!r}: {field} expected {a[field]}, got {b[field]}"
    if len(expected["tensors"]) != len(got["tensors"]):
        return f"{len(expected['tensors'])} tensors expected, got {len(got['tensors'])}"
    return f"descriptions agree but the files differ ({expected['bytes']} vs {got['bytes']} bytes): padding/offsets"
