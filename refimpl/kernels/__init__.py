"""The fast kernel layer: the reference layer's bits, faster.

refimpl has two layers, as ggml has ``ggml-quants.c`` + the ``*_generic`` functions (the reference) and
``ggml-cpu/arch/*`` (the SIMD kernels):

* the **reference layer**, ``refimpl/quant/formats/``: every operation of every format as plain scalar loops shaped
  like ggml's generic C, function for function.  It is what a reader ports from, and it is complete on its own;
* the **fast layer**, this package: kernels that must give the same bits faster, and the machinery that runs them.

    lanes.py     the vector intrinsics (LLVM IR): a block's integer sum, eight int32 lanes, as one vector step
    intdot.py    the BLAS integer path: the exact integer part of a whole matmul by float32 GEMM
    rowdot.py    the decode path's matvec: several weight rows per call in one LLVM loop (Q4_K, Q6_K, Q8_0, ...)
    packed.py    weights packed once at load, 8 rows interleaved (llama.cpp's REPACK): Q4_0, Q8_0, IQ4_NL, IQ4_XS, Q2_K … Q5_K
    drivers.py   the compiled row drivers of matmul (one per kernel, cached) and WeightMatrix's fast runner
    decode.py    a one-token decode step of a plain llama layer as one compiled call (Model._decode_plan)
    legacy.py    fast kernels of Q4_0 … Q8_0          (one module per format family, each with a ``KERNELS`` table)
    kquants.py   fast kernels of Q3_K … Q6_K
    iq4.py       fast kernels of IQ4_NL, IQ4_XS

``KERNELS`` of a family module maps a ggml type name to its ``FastKernels``; ``table()`` collects them (a new family
is one new module).  Each fast kernel's docstring names the reference function it must equal, and
tests/test_kernels_props.py compares them on random and hostile blocks.  An operation a format has no fast kernel
for runs its reference (still compiled, through the fast drivers).

Which layer runs is chosen by ``refimpl.quant.set_kernels("reference" | "fast")`` or ``REFIMPL_KERNELS``; the
reference modules never import this package (tests/test_layout.py).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional

# modules of this package that are machinery, not a format family
_MACHINERY = ("lanes", "intdot", "drivers", "jitcache", "rowdot", "packed", "decode")


@dataclass(frozen=True)
class FastKernels:
    """One format's fast kernels; ``None`` means "use the reference".  Signatures as in refimpl.quant.registry."""
    quantize: Optional[Callable] = None
    quantize_ref: Optional[Callable] = None
    dequantize: Optional[Callable] = None
    from_float: Optional[Callable] = None
    vec_dot: Optional[Callable] = None
    # vec_dot with its scratch arrays made once per thread by the row driver: make_work(n) -> tuple of arrays,
    # vec_dot_work(n, x, y, work) == vec_dot(n, x, y)
    make_work: Optional[Callable] = None
    vec_dot_work: Optional[Callable] = None
    # refimpl.kernels.intdot.IntDot: the BLAS integer path of matmul
    intdot: Optional[object] = None
    # the decode (few-token) path's kernel on activations rearranged once per matmul: pack_acts(x_blocks) rearranges
    # (tokens, nb) activation blocks in place (e.g. lane-packed levels, refimpl.kernels.lanes.LANE_ORDER), and
    # matvec(n, x, y_packed, work) == vec_dot(n, x, y) bit for bit (tests/test_kernels_matvec.py)
    pack_acts: Optional[Callable] = None
    matvec: Optional[Callable] = None


_TABLE: dict[str, FastKernels] | None = None


def table() -> dict[str, FastKernels]:
    """ggml type name -> FastKernels, from the ``KERNELS`` of every family module of this package."""
    global _TABLE
    if _TABLE is None:
        found: dict[str, FastKernels] = {}
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if mod.name in _MACHINERY:
                continue
            module = importlib.import_module(f"{__name__}.{mod.name}")
            for name, kernels in getattr(module, "KERNELS", {}).items():
                if name in found:
                    raise ValueError(f"fast kernels for {name} are defined twice")
                found[name] = kernels
        _TABLE = found
    return _TABLE


def get(name: str) -> FastKernels | None:
    """The fast kernels of ggml type ``name``, or None if it has none."""
    return table().get(name)
