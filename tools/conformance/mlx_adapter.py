#!/usr/bin/env python3
"""MLX's GGUF loader (``pip install mlx[cpu]`` on Linux; ``mx.load`` of a .gguf file) behind the conformance kit's
command-line protocol (spec/conformance.md).  Only ``dequantize``:

    python -m refimpl.conformance run --ops dequantize --impl "python tools/conformance/mlx_adapter.py"

MLX has no ggml block kernels: ``mx.load`` turns Q4_0, Q4_1 and Q8_0 tensors into MLX affine-quantized weights
(``weight``, ``scales``, ``biases``, group size 32) and other quantized types are refused (or loaded as raw
bytes).  The adapter writes the blocks as one tensor of a minimal GGUF file (struct, by hand: no refimpl, no
gguf-py), loads it with ``mx.load``, and dequantizes with ``mx.dequantize`` — what an MLX user's model sees.
F32/F16/BF16 tensors load as plain arrays and are converted with ``astype(float32)``.
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile

import numpy as np

UNSUPPORTED = 3
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
        "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
        "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}
BITS = {"Q4_0": 4, "Q4_1": 4, "Q8_0": 8}


def gguf_bytes(type_id: int, ne: tuple[int, int], data: bytes) -> bytes:
    """GGUF v3, no metadata, one tensor 'w' of shape ne (ne0 fastest), alignment 32."""
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x)) + x.encode()
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0)
    head += s("w") + struct.pack("<I", 2) + struct.pack("<QQ", *ne) + struct.pack("<IQ", type_id, 0)
    head += b"\0" * (-len(head) % 32)
    return head + data


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "dequantize":
        print("mlx adapter: only 'dequantize'", file=sys.stderr)
        return UNSUPPORTED
    name, fin, fout = argv[1:4]
    if name not in GGML:
        print(f"mlx adapter: MLX's GGUF loader does not load {name}", file=sys.stderr)
        return UNSUPPORTED
    import mlx.core as mx

    tid, bs, ts = GGML[name]
    raw = np.fromfile(fin, np.uint8)
    nb = raw.size // ts
    # one block per row: ne = (block size, number of blocks); plain types: one row of nb values
    ne = (bs, nb) if bs > 1 else (nb, 1)
    fd, path = tempfile.mkstemp(suffix=".gguf")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(gguf_bytes(tid, ne, raw.tobytes()))
        try:
            arrays = mx.load(path)
        except Exception as e:
            print(f"mx.load refused {name}: {e}", file=sys.stderr)
            return UNSUPPORTED
    finally:
        os.unlink(path)
    if "w.scales" in arrays:
        y = mx.dequantize(arrays["w"], arrays["w.scales"], arrays.get("w.biases"), group_size=32, bits=BITS[name])
    else:
        w = arrays["w"]
        if w.dtype not in (mx.float32, mx.float16, mx.bfloat16):
            print(f"mx.load gave {name} as {w.dtype} (not dequantized)", file=sys.stderr)
            return UNSUPPORTED
        y = w.astype(mx.float32)
    np.ascontiguousarray(np.array(y.astype(mx.float32)), "<f4").reshape(-1).tofile(fout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
