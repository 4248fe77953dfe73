"""F32 <-> F16 and F32 <-> BF16 conversions as ggml does them (ggml_fp32_to_fp16_row and friends)."""
from __future__ import annotations

import numpy as np

DESCRIPTION = "F32<->F16 and F32<->BF16 scalar conversions: every 16-bit pattern, edge cases and random floats"


def f32_edge_cases() -> np.ndarray:
    """Float32 bit patterns that exercise every rounding and special-value rule of both 16-bit formats."""
    u = []
    # signed zeros, infinities, NaNs with various payloads (quiet and signalling), max/min finite
    u += [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
          0x7FBFFFFF, 0x7FFFFFFF, 0x7FA00000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001, 0x007FFFFF]
    # around 1.0 and powers of two across the whole exponent range
    for e in range(0, 256):
        for m in (0, 1, 0x7FFFFF, 0x400000, 0x001000, 0x002000, 0x003000, 0x00FFFF, 0x008000, 0x018000):
            u.append((e << 23) | m)
            u.append(0x80000000 | (e << 23) | m)
    # exactly halfway between consecutive F16 values (ties to even, both parities), and one ulp either side
    h = np.arange(0, 0x7C00, dtype=np.uint32)
    f16 = h.astype(np.uint16).view(np.float16).astype(np.float32)
    nxt = (h + 1).astype(np.uint16).view(np.float16).astype(np.float32)
    mid = ((f16.astype(np.float64) + nxt.astype(np.float64)) / 2).astype(np.float32)
    midb = mid.view(np.uint32)
    for d in (0, 1, -1):
        u += list((midb.astype(np.int64) + d).astype(np.uint32)[::7])
    # ties for BF16: low 16 bits exactly 0x8000, with even and odd bit 16
    rng = np.random.default_rng(1601)
    hi = rng.integers(0, 1 << 16, size=4096, dtype=np.uint32)
    for low in (0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF):
        u += list((hi << 16) | low)
    # F16 overflow boundary: 65504 (max), 65519.99 (rounds down), 65520 (rounds to inf)
    for v in (65504.0, 65519.0, 65519.996, 65520.0, 65536.0, 131008.0, 2.0**-24, 2.0**-25, 2.0**-26, 3 * 2.0**-26,
              2.0**-14, 2.0**-14 - 2.0**-25, 6.1e-5, 5.96e-8, 1e-10, 1e10, 3.4e38):
        for s in (1, -1):
            u.append(int(np.float32(s * v).view(np.uint32)))
    return np.array(u, dtype=np.uint32)


def f32_inputs() -> np.ndarray:
    rng = np.random.default_rng(1602)
    random_bits = rng.integers(0, 1 << 32, size=1 << 13, dtype=np.uint64).astype(np.uint32)
    # random values concentrated in the F16 range, where rounding actually happens
    near = (rng.standard_normal(1 << 13) * np.exp(rng.uniform(-18, 12, 1 << 13))).astype(np.float32)
    return np.concatenate([f32_edge_cases(), random_bits, near.view(np.uint32)]).view(np.float32)


def generate(oracle, w) -> None:
    x = f32_inputs()
    all16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    w.npz("f32_to_f16.npz", {"x": x, "y": oracle.fp32_to_fp16_row(x)},
          "x: float32 inputs (edge cases, ties, random bit patterns); y: uint16 F16 bits from ggml_fp32_to_fp16_row")
    w.npz("f16_to_f32.npz", {"x": all16, "y": oracle.fp16_to_fp32_row(all16)},
          "x: all 65536 F16 bit patterns; y: float32 from ggml_fp16_to_fp32_row")
    w.npz("f32_to_bf16.npz", {"x": x, "y": oracle.fp32_to_bf16_row(x)},
          "x: float32 inputs; y: uint16 BF16 bits from ggml_fp32_to_bf16_row_ref")
    w.npz("bf16_to_f32.npz", {"x": all16, "y": oracle.bf16_to_fp32_row(all16)},
          "x: all 65536 BF16 bit patterns; y: float32 from ggml_bf16_to_fp32_row")


def fresh(oracle, rng) -> list[str]:
    from refimpl import floats

    fails = []
    x = rng.integers(0, 1 << 32, size=1 << 16, dtype=np.uint64).astype(np.uint32).view(np.float32)
    for name, ours, theirs in (
        ("f32_to_f16", floats.fp32_to_fp16_row(x), oracle.fp32_to_fp16_row(x)),
        ("f32_to_bf16", floats.fp32_to_bf16_row(x), oracle.fp32_to_bf16_row(x)),
    ):
        bad = np.flatnonzero(ours != theirs)
        if bad.size:
            fails.append(f"floats/{name}: {bad.size} of {x.size} random inputs differ, first x bits "
                         f"0x{int(x.view(np.uint32)[bad[0]]):08x}")
    return fails
