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


def reading_order(text: str) -> list[str]:
    m = re.search(r"^## Reading order\s*$", text, flags=re.M)
    assert m, "no '## Reading order' section"
    body = text[m.end():]
    end = re.search(r"^## ", body, flags=re.M)
    return re.findall(r"^\s*(?:\d+\.|[-*])\s+`([\w.]+)`", body[:end.start() if end else None], flags=re.M)


@pytest.mark.parametrize("name", [n for n in quant.TYPES.names()
                                  if quant.get_type(n).type_id < quant.EXPERIMENTAL_TYPE_BASE])   # ggml's own types
def test_reading_order_names_existing_reference_functions(name):
    """Each page lists the reference functions of its format in reading order, as module.function; they exist,
    they are in the reference layer, and the format's own kernels are among them."""
    import importlib

    page = SPEC / f"{name}.md"
    if not page.exists():
        pytest.fail(f"{name} has no spec page")
    names = reading_order(page.read_text(encoding="utf-8"))
    assert names, f"{name}: empty reading order"
    for dotted in names:
        module, func = dotted.rsplit(".", 1)
        assert module.startswith("refimpl.quant."), f"{name}: {dotted} is not in the reference layer"
        assert callable(getattr(importlib.import_module(module), func, None)), f"{name}: {dotted} does not exist"
    fmt = quant.get_type(name)
    for op in ("quantize", "quantize_ref", "dequantize", "vec_dot"):
        kernel = getattr(fmt, op)
        if kernel is not None:
            f = getattr(kernel, "py_func", kernel)
            assert f"{f.__module__}.{f.__name__}" in names, f"{name}: its {op} is not in the reading order"


@pytest.mark.parametrize("name,home", [("Q4_0", "legacy"), ("Q4_K", "kquants"), ("IQ2_XS", "iq2")])
def test_readable_from_one_module_plus_shared_helpers(name, home):
    names = reading_order((SPEC / f"{name}.md").read_text(encoding="utf-8"))
    allowed = {f"refimpl.quant.formats.{home}", "refimpl.quant.kquant_search", "refimpl.quant.formats.common"}
    if name == "IQ2_XS":
        allowed.add("refimpl.quant.formats.iq2_search")   # the lattice search tables iq2_find_best_neighbour reads
    modules = {n.rsplit(".", 1)[0] for n in names}
    assert modules <= allowed, f"{name} reads from {sorted(modules - allowed)} too"
