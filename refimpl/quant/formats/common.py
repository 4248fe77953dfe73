"""Helpers shared by several block formats: C float->int casts and ggml-quants.c's scale searches.

Only helpers used by more than one format family live here (this module defines no ``FORMATS``).

* ``c_float_to_int32`` — what ``(int)f`` / ``(int8_t)f`` / ``(uint8_t)f`` compile to on x86-64 (``cvttss2si``),
  including the out-of-range and NaN cases that C leaves undefined but ggml's quantizers hit on degenerate input
  (e.g. ``id = 1/d`` overflowing to Inf for subnormal blocks).
* ``add_nan_first`` / ``mul_nan_first`` — refimpl._jit's NaN-operand-order helpers under the formats' names.

ggml-quants.c's scale searches (``make_qx_quants``, ``make_qkx3_quants`` …) live in ``refimpl.quant.kquant_search``.
"""
from __future__ import annotations

from ..._jit import add_nan_from_first as add_nan_first  # noqa: F401  (the formats' name for it)
from ..._jit import f32
from ..._jit import mul_nan_from_first as mul_nan_first  # noqa: F401
from ..._jit import njit

GROUP_MAX_EPS = f32(1e-15)  # ggml-quants.c: below this block maximum, a block is "all zero"

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
