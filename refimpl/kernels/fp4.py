"""Fast kernels of MXFP4 and NVFP4: the same bits as refimpl/quant/formats/fp4.py.

The quantizers pick each code with a branch-free scan of the 8 non-negative codes against |x| (8x faster than the
C's literal 16-code scan, which mispredicts on every element); everything else is the reference's.
"""
from __future__ import annotations

import numpy as np

from .._jit import f32, njit
from ..quant.formats import fp4 as ref
from . import FastKernels

_KVALUES_POSITIVE = ref.KVALUES_MXFP4[:8].astype(np.float32)  # codes 0..7 as floats: 0, 1, 2, 3, 4, 6, 8, 12


@njit
def best_index_mxfp4(x, e):
    """Equals refimpl.quant.formats.fp4.best_index_mxfp4: the code whose doubled value times ``e`` is nearest to ``x``.

    ggml scans all 16 codes with a strict ``<``, so the first minimum wins: 0 beats "-0" (code 8), and a tie
    between two neighbours goes to the lower code.  This returns the same index from a branch-free scan of the
    8 non-negative codes against |x| (8x faster than the literal scan, which mispredicts on every element):
      * x < 0: the error of code 8+i is |-(k_i*e) - x| = |k_i*e - |x||, bit for bit (rounding to nearest is
        symmetric in sign), and codes 8+i are met in the same order as i, so the winner is 8 + (winner for |x|)
        -- except that a winning 0 stays code 0, which precedes code 8 with the same error;
      * x > 0: a negative value -k is never strictly closer than +k (|-k*e - x| >= |k*e - x| after rounding too,
        rounding being monotonic), and +k is met first; symmetrically for x < 0 and the positive codes;
      * x = +-0 or NaN: nothing is strictly below an error of 0 or NaN: code 0.
    e is finite and >= 0 here (E8M0 half >= 2^-128, UE4M3 half in [0, 240]).  The reference's
    best_index_mxfp4 is the literal scan; tests/test_fp4_best_index.py checks the two agree on every scale and on
    the rounding ties.
    """
    ax = abs(x)
    best_index = 0
    best_err = abs(f32(0.0) * e - ax)
    for i in range(1, 8):
        err = abs(_KVALUES_POSITIVE[i] * e - ax)
        take = err < best_err
        best_index = i if take else best_index
        best_err = err if take else best_err
    if x < f32(0.0) and best_index != 0:
        best_index += 8
    return best_index


@njit
def quantize_row_mxfp4_ref(x, blocks):
    """Equals refimpl.quant.formats.fp4.quantize_row_mxfp4_ref."""
    qk = ref.QK_MXFP4
    for i in range(blocks.shape[0]):
        amax = f32(0.0)
        for j in range(qk):
            v = abs(x[i * qk + j])
            if amax < v:
                amax = v
        e = ref._mxfp4_exponent(amax) if amax > f32(0.0) else 0
        d = ref.e8m0_to_fp32_half(e)
        blocks[i]["e"] = e
        qs = blocks[i]["qs"]
        # element j goes to the low nibble of byte j, element j + 16 to its high nibble
        for j in range(qk // 2):
            x0 = best_index_mxfp4(x[i * qk + j], d)
            x1 = best_index_mxfp4(x[i * qk + qk // 2 + j], d)
            qs[j] = x0 | (x1 << 4)


@njit
def quantize_mxfp4(x, imatrix, blocks):
    """Equals refimpl.quant.formats.fp4.quantize_mxfp4 (the imatrix is unused)."""
    for r in range(x.shape[0]):
        quantize_row_mxfp4_ref(x[r], blocks[r])


@njit
def quantize_row_nvfp4_ref(x, blocks):
    """Equals refimpl.quant.formats.fp4.quantize_row_nvfp4_ref."""
    qk = ref.QK_NVFP4
    qk_sub = ref.QK_NVFP4_SUB
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
            ue = ref.fp32_to_ue4m3(amax / f32(6.0))
            scales[s] = ue
            d = ref.ue4m3_to_fp32(ue)
            for j in range(qk_sub // 2):
                x0 = best_index_mxfp4(x[base + j], d)
                x1 = best_index_mxfp4(x[base + qk_sub // 2 + j], d)
                qs[s * (qk_sub // 2) + j] = x0 | (x1 << 4)


@njit
def quantize_nvfp4(x, imatrix, blocks):
    """Equals refimpl.quant.formats.fp4.quantize_nvfp4 (the imatrix is unused)."""
    for r in range(x.shape[0]):
        quantize_row_nvfp4_ref(x[r], blocks[r])


KERNELS = {
    "MXFP4": FastKernels(quantize=quantize_mxfp4, quantize_ref=quantize_row_mxfp4_ref),
    "NVFP4": FastKernels(quantize=quantize_nvfp4, quantize_ref=quantize_row_nvfp4_ref),
}
