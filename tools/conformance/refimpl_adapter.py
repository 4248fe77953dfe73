#!/usr/bin/env python3
"""refimpl itself behind the conformance kit's command-line protocol (spec/conformance.md): the reference example
of an adapter, and the kit's own sanity check (refimpl passes every case).

    python -m refimpl.conformance run --impl "python tools/conformance/refimpl_adapter.py"
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    from refimpl import quant

    op = argv[0]
    if op == "dequantize":
        type_name, fin, fout = argv[1:4]
        fmt = quant.get_type(type_name)
        raw = np.fromfile(fin, np.uint8)
        y = quant.dequantize(raw.reshape(-1, fmt.type_size), fmt)
        np.asarray(y, "<f4").tofile(fout)
    elif op == "quantize":
        type_name, n, fin, fout = argv[1:5]
        imatrix = np.fromfile(argv[5], "<f4") if len(argv) > 5 else None
        x = np.fromfile(fin, "<f4").reshape(-1, int(n))
        q = quant.quantize(x, type_name, imatrix=imatrix)
        np.asarray(q).view(np.uint8).tofile(fout)
    elif op == "vec_dot":
        type_name, n, fx, fy, fout = argv[1:6]
        fmt = quant.get_type(type_name)
        vdt = quant.get_type(fmt.vec_dot_type)
        n = int(n)
        x = np.fromfile(fx, np.uint8).reshape(-1, fmt.row_size(n))
        y = np.fromfile(fy, np.uint8).reshape(-1, vdt.row_size(n))
        out = np.array([quant.vec_dot(fmt, a, b) for a, b in zip(x, y)], "<f4")
        out.tofile(fout)
    elif op == "gguf":
        from refimpl import gguf

        flist, fout = argv[1:3]
        with open(fout, "w") as out:
            for path in open(flist).read().split("\n"):
                if not path:
                    continue
                try:
                    g = gguf.read(path)
                    ans = {"accepted": True, "version": g.version, "alignment": g.alignment,
                           "data_offset": g.data_offset, "n_kv": len(g.metadata)}
                    g.close()
                except Exception as e:  # the verdict is the answer
                    ans = {"accepted": False, "error": str(e)}
                out.write(json.dumps(ans) + "\n")
    else:
        print(f"unsupported operation {op!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
