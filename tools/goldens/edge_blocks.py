"""Edge-block goldens: ggml's dequantization of blocks whose scales are special values.

Layout (see golden/README.md):
  edge_blocks/<TYPE>.npz   raw uint8 (n, type size): hand-made blocks; label |S64 (n,): what each block is;
                           y float32 (n, block size): type_traits.to_float (dequantize_row_<type>) of each block

For every block type with a to_float: one block per (scale field, special value) — F16 scales (d, m, dmin, s) set
to ±0, the smallest and largest subnormal, the smallest normal, the largest finite, ±Inf and NaNs of several
payloads; Q8_K's float32 d likewise; MXFP4's E8M0 exponent and NVFP4's four UE4M3 scale bytes set to their
boundary codes — with the other scales a plain normal value and the quant payload random bytes; then an all-zero
block and an all-0xFF block.  These are the blocks where implementations usually differ: flush-to-zero, NaN
payloads, sign of zero, overflow.  refimpl's block layouts only choose which bytes to write; every expected value
is ggml's.
"""
from __future__ import annotations

import numpy as np

from .quant import TYPES as QUANT_TYPES, OracleOps
from .iquant import TYPES as IQUANT_TYPES

DESCRIPTION = ("dequantize of hand-made edge blocks: F16/F32/E8M0/UE4M3 scales at 0, -0, subnormal, max, Inf, "
               "NaN payloads; all-zero and all-0xFF blocks; for every block type with a to_float")

F16_SPECIALS = {"+0": 0x0000, "-0": 0x8000, "min_subnormal": 0x0001, "max_subnormal": 0x03FF,
                "min_normal": 0x0400, "max_finite": 0x7BFF, "neg_max_finite": 0xFBFF, "+inf": 0x7C00,
                "-inf": 0xFC00, "qnan": 0x7E00, "snan_payload1": 0x7C01, "neg_nan_payload": 0xFE55}
F32_SPECIALS = {"+0": 0x00000000, "-0": 0x80000000, "min_subnormal": 0x00000001, "max_subnormal": 0x007FFFFF,
                "min_normal": 0x00800000, "max_finite": 0x7F7FFFFF, "+inf": 0x7F800000, "-inf": 0xFF800000,
                "qnan": 0x7FC00000, "snan_payload1": 0x7F800001, "neg_nan_payload": 0xFFC00055}
# MXFP4's shared exponent is E8M0 (0xFF = NaN); NVFP4's sub-block scales are UE4M3 (0x7F = NaN, sign ignored)
U8_SPECIALS = {"0x00": 0x00, "0x01": 0x01, "0x7e": 0x7E, "0x7f": 0x7F, "0x80": 0x80, "0xfe": 0xFE, "0xff": 0xFF}
PLAIN_F16 = 0x2E66   # 0.0999755859375: a normal scale for the fields not under test
PLAIN_F32 = 0x3DCCCCCD
SEED = 9100


def scale_fields(dtype: np.dtype) -> list[tuple[str, int, str]]:
    """(field[index], byte offset, kind) of a block's scale fields: F16 d/m/dmin/s, F32 d, E8M0 e, UE4M3 d[k]."""
    out = []
    if not dtype.names:
        return out
    for name in dtype.names:
        ft, off = dtype.fields[name][:2]
        if name in ("d", "m", "dmin", "s") and ft == np.dtype("<u2"):
            out.append((name, off, "f16"))
        elif name == "d" and ft == np.dtype("<f4"):
            out.append((name, off, "f32"))
        elif name == "e" and ft == np.dtype("u1"):
            out.append((name, off, "u8"))
        elif name == "d" and ft.base == np.dtype("u1") and ft.shape:   # NVFP4: 4 UE4M3 scales
            out.extend((f"d[{k}]", off + k, "u8") for k in range(ft.shape[0]))
    return out


def _put(block: np.ndarray, off: int, kind: str, bits: int) -> None:
    width = {"f16": 2, "f32": 4, "u8": 1}[kind]
    block[off:off + width] = np.frombuffer(int(bits).to_bytes(width, "little"), np.uint8)


def edge_blocks(name: str, type_size: int, rng) -> tuple[np.ndarray, list[str]]:
    from refimpl.quant import TYPES

    fields = scale_fields(TYPES[name].block_dtype)
    blocks, labels = [], []
    for field, off, kind in fields:
        specials = {"f16": F16_SPECIALS, "f32": F32_SPECIALS, "u8": U8_SPECIALS}[kind]
        for label, bits in specials.items():
            block = rng.integers(0, 256, type_size, dtype=np.uint8)
            for _, o2, k2 in fields:   # the other scales: a plain normal value
                _put(block, o2, k2, {"f16": PLAIN_F16, "f32": PLAIN_F32, "u8": 0x38 if name == "NVFP4" else 0x7F}[k2])
            _put(block, off, kind, bits)
            blocks.append(block)
            labels.append(f"{field}={label}")
    blocks.append(np.zeros(type_size, np.uint8))
    labels.append("all_zero")
    blocks.append(np.full(type_size, 0xFF, np.uint8))
    labels.append("all_ff")
    return np.stack(blocks), labels


def generate(oracle, w) -> None:
    types = {**QUANT_TYPES, **IQUANT_TYPES}
    for name, tid in sorted(types.items(), key=lambda kv: kv[1]):
        ops = OracleOps(oracle, name, tid)
        if ops.block_size == 1 or not ops.has_to_float:
            continue   # plain float/int types have no blocks; Q8_1 has no to_float
        raw, labels = edge_blocks(name, ops.type_size, np.random.default_rng([SEED, tid]))
        y = np.stack([ops.dequantize(b) for b in raw]).astype(np.float32)
        w.npz(f"{name}.npz", {"raw": raw, "label": np.array(labels, dtype="S64"), "y": y},
              f"{name} (ggml type {tid}): {len(labels)} edge blocks (special scales, all-zero, all-0xFF) and "
              f"ggml's to_float of each")
