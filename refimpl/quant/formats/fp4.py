"""4-bit floating-point block formats: MXFP4 (OCP microscaling) and NVFP4.

Both store E2M1 values (1 sign, 2 exponent, 1 mantissa bit) as 4-bit codes.  ggml keeps the E2M1 values
*doubled* as small integers (``kvalues_mxfp4``: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives) so that every value
is an integer, and halves the block scale instead:

* MXFP4: 32 elements share one E8M0 scale (a bare power-of-two exponent, bias 127); ``y = kvalue * 2^(e-128)``.
* NVFP4: 64-element blocks made of four 16-element sub-blocks, each with its own unsigned UE4M3 scale
  (4 exponent bits, bias 7, 3 mantissa bits); ``y = kvalue * ue4m3 / 2``.

ggml has no importance-matrix search for either: ``quantize_mxfp4``/``quantize_nvfp4`` ignore the imatrix and
run the reference quantizer over all rows at once (blocks are independent, so row by row gives the same bytes).
"""
from __future__ import annotations

import math

import numpy as np

from ..._jit import add_nan_first, f32, f32_from_bits, f32_to_bits, njit
from ...floats import F16_TO_F32
from ..registry import QuantFormat
from .legacy import BLOCK_Q8_0  # the activation blocks vec_dot reads: F16 d, int8 qs[32]

QK_MXFP4 = 32
QK_NVFP4 = 64
QK_NVFP4_SUB = 16  # elements per UE4M3-scaled sub-block

# ggml-common.h kvalues_fp4 (alias kvalues_mxfp4): E2M1 values times two, indexed by the 4-bit code
# (bit 3 = sign).  Code 8 is "-0" and dequantizes to 0.
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)

