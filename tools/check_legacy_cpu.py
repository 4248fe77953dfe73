#!/usr/bin/env python3
"""Interactive check of the float and legacy types against the live oracle: CPU kernels and degenerate inputs.

    /work/venv/bin/python tools/check_legacy_cpu.py [--seed N] [--trials N]

For F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1: ``from_float`` against ``Oracle.from_float_cpu`` (type_traits_cpu
.from_float), and ``vec_dot`` against ``Oracle.vec_dot`` on random rows (weights from refimpl's quantizer or random
raw bytes with finite scales, or raw bytes on both sides with NaN/Inf scales, where NaN payloads must match too;
activations through the vec_dot_type's from_float).  Not a test: the goldens for
vec_dot/matmul live in golden/matmul; this is the quick fresh-case check for the kernels in
refimpl/quant/formats/{floats,legacy}.py.  Also quantizes degenerate rows (NaN, +-Inf, subnormal blocks, huge and
tiny scales, imatrix with negative weights) against ``ggml_quantize_chunk``, which the golden inputs do not cover.
Prints one line per type and exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args(argv)

    import ggml_oracle
    from refimpl import quant

    oracle = ggml_oracle.get()
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    failures = 0
    for name in TYPES:
        fmt = quant.get_type(name)
        vt = quant.get_type(fmt.vec_dot_type)
        ok_ff = ok_vd = 0
        bad = []
        for trial in range(args.trials):
            nb = int(rng.integers(1, 40))
            n = nb * 32
            scale = np.float32(np.exp(rng.uniform(-6, 6)))
            x = (rng.standard_t(3, n) * scale).astype(np.float32)
            # from_float (the activation quantizer mul_mat uses)
            ours = np.zeros(fmt.row_size(n), np.uint8)
            fmt.from_float(x, ours.view(fmt.block_dtype))
            theirs = oracle.from_float_cpu(fmt.type_id, x)
            if np.array_equal(ours, np.ascontiguousarray(theirs).view(np.uint8).reshape(-1)):
                ok_ff += 1
            else:
                bad.append(f"from_float trial {trial}")
            if fmt.vec_dot is None:
                continue
            # vec_dot: weights quantized by refimpl (or, every other trial, random bytes with finite scales)
            w = (rng.standard_normal(n) * np.float32(np.exp(rng.uniform(-4, 4)))).astype(np.float32)
            w_raw = quant.quantize(w, name).reshape(-1)
            if fmt.is_quantized and trial % 2:
                w_raw = rng.integers(0, 256, w_raw.size, dtype=np.uint8)
                blocks = w_raw.view(fmt.block_dtype)
                for f in ("d", "m"):
                    if f in fmt.block_dtype.names:
                        blocks[f] = rng.integers(0, 0x7800, nb).astype(np.uint16)  # finite F16
            y_raw = np.zeros(vt.row_size(n), np.uint8)
            vt.from_float(x, y_raw.view(vt.block_dtype))
            if trial % 4 == 3:
                # raw bytes on both sides with Inf/NaN scales or elements: NaN payloads must match too
                w_raw = rng.integers(0, 256, w_raw.size, dtype=np.uint8)
                y_raw = rng.integers(0, 256, y_raw.size, dtype=np.uint8)
                for raw, f_ in ((w_raw, fmt), (y_raw, vt)):
                    b = raw.view(f_.block_dtype)
                    names = f_.block_dtype.names or ()
                    for f in ("d", "m", "s"):
                        if f in names:
                            sel = rng.random(b.shape[0]) < 0.5
                            b[f][sel] = (0x7C00 | rng.integers(0, 0x400, sel.sum())).astype(np.uint16)
            s_ours = np.float32(fmt.vec_dot(n, w_raw.view(fmt.block_dtype), y_raw.view(vt.block_dtype)))
            s_theirs = oracle.vec_dot(fmt.type_id, n, w_raw, y_raw)
            if np.array([s_ours]).view(np.uint32)[0] == np.array([s_theirs]).view(np.uint32)[0]:
                ok_vd += 1
            else:
                bad.append(f"vec_dot trial {trial}: ours {s_ours!r} ggml {s_theirs!r}")
        # degenerate inputs through quantize (+- imatrix)
        ok_q = 0
        for trial in range(args.trials):
            nb = int(rng.integers(1, 6))
            n = nb * 32
            x = (rng.standard_normal((2, n)) * np.exp(rng.uniform(-30, 30))).astype(np.float32)
            kind = trial % 5
            if kind == 1:
                x[0, rng.integers(0, n)] = np.nan
            elif kind == 2:
                x[1, rng.integers(0, n)] = np.inf
            elif kind == 3:
                x[:, :32] = (rng.standard_normal(32) * 1e-42).astype(np.float32)
            elif kind == 4:
                x[0, rng.integers(0, n)] = -np.inf
            im = (rng.standard_normal(n) * 3).astype(np.float32) if fmt.is_quantized and trial % 2 else None
            if name == "Q8_1":
                if im is not None:
                    ok_q += 1
                    continue
                theirs = np.stack([oracle.symbol_from_float("quantize_row_q8_1_ref", fmt.type_id, r) for r in x])
            else:
                with np.errstate(all="ignore"):
                    theirs = oracle.quantize_chunk(fmt.type_id, x, im)
            ours = quant.quantize(x, name, imatrix=im)
            if np.array_equal(ours.reshape(-1), np.ascontiguousarray(theirs).view(np.uint8).reshape(-1)):
                ok_q += 1
            else:
                bad.append(f"quantize degenerate trial {trial} (kind {kind}, imatrix {im is not None})")
        vd = f"degenerate quantize {ok_q}/{args.trials}  " + (
            f"vec_dot {ok_vd}/{args.trials}" if fmt.vec_dot is not None else "vec_dot (none in ggml)")
        print(f"{name:5s} from_float {ok_ff}/{args.trials}  {vd}" + (f"  FAIL: {bad[:3]}" if bad else ""))
        failures += len(bad)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
