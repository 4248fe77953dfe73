"""Fast kernels of the legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the same bits as refimpl/quant/formats/legacy.py.

* vec_dot: each block's integer sum — 32 int8 x int8 products, the C's sumi — is one vector operation
  (refimpl.kernels.lanes.dot32_i8 / dot32_nibbles / dot32_q5); the float part is the reference's own term
  functions.  A NaN sum ends the loop early (see "A NaN sum" below).
* quantize_row_*_ref: the truncating casts of a block in one clamped, vectorizable pass, redone with the exact C
  cast only when a value was out of range (_block_codes).
* dequantize_row_q4_0/q4_1/q8_0: on slices with a run-time block length, which LLVM vectorizes.
* intdot: the BLAS integer path (refimpl.kernels.intdot), one group of 32 integers per block.
"""
from __future__ import annotations

import numpy as np

from .._jit import f32, njit
from ..floats import F16_TO_F32, fp32_to_fp16
from ..quant.formats import legacy as ref
from ..quant.formats.common import c_float_to_int32, to_int8
from . import FastKernels
from .intdot import block_intdot
from .lanes import dot32_i8, dot32_nibbles, dot32_q5

QK = ref.QK
U15, U4 = np.uint8(0x0F), np.uint8(4)   # uint8 nibble masks: the lanes stay narrow, so LLVM vectorizes


# ------------------------------------------------------------------------------------------------- quantizers

@njit(inline="always")  # numba-IR inlining: as a call it is not faster than the scalar loop (measured)
def _block_codes(x, o, n, offset, scale, bias, hi, L):
    """``L[j] = (uint8_t) MIN(hi, (int8_t)((x[o+j] - offset)*scale + bias))`` for j < n: the truncating casts of
    the reference quantizers (Q4_0: offset 0 and bias 8.5; ``x - 0.0f == x`` bit for bit, so this is ``x*id + 8.5f``).

    The first loop is the fast path: for values in (-129, 128) the int8 cast is a plain truncation, so it clamps
    into that range (which also maps NaN somewhere harmless) and converts with a 32-bit truncation that LLVM
    vectorizes (``n`` comes from the array sizes at run time; a constant 32 gets fully unrolled, unvectorized).
    If any value was outside the range (NaN, Inf, 1/d overflow) the block is redone with the exact C cast."""
    ok = True
    for j in range(n):
        v = (x[o + j] - offset) * scale + bias
        ok &= (v > f32(-129.0)) & (v < f32(128.0))
        c = v if v > f32(-129.0) else f32(-129.0)
        c = c if c < f32(128.0) else f32(128.0)
        L[j] = np.uint8(min(np.int32(hi), np.int32(c)) & np.int32(0xFF))
    if not ok:
        for j in range(n):
            v = (x[o + j] - offset) * scale + bias
            L[j] = min(hi, to_int8(c_float_to_int32(v))) & 0xFF


@njit(inline="always")
def _amax_max(x, o):
    # the value of largest magnitude (first one wins), as the _0 reference quantizers find it
    amax = f32(0.0)
    mx = f32(0.0)
    for j in range(QK):
        v = x[o + j]
        if amax < abs(v):
            amax = abs(v)
            mx = v
    return mx


@njit(inline="always")
def _min_max(x, o):
    mn = ref.FLT_MAX
    mx = -ref.FLT_MAX
    for j in range(QK):
        v = x[o + j]
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    return mn, mx


