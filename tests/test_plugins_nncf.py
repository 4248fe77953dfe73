"""examples/plugins/nncf_weights.py against NNCF's own weight compression on numpy arrays: codes, scales and zero
points of ``do_integer_quantization`` exactly, and the stored blocks decoding to exactly
``do_integer_dequantization`` with the float16 scale the OpenVINO IR keeps.  Needs the optional extra
``refimpl[nncf]`` (nncf with numpy only; no OpenVINO, no torch)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl import quant

logging.getLogger("nncf").setLevel(logging.CRITICAL)      # "Neither PyTorch, ONNX or OpenVINO ..." on import
# the definition followed is NNCF's reference numpy implementation; with OpenVINO installed NNCF would switch large
# inputs to its OpenVINO-compiled path
os.environ.setdefault("NNCF_DISABLE_OPTIMIZED_COMPRESSION", "1")
pytest.importorskip("nncf", reason="nncf is not installed (pip install 'refimpl[nncf]'): the NNCF plugin cannot be "
                                   "checked against nncf's weight_lowering")
from nncf.parameters import CompressWeightsMode  # noqa: E402
from nncf.quantization.algorithms.weight_compression import weight_lowering  # noqa: E402
from nncf.quantization.algorithms.weight_compression.config import WeightCompressionConfig  # noqa: E402
from nncf.tensor import Tensor  # noqa: E402

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "nncf_weights.py"
CASES = ([(f"nncf-int4-sym-g{g}", CompressWeightsMode.INT4_SYM, g) for g in (32, 64, 128)]
         + [(f"nncf-int4-asym-g{g}", CompressWeightsMode.INT4_ASYM, g) for g in (32, 64, 128)]
         + [("nncf-int8-sym", CompressWeightsMode.INT8_SYM, -1), ("nncf-int8-asym", CompressWeightsMode.INT8_ASYM, -1)])


@pytest.fixture(scope="module")
def nncf_plugin():
    quant.load_plugin(PLUGIN)
    return next(m for name, m in sys.modules.items()
                if name.startswith("refimpl_plugin_nncf_weights") and getattr(m, "FORMATS", None))


@pytest.mark.parametrize("name, mode, group", CASES, ids=[c[0] for c in CASES])
def test_matches_nncf(nncf_plugin, name, mode, group):
    rng = np.random.default_rng(11)
    rows, cols = 6, 384
    x = (rng.standard_normal((rows, cols)) * rng.choice([1e-3, 1.0, 30.0], size=(rows, 1))).astype(np.float32)
    x[0, :128] = 0
    x[1, :128] = np.abs(x[1, :128])
    x[2, :128] = -np.abs(x[2, :128])
    config = WeightCompressionConfig(mode=mode, group_size=group)
    compressed = weight_lowering.do_integer_quantization(Tensor(x), config, reduction_axes=(1,))
    bits = 8 if group < 0 else 4
    codes, scale, zero_point = nncf_plugin.integer_codes(x.reshape(rows, -1, cols if group < 0 else group), bits,
                                                         "asym" in name)
    np.testing.assert_array_equal(codes.reshape(rows, -1), compressed.tensor.data.reshape(rows, -1))
    assert codes.dtype == compressed.tensor.data.dtype
    np.testing.assert_array_equal(scale.reshape(-1).view(np.uint32),
                                  compressed.scale.data.reshape(-1).view(np.uint32))
    if compressed.zero_point is None:
        assert zero_point is None
    else:
        np.testing.assert_array_equal(zero_point.reshape(-1), compressed.zero_point.data.reshape(-1))
    # what the plugin stores decodes to NNCF's dequantization with the IR's float16 scale, bit for bit
    as_stored = weight_lowering.CompressedWeight(compressed.tensor, Tensor(compressed.scale.data.astype(np.float16)),
                                                 compressed.zero_point)
    reference = weight_lowering.do_integer_dequantization(as_stored).data.astype(np.float32).reshape(rows, -1)
    ours = quant.dequantize(quant.quantize(x, name), name)
    np.testing.assert_array_equal(ours.view(np.uint32), reference.view(np.uint32))
