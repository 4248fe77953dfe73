"""The one switch between the two kernel layers.

* ``"reference"`` — the reference layer (refimpl/quant/formats/): every operation as the plain scalar loops of
  ggml's generic C, and matmul as two Python loops (convert each activation row, one vec_dot per output).
* ``"fast"`` (the default) — the fast layer (refimpl/kernels/): the same bits from vector intrinsics, the BLAS
  integer path and compiled parallel row drivers; a format with no fast kernel for an operation runs its reference.

Chosen by ``refimpl.quant.set_kernels(...)``, by the environment variable ``REFIMPL_KERNELS`` (read at import), or by
``python -m refimpl.generate --kernels ...``.  Both layers give the same bits (the golden tests run under each).
"""
from __future__ import annotations

import os

KERNELS_ENV = "REFIMPL_KERNELS"
LAYERS = ("reference", "fast")


def _checked(layer) -> str:
    if layer not in LAYERS:
        raise ValueError(f"kernel layer must be one of {', '.join(map(repr, LAYERS))}, got {layer!r}")
    return layer


_active = "fast"
if os.environ.get(KERNELS_ENV):
    try:
        _active = _checked(os.environ[KERNELS_ENV])
    except ValueError as e:
        raise ValueError(f"{KERNELS_ENV}: {e}") from None


def set_kernels(layer: str) -> None:
    """Select the kernel layer: ``"reference"`` or ``"fast"``."""
    global _active
    _active = _checked(layer)


def get_kernels() -> str:
    """The kernel layer in use: ``"reference"`` or ``"fast"``."""
    return _active


_FAST_OPS: dict = {}


def kernel(fmt, op: str):
    """The kernel of operation ``op`` ("quantize", "dequantize", "vec_dot", …) of ``fmt`` in the active layer
    (None if the format has no such operation)."""
    if _active == "fast":
        hit = _FAST_OPS.get((id(fmt), op))     # by identity: hashing a frozen dataclass hashes every field
        if hit is None or hit[0] is not fmt:
            from ..kernels.drivers import fast_op
            hit = _FAST_OPS[(id(fmt), op)] = (fmt, fast_op(fmt, op))
        return hit[1]
    return getattr(fmt, op)
