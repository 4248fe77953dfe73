"""F16/BF16 conversions bit for bit against ggml (golden/floats)."""
import numpy as np
import pytest

from conftest import assert_bits_equal, load_golden
from refimpl import floats


@pytest.mark.parametrize("name,fn", [
    ("f32_to_f16", floats.fp32_to_fp16_row),
    ("f16_to_f32", floats.fp16_to_fp32_row),
    ("f32_to_bf16", floats.fp32_to_bf16_row),
    ("bf16_to_f32", floats.bf16_to_fp32_row),
])
def test_conversion_matches_ggml(name, fn):
    g = load_golden(f"floats/{name}.npz")
    assert_bits_equal(fn(g["x"]), g["y"], name)


def test_conversion_shapes_are_kept():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert floats.fp32_to_fp16_row(x).shape == (3, 4)
    assert floats.fp16_to_fp32_row(floats.fp32_to_fp16_row(x)).tolist() == x.tolist()


def test_wrong_dtype_is_a_value_error():
    with pytest.raises(ValueError, match="float32"):
        floats.fp32_to_fp16_row(np.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match="uint16"):
        floats.fp16_to_fp32_row(np.zeros(3, dtype=np.int16))


def test_f16_table_is_ggml_conversion():
    # F16_TO_F32 (the table the kernels read, as ggml's scalar CPU build does) holds ggml's widening of every half:
    # checked against the golden and against the per-element fp16_to_fp32 for all 65536 bit patterns
    g = load_golden("floats/f16_to_f32.npz")
    assert_bits_equal(floats.F16_TO_F32[g["x"]], g["y"], "F16_TO_F32 vs golden")
    every = np.arange(65536, dtype=np.uint16)
    assert_bits_equal(floats.F16_TO_F32, floats.fp16_to_fp32_row(every), "F16_TO_F32 vs fp16_to_fp32_row")
    assert not floats.F16_TO_F32.flags.writeable
