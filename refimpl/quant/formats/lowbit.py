"""The 1- and 2-bit formats added to ggml in 2026: Q1_0 (signs, 1.125 bpw) and Q2_0 (2-bit codes, 2.25 bpw).

* Q1_0: 128 weights, one bit each (1 = +d, 0 = -d); ``d`` is the mean absolute value (F16).
* Q2_0: 64 weights, 2-bit codes meaning -1, 0, +1, +2 times ``d``, the absolute maximum (F16).  The quantizer
  never produces +2 (``|x| / amax <= 1``), but the decoder accepts it.

ggml's ``quantize_q1_0``/``quantize_q2_0`` have an imatrix path that only walks the rows one at a time and calls
the same reference quantizer: the weights are ignored, and the bytes are identical to the path without them.
"""
from __future__ import annotations

import numpy as np

from ..._jit import add_nan_first, f32, f32_from_bits, f32_to_bits, mul_nan_first, njit, roundf
from ...floats import F16_TO_F32, fp32_to_fp16
from ..registry import QuantFormat
from .common import validate_d_f16
from .legacy import BLOCK_Q8_0  # the activation blocks vec_dot reads: F16 d, int8 qs[32]

QK1_0 = 128
QK2_0 = 64

BLOCK_Q1_0 = np.dtype([("d", "<u2"), ("qs", "u1", (QK1_0 // 8,))])  # block_q1_0 (ggml-common.h), 18 bytes
BLOCK_Q2_0 = np.dtype([("d", "<u2"), ("qs", "u1", (QK2_0 // 4,))])  # block_q2_0 (ggml-common.h), 18 bytes


@njit
def quantize_row_q1_0_ref(x, blocks):
    # mirrors quantize_row_q1_0_ref (ggml-quants.c)
    qk = QK1_0
    for i in range(blocks.shape[0]):
        sum_abs = f32(0.0)
        for j in range(qk):
            sum_abs += abs(x[i * qk + j])
        d = sum_abs / f32(qk)
        blocks[i]["d"] = fp32_to_fp16(d)
        qs = blocks[i]["qs"]
        # bit j%8 of byte j/8 is set for x >= 0 (so -0.0 -> +d; NaN -> -d)
        for b in range(qk // 8):
            q = 0
            for bit in range(8):
                if x[i * qk + b * 8 + bit] >= f32(0.0):
                    q |= 1 << bit
            qs[b] = q


@njit
def quantize_q1_0(x, imatrix, blocks):
    # mirrors quantize_q1_0 (ggml-quants.c): with or without imatrix, quantize_row_q1_0_ref on the rows
    for r in range(x.shape[0]):
        quantize_row_q1_0_ref(x[r], blocks[r])


@njit
def dequantize_row_q1_0(blocks, y):
    # mirrors dequantize_row_q1_0 (ggml-quants.c)
    # y = bit ? d : -d.  C's -d flips the sign bit (also of a NaN), so the select is written as an XOR of d's
    # sign bit with the inverted bit: the same bits, without a branch per element.
    qk = QK1_0
    for i in range(blocks.shape[0]):
        d_bits = f32_to_bits(F16_TO_F32[blocks[i]["d"]])
        qs = blocks[i]["qs"]
        for j in range(qk):
            bit = (np.uint32(qs[j >> 3]) >> np.uint32(j & 7)) & np.uint32(1)
            y[i * qk + j] = f32_from_bits(d_bits ^ ((bit ^ np.uint32(1)) << np.uint32(31)))


@njit
def _c_int_of_rounded(r):
    """``(int) r`` for a float already rounded by roundf, as x86-64 converts it (cvttss2si): values outside the
    int range, and NaN, give INT_MIN.  Happens when 1/amax overflows (subnormal amax): x * Inf."""
    if r >= f32(-2147483648.0) and r < f32(2147483648.0):
        return int(r)
    return -2147483648


@njit
def quantize_row_q2_0_ref(x, blocks):
    # mirrors quantize_row_q2_0_ref (ggml-quants.c)
    qk = QK2_0
    for i in range(blocks.shape[0]):
        amax = f32(0.0)
        for j in range(qk):
            a = abs(x[i * qk + j])
            if a > amax:
                amax = a
        d = amax
        id = f32(1.0) / d if d > f32(0.0) else f32(0.0)
        blocks[i]["d"] = fp32_to_fp16(d)
        qs = blocks[i]["qs"]
        # code = round(x/d) + 1 clamped to 0..3 (roundf: ties away from zero); element j in bits 2*(j%4) of
        # byte j/4
        for b in range(qk // 4):
            byte = 0
            for k in range(4):
                q = _c_int_of_rounded(roundf(x[i * qk + b * 4 + k] * id)) + 1
                if q < 0:
                    q = 0
                if q > 3:
                    q = 3
                byte |= q << (2 * k)
            qs[b] = byte


@njit
def quantize_q2_0(x, imatrix, blocks):
    # mirrors quantize_q2_0 (ggml-quants.c): with or without imatrix, quantize_row_q2_0_ref on the rows
    for r in range(x.shape[0]):
        quantize_row_q2_0_ref(x[r], blocks[r])


@njit
def dequantize_row_q2_0(blocks, y):
    # mirrors dequantize_row_q2_0 (ggml-quants.c): 00 = -1, 01 = 0, 10 = +1, 11 = +2 (times d)
    qk = QK2_0
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        for b in range(qk // 4):
            q = int(qs[b])
            for k in range(4):
                y[i * qk + b * 4 + k] = f32(((q >> (2 * k)) & 3) - 1) * d


# ----------------------------------------------------------------------------- CPU side: from_float, vec_dot
# type_traits_cpu (ggml-cpu.c): from_float is quantize_row_q1_0/q2_0 (ggml-cpu/quants.c), which just call the _ref
# functions; vec_dot runs against Q8_0 activations.  Integer sums are exact; the float steps follow the C.
assert QK1_0 == 4 * BLOCK_Q8_0["qs"].shape[0] and QK2_0 == 2 * BLOCK_Q8_0["qs"].shape[0]

@njit
def vec_dot_q1_0_q8_0(n, x, y):
    # mirrors ggml_vec_dot_q1_0_q8_0_generic (ggml-cpu/quants.c): one Q1_0 block (128) spans four Q8_0 blocks;
    # each gets its own float scale product, summed in float per Q1_0 block, then scaled by the Q1_0 d
    sumf = f32(0.0)
    for i in range(n // QK1_0):
        d0 = F16_TO_F32[x[i]["d"]]
        xq = x[i]["qs"]
        sumi = f32(0.0)
        for k in range(4):
            yb = y[i * 4 + k]
            d1 = F16_TO_F32[yb["d"]]
            yq = yb["qs"]
            # C sums (bit ? qy : -qy) as int (so -(-128) = 128); written as qy * (2*bit - 1), without a branch
            sumi_block = np.int32(0)
            for j in range(QK1_0 // 4):
                v = np.int32(yq[j])
                bit = np.int32((np.int32(xq[k * 4 + (j >> 3)]) >> (j & 7)) & 1)
                sumi_block += v * (2 * bit - 1)
            sumi = add_nan_first(sumi, d1 * f32(sumi_block))
        # NaN payloads when several scales are NaN follow ggml's compiled code: sumi over the new term, d0 over
        # sumi, sumf over the new term (measured on the oracle)
        sumf = add_nan_first(sumf, mul_nan_first(d0, sumi))
    return sumf


@njit
def vec_dot_q2_0_q8_0(n, x, y):
    # mirrors ggml_vec_dot_q2_0_q8_0_generic (ggml-cpu/quants.c): one Q2_0 block (64) spans two Q8_0 blocks
    sumf = f32(0.0)
    for i in range(n // QK2_0):
        d0 = F16_TO_F32[x[i]["d"]]
        xq = x[i]["qs"]
        sumi = f32(0.0)
        for k in range(2):
            yb = y[i * 2 + k]
            d1 = F16_TO_F32[yb["d"]]
            yq = yb["qs"]
            sumi_block = np.int32(0)
            for j in range(QK2_0 // 2):  # element j of this half: byte j/4, bits 2*(j%4)
                code = (np.int32(xq[k * 8 + (j >> 2)]) >> (2 * (j & 3))) & 3
                sumi_block += (code - 1) * np.int32(yq[j])
            sumi = add_nan_first(sumi, d1 * f32(sumi_block))
        # NaN payloads when several scales are NaN follow ggml's compiled code: sumi over the new term, sumi over
        # d0 (unlike Q1_0), sumf over the new term (measured on the oracle)
        sumf = add_nan_first(sumf, mul_nan_first(sumi, d0))
    return sumf


FORMATS = [
    QuantFormat(
        name="Q1_0", type_id=41, block_size=QK1_0, block_dtype=BLOCK_Q1_0, vec_dot_type="Q8_0",
        quantize=quantize_q1_0, quantize_ref=quantize_row_q1_0_ref, dequantize=dequantize_row_q1_0,
        validate=validate_d_f16, from_float=quantize_row_q1_0_ref, vec_dot=vec_dot_q1_0_q8_0,
        doc="128 signs (+-d) with one F16 scale, the mean |x|, 1.125 bits per weight"),
    QuantFormat(
        name="Q2_0", type_id=42, block_size=QK2_0, block_dtype=BLOCK_Q2_0, vec_dot_type="Q8_0",
        quantize=quantize_q2_0, quantize_ref=quantize_row_q2_0_ref, dequantize=dequantize_row_q2_0,
        validate=validate_d_f16, from_float=quantize_row_q2_0_ref, vec_dot=vec_dot_q2_0_q8_0,
        doc="64 two-bit codes (-1, 0, +1, +2) times one F16 scale, the max |x|, 2.25 bits per weight"),
]
