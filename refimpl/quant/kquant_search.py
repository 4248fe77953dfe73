"""The scale-search helpers of ggml-quants.c that the K-quants (and several legacy / IQ formats) call.

One ``njit`` function per C function, mirroring it statement by statement.  Every float intermediate is float32
because the C uses ``float`` throughout these helpers (none of them uses ``double``).  Conventions:

* C's ``NULL`` weight pointer is an array of size 0.
* ``L`` / ``Laux`` are scratch arrays owned by the caller (any integer dtype wide enough for the stored values;
  the K-quant kernels use the C types, int8 / uint8).  Where the C stores an unclamped ``int`` into a
  ``uint8_t`` (``make_qp_quants``) the low byte is kept explicitly, so the function also works with wider
  scratch arrays and in interpreter mode.
* Functions that return a float and write ``*the_min`` in C return the tuple ``(scale, the_min)``.
* Every product of a float with an ``int`` is written ``f32(l)`` because C converts the int to float, whereas
  numba would promote float32 * int64 to float64.
"""
from __future__ import annotations

import numpy as np

from .._jit import f32, nearest_int, njit




i64 = np.int64  # widen a loaded byte (numba keeps int(uint8) as uint8)

__all__ = [
    "GROUP_MAX_EPS", "nearest_int", "njit", "make_qx_quants", "make_q3_quants", "make_qkx1_quants",
    "make_qkx2_quants", "make_qkx3_quants", "make_qp_quants", "get_scale_min_k4", "c_int8", "c_uint8",
    "nearest_int_clamped", "nearest_int_min",
]

GROUP_MAX_EPS = f32(1e-15)  # ggml-quants.c: a group whose largest |x| is below this is "all zero"


@njit
def c_int8(v):
    """C conversion of an ``int`` to ``int8_t``: keep the low 8 bits, two's complement."""
    return ((v + 128) & 0xFF) - 128


@njit
def c_uint8(v):
    """C conversion of an ``int`` to ``uint8_t``: keep the low 8 bits."""
    return v & 0xFF


@njit
def nearest_int_clamped(v, lo, hi):
    """``MAX(lo, MIN(hi, nearest_int(v)))`` returned as an (exact) float32, computed without branches.

    Why float: integer min/max become cmov, which LLVM's x86 cmov-conversion pass turns into branches inside these
    loops, and the branches mispredict whenever levels hit the clamp (often, for 2- and 3-bit levels): up to 1.6x
    slower.  Float min/max compile to minss/maxss.  Exact because |nearest_int(v)| <= 2^22 < 2^24.  The caller
    converts back with ``int(fl)`` where it needs the integer."""
    fl = f32(nearest_int(v))
    fhi = f32(hi)
    flo = f32(lo)
    fl = fl if fl < fhi else fhi
    return fl if fl > flo else flo


@njit
def nearest_int_min(v, hi):
    """``MIN(hi, nearest_int(v))`` as an exact float32, without branches (see nearest_int_clamped)."""
    fl = f32(nearest_int(v))
    fhi = f32(hi)
    return fl if fl < fhi else fhi


@njit
def _sum1(n, p):
    # sum p[0] + p[1] + ... in index order, from 0 (a C accumulation loop)
    t = f32(0.0)
    for i in range(n):
        t += p[i]
    return t


@njit
def _sum2(n, p, q):
    s = f32(0.0)
    t = f32(0.0)
    for i in range(n):
        s += p[i]
        t += q[i]
    return s, t


@njit
def _sum3(n, p, q, r):
    s = f32(0.0)
    t = f32(0.0)
    u = f32(0.0)
    for i in range(n):
        s += p[i]
        t += q[i]
        u += r[i]
    return s, t, u


@njit
def _qx_weight(xi, rmse_type):
    # the weight of make_qx_quants when qw is NULL: rmse_type 1: x^2, 2: 1, 3: |x|, otherwise sqrt|x|
    if rmse_type == 1:
        return xi * xi
    if rmse_type == 2:
        return f32(1.0)
    if rmse_type == 3:
        return abs(xi)
    return f32(np.sqrt(abs(xi)))


