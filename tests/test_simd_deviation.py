"""refimpl (= ggml's scalar path) stays within the measured bound of llama.cpp's SIMD build (spec/matmul.md)."""
import re
import sys

import pytest

from conftest import GOLDEN, ROOT, load_golden

sys.path.insert(0, str(ROOT / "tools"))
from simd_deviation import relative_deviation  # noqa: E402

from refimpl import quant  # noqa: E402


def bounds() -> dict[str, float]:
    text = (ROOT / "spec" / "matmul.md").read_text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^\| (\w+) \| \d+/\d+ \| [0-9.e+-]+ \| ([0-9.e+-]+) \|$", text, flags=re.M)}


TYPES = sorted(p.stem for p in (GOLDEN / "simd").glob("*.npz"))


def test_every_simd_type_has_a_stated_bound():
    assert TYPES and set(TYPES) <= set(bounds())


@pytest.mark.parametrize("name", TYPES)
def test_within_simd_bound(name):
    bound = bounds()[name]
    acts = load_golden("matmul/activations.npz")
    g = load_golden(f"matmul/{name}.npz")
    simd = load_golden(f"simd/{name}.npz")
    for key, y_simd in simd.items():
        case = key.split(".", 1)[1]
        ours = quant.matmul(g[f"w.{case}"], name, acts[f"x.{case}"])
        assert relative_deviation(y_simd, ours) <= bound, f"{name} {case}"


@pytest.mark.parametrize("name", TYPES)
def test_format_page_states_the_bound(name):
    """spec/quant/<TYPE>.md carries the same bound as the table (both written by tools/simd_deviation.py)."""
    text = (ROOT / "spec" / "quant" / f"{name}.md").read_text()
    m = re.search(r"Bound asserted by tests/test_simd_deviation\.py: \*\*([0-9.e+-]+)\*\*", text)
    assert m, f"spec/quant/{name}.md has no SIMD deviation section: run tools/simd_deviation.py"
    assert float(m.group(1)) == bounds()[name]
