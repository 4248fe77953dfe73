"""examples/plugins/mlx_affine.py against mlx itself: packed words, scales, biases and dequantized values bit for
bit, for 4 and 8 bits, groups 32/64/128 and float16/bfloat16/float32 weights.  Needs the optional extra
``refimpl[mlx]`` (mlx with its CPU backend, ``mlx-cpu`` on Linux)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl import quant

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'refimpl[mlx]'): the MLX plugin "
                                            "cannot be checked against mx.quantize / mx.dequantize")

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "mlx_affine.py"


@pytest.fixture(scope="module")
def mlx_plugin():
    formats = quant.load_plugin(PLUGIN)
    module = next(m for name, m in sys.modules.items()
                  if name.startswith("refimpl_plugin_mlx_affine") and getattr(m, "FORMATS", None))
    return module, {f.name: f for f in formats}


def _weights(rng, rows, cols, group):
    x = (rng.standard_normal((rows, cols)) * rng.choice([1e-3, 1.0, 40.0], size=(rows, 1))).astype(np.float32)
    x[0, :group] = 0                                    # all-zero group: q0 == 0, bias 0
    x[1, :group] = 0.37                                 # constant group
    x[2, :group] = np.abs(x[2, :group])                 # one-signed groups: the edge on either side
    x[3, :group] = -np.abs(x[3, :group])
    x[4, :group] = np.round(x[4, :group] * 4) / 4       # ties for rint
    return x


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_bit_exact_against_mlx(mlx_plugin, dtype):
    module, formats = mlx_plugin
    rng = np.random.default_rng(7)
    mx_dtype = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32}[dtype]
    for bits in module.BITS:
        for group in module.GROUP_SIZES:
            fmt = formats[f"mlx-q{bits}-g{group}{module.DTYPES[dtype][0]}"]
            x = _weights(rng, 8, 384, group)
            raw = quant.quantize(x, fmt.name)
            blocks = raw.reshape(-1).view(fmt.block_dtype).reshape(8, -1)
            w = mx.array(module.from_weight_dtype(module.to_weight_dtype(x, dtype), dtype)).astype(mx_dtype)
            wq, scales, biases = mx.quantize(w, group, bits)
            words = np.array(wq).reshape(8, -1, group * bits // 32)
            np.testing.assert_array_equal(blocks["q"], words, err_msg=f"{fmt.name}: packed words")
            for field, ref in (("scale", scales), ("bias", biases)):
                ours = module.from_weight_dtype(blocks[field], dtype)
                theirs = np.array(ref.astype(mx.float32))
                np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32),
                                              err_msg=f"{fmt.name}: {field}s")
            y = np.array(mx.dequantize(wq, scales, biases, group, bits).astype(mx.float32))
            np.testing.assert_array_equal(quant.dequantize(raw, fmt.name).view(np.uint32), y.view(np.uint32),
                                          err_msg=f"{fmt.name}: dequantized values")
