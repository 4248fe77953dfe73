#!/usr/bin/env python3
"""gguf-py (``pip install gguf``: llama.cpp's own Python package; its quantizers live in ``gguf.quants``) behind
the conformance kit's command-line protocol (spec/conformance.md).

    python -m refimpl.conformance run --impl "python tools/conformance/gguf_py_adapter.py"

Operations: ``dequantize`` (``gguf.quants.dequantize``), ``quantize`` (``gguf.quants.quantize``; gguf-py has no
importance matrix, so a call with an imatrix exits 3 = unsupported), ``gguf`` (``gguf.GGUFReader``).  A type gguf-py
lacks raises ``NotImplementedError`` -> exit 3.  Nothing here comes from refimpl: the adapter only converts files.
"""
from __future__ import annotations

import json
import sys

import numpy as np

UNSUPPORTED = 3


def qtype(name: str):
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType[name]
    except KeyError:
        print(f"gguf-py does not know the type {name}", file=sys.stderr)
        sys.exit(UNSUPPORTED)


def main(argv: list[str]) -> int:
    op = argv[0] if argv else ""
    if op == "quantize" and len(argv) > 5:
        print("gguf-py's quantizers take no importance matrix", file=sys.stderr)
        return UNSUPPORTED
    import gguf
    from gguf import quants

    try:
        if op == "dequantize":
            name, fin, fout = argv[1:4]
            t = qtype(name)
            raw = np.fromfile(fin, np.uint8)
            block_size, type_size = gguf.GGML_QUANT_SIZES[t]
            y = quants.dequantize(raw.reshape(-1, type_size), t)
            np.ascontiguousarray(y, "<f4").tofile(fout)
        elif op == "quantize":
            name, n, fin, fout = argv[1:5]
            t = qtype(name)
            x = np.fromfile(fin, "<f4").reshape(-1, int(n))
            q = quants.quantize(x, t)
            np.ascontiguousarray(q).view(np.uint8).tofile(fout)
        elif op == "gguf":
            # some malformed files make GGUFReader allocate gigabytes (a huge array count becomes a list of that
            # many numpy views): cap the address space so that such a file is a MemoryError, i.e. a refusal
            import resource

            cap = 3 << 30
            resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
            flist, fout = argv[1:3]
            with open(fout, "w") as out:
                for path in open(flist).read().split("\n"):
                    if path:
                        out.write(json.dumps(read_gguf(path)) + "\n")
        else:
            print(f"unsupported operation {op!r}", file=sys.stderr)
            return UNSUPPORTED
    except NotImplementedError as e:
        print(f"gguf-py: {e}", file=sys.stderr)
        return UNSUPPORTED
    return 0


class ReadTimeout(Exception):
    pass


def _timeout(signum, frame):
    raise ReadTimeout(f"GGUFReader still busy after {READ_TIMEOUT} s")


READ_TIMEOUT = 2


def read_gguf(path: str) -> dict:
    import signal
    import warnings

    import gguf

    # a few malformed counts make GGUFReader loop over billions of elements: past READ_TIMEOUT seconds the file
    # counts as refused (reported with the reason)
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(READ_TIMEOUT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = gguf.GGUFReader(path)
            f = r.fields
            ans = {"accepted": True, "version": int(f["GGUF.version"].parts[-1][0]),
                   "alignment": int(r.alignment), "data_offset": int(r.data_offset),
                   "n_kv": int(f["GGUF.kv_count"].parts[-1][0]),
                   "tensor_nbytes": [int(t.n_bytes) for t in r.tensors]}
    except Exception as e:   # the reader's refusal is the verdict
        return {"accepted": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        signal.alarm(0)
    return ans


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