@njit
def quantize_row_q4_0_ref(x, y):
    """Equals refimpl.quant.formats.legacy.quantize_row_q4_0_ref."""
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]  # == QK, at run time (see _block_codes)
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        d = _amax_max(x, o) / f32(-8.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        _block_codes(x, o, qk, f32(0.0), iv, f32(8.5), 15, L)
        qs = y[i]["qs"]
        half = qk // 2
        for j in range(half):
            qs[j] = L[j] | np.uint8(L[j + half] << U4)


@njit
def quantize_row_q4_1_ref(x, y):
    """Equals refimpl.quant.formats.legacy.quantize_row_q4_1_ref."""
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        mn, mx = _min_max(x, o)
        d = (mx - mn) / f32(15.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        _block_codes(x, o, qk, mn, iv, f32(0.5), 15, L)
        qs = y[i]["qs"]
        half = qk // 2
        for j in range(half):
            qs[j] = L[j] | np.uint8(L[j + half] << U4)


@njit
def quantize_row_q5_0_ref(x, y):
    """Equals refimpl.quant.formats.legacy.quantize_row_q5_0_ref."""
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        d = _amax_max(x, o) / f32(-16.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        _block_codes(x, o, qk, f32(0.0), iv, f32(16.5), 31, L)
        ref._store_q5_nibbles(y[i]["qs"], y[i]["qh"], L)


@njit
def quantize_row_q5_1_ref(x, y):
    """Equals refimpl.quant.formats.legacy.quantize_row_q5_1_ref.  (hi = 255 makes the MIN a no-op: the C has no
    clamp, and the low 8 bits of the int8 cast equal those of the uint8 cast.)"""
    if y.shape[0] == 0:
        return
    qk = x.size // y.shape[0]
    L = np.empty(QK, dtype=np.uint8)
    for i in range(y.shape[0]):
        o = i * QK
        mn, mx = _min_max(x, o)
        d = (mx - mn) / f32(31.0)
        iv = f32(1.0) / d if d != 0 else f32(0.0)
        y[i]["d"] = fp32_to_fp16(d)
        y[i]["m"] = fp32_to_fp16(mn)
        _block_codes(x, o, qk, mn, iv, f32(0.5), 255, L)
        ref._store_q5_nibbles(y[i]["qs"], y[i]["qh"], L)


# ggml_quantize_chunk of a legacy type: without imatrix the fast quantize_row_*_ref, with one the reference layer's
# weighted search (quantize_row_*_impl), unchanged.

@njit
def quantize_q4_0(x, imatrix, blocks):
    """Equals refimpl.quant.formats.legacy.quantize_q4_0."""
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q4_0_ref(x[r], blocks[r])
    else:
        ref.quantize_q4_0(x, imatrix, blocks)


@njit
def quantize_q4_1(x, imatrix, blocks):
    """Equals refimpl.quant.formats.legacy.quantize_q4_1."""
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q4_1_ref(x[r], blocks[r])
    else:
        ref.quantize_q4_1(x, imatrix, blocks)


@njit
def quantize_q5_0(x, imatrix, blocks):
    """Equals refimpl.quant.formats.legacy.quantize_q5_0."""
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q5_0_ref(x[r], blocks[r])
    else:
        ref.quantize_q5_0(x, imatrix, blocks)


@njit
def quantize_q5_1(x, imatrix, blocks):
    """Equals refimpl.quant.formats.legacy.quantize_q5_1."""
    if imatrix.size == 0:
        for r in range(x.shape[0]):
            quantize_row_q5_1_ref(x[r], blocks[r])
    else:
        ref.quantize_q5_1(x, imatrix, blocks)


# ------------------------------------------------------------------------------------------------ dequantizers
# Slices, a run-time half-block length and uint8 masks let LLVM vectorize (a constant 16 would be unrolled).
# (float)(q - 8) is computed as (float)q - 8.0f: both exact.  Each element is computed on its own.

@njit
def dequantize_row_q4_0(x, y):
    """Equals refimpl.quant.formats.legacy.dequantize_row_q4_0."""
    if x.shape[0] == 0:
        return
    half = y.size // x.shape[0] // 2
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        qs = x[i]["qs"]
        lo = y[2 * half * i:2 * half * i + half]
        hi = y[2 * half * i + half:2 * half * (i + 1)]
        for j in range(half):
            q = qs[j]
            lo[j] = (f32(q & U15) - f32(8.0)) * d
            hi[j] = (f32(q >> U4) - f32(8.0)) * d


@njit
def dequantize_row_q4_1(x, y):
    """Equals refimpl.quant.formats.legacy.dequantize_row_q4_1."""
    if x.shape[0] == 0:
        return
    half = y.size // x.shape[0] // 2
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        m = F16_TO_F32[x[i]["m"]]
        qs = x[i]["qs"]
        lo = y[2 * half * i:2 * half * i + half]
        hi = y[2 * half * i + half:2 * half * (i + 1)]
        for j in range(half):
            q = qs[j]
            lo[j] = f32(q & U15) * d + m
            hi[j] = f32(q >> U4) * d + m


@njit
def dequantize_row_q8_0(x, y):
    """Equals refimpl.quant.formats.legacy.dequantize_row_q8_0.  The block length comes from the array sizes: with
    a constant trip count of 32 LLVM fully unrolls the loop and then cannot vectorize it (3x slower)."""
    if x.shape[0] == 0:
        return
    qk = y.size // x.shape[0]  # == QK, at run time
    for i in range(x.shape[0]):
        d = F16_TO_F32[x[i]["d"]]
        qs = x[i]["qs"]
        yb = y[qk * i:qk * (i + 1)]
        for j in range(qk):
            yb[j] = f32(qs[j]) * d


# ---------------------------------------------------------------------------------------------------- vec_dot
# A NaN sum: the C adds every block's term to sumf with sumf as the first operand, and x86 returns the first
# operand's NaN when both are NaN, so once sumf is NaN every later add returns it unchanged: it is the result.  The
# add that makes sumf NaN has at most one NaN operand (sumf was not NaN), and then the result is that operand's NaN
# (quieted) or the default NaN whatever the operand order.  So these add plainly and return at the first NaN sum:
# the same bits as the reference's add_nan_first at every step, without the NaN test on the loop's add chain.

@njit
def vec_dot_q4_0_q8_0(n, x, y):
    """Equals refimpl.quant.formats.legacy.vec_dot_q4_0_q8_0."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_nibbles(x[ib]["qs"], y[ib]["qs"], 8)
        sumf = sumf + ref._term_q4_0(ref._d(x[ib]), f32(0.0), ref._d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf          # see "A NaN sum" above
    return sumf


@njit
def vec_dot_q4_1_q8_1(n, x, y):
    """Equals refimpl.quant.formats.legacy.vec_dot_q4_1_q8_1."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_nibbles(x[ib]["qs"], y[ib]["qs"], 0)
        sumf = sumf + ref._term_q4_1_q5_1(ref._d(x[ib]), F16_TO_F32[x[ib]["m"]], ref._d(y[ib]),
                                          F16_TO_F32[y[ib]["s"]], sumi)
        if sumf != sumf:
            return sumf
    return sumf


@njit
def vec_dot_q5_0_q8_0(n, x, y):
    """Equals refimpl.quant.formats.legacy.vec_dot_q5_0_q8_0."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_q5(x[ib]["qs"], np.uint32(ref._load_qh(x[ib]["qh"])), y[ib]["qs"], 16)
        sumf = sumf + ref._term_q5_0(ref._d(x[ib]), f32(0.0), ref._d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf
    return sumf


@njit
def vec_dot_q5_1_q8_1(n, x, y):
    """Equals refimpl.quant.formats.legacy.vec_dot_q5_1_q8_1."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_q5(x[ib]["qs"], np.uint32(ref._load_qh(x[ib]["qh"])), y[ib]["qs"], 0)
        sumf = sumf + ref._term_q4_1_q5_1(ref._d(x[ib]), F16_TO_F32[x[ib]["m"]], ref._d(y[ib]),
                                          F16_TO_F32[y[ib]["s"]], sumi)
        if sumf != sumf:
            return sumf
    return sumf


@njit
def vec_dot_q8_0_q8_0(n, x, y):
    """Equals refimpl.quant.formats.legacy.vec_dot_q8_0_q8_0."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_i8(x[ib]["qs"], y[ib]["qs"])
        sumf = sumf + ref._term_q8_0(ref._d(x[ib]), f32(0.0), ref._d(y[ib]), f32(0.0), sumi)
        if sumf != sumf:
            return sumf
    return sumf


# ------------------------------------------------------------------------------ the BLAS path (kernels.intdot)
# One group per block, K = 32 integers in the order of y.qs.  Bound: |weight level| <= 31, |q8| <= 128, so every
# partial sum is at most 32 * 31 * 128 < 2^17, exact in float32.  The folds replay the reference's _step_* functions.

@njit(nogil=True)
def _levels_q4(blocks, offset, out):
    # out[ib, r, j] = the level that meets y.qs[j]: low nibbles for j < 16, high nibbles for j >= 16, minus offset
    for r in range(blocks.shape[0]):
        for ib in range(blocks.shape[1]):
            qs = blocks[r, ib]["qs"]
            for j in range(QK // 2):
                out[ib, r, j] = f32((qs[j] & 0x0F) - offset)
                out[ib, r, j + QK // 2] = f32((qs[j] >> 4) - offset)


@njit(nogil=True)
def _levels_q5(blocks, offset, out):
    # as _levels_q4 plus the fifth bit: bit j of qh for level j
    for r in range(blocks.shape[0]):
        for ib in range(blocks.shape[1]):
            qs = blocks[r, ib]["qs"]
            qh = ref._load_qh(blocks[r, ib]["qh"])
            for j in range(QK // 2):
                out[ib, r, j] = f32(((qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - offset)
                out[ib, r, j + QK // 2] = f32(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset)


def _levels(kernel, offset):
    def get(blocks):
        out = np.empty((blocks.shape[1], blocks.shape[0], QK), np.float32)
        kernel(np.ascontiguousarray(blocks), offset, out)
        return out
    return get


INTDOT_Q4_0 = block_intdot(_levels(_levels_q4, 8), ("d",), ("d",), ref._step_q4_0)
INTDOT_Q4_1 = block_intdot(_levels(_levels_q4, 0), ("d", "m"), ("d", "s"), ref._step_q4_1_q5_1)
INTDOT_Q5_0 = block_intdot(_levels(_levels_q5, 16), ("d",), ("d",), ref._step_q5_0)
INTDOT_Q5_1 = block_intdot(_levels(_levels_q5, 0), ("d", "m"), ("d", "s"), ref._step_q4_1_q5_1)
INTDOT_Q8_0 = block_intdot(lambda b: np.moveaxis(b["qs"], 1, 0), ("d",), ("d",), ref._step_q8_0)


KERNELS = {
    "Q4_0": FastKernels(quantize=quantize_q4_0, quantize_ref=quantize_row_q4_0_ref, from_float=quantize_row_q4_0_ref,
                        dequantize=dequantize_row_q4_0, vec_dot=vec_dot_q4_0_q8_0, intdot=INTDOT_Q4_0),
    "Q4_1": FastKernels(quantize=quantize_q4_1, quantize_ref=quantize_row_q4_1_ref, from_float=quantize_row_q4_1_ref,
                        dequantize=dequantize_row_q4_1, vec_dot=vec_dot_q4_1_q8_1, intdot=INTDOT_Q4_1),
    "Q5_0": FastKernels(quantize=quantize_q5_0, quantize_ref=quantize_row_q5_0_ref, from_float=quantize_row_q5_0_ref,
                        vec_dot=vec_dot_q5_0_q8_0, intdot=INTDOT_Q5_0),
    "Q5_1": FastKernels(quantize=quantize_q5_1, quantize_ref=quantize_row_q5_1_ref, from_float=quantize_row_q5_1_ref,
                        vec_dot=vec_dot_q5_1_q8_1, intdot=INTDOT_Q5_1),
    "Q8_0": FastKernels(dequantize=dequantize_row_q8_0, vec_dot=vec_dot_q8_0_q8_0, intdot=INTDOT_Q8_0),
}