@njit
def make_qx_quants(n, nmax, x, L, rmse_type, qw):
    """mirrors make_qx_quants (ggml-quants.c): symmetric quantization of ``x[:n]`` to ``L[i]`` in [0, 2*nmax-1]
    (the signed level plus ``nmax``).  Starts from ``-nmax/max`` (``max`` = the element of largest magnitude,
    so that element maps to ``-nmax``), then tries 18 more inverse scales ``-(nmax + 0.1*is)/max`` and keeps
    the one with the best weighted least-squares fit ``sumlx^2/suml2``.  Returns the scale."""
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
            L[i] = nmax + int(nearest_int_clamped(iscale * x[i], -nmax, nmax - 1))
        return f32(1.0) / iscale
    return_early = False
    if rmse_type < 0:
        rmse_type = -rmse_type
        return_early = True
    # products first (a loop LLVM vectorizes), then the float sums in C order: same bits, ~1.4x faster
    scratch = np.empty(2 * n, np.float32)  # one allocation per call
    p1 = scratch[:n]
    p2 = scratch[n:]
    for i in range(n):
        fl = nearest_int_clamped(iscale * x[i], -nmax, nmax - 1)
        L[i] = int(fl) + nmax
        w = qw[i] if has_qw else _qx_weight(x[i], rmse_type)
        p1[i] = w * x[i] * fl
        p2[i] = w * fl * fl
    sumlx, suml2 = _sum2(n, p1, p2)
    scale = sumlx / suml2 if suml2 != f32(0.0) else f32(0.0)
    if return_early:
        return f32(0.5) * (scale + f32(1.0) / iscale) if suml2 > f32(0.0) else f32(1.0) / iscale
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(step)) / mx
        for i in range(n):
            fl = nearest_int_clamped(iscale * x[i], -nmax, nmax - 1)
            w = qw[i] if has_qw else _qx_weight(x[i], rmse_type)
            p1[i] = w * x[i] * fl
            p2[i] = w * fl * fl
        sumlx, suml2 = _sum2(n, p1, p2)
        if suml2 > f32(0.0) and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + int(nearest_int_clamped(iscale * x[i], -nmax, nmax - 1))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit
def make_q3_quants(n, nmax, x, L, do_rmse):
    """mirrors make_q3_quants (ggml-quants.c): symmetric quantization to [-nmax, nmax-1] (stored +nmax), then,
    if ``do_rmse``, up to 5 passes of coordinate descent on each level with weight x^2 (a level changes only if
    the weighted fit ``sumlx^2/suml2`` improves).  Returns the scale."""
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
    if do_rmse:
        sumlx = f32(0.0)
        suml2 = f32(0.0)
        for i in range(n):
            fl = nearest_int_clamped(iscale * x[i], -nmax, nmax - 1)
            l = int(fl)
            L[i] = l
            w = x[i] * x[i]
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        for _itry in range(5):
            n_changed = 0
            for i in range(n):
                w = x[i] * x[i]
                li = f32(L[i])
                slx = sumlx - w * x[i] * li
                if slx > f32(0.0):
                    sl2 = suml2 - w * li * li
                    fnl = nearest_int_clamped(x[i] * sl2 / slx, -nmax, nmax - 1)
                    new_l = int(fnl)
                    if new_l != L[i]:
                        slx += w * x[i] * fnl
                        sl2 += w * fnl * fnl
                        if sl2 > f32(0.0) and slx * slx * suml2 > sumlx * sumlx * sl2:
                            L[i] = new_l
                            sumlx = slx
                            suml2 = sl2
                            n_changed += 1
            if n_changed == 0:
                break
        for i in range(n):
            L[i] += nmax
        return sumlx / suml2 if suml2 > f32(0.0) else f32(0.0)
    for i in range(n):
        fl = nearest_int_clamped(iscale * x[i], -nmax, nmax - 1)
        l = int(fl)
        L[i] = l + nmax
    return f32(1.0) / iscale


