"""Each format's spec page declares the same block layout as the code (spec/quant/<TYPE>.md, '## Block layout')."""
import re

import numpy as np
import pytest

from conftest import ROOT
from refimpl import quant

SPEC = ROOT / "spec" / "quant"
HEADER = ["offset", "bytes", "field", "type", "meaning"]


def layout_rows(text: str) -> list[tuple[int, int, str]]:
    m = re.search(r"^## Block layout\s*$", text, flags=re.M)
    assert m, "no '## Block layout' section"
    lines = text[m.end():].splitlines()
    rows, in_table = [], False
    for line in lines:
        s = line.strip()
        if not s.startswith("|"):
            if in_table:
                break
            if s.startswith("#"):
                break
            continue
        cells = [c.strip().strip("`") for c in s.strip("|").split("|")]
        if not in_table:
            assert [c.lower() for c in cells] == HEADER, f"layout table header must be {HEADER}, got {cells}"
            in_table = True
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        rows.append((int(cells[0], 0), int(cells[1], 0), cells[2]))
    return rows


def code_rows(fmt) -> list[tuple[int, int, str]]:
    dt = np.dtype(fmt.block_dtype)
    if dt.fields is None:
        return [(0, dt.itemsize, "value")]
    return [(off, sub.itemsize, name) for name, (sub, off, *_) in
            sorted(dt.fields.items(), key=lambda kv: kv[1][1])]


@pytest.mark.parametrize("name", quant.TYPES.names())
def test_spec_page_layout_matches_code(name):
    fmt = quant.get_type(name)
    page = SPEC / f"{name}.md"
    assert page.exists(), f"spec/quant/{name}.md is missing"
    rows = layout_rows(page.read_text())
    assert rows == code_rows(fmt), f"{page.name}: layout table {rows} != block dtype {code_rows(fmt)}"
    assert sum(b for _, b, _ in rows) == fmt.type_size
