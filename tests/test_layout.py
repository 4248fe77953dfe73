"""The two kernel layers stay apart (issue 13): the reference layer imports nothing from the fast layer, and every fast
kernel names the reference function it must equal."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import refimpl
from refimpl import kernels

PKG = Path(refimpl.__file__).resolve().parent
REFERENCE_MODULES = sorted([*(PKG / "quant" / "formats").glob("*.py"), PKG / "quant" / "kquant_search.py",
                            PKG / "quant" / "iq_tables.py", PKG / "quant" / "registry.py", PKG / "_jit.py",
                            PKG / "floats.py"])


def _module_name(path: Path) -> str:
    return ".".join(("refimpl",) + path.relative_to(PKG).with_suffix("").parts)


def _imported(path: Path) -> set[str]:
    """Every module an ``import`` / ``from … import`` in ``path`` names, relative imports resolved."""
    package = _module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("path", REFERENCE_MODULES, ids=lambda p: p.name)
def test_reference_modules_import_nothing_from_the_fast_layer(path):
    bad = sorted(m for m in _imported(path) if m == "refimpl.kernels" or m.startswith("refimpl.kernels."))
    assert not bad, f"{_module_name(path)} imports {bad} from the fast layer"


def test_reference_modules_use_no_llvm_intrinsics():
    for path in REFERENCE_MODULES:
        text = path.read_text(encoding="utf-8")
        if path.name == "_jit.py":
            continue          # the bit casts f32_to_bits / f32_from_bits: C semantics, not speed
        assert "llvmlite" not in text and "@intrinsic" not in text, path


def test_every_fast_kernel_names_its_reference():
    table = kernels.table()
    assert {"Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_XS"} <= set(table)
    for name, fk in table.items():
        for op in ("quantize", "quantize_ref", "dequantize", "from_float", "vec_dot", "vec_dot_work"):
            kernel = getattr(fk, op)
            if kernel is None:
                continue
            doc = getattr(kernel, "__doc__", None) or getattr(getattr(kernel, "py_func", None), "__doc__", "") or ""
            m = re.search(r"(refimpl\.quant\.formats\.\w+)\.(\w+)", doc)
            assert m, f"{name} fast {op} ({kernel}) does not name the reference function it equals"
            module = importlib.import_module(m.group(1))
            assert callable(getattr(module, m.group(2), None)), f"{name} fast {op}: {m.group(0)} does not exist"