@njit
def make_qkx1_quants(n, nmax, x, L, ntry, alpha):
    """mirrors make_qkx1_quants (ggml-quants.c; no longer called by ggml, kept for completeness): asymmetric
    ``x ~ scale*L + min`` by alternating least squares on the scale and a damped update of the min.
    ``L`` must hold the caller's previous contents (C reads them to detect "no change").
    Returns ``(scale, the_min)``."""
    mn = x[0]
    mx = x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
    if mx == mn:
        for i in range(n):
            L[i] = 0
        return f32(0.0), f32(0.0)
    if mn > f32(0.0):
        mn = f32(0.0)
    iscale = f32(nmax) / (mx - mn)
    scale = f32(1.0) / iscale
    for _itry in range(ntry):
        sumlx = f32(0.0)
        suml2 = 0  # an int in C
        did_change = False
        for i in range(n):
            fl = nearest_int_clamped(iscale * (x[i] - mn), 0, nmax)
            l = int(fl)
            if l != L[i]:
                L[i] = l
                did_change = True
            sumlx += (x[i] - mn) * fl
            suml2 += l * l
        scale = sumlx / f32(suml2)
        total = f32(0.0)
        for i in range(n):
            total += x[i] - scale * f32(L[i])
        mn = alpha * mn + (f32(1.0) - alpha) * total / f32(n)
        if mn > f32(0.0):
            mn = f32(0.0)
        iscale = f32(1.0) / scale
        if not did_change:
            break
    return scale, -mn


@njit
def make_qkx2_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """mirrors make_qkx2_quants (ggml-quants.c): asymmetric quantization ``x ~ scale*L + min`` with ``L`` in
    [0, nmax] and ``min <= 0``.  Starts from the min/max fit, then for ``is`` in 0..nstep tries the inverse scale
    ``(rmin + rdelta*is + nmax)/(max - min)`` and re-solves scale and min by weighted least squares, keeping the
    lowest weighted error (absolute if ``use_mad``, else squared).  ``weights`` is required (non-NULL in C).
    Returns ``(scale, the_min)`` with ``the_min = -min >= 0``."""
    mn = x[0]
    mx = x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        w = weights[i]
        sum_w += w
        sum_x += w * x[i]
    if mn > f32(0.0):
        mn = f32(0.0)
    if mx == mn:
        for i in range(n):
            L[i] = 0
        return f32(0.0), -mn
    iscale = f32(nmax) / (mx - mn)
    scale = f32(1.0) / iscale
    best_error = f32(0.0)
    for i in range(n):
        fl = nearest_int_clamped(iscale * (x[i] - mn), 0, nmax)
        l = int(fl)
        L[i] = l
        diff = scale * fl + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best_error += weights[i] * diff
    if nstep < 1:
        return scale, -mn
    # products first (a loop LLVM vectorizes), then the float sums in C order: same bits, faster
    scratch = np.empty(3 * n, np.float32)  # one allocation per call
    p1 = scratch[:n]
    p2 = scratch[n:2 * n]
    p3 = scratch[2 * n:]
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * f32(step) + f32(nmax)) / (mx - mn)
        for i in range(n):
            fl = nearest_int_clamped(iscale * (x[i] - mn), 0, nmax)
            Laux[i] = int(fl)
            w = weights[i]
            p1[i] = w * fl
            p2[i] = w * fl * fl
            p3[i] = w * fl * x[i]
        sum_l, sum_l2, sum_xl = _sum3(n, p1, p2, p3)
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > f32(0.0):
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > f32(0.0):
                this_min = f32(0.0)
                this_scale = sum_xl / sum_l2
            for i in range(n):
                diff = this_scale * f32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                p1[i] = weights[i] * diff
            cur_error = _sum1(n, p1)
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return scale, -mn


