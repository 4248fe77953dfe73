"""Fast kernels of IQ4_NL and IQ4_XS: the same bits as refimpl/quant/formats/iq4.py.

* vec_dot: a 32-level block's integer sum (nibbles looked up in kvalues_iq4nl, times the Q8 levels) as one vector
  operation (refimpl.kernels.lanes.make_dot32_lut16); the float part is the reference's own term functions, with
  the first-NaN return of refimpl/kernels/legacy.py.
* intdot: the BLAS integer path (refimpl.kernels.intdot).
"""
from __future__ import annotations

import numpy as np

from .._jit import f32, njit
from ..floats import F16_TO_F32, fp16_to_fp32_row
from ..quant.formats import iq4 as ref
from ..quant.iq_tables import KVALUES_IQ4NL
from . import FastKernels
from .intdot import IntDot, block_intdot
from .lanes import make_dot32_lut16

QK_K = ref.QK_K
mul_nan_first = ref.mul_nan_first

# The integer sum of a 32-level block (low nibbles, then high, looked up in kvalues) is one vector operation,
# refimpl._jit's select-tree lookup (a table lookup per level does not vectorize): 14 vs 11 GFLOP/s on a 4096^2
# IQ4_XS matvec against the best lookup loop.
dot32_kvalues = make_dot32_lut16(KVALUES_IQ4NL)

@njit
def vec_dot_iq4_nl_q8_0(n, x, y):
    """Equals refimpl.quant.formats.iq4.vec_dot_iq4_nl_q8_0."""
    sumf = f32(0.0)
    for ib in range(x.shape[0]):
        sumi = dot32_kvalues(x[ib]["qs"], y[ib]["qs"])
        sumf = sumf + ref._term_iq4_nl(F16_TO_F32[x[ib]["d"]], F16_TO_F32[y[ib]["d"]], sumi)
        if sumf != sumf:
            return sumf      # the running sum wins from here on: see refimpl/kernels/legacy.py, "A NaN sum"
    return sumf


@njit
def vec_dot_iq4_xs_q8_K(n, x, y):
    """Equals refimpl.quant.formats.iq4.vec_dot_iq4_xs_q8_K."""
    sumf = f32(0.0)
    for ibl in range(x.shape[0]):
        d4d8 = mul_nan_first(F16_TO_F32[x[ibl]["d"]], y[ibl]["d"])
        qs = x[ibl]["qs"]
        q8 = y[ibl]["qs"]
        for ib in range(QK_K // 32):
            sumi = dot32_kvalues(qs[16 * ib:16 * ib + 16], q8[32 * ib:32 * ib + 32])
            sumf = sumf + ref._term_iq4_xs(d4d8, ref._iq4_xs_sub_scale(x[ibl], ib), sumi)
            if sumf != sumf:
                return sumf  # the running sum wins from here on: see refimpl/kernels/legacy.py, "A NaN sum"
    return sumf


# ------------------------------------------------------------------------------ the BLAS path (kernels.intdot)
# One group per 32 weights (an IQ4_NL block, an IQ4_XS sub-block), the kvalues in the order of q8.
# Bound: |kvalue| <= 127, |q8| <= 127, 32 terms: < 2^19, exact in float32.

@njit(nogil=True)
def _iq4_levels(qs, out):
    # qs (rows, n_groups, 16) packed nibbles -> out (n_groups, rows, 32): low nibbles then high nibbles
    for r in range(qs.shape[0]):
        for g in range(qs.shape[1]):
            for j in range(16):
                q = qs[r, g, j]
                out[g, r, j] = f32(ref.KVALUES_I64[q & 0xF])
                out[g, r, j + 16] = f32(ref.KVALUES_I64[q >> 4])


def _iq4_weight_ints(blocks):
    qs = blocks["qs"].reshape(blocks.shape[0], -1, 16)
    out = np.empty((qs.shape[1], qs.shape[0], 32), np.float32)
    _iq4_levels(qs, out)
    return out


def _iq4_xs_weight_scales(blocks):
    # (rows, nb, 9): x.d as float, then ls - 32 of the 8 sub-blocks
    out = np.empty(blocks.shape + (9,), np.float32)
    out[..., 0] = fp16_to_fp32_row(blocks["d"])
    sl = blocks["scales_l"].astype(np.int32)
    sh = blocks["scales_h"].astype(np.int32)
    for ib in range(8):
        out[..., 1 + ib] = (((sl[..., ib // 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) - 32
    return out


def _q8_K_sub_blocks(blocks):
    # (tokens, nb) Q8_K -> (nb * 8, 32, tokens): one group per 32 levels
    q = blocks["qs"].reshape(blocks.shape[0], -1, 32)
    return np.transpose(q, (1, 2, 0))


def _q8_K_d(blocks):
    return np.transpose(blocks["d"][..., None].astype(np.float32), (1, 2, 0))       # (nb, 1, tokens)


@njit
def _fold_iq4_xs(ws, xs, isum, out, acc):
    # ws (nb, 9) = (x.d, ls-32 x 8), xs (nb, 1, tokens) = y.d, isum (8 nb, tokens)
    sumf = acc[0]
    for i in range(ws.shape[0]):
        yd = xs[i, 0]
        for t in range(sumf.size):
            d4d8 = mul_nan_first(ws[i, 0], yd[t])
            for ib in range(8):
                sumf[t] = ref._step_iq4_xs(sumf[t], d4d8, ws[i, 1 + ib], isum[8 * i + ib, t])
    out[:] = sumf


INTDOT_IQ4_NL = block_intdot(_iq4_weight_ints, ("d",), ("d",), ref._step_iq4_nl)
INTDOT_IQ4_XS = IntDot(_iq4_weight_ints, _q8_K_sub_blocks, _iq4_xs_weight_scales, _q8_K_d, _fold_iq4_xs)


KERNELS = {
    "IQ4_NL": FastKernels(vec_dot=vec_dot_iq4_nl_q8_0, intdot=INTDOT_IQ4_NL),
    "IQ4_XS": FastKernels(vec_dot=vec_dot_iq4_xs_q8_K, intdot=INTDOT_IQ4_XS),
}
