"""Reads the quant/iquant goldens: which types exist and what each case feeds ggml."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from conftest import GOLDEN, load_golden


@lru_cache(maxsize=None)
def inputs() -> dict[str, np.ndarray]:
    return load_golden("quant/inputs.npz")


@lru_cache(maxsize=None)
def cases() -> dict[str, dict]:
    return json.loads((GOLDEN / "quant" / "cases.json").read_text())


def golden_types(family: str) -> list[str]:
    return sorted(p.stem for p in (GOLDEN / family).glob("*.npz") if p.stem != "inputs")


@lru_cache(maxsize=None)
def golden(family: str, name: str) -> dict[str, np.ndarray]:
    return load_golden(f"{family}/{name}.npz")


def case_input(case: dict, block_size: int):
    x = inputs()[f"x.{case['input']}"]
    cols = case.get("cols", case.get("blocks", 0) * block_size)
    x = np.ascontiguousarray(x[: case["rows"], :cols])
    im = case.get("imatrix")
    return x, (np.ascontiguousarray(inputs()[f"imatrix.{im}"][:cols]) if im else None)