@njit
def make_qkx3_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """mirrors make_qkx3_quants (ggml-quants.c): make_qkx2_quants with optional weights (size 0 = NULL: weight
    x^2) and an early exit on ``max <= min`` instead of ``max == min``.  Returns ``(scale, the_min)``."""
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
    if mn > f32(0.0):
        mn = f32(0.0)
    if mx <= mn:
        for i in range(n):
            L[i] = 0
        return f32(0.0), -mn
    iscale = f32(nmax) / (mx - mn)
    scale = f32(1.0) / iscale
    best_mad = f32(0.0)
    for i in range(n):
        fl = nearest_int_clamped(iscale * (x[i] - mn), 0, nmax)
        l = int(fl)
        L[i] = l
        diff = scale * fl + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        w = weights[i] if has_w else x[i] * x[i]
        best_mad += w * diff
    if nstep < 1:
        return scale, -mn
    # products first (a loop LLVM vectorizes), then the float sums in C order: same bits, faster
    scratch = np.empty(3 * n, np.float32)  # one allocation per call
    p1 = scratch[:n]
    p2 = scratch[n:2 * n]
    p3 = scratch[2 * n:]
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * f32(step) + f32(nmax)) / (mx - mn)
        for i in range(n):
            fl = nearest_int_clamped(iscale * (x[i] - mn), 0, nmax)
            Laux[i] = int(fl)
            w = weights[i] if has_w else x[i] * x[i]
            p1[i] = w * fl
            p2[i] = w * fl * fl
            p3[i] = w * fl * x[i]
        sum_l, sum_l2, sum_xl = _sum3(n, p1, p2, p3)
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > f32(0.0):
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > f32(0.0):
                this_min = f32(0.0)
                this_scale = sum_xl / sum_l2
            for i in range(n):
                diff = this_scale * f32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                w = weights[i] if has_w else x[i] * x[i]
                p1[i] = w * diff
            mad = _sum1(n, p1)
            if mad < best_mad:
                for i in range(n):
                    L[i] = Laux[i]
                best_mad = mad
                scale = this_scale
                mn = this_min
    return scale, -mn


@njit
def make_qp_quants(n, nmax, x, L, quant_weights):
    """mirrors make_qp_quants (ggml-quants.c): quantization of non-negative ``x`` (scales or mins of
    sub-blocks) to ``L`` in [0, nmax] with no offset, weighted by ``quant_weights`` (required).  Picks the best of
    9 inverse scales ``(nmax + 0.1*is)/max`` by weighted MSE, then up to 5 passes of coordinate descent on the
    levels.  ``L`` is ``uint8_t`` in C and the first pass stores unclamped levels, so the low byte is kept.
    Returns the scale ``sumlx/suml2``."""
    mx = f32(0.0)
    for i in range(n):
        mx = mx if mx > x[i] else x[i]  # MAX(max, x[i]), including its NaN behaviour
    if mx < GROUP_MAX_EPS:  # all zero
        for i in range(n):
            L[i] = 0
        return f32(0.0)
    iscale = f32(nmax) / mx
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = f32(1.0) / iscale
    best_mse = f32(0.0)
    for i in range(n):
        diff = x[i] - scale * f32(L[i])
        w = quant_weights[i]
        best_mse += w * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (f32(0.1) * f32(step) + f32(nmax)) / mx
        scale_is = f32(1.0) / iscale_is
        mse = f32(0.0)
        for i in range(n):
            fl = nearest_int_min(iscale_is * x[i], nmax)
            diff = x[i] - scale_is * fl
            w = quant_weights[i]
            mse += w * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = f32(0.0)
    suml2 = f32(0.0)
    for i in range(n):
        fl = nearest_int_min(iscale * x[i], nmax)
        l = int(fl)
        L[i] = l & 0xFF  # stored into uint8_t L[i]; the sums below use the int l
        w = quant_weights[i]
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for _itry in range(5):
        n_changed = 0
        for i in range(n):
            w = quant_weights[i]
            li = f32(L[i])
            slx = sumlx - w * x[i] * li
            sl2 = suml2 - w * li * li
            if slx > f32(0.0) and sl2 > f32(0.0):
                fnl = nearest_int_min(x[i] * sl2 / slx, nmax)
                new_l = int(fnl)
                if new_l != L[i]:
                    slx += w * x[i] * fnl
                    sl2 += w * fnl * fnl
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > f32(0.0) else f32(0.0)


@njit
def get_scale_min_k4(j, q):
    """mirrors get_scale_min_k4 (ggml-quants.c): the 6-bit scale and 6-bit min of sub-block ``j`` (0..7) from the
    12 packed bytes ``q`` of Q4_K / Q5_K.  Bytes 0-3: scales 0-3 (low 6 bits) + high 2 bits of scales 4-7;
    bytes 4-7: mins 0-3 + high 2 bits of mins 4-7; bytes 8-11: low nibble scale 4-7, high nibble min 4-7.
    Returns ``(scale, min)``."""
    if j < 4:
        d = i64(q[j]) & 63
        m = i64(q[j + 4]) & 63
    else:
        d = (i64(q[j + 4]) & 0xF) | ((i64(q[j - 4]) >> 6) << 4)
        m = (i64(q[j + 4]) >> 4) | ((i64(q[j]) >> 6) << 4)
    return d, m
