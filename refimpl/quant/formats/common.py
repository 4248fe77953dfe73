"""Helpers shared by several block formats: C float->int casts and ggml-quants.c's scale searches.

Only helpers used by more than one format family live here (this module defines no ``FORMATS``).

* ``c_float_to_int32`` — what ``(int)f`` / ``(int8_t)f`` / ``(uint8_t)f`` compile to on x86-64 (``cvttss2si``),
  including the out-of-range and NaN cases that C leaves undefined but ggml's quantizers hit on degenerate input
  (e.g. ``id = 1/d`` overflowing to Inf for subnormal blocks).
* ``add_nan_first`` / ``mul_nan_first`` — refimpl._jit's NaN-operand-order helpers, re-exported.
* ``validate_d_f16`` / ``validate_dm_f16`` — ggml_validate_row_data's F16 scale checks, for every format.

ggml-quants.c's scale searches (``make_qx_quants``, ``make_qkx3_quants`` …) live in ``refimpl.quant.kquant_search``.
"""
from __future__ import annotations

import numpy as np

from ..._jit import add_nan_first, f32, mul_nan_first, njit  # noqa: F401  (re-exported for the formats)

_INT32_MIN = -2147483648


@njit
def c_float_to_int32(x):
    """``(int)x`` as x86-64 computes it (``cvttss2si``): truncation toward zero; NaN and values outside the int32
    range give INT_MIN (0x80000000).  Narrower C casts (``(int8_t)x``, ``(uint8_t)x``) are this value's low bits."""
    if x != x or x >= f32(2147483648.0) or x < f32(-2147483648.0):
        return _INT32_MIN
    return int(x)


@njit
def to_int8(v):
    """C conversion of an int to ``int8_t`` (keep the low 8 bits, two's complement)."""
    return ((v + 128) & 0xFF) - 128


def f16_all_finite(values) -> bool:
    """validate_fp16 over F16 bit patterns: False if any has the exponent all ones (Inf or NaN)."""
    return not np.any((np.asarray(values) & 0x7C00) == 0x7C00)


def validate_d_f16(blocks) -> bool:
    """VALIDATE_ROW_DATA_D_F16_IMPL (ggml-quants.c): every block's F16 scale ``d`` must be finite."""
    return f16_all_finite(blocks["d"])


def validate_dm_f16(min_field: str):
    """VALIDATE_ROW_DATA_DM_F16_IMPL(type, data, nb, d, <min_field>): the validator of a format with an F16 ``d``
    and an F16 minimum (``m`` in Q4_1/Q5_1, ``dmin`` in the K-quants): both must be finite in every block."""
    def validate_dm(blocks) -> bool:
        return f16_all_finite(blocks["d"]) and f16_all_finite(blocks[min_field])
    return validate_dm
