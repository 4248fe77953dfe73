"""Ternary formats for BitNet b1.58 / TriLM weights: TQ1_0 (1.6875 bpw) and TQ2_0 (2.0625 bpw).

Both store 256 weights in {-1, 0, +1} times one F16 scale ``d`` (the block's absolute maximum); they differ only
in packing.  TQ2_0 spends 2 bits per trit.  TQ1_0 packs 5 trits into one byte as a base-3 number scaled to the
byte range (``ceil(n * 256 / 243)``), so that a trit is extracted with a multiply and a shift instead of a
division: multiplying the byte by 3^k (mod 256) rotates trit k to the top, and ``(q * 3) >> 8`` reads it.

ggml has no importance-matrix search for either type: ``quantize_tq1_0``/``quantize_tq2_0`` ignore the imatrix.
"""
from __future__ import annotations

import numpy as np

from ..._jit import add_nan_first, f32, mul_nan_first, njit, roundf
from ...floats import F16_TO_F32, fp32_to_fp16
from ..registry import QuantFormat
from .common import validate_d_f16
from .kquants import BLOCK_Q8_K  # the activation blocks vec_dot reads: float32 d, int8 qs[256], int16 bsums[16]

QK_K = 256

# block_tq1_0 (ggml-common.h): 48 bytes of 5 trits, 4 bytes of 4 trits, F16 scale last = 54 bytes
BLOCK_TQ1_0 = np.dtype([("qs", "u1", ((QK_K - 4 * QK_K // 64) // 5,)), ("qh", "u1", (QK_K // 64,)), ("d", "<u2")])
# block_tq2_0 (ggml-common.h): 64 bytes of 4 two-bit codes, F16 scale last = 66 bytes
BLOCK_TQ2_0 = np.dtype([("qs", "u1", (QK_K // 4,)), ("d", "<u2")])

@njit
def _lroundf_int(v):
    """``(int) lroundf(v)`` as glibc + x86-64 compute it: round half away from zero to a long, then keep the low
    32 bits.  NaN, +-Inf and |v| >= 2^63 give LONG_MIN, whose low 32 bits are 0.

    Matters only when the block scale's reciprocal overflows (a subnormal absolute maximum): then x * id is
    +-Inf, or NaN for x == 0, and ggml stores the trit for 0."""
    if not (abs(v) < f32(9.223372036854775808e18)):
        return 0
    r = np.int64(roundf(v))
    return ((r + 0x80000000) & 0xFFFFFFFF) - 0x80000000


@njit
def _block_scale(x, base):
    """amax = MAX(amax, fabsf(v)) over the 256 values, as quantize_row_tq{1,2}_0_ref compute it.

    ggml's MAX(a, b) is ``a > b ? a : b``: a NaN element replaces amax, and the next element replaces the NaN."""
    amax = f32(0.0)
    for j in range(QK_K):
        v = abs(x[base + j])
        amax = amax if amax > v else v
    return amax


@njit
def quantize_row_tq1_0_ref(x, blocks):
    # mirrors quantize_row_tq1_0_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        base = i * QK_K
        d = _block_scale(x, base)
        id = f32(1.0) / d if d != f32(0.0) else f32(0.0)  # C: `d ? 1.0f/d : 0.0f` (NaN is true)
        blk = blocks[i]
        blk["d"] = fp32_to_fp16(d)
        qs = blk["qs"]
        # bytes 0..31: 5 trits each, trit n of byte m is element m + 32*n (first element = most significant trit)
        for m in range(32):
            q = 0
            for n in range(5):
                xi = _lroundf_int(x[base + m + n * 32] * id) + 1  # -1, 0, 1 -> 0, 1, 2
                q = (q * 3 + xi) & 0xFF  # uint8_t arithmetic
            # ceiling division: q * 256 / 243 rounded up, so that (q * 3^k * 3) >> 8 recovers trit k
            qs[m] = ((q * 256 + (243 - 1)) // 243) & 0xFF
        base += 5 * 32
        # bytes 32..47: 5 trits each over the next 80 elements, in groups of 16
        for m in range(16):
            q = 0
            for n in range(5):
                xi = _lroundf_int(x[base + m + n * 16] * id) + 1
                q = (q * 3 + xi) & 0xFF
            qs[32 + m] = ((q * 256 + (243 - 1)) // 243) & 0xFF
        base += 5 * 16
        # qh: the last 16 elements, 4 trits per byte (element j + 4*m), shifted up one trit so that the same
        # extraction works
        qh = blk["qh"]
        for j in range(4):
            q = 0
            for m in range(4):
                xi = _lroundf_int(x[base + j + m * 4] * id) + 1
                q = (q * 3 + xi) & 0xFF
            q = (q * 3) & 0xFF
            qh[j] = ((q * 256 + (243 - 1)) // 243) & 0xFF


@njit
def quantize_tq1_0(x, imatrix, blocks):
    # mirrors quantize_tq1_0 (ggml-quants.c): the imatrix is unused; the reference quantizer runs on every row
    for r in range(x.shape[0]):
        quantize_row_tq1_0_ref(x[r], blocks[r])


_POW3 = np.array([1, 3, 9, 27, 81, 243], dtype=np.uint32)  # pow3[] of dequantize_row_tq1_0


@njit
def _trit(byte, n):
    """Trit n (0 = most significant) of a TQ1_0 byte as dequantize_row_tq1_0 reads it: the uint8_t product
    byte * 3^n rotates that trit to the top of the byte's range, and (q * 3) >> 8 is its value 0, 1 or 2."""
    q = (byte * _POW3[n]) & np.uint32(0xFF)
    return np.int32((q * np.uint32(3)) >> np.uint32(8))


@njit
def dequantize_row_tq1_0(blocks, y):
    # mirrors dequantize_row_tq1_0 (ggml-quants.c).  C walks trit n outer, byte m inner; here each byte's trits
    # are decoded together (same outputs, same per-element arithmetic), which is what lets LLVM keep up with C.
    # (float)(xi - 1) * d is computed per element, as in C: precomputing -1.0f * d would let LLVM turn it into a
    # negation, which flips the sign of a NaN scale where x86's multiply keeps it.
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        qh = blocks[i]["qh"]
        off = i * QK_K
        # qs[0..31]: trit n of byte m is element m + 32*n
        for m in range(32):
            b = np.uint32(qs[m])
            for n in range(5):
                y[off + n * 32 + m] = f32(_trit(b, n) - np.int32(1)) * d
        off += 5 * 32
        # qs[32..47]: trit n of byte 32+m is element 160 + m + 16*n
        for m in range(16):
            b = np.uint32(qs[32 + m])
            for n in range(5):
                y[off + n * 16 + m] = f32(_trit(b, n) - np.int32(1)) * d
        off += 5 * 16
        # qh[0..3]: trit n of byte j is element 240 + j + 4*n (4 trits used)
        for j in range(4):
            b = np.uint32(qh[j])
            for n in range(4):
                y[off + n * 4 + j] = f32(_trit(b, n) - np.int32(1)) * d


@njit
def quantize_row_tq2_0_ref(x, blocks):
    # mirrors quantize_row_tq2_0_ref (ggml-quants.c)
    for i in range(blocks.shape[0]):
        base = i * QK_K
        d = _block_scale(x, base)
        id = f32(1.0) / d if d != f32(0.0) else f32(0.0)
        blocks[i]["d"] = fp32_to_fp16(d)
        qs = blocks[i]["qs"]
        # byte j + m (j = 0, 32) holds elements m + 32*n of its 128-element half in bits 2n..2n+1
        for j in range(0, QK_K // 4, 32):
            for m in range(32):
                q = 0
                for n in range(4):
                    xi = _lroundf_int(x[base + m + n * 32] * id) + 1  # -1, 0, 1 -> 0, 1, 2
                    q += (xi & 3) << (2 * n)
                qs[j + m] = q & 0xFF
            base += 4 * 32


@njit
def quantize_tq2_0(x, imatrix, blocks):
    # mirrors quantize_tq2_0 (ggml-quants.c): the imatrix is unused; the reference quantizer runs on every row
    for r in range(x.shape[0]):
        quantize_row_tq2_0_ref(x[r], blocks[r])


@njit
def dequantize_row_tq2_0(blocks, y):
    # mirrors dequantize_row_tq2_0 (ggml-quants.c); code 3 (never written by ggml) decodes to 2*d
    for i in range(blocks.shape[0]):
        d = F16_TO_F32[blocks[i]["d"]]
        qs = blocks[i]["qs"]
        off = i * QK_K
        # C walks (half j, shift l, byte m); here each byte's four codes are decoded together (same outputs)
        for j in range(2):  # two halves of 128 elements, 32 bytes each
            for m in range(32):
                b = np.uint32(qs[j * 32 + m])
                for l in range(4):  # bits 2l..2l+1 of byte m are element 32*l + m of the half
                    q = (b >> np.uint32(2 * l)) & np.uint32(3)
                    y[off + j * 128 + l * 32 + m] = f32(np.int32(q) - np.int32(1)) * d


# ----------------------------------------------------------------------------- CPU side: from_float, vec_dot
# type_traits_cpu (ggml-cpu.c): from_float is quantize_row_tq{1,2}_0 (ggml-cpu/quants.c), which just calls the
# _ref function; vec_dot runs against Q8_K activations (only its d and qs are read, not bsums).  The integer sum of
# a block is exact (|sum| <= 256*128), so only the float steps follow the C order.
assert BLOCK_Q8_K["qs"].shape[0] == QK_K

@njit
def vec_dot_tq1_0_q8_K(n, x, y):
    # mirrors ggml_vec_dot_tq1_0_q8_K_generic (ggml-cpu/quants.c); trits in the dequantize order above
    sumf = f32(0.0)
    for i in range(n // QK_K):
        xq = x[i]["qs"]
        xh = x[i]["qh"]
        yq = y[i]["qs"]
        total = 0
        for m in range(32):
            b = np.uint32(xq[m])
            for l in range(5):
                total += (int(_trit(b, l)) - 1) * np.int64(yq[l * 32 + m])
        for m in range(16):
            b = np.uint32(xq[32 + m])
            for l in range(5):
                total += (int(_trit(b, l)) - 1) * np.int64(yq[160 + l * 16 + m])
        for j in range(4):
            b = np.uint32(xh[j])
            for l in range(4):
                total += (int(_trit(b, l)) - 1) * np.int64(yq[240 + l * 4 + j])
        # (float) sum * (GGML_CPU_FP16_TO_FP32(x.d) * y.d).  NaN payloads when several scales are NaN follow
        # ggml's compiled code: x.d over y.d, and the new term over sumf (the last NaN block wins; measured)
        term = f32(total) * mul_nan_first(F16_TO_F32[x[i]["d"]], y[i]["d"])
        sumf = add_nan_first(term, sumf)
    return sumf


@njit
def vec_dot_tq2_0_q8_K(n, x, y):
    # mirrors ggml_vec_dot_tq2_0_q8_K_generic (ggml-cpu/quants.c)
    sumf = f32(0.0)
    for i in range(n // QK_K):
        xq = x[i]["qs"]
        yq = y[i]["qs"]
        total = 0
        for j in range(2):
            for m in range(32):
                b = int(xq[j * 32 + m])
                for l in range(4):
                    total += np.int64(yq[j * 128 + l * 32 + m]) * (((b >> (l * 2)) & 3) - 1)
        # y.d * GGML_CPU_FP16_TO_FP32(x.d); with NaN in both, ggml's code keeps x.d's, and across blocks the first
        # NaN stays (measured on the oracle)
        d = mul_nan_first(F16_TO_F32[x[i]["d"]], y[i]["d"])
        sumf = add_nan_first(sumf, f32(total) * d)
    return sumf


FORMATS = [
    QuantFormat(
        name="TQ1_0", type_id=34, block_size=QK_K, block_dtype=BLOCK_TQ1_0, vec_dot_type="Q8_K",
        quantize=quantize_tq1_0, quantize_ref=quantize_row_tq1_0_ref, dequantize=dequantize_row_tq1_0,
        validate=validate_d_f16, from_float=quantize_row_tq1_0_ref, vec_dot=vec_dot_tq1_0_q8_K,
        doc="256 ternary weights, 5 trits per byte in base 3, one F16 scale, 1.6875 bits per weight"),
    QuantFormat(
        name="TQ2_0", type_id=35, block_size=QK_K, block_dtype=BLOCK_TQ2_0, vec_dot_type="Q8_K",
        quantize=quantize_tq2_0, quantize_ref=quantize_row_tq2_0_ref, dequantize=dequantize_row_tq2_0,
        validate=validate_d_f16, from_float=quantize_row_tq2_0_ref, vec_dot=vec_dot_tq2_0_q8_K,
        doc="256 ternary weights as 2-bit codes, one F16 scale, 2.0625 bits per weight"),
]
