"""OpenVINO NNCF's data-free weight compression as a refimpl plugin: INT4 sym/asym group-wise, INT8 per channel.

    python -m refimpl.quantize --plugin examples/plugins/nncf_weights.py IN.gguf OUT.gguf nncf-int4-asym-g64

``nncf.compress_weights(model, mode=...)`` (openvinotoolkit/nncf) compresses each MatMul weight along its input
dimension -- a GGUF row -- with the integer modes below.  What is followed, to the bit, is NNCF 3.4's reference
implementation, nncf/quantization/algorithms/weight_compression/weight_lowering.py, in float32:

* ``INT4_SYM`` (``nncf-int4-sym-g{32,64,128}``): per group, ``scale = (|min| if |min| >= max else -max) / 8``
  (``_calculate_signed_scale``; the sign makes the larger-magnitude side land on -8), ``scale = eps`` where
  ``|scale| < eps`` (float32 epsilon); codes ``clip(round(w / scale), -8, 7)``.
* ``INT4_ASYM`` (``nncf-int4-asym-g{32,64,128}``): per group, ``lo = min(0, min)``, ``hi = max(0, max)``,
  ``scale = (hi - lo) / 15`` (eps as above), zero point ``clip(-round(lo / scale), 0, 15)``
  (``calculate_scale_zero_point``); codes ``clip(round(w / scale + zp), 0, 15)``.
* ``INT8_SYM`` / ``INT8_ASYM`` per channel (``nncf-int8-sym``, ``nncf-int8-asym``): the same with 8 bits
  (factor 128, levels [-128, 127]; levels [0, 255]) over the whole row.

What is stored is what NNCF's OpenVINO backend writes into the IR (config.py
``compression_dtype``, openvino_backend.py): the scale as float16 (computed in float32, then converted), INT4_ASYM
codes and zero points as u4, INT4_SYM codes as i4 (no zero point), INT8_ASYM as u8 with a u8 zero point, INT8_SYM
as i8.  Decompression is the
IR's ``(convert(codes) - convert(zp)) * scale`` in float16, which is also ``do_integer_dequantization`` on the
float16 scale; the float16 result is returned as float32.

GGUF block formats have a fixed block size, so the per-channel INT8 types repeat the row's scale (and zero point) in
every block of 32 weights: the values are NNCF's per-channel ones, the storage is 8.5 / 8.75 bits per weight
rather than NNCF's 8 + 16 / row.  4-bit codes are packed two per byte, the first in the low nibble (OpenVINO's
u4/i4 order; i4 as two's complement nibbles).  The importance matrix is ignored (data-free compression; NNCF's AWQ/GPTQ/scale estimation are not here).
tests/test_plugins_nncf.py checks codes, scales, zero points and dequantized values against ``nncf`` itself when
it is installed (``pip install 'refimpl[nncf]'``; numpy is enough, no OpenVINO or torch).
"""
from __future__ import annotations

import numpy as np

from refimpl.quant import QuantFormat

GROUP_SIZES = (32, 64, 128)
CHANNEL_BLOCK = 32                     # block size of the per-channel INT8 types (the scale repeats per block)
EPS = np.finfo(np.float32).eps


def _signed_scale(w: np.ndarray, bits: int) -> np.ndarray:
    """_calculate_signed_scale over the last axis (keepdims)."""
    w_abs_min = np.abs(w.min(axis=-1, keepdims=True))
    w_max = w.max(axis=-1, keepdims=True)
    scale = np.where(w_abs_min >= w_max, w_abs_min, -w_max).astype(np.float32)
    scale /= np.float32(2 ** (bits - 1))
    return np.where(np.abs(scale) < EPS, EPS, scale).astype(np.float32)


