"""Every ggml type in golden/quant and golden/iquant, bit for bit: quantize (with and without imatrix),
quantize_ref, dequantize (of ggml's own quantized rows, of random raw bytes, of NaN/Inf scales) and validate.
quantize and dequantize run under both kernel layers where the fast layer has its own kernel (conftest.layers_for).
"""
import numpy as np
import pytest

from conftest import assert_bits_equal, with_layers
from quant_cases import case_input, cases, golden, golden_types
from refimpl import quant

PARAMS = [(fam, name) for fam in ("quant", "iquant") for name in golden_types(fam)]


def _fmt(name):
    if name not in quant.TYPES:
        pytest.fail(f"{name} has goldens but is not implemented in refimpl.quant")
    return quant.get_type(name)


@pytest.mark.parametrize("family,name,kernel_layer", with_layers(PARAMS, "quantize", "quantize_ref"),
                         indirect=["kernel_layer"])
def test_quantize(family, name, kernel_layer):
    fmt = _fmt(name)
    g = golden(family, name)
    aborts = {a.decode() for a in g["aborts"]}
    checked = 0
    for cname, case in cases().items():
        if case["op"] not in ("quantize", "quantize_ref"):
            continue
        x, im = case_input(case, fmt.block_size)
        fn = (lambda: quant.quantize(x, name, imatrix=im)) if case["op"] == "quantize" else \
             (lambda: quant.quantize_ref(x, name))
        if cname in aborts:
            # ggml hits a GGML_ASSERT on this input; refimpl refuses it with a ValueError instead of aborting
            with pytest.raises(ValueError):
                fn()
            checked += 1
            continue
        if cname not in g:
            continue
        ours = fn()
        mask = g.get(f"unspecified.{cname}")
        if mask is not None:
            # bytes ggml packs from uninitialised memory (see tools/goldens/quant.py UNSPECIFIED): stored as 0
            ours = ours.copy()
            ours[mask] = 0
        assert_bits_equal(ours, g[cname], f"{name} {cname}")
        checked += 1
    assert checked > 0 or not fmt.is_quantized


@pytest.mark.parametrize("family,name,kernel_layer", with_layers(PARAMS, "dequantize"), indirect=["kernel_layer"])
def test_dequantize(family, name, kernel_layer):
    g = golden(family, name)
    checked = 0
    for cname, case in cases().items():
        if case["op"] != "dequantize" or cname not in g:
            continue
        raw = g[case["of"]] if "of" in case else g[case["raw"]]
        assert_bits_equal(quant.dequantize(raw, name), g[cname], f"{name} {cname}")
        checked += 1
    if "dequantize.random_raw" in g:
        assert checked >= 2


@pytest.mark.parametrize("family,name", PARAMS)
def test_validate(family, name):
    _fmt(name)
    g = golden(family, name)
    ours = np.array([quant.validate(b, name) for b in g["validate_raw"]])
    bad = np.flatnonzero(ours != g["validate"])
    assert bad.size == 0, f"{name}: {bad.size} verdicts differ, first block {bad[0]}: ggml says {g['validate'][bad[0]]}"


@pytest.mark.parametrize("family,name", PARAMS)
def test_descriptor_matches_ggml_sizes(family, name):
    fmt = _fmt(name)
    g = golden(family, name)
    assert g["validate_raw"].shape[1] == fmt.type_size
    x_cases = [k for k in g if k.startswith("quantize.gauss.one")]
    for k in x_cases:
        assert g[k].shape[1] == fmt.type_size  # one block