BLOCK_MXFP4 = np.dtype([("e", "u1"), ("qs", "u1", (QK_MXFP4 // 2,))])                  # block_mxfp4, 17 bytes
BLOCK_NVFP4 = np.dtype([("d", "u1", (QK_NVFP4 // QK_NVFP4_SUB,)), ("qs", "u1", (QK_NVFP4 // 2,))])  # 36 bytes


# ---------------------------------------------------------------------------------------------------------------
# Scale conversions (ggml-impl.h)

@njit
def e8m0_to_fp32(x):
    """ggml_e8m0_to_fp32 (ggml-impl.h): 2^(x-127) built from bits; x == 0 gives the subnormal 2^-127.

    0xFF is *not* special-cased (ggml's NaN branch is commented out): it gives +Inf."""
    x = np.uint32(x)
    if x == 0:
        return f32_from_bits(np.uint32(0x00400000))
    return f32_from_bits(x << np.uint32(23))


@njit
def e8m0_to_fp32_half(x):
    """ggml_e8m0_to_fp32_half (ggml-impl.h): 2^(x-128), i.e. half the E8M0 scale, because kvalues are doubled.

    x < 2 gives the subnormals 2^-128 and 2^-127 (bit patterns 0x00200000 << x); 0xFF gives 2^126 (no NaN)."""
    x = np.uint32(x)
    if x < 2:
        return f32_from_bits(np.uint32(0x00200000) << x)
    return f32_from_bits((x - np.uint32(1)) << np.uint32(23))


@njit
def ue4m3_to_fp32(x):
    """ggml_ue4m3_to_fp32 (ggml-impl.h): unsigned E4M3 (bias 7) times 0.5, to match the doubled kvalues.

    0x00 and 0x7F (the E4M3 NaN without its sign bit) both give 0; bit 7 is ignored (``(x >> 3) & 0xF``), so
    0x80..0xFF decode like 0x00..0x7F except that 0xFF is *not* special-cased (it gives 240, not 0)."""
    x = int(x)
    if x == 0 or x == 0x7F:
        return f32(0.0)
    exp = (x >> 3) & 0xF
    man = x & 0x7
    if exp == 0:
        raw = f32(man) * f32(2.0 ** -9)                       # ldexpf(man, -9): exact
    else:
        # ldexpf(1 + man/8, exp - 7): 1 + man/8 is exact, the power-of-two scaling is exact for exp in 1..15
        raw = (f32(1.0) + f32(man) / f32(8.0)) * f32_from_bits(np.uint32(exp - 7 + 127) << np.uint32(23))
    return f32(raw * f32(0.5))


@njit
def fp32_to_ue4m3(x):
    """ggml_fp32_to_ue4m3 (ggml-impl.h): positive float -> UE4M3 code (not times 0.5).

    Non-positive and NaN give 0; above 448 clamps to 448 (0x7E); normal results round the mantissa by adding
    the first dropped bit (ties away from zero, not to even); subnormal results round ``x*512 + 0.5`` down."""
    x = f32(x)
    if not (x > f32(0.0)):
        return 0
    if x > f32(448.0):
        x = f32(448.0)
    bits = f32_to_bits(x)
    # np.int64, not int(): numba keeps int(uint) unsigned, and signed|unsigned would promote to float64
    fp32_exp = np.int64((bits >> np.uint32(23)) & np.uint32(0xFF)) - 127
    fp32_man = np.int64((bits >> np.uint32(20)) & np.uint32(0x7))
    ue4m3_exp = fp32_exp + 7
    if ue4m3_exp <= 0:
        man = int(x * f32(512.0) + f32(0.5))  # (int) truncates a positive float
        if man > 7:
            man = 7
        if man < 1:
            return 0
        return man
    if ue4m3_exp >= 15:
        return 0x7E
    round_bit = np.int64((bits >> np.uint32(19)) & np.uint32(1))
    ue4m3_man = fp32_man + round_bit
    if ue4m3_man > 7:
        ue4m3_man = 0
        ue4m3_exp += 1
        if ue4m3_exp >= 15:
            return 0x7E
    return (ue4m3_exp << 3) | ue4m3_man




@njit
def best_index_mxfp4(x, e):
    """best_index_mxfp4 (ggml-quants.c): the code whose doubled value times ``e`` is nearest to ``x``, by a scan of
    all 16 codes with a strict ``<`` (the first minimum wins: 0 beats "-0", a tie goes to the lower code)."""
    best_index = 0
    best_err = abs(f32(KVALUES_MXFP4[0]) * e - x)
    for i in range(1, 16):
        err = abs(f32(KVALUES_MXFP4[i]) * e - x)
        if err < best_err:
            best_index = i
            best_err = err
    return best_index


@njit
def _mxfp4_exponent(amax):
    """``(uint8_t)(floorf(log2f(amax)) - 2 + 127)`` of quantize_row_mxfp4_ref.

    The "-2" makes the largest kvalue (12 = 2 * 6) cover amax.  The float->uint8 cast is done by x86 through a
    32-bit int and keeps the low byte, so tiny (subnormal) amax wrap around to large exponents (e.g. -4 -> 252);
    we reproduce that.  log2f is evaluated in double and rounded to float: only its floor matters."""
    lg = f32(math.log2(float(amax)))
    v = f32(f32(math.floor(lg)) - f32(2.0)) + f32(127.0)
    if not (abs(v) < f32(2147483648.0)):
        return 0  # amax = +Inf: cvttss2si gives 0x80000000, whose low byte is 0
    return int(v) & 0xFF


# ---------------------------------------------------------------------------------------------------------------
# MXFP4

@njit
def quantize_row_mxfp4_ref(x, blocks):
    # mirrors quantize_row_mxfp4_ref (ggml-quants.c)
    qk = QK_MXFP4
    for i in range(blocks.shape[0]):
        amax = f32(0.0)
        for j in range(qk):
            v = abs(x[i * qk + j])
            if amax < v:
                amax = v
        e = _mxfp4_exponent(amax) if amax > f32(0.0) else 0
        d = e8m0_to_fp32_half(e)
        blocks[i]["e"] = e
        qs = blocks[i]["qs"]
        # element j goes to the low nibble of byte j, element j + 16 to its high nibble
        for j in range(qk // 2):
            x0 = best_index_mxfp4(x[i * qk + j], d)
            x1 = best_index_mxfp4(x[i * qk + qk // 2 + j], d)
            qs[j] = x0 | (x1 << 4)


@njit
def quantize_mxfp4(x, imatrix, blocks):
    # mirrors quantize_mxfp4 (ggml-quants.c): the imatrix is unused; the reference quantizer runs on every row
    for r in range(x.shape[0]):
        quantize_row_mxfp4_ref(x[r], blocks[r])


@njit
def dequantize_row_mxfp4(blocks, y):
    # mirrors dequantize_row_mxfp4 (ggml-quants.c): low nibbles are elements 0..15, high nibbles 16..31
    qk = QK_MXFP4
    for i in range(blocks.shape[0]):
        d = e8m0_to_fp32_half(blocks[i]["e"])
        qs = blocks[i]["qs"]
        for j in range(qk // 2):
            q = int(qs[j])
            y[i * qk + j] = f32(KVALUES_MXFP4[q & 0x0F]) * d
            y[i * qk + j + qk // 2] = f32(KVALUES_MXFP4[q >> 4]) * d


@njit
def validate_mxfp4(blocks):
    # mirrors VALIDATE_ROW_DATA_E_E8M0_IMPL / validate_e_e8m0 (ggml-quants.c): only e == 0xFF is rejected
    for i in range(blocks.shape[0]):
        if blocks[i]["e"] == 0xFF:
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# NVFP4

@njit
def quantize_row_nvfp4_ref(x, blocks):
    # mirrors quantize_row_nvfp4_ref (ggml-quants.c)
    qk = QK_NVFP4
    qk_sub = QK_NVFP4_SUB
    for i in range(blocks.shape[0]):
        scales = blocks[i]["d"]
        qs = blocks[i]["qs"]
        for s in range(qk // qk_sub):
            base = i * qk + s * qk_sub
            amax = f32(0.0)
            for j in range(qk_sub):
                v = abs(x[base + j])
                if amax < v:
                    amax = v
            # amax / 6 maps the largest E2M1 value (6.0) onto amax
            ue = fp32_to_ue4m3(amax / f32(6.0))
            scales[s] = ue
            d = ue4m3_to_fp32(ue)
            for j in range(qk_sub // 2):
                x0 = best_index_mxfp4(x[base + j], d)
                x1 = best_index_mxfp4(x[base + qk_sub // 2 + j], d)
                qs[s * (qk_sub // 2) + j] = x0 | (x1 << 4)


@njit
def quantize_nvfp4(x, imatrix, blocks):
    # mirrors quantize_nvfp4 (ggml-quants.c): the imatrix is unused; the reference quantizer runs on every row
    for r in range(x.shape[0]):
        quantize_row_nvfp4_ref(x[r], blocks[r])


@njit
def dequantize_row_nvfp4(blocks, y):
    # mirrors dequantize_row_nvfp4 (ggml-quants.c): per sub-block of 16, low nibbles then high nibbles
    qk = QK_NVFP4
    qk_sub = QK_NVFP4_SUB
    for i in range(blocks.shape[0]):
        qs = blocks[i]["qs"]
        for s in range(qk // qk_sub):
            d = ue4m3_to_fp32(blocks[i]["d"][s])
            base = i * qk + s * qk_sub
            for j in range(qk_sub // 2):
                q = int(qs[s * (qk_sub // 2) + j])
                y[base + j] = f32(KVALUES_MXFP4[q & 0x0F]) * d
                y[base + j + qk_sub // 2] = f32(KVALUES_MXFP4[q >> 4]) * d


@njit
def validate_nvfp4(blocks):
    # ggml_validate_row_data, case GGML_TYPE_NVFP4: every UE4M3 byte is accepted
    return True


# ----------------------------------------------------------------------------- CPU side: from_float, vec_dot
# type_traits_cpu (ggml-cpu.c): from_float is quantize_row_mxfp4/nvfp4 (ggml-cpu/quants.c), which just call the
# _ref functions; vec_dot runs against Q8_0 activations.  Integer sums are exact; the float steps follow the C.
assert BLOCK_Q8_0["qs"].shape[0] == QK_MXFP4 == QK_NVFP4 // 2  # static_assert(QK_MXFP4 == QK8_0) in ggml

@njit
def vec_dot_mxfp4_q8_0(n, x, y):
    # mirrors ggml_vec_dot_mxfp4_q8_0_generic (ggml-cpu/quants.c): one Q8_0 block per MXFP4 block
    sumf = f32(0.0)
    for ib in range(n // QK_MXFP4):
        d = F16_TO_F32[y[ib]["d"]] * e8m0_to_fp32_half(x[ib]["e"])
        xq = x[ib]["qs"]
        yq = y[ib]["qs"]
        sumi1 = np.int32(0)
        sumi2 = np.int32(0)
        for j in range(QK_MXFP4 // 2):
            q = np.int32(xq[j])
            sumi1 += np.int32(yq[j]) * np.int32(KVALUES_MXFP4[q & 0xF])
            sumi2 += np.int32(yq[j + QK_MXFP4 // 2]) * np.int32(KVALUES_MXFP4[q >> 4])
        sumf = add_nan_first(sumf, d * f32(sumi1 + sumi2))  # with several NaN scales the first one stays
    return sumf


@njit
def vec_dot_nvfp4_q8_0(n, x, y):
    # mirrors ggml_vec_dot_nvfp4_q8_0_generic (ggml-cpu/quants.c): one NVFP4 block = two Q8_0 blocks; sub-block s
    # reads Q8_0 block 2*ib + s/2 from offset 16*(s%2)
    sumf = f32(0.0)
    for ib in range(n // QK_NVFP4):
        xq = x[ib]["qs"]
        for s in range(QK_NVFP4 // QK_NVFP4_SUB):
            d = ue4m3_to_fp32(x[ib]["d"][s])
            yb = y[2 * ib + s // 2]
            q8_off = (s % 2) * QK_NVFP4_SUB
            dy = F16_TO_F32[yb["d"]]
            yq = yb["qs"]
            sumi_lo = 0
            sumi_hi = 0
            for j in range(QK_NVFP4_SUB // 2):
                qv = int(xq[s * (QK_NVFP4_SUB // 2) + j])
                sumi_lo += np.int64(yq[q8_off + j]) * np.int64(KVALUES_MXFP4[qv & 0xF])
                sumi_hi += np.int64(yq[q8_off + j + QK_NVFP4_SUB // 2]) * np.int64(KVALUES_MXFP4[qv >> 4])
            # (dy * d) * sum, left to right; with several NaN scales the first one stays (as in ggml)
            sumf = add_nan_first(sumf, dy * d * f32(sumi_lo + sumi_hi))
    return sumf


FORMATS = [
    QuantFormat(
        name="MXFP4", type_id=39, block_size=QK_MXFP4, block_dtype=BLOCK_MXFP4, vec_dot_type="Q8_0",
        quantize=quantize_mxfp4, quantize_ref=quantize_row_mxfp4_ref, dequantize=dequantize_row_mxfp4,
        validate=validate_mxfp4, from_float=quantize_row_mxfp4_ref, vec_dot=vec_dot_mxfp4_q8_0,
        doc="32 E2M1 (4-bit float) values sharing one E8M0 power-of-two scale, 4.25 bits per weight"),
    QuantFormat(
        name="NVFP4", type_id=40, block_size=QK_NVFP4, block_dtype=BLOCK_NVFP4, vec_dot_type="Q8_0",
        quantize=quantize_nvfp4, quantize_ref=quantize_row_nvfp4_ref, dequantize=dequantize_row_nvfp4,
        validate=validate_nvfp4, from_float=quantize_row_nvfp4_ref, vec_dot=vec_dot_nvfp4_q8_0,
        doc="64 E2M1 values in four sub-blocks of 16, each with a UE4M3 scale, 4.5 bits per weight"),
]
