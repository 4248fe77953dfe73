#!/usr/bin/env python3
"""Measure how far llama.cpp's SIMD build lands from the scalar path (golden/simd vs golden/matmul) and write the
per-type table into spec/matmul.md, between the markers.  The bound is the measured worst case times 4, rounded up
to 1, 2 or 5 times a power of ten; tests/test_simd_deviation.py reads the bound from that table.

Metric, per type: max over the cases of  max_i |y_simd[i] - y_scalar[i]|  /  max_i |y_scalar[i]|  (finite outputs).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- simd-deviation:begin -->", "<!-- simd-deviation:end -->"


def relative_deviation(simd: np.ndarray, scalar: np.ndarray) -> float:
    fin = np.isfinite(scalar) & np.isfinite(simd)
    if not fin.any():
        return 0.0
    d = np.abs(simd[fin].astype(np.float64) - scalar[fin].astype(np.float64)).max()
    scale = np.abs(scalar[fin].astype(np.float64)).max()
    return float(d / scale) if scale > 0 else float(d)


def nice_bound(x: float) -> float:
    if x == 0:
        return 0.0
    x *= 4
    e = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10**e >= x:
            return float(f"{m * 10**e:.0e}")
    return float(f"{10 ** (e + 1):.0e}")


def measure() -> list[tuple[str, float, int, int]]:
    rows = []
    for f in sorted((ROOT / "golden" / "simd").glob("*.npz")):
        name = f.stem
        s, m = np.load(f), np.load(ROOT / "golden" / "matmul" / f"{name}.npz")
        worst, nd, tot = 0.0, 0, 0
        for k in s.files:
            worst = max(worst, relative_deviation(s[k], m[k]))
            nd += int((s[k].view(np.uint32) != m[k].view(np.uint32)).sum())
            tot += s[k].size
        rows.append((name, worst, nd, tot))
    return rows


def main() -> int:
    import json

    build = json.loads((ROOT / "golden" / "simd" / "build.json").read_text())
    feats = ", ".join(sorted(build["ggml_simd_features"]))
    lines = [BEGIN, "",
             f"Measured with llama-cpp-python {build['llama_cpp_python']} built for this CPU ({feats}); "
             "metric: max |y_simd − y_scalar| / max |y_scalar| over the matmul golden cases.", "",
             "| type | outputs differing | measured | bound |", "|---|---|---|---|"]
    for name, worst, nd, tot in measure():
        lines.append(f"| {name} | {nd}/{tot} | {worst:.2e} | {nice_bound(worst):.0e} |")
    lines += ["", END]
    _replace_section(ROOT / "spec" / "matmul.md", "\n".join(lines))
    print("\n".join(lines))
    # the same figures on each format's own page (spec/quant/<TYPE>.md), in a section of its own
    for name, worst, nd, tot in measure():
        page = ROOT / "spec" / "quant" / f"{name}.md"
        if not page.exists():
            continue
        section = "\n".join([
            BEGIN, "",
            f"llama.cpp's SIMD build ({feats}) gives matmul results that differ from the scalar path (and so from "
            f"refimpl) in {nd} of {tot} golden outputs: at most {worst:.2e} × max |y| (max |y_simd − y_scalar| / "
            f"max |y_scalar| per case). Bound asserted by tests/test_simd_deviation.py: **{nice_bound(worst):.0e}**. "
            "Why and how it is measured: spec/matmul.md.", "", END])
        _replace_section(page, section, heading="## SIMD build deviation")
    return 0


def _replace_section(page: Path, section: str, heading: str | None = None) -> None:
    text = page.read_text()
    if BEGIN in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{section}\n"
    page.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
