"""Helpers shared by several block formats: C float->int casts and ggml-quants.c's scale searches.

Only helpers used by more than one format family live here (this module defines no ``FORMATS``).

* ``c_float_to_int32`` — what ``(int)f`` / ``(int8_t)f`` / ``(uint8_t)f`` compile to on x86-64 (``cvttss2si``),
  including the out-of-range and NaN cases that C leaves undefined but ggml's quantizers hit on degenerate input
  (e.g. ``id = 1/d`` overflowing to Inf for subnormal blocks).
* ``make_qx_quants`` — symmetric scale search (Q4_0 / Q5_0 with imatrix; Q3_K, Q6_K).
* ``make_qkx3_quants`` — scale + min search (Q4_1 / Q5_1 with imatrix; Q2_K, Q4_K, Q5_K with imatrix).

Every float intermediate is float32 because the C uses ``float`` throughout these functions.
"""
from __future__ import annotations

import numpy as np

from ..._jit import f32, f32_from_bits, f32_to_bits, nearest_int
from ..._jit import njit as _njit


def njit(fn=None, **kwargs):
    """``refimpl._jit.njit`` with numba's "numpy" error model, for every kernel of these formats: a float division
    by zero gives Inf/NaN as in C instead of raising ZeroDivisionError (numba's default "python" model).  ggml's
    quantizers divide by zero on degenerate input, e.g. ``iscale = nmax/(max - min)`` then ``1/iscale`` when a
    block holds an Inf.  Usable bare (``@njit``) or with options (``@njit(inline="always")``)."""
    kwargs.setdefault("error_model", "numpy")
    if fn is None:
        return _njit(**kwargs)
    return _njit(**kwargs)(fn)

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
def mul_nan_first(a, b):
    """float32 ``a * b`` where a NaN ``a`` wins over a NaN ``b``: x86 SSE returns the first (destination) operand,
    quieted, when both are NaN, and which operand gcc made the destination is read off the oracle's machine code
    (numba/LLVM does not promise to keep the source order of a commutative operation)."""
    if a != a:
        return f32_from_bits(f32_to_bits(a) | np.uint32(0x00400000))
    return a * b


@njit
def add_nan_first(a, b):
    """float32 ``a + b`` where a NaN ``a`` wins over a NaN ``b`` (see ``mul_nan_first``)."""
    if a != a:
        return f32_from_bits(f32_to_bits(a) | np.uint32(0x00400000))
    return a + b


@njit
def to_int8(v):
    """C conversion of an int to ``int8_t`` (keep the low 8 bits, two's complement)."""
    return ((v + 128) & 0xFF) - 128


@njit
def make_qx_quants(n, nmax, x, L, rmse_type, qw):
    """mirrors make_qx_quants (ggml-quants.c): symmetric quantization of ``x[:n]`` to ``L`` in [0, 2*nmax-1]
    (stored offset by ``nmax``), trying 18 scales around ``-nmax/max`` and keeping the one with the best weighted
    least-squares fit.  ``qw`` of size 0 stands for C's NULL (weights from ``rmse_type``).  Returns the scale."""
    has_qw = qw.size > 0
    mx = f32(0.0)
    amax = f32(0.0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < GROUP_MAX_EPS:  # all zero
        for i in range(n):
            L[i] = 0
        return f32(0.0)
    iscale = f32(-nmax) / mx
    if rmse_type == 0:
        for i in range(n):
            l = nearest_int(iscale * x[i])
            L[i] = nmax + max(-nmax, min(nmax - 1, l))
        return f32(1.0) / iscale
    return_early = False
    if rmse_type < 0:
        rmse_type = -rmse_type
        return_early = True
    sumlx = f32(0.0)
    suml2 = f32(0.0)
    for i in range(n):
        l = nearest_int(iscale * x[i])
        l = max(-nmax, min(nmax - 1, l))
        L[i] = l + nmax
        w = _qx_weight(x[i], i, rmse_type, qw, has_qw)
        fl = f32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    scale = sumlx / suml2 if suml2 != 0 else f32(0.0)
    if return_early:
        return f32(0.5) * (scale + f32(1.0) / iscale) if suml2 > 0 else f32(1.0) / iscale
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(step)) / mx
        sumlx = f32(0.0)
        suml2 = f32(0.0)
        for i in range(n):
            l = nearest_int(iscale * x[i])
            l = max(-nmax, min(nmax - 1, l))
            w = _qx_weight(x[i], i, rmse_type, qw, has_qw)
            fl = f32(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                l = nearest_int(iscale * x[i])
                L[i] = nmax + max(-nmax, min(nmax - 1, l))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit
def _qx_weight(xi, i, rmse_type, qw, has_qw):
    # the weight expression of make_qx_quants: qw ? qw[i] : rmse_type 1: x^2, 2: 1, 3: |x|, else sqrt|x|
    if has_qw:
        return qw[i]
    if rmse_type == 1:
        return xi * xi
    if rmse_type == 2:
        return f32(1.0)
    if rmse_type == 3:
        return abs(xi)
    return f32(np.sqrt(abs(xi)))


@njit
def make_qkx3_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """mirrors make_qkx3_quants (ggml-quants.c): asymmetric quantization ``x ~ scale*L - the_min`` with ``L`` in
    [0, nmax]; after the plain min/max fit, tries ``nstep+1`` scales and re-solves scale and min by weighted least
    squares, keeping the lowest weighted error (squared, or absolute if ``use_mad``).  ``weights`` of size 0 stands
    for C's NULL (weight x^2).  Returns ``(scale, the_min)`` where C returns scale and writes ``*the_min``."""
    has_w = weights.size > 0
    mn = x[0]
    mx = x[0]
    sum_w = weights[0] if has_w else x[0] * x[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        w = weights[i] if has_w else x[i] * x[i]
        sum_w += w
        sum_x += w * x[i]
    if mn > 0:
        mn = f32(0.0)
    if mx <= mn:
        for i in range(n):
            L[i] = 0
        return f32(0.0), -mn
    iscale = f32(nmax) / (mx - mn)
    scale = f32(1.0) / iscale
    best_mad = f32(0.0)
    for i in range(n):
        l = nearest_int(iscale * (x[i] - mn))
        L[i] = max(0, min(nmax, l))
        diff = scale * f32(L[i]) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        w = weights[i] if has_w else x[i] * x[i]
        best_mad += w * diff
    if nstep < 1:
        return scale, -mn
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * f32(step) + f32(nmax)) / (mx - mn)
        sum_l = f32(0.0)
        sum_l2 = f32(0.0)
        sum_xl = f32(0.0)
        for i in range(n):
            l = nearest_int(iscale * (x[i] - mn))
            l = max(0, min(nmax, l))
            Laux[i] = l
            w = weights[i] if has_w else x[i] * x[i]
            fl = f32(l)
            sum_l += w * fl
            sum_l2 += w * fl * fl
            sum_xl += w * fl * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = f32(0.0)
                this_scale = sum_xl / sum_l2
            mad = f32(0.0)
            for i in range(n):
                diff = this_scale * f32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                w = weights[i] if has_w else x[i] * x[i]
                mad += w * diff
            if mad < best_mad:
                for i in range(n):
                    L[i] = Laux[i]
                best_mad = mad
                scale = this_scale
                mn = this_min
    return scale, -mn