def _asym_params(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """calculate_integer_quantization_params (asym) + calculate_scale_zero_point over the last axis (keepdims)."""
    level_high = 2 ** bits - 1
    lo = np.minimum(np.float32(0), w.min(axis=-1, keepdims=True))
    hi = np.maximum(np.float32(0), w.max(axis=-1, keepdims=True))
    scale = ((hi - lo) / np.float32(level_high)).astype(np.float32)
    scale = np.where(np.abs(scale) < EPS, EPS, scale).astype(np.float32)
    zero_point = np.clip((0 - np.round(lo / scale)).astype(np.int32), 0, level_high)
    return scale, zero_point


def integer_codes(w: np.ndarray, bits: int, asym: bool):
    """NNCF's codes, float32 scale and zero point (None for sym) of ``w`` reduced over its last axis."""
    w = np.asarray(w, dtype=np.float32)
    if asym:
        scale, zero_point = _asym_params(w, bits)
        codes = np.clip(np.round(w / scale + zero_point.astype(np.float32)), 0, 2 ** bits - 1).astype(np.uint8)
        return codes, scale, zero_point
    scale = _signed_scale(w, bits)
    codes = np.clip(np.round(w / scale), -2 ** (bits - 1), 2 ** (bits - 1) - 1).astype(np.int8)
    return codes, scale, None


def _dequantize_f16(codes: np.ndarray, zero_point, scale_f16: np.ndarray) -> np.ndarray:
    """(convert(codes) - convert(zp)) * scale in float16 (the IR's decompression subgraph), as float32."""
    centred = codes.astype(np.int32) - (zero_point.astype(np.int32) if zero_point is not None else 0)
    return (centred.astype(np.float16) * scale_f16).astype(np.float32)


def make_int4(group_size: int, asym: bool) -> QuantFormat:
    fields = [("qs", "u1", (group_size // 2,))] + ([("zp", "u1")] if asym else []) + [("scale", "<f2")]
    block = np.dtype(fields)

    def quantize(x, imatrix, blocks):
        codes, scale, zero_point = integer_codes(x.reshape(-1, group_size), 4, asym)
        u4 = codes.astype(np.uint8) if asym else codes.view(np.uint8) & np.uint8(0x0F)     # i4: two's complement
        out = np.empty(blocks.shape, dtype=block)
        out["qs"] = (u4[:, 0::2] | (u4[:, 1::2] << 4)).reshape(blocks.shape + (-1,))
        if asym:
            out["zp"] = zero_point.reshape(blocks.shape)
        out["scale"] = scale.astype(np.float16).reshape(blocks.shape)
        return out

    def dequantize(blocks, y):
        qs = blocks["qs"]
        u4 = np.empty((len(blocks), group_size), dtype=np.uint8)
        u4[:, 0::2] = qs & 0x0F
        u4[:, 1::2] = qs >> 4
        if asym:
            return _dequantize_f16(u4, blocks["zp"][:, None], blocks["scale"][:, None]).reshape(-1)
        i4 = (u4 ^ np.uint8(8)).astype(np.int8) - np.int8(8)                  # sign-extend the nibble
        return _dequantize_f16(i4, None, blocks["scale"][:, None]).reshape(-1)

    kind = "asym" if asym else "sym"
    return QuantFormat(name=f"nncf-int4-{kind}-g{group_size}", type_id=None, block_size=group_size,
                       block_dtype=block, vec_dot_type=None, quantize=quantize, dequantize=dequantize,
                       doc=f"NNCF INT4_{kind.upper()} weight compression, groups of {group_size}, float16 scale")


def make_int8(asym: bool) -> QuantFormat:
    fields = [("qs", "u1" if asym else "i1", (CHANNEL_BLOCK,))] + ([("zp", "u1")] if asym else []) + \
             [("scale", "<f2")]
    block = np.dtype(fields)

    def quantize(x, imatrix, blocks):
        codes, scale, zero_point = integer_codes(x, 8, asym)          # whole rows: per output channel
        out = np.empty(blocks.shape, dtype=block)
        out["qs"] = codes.reshape(blocks.shape + (CHANNEL_BLOCK,))
        if asym:
            out["zp"] = np.broadcast_to(zero_point, blocks.shape)
        out["scale"] = np.broadcast_to(scale.astype(np.float16), blocks.shape)
        return out

    def dequantize(blocks, y):
        zero_point = blocks["zp"][:, None] if asym else None
        return _dequantize_f16(blocks["qs"], zero_point, blocks["scale"][:, None]).reshape(-1)

    kind = "asym" if asym else "sym"
    return QuantFormat(name=f"nncf-int8-{kind}", type_id=None, block_size=CHANNEL_BLOCK, block_dtype=block,
                       vec_dot_type=None, quantize=quantize, dequantize=dequantize,
                       doc=f"NNCF INT8_{kind.upper()} per-channel weight compression, float16 scale")


FORMATS = ([make_int4(g, asym) for asym in (False, True) for g in GROUP_SIZES]
           + [make_int8(False), make_int8(True)])
