"""numba glue shared by every kernel, and the C float semantics numba does not give for free.

The reference layer (refimpl/quant/formats/) is written as plain scalar Python and compiled with ``njit``.  The
same code must still run (slowly) with ``NUMBA_DISABLE_JIT=1`` so that it can be stepped through in a debugger,
which is why the bit-cast helpers below have a numpy fallback: numba intrinsics cannot be called from the
interpreter.  The vector intrinsics of the fast layer live in refimpl/kernels/lanes.py, not here.

C semantics that matter for bit-exactness and are easy to get wrong in Python:

* float32 arithmetic stays float32 only if every operand is float32.  A bare literal such as ``0.5`` is a
  float64 in numba and silently promotes the expression, so kernels write ``f32(0.5)``.
* ``roundf`` rounds half away from zero; Python's ``round`` and numpy's ``rint`` round half to even.
* ggml's ``nearest_int`` rounds half to even through a float32 magic-number add, not through ``lrintf``.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

JIT_DISABLED = bool(numba.config.DISABLE_JIT)


def _memoize_structured_from_dtype() -> None:
    # Every call of a compiled function types its arguments.  numba's dispatcher does that in C for arrays of
    # plain numbers, but an array of a structured dtype (our quant blocks) goes through numba.typeof, which
    # rebuilds the Record type from the dtype each time (numba.np.numpy_support.from_dtype: ~35 us per array).
    # A decode step makes ~50 calls with two block arrays each: about 1 ms of a 5 ms token on a 110M model.
    # from_dtype is a pure function of the dtype (and numba interns the types it returns), so its results for
    # structured dtypes are kept here; other dtypes take numba's own path unchanged.
    from numba.np import numpy_support
    original = numpy_support.from_dtype
    if getattr(original, "_refimpl_memoized", False):
        return
    known: dict = {}

    def from_dtype(dtype):
        if getattr(dtype, "fields", None) is None:
            return original(dtype)
        try:
            return known[dtype]
        except KeyError:
            result = known[dtype] = original(dtype)
            return result
        except TypeError:           # an unhashable dtype-like argument
            return original(dtype)

    from_dtype._refimpl_memoized = True
    numpy_support.from_dtype = from_dtype


if not JIT_DISABLED:
    _memoize_structured_from_dtype()

f32 = np.float32


def njit(*args, **kwargs):
    """``numba.njit`` with on-disk caching and C's float error model.  No fastmath: reassociation would change
    results.  Usable bare (``@njit``) or with options (``@njit(inline="always")``)."""
    kwargs.setdefault("cache", True)
    # numba's default "python" error model raises ZeroDivisionError on x/0.0; C gives Inf/NaN, and ggml's
    # quantizers divide by zero on degenerate input (e.g. iscale = nmax/(max - min) on a block holding an Inf)
    kwargs.setdefault("error_model", "numpy")
    return numba.njit(*args, **kwargs)


if JIT_DISABLED:

    def f32_to_bits(x):
        return np.array([x], dtype=np.float32).view(np.uint32)[0]

    def f32_from_bits(u):
        return np.array([u & 0xFFFFFFFF], dtype=np.uint32).view(np.float32)[0]

else:
    from llvmlite import ir

    @intrinsic
    def f32_to_bits(typingctx, x):
        """The IEEE-754 bit pattern of a float32 (C: ``memcpy(&u, &f, 4)``)."""
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, signature, args):
            val = args[0]
            if x.bitwidth != 32:
                val = builder.fptrunc(val, ir.FloatType())
            return builder.bitcast(val, ir.IntType(32))

        return types.uint32(x), codegen

    @intrinsic
    def f32_from_bits(typingctx, u):
        """The float32 whose bit pattern is the low 32 bits of ``u``."""
        if not isinstance(u, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            val = args[0]
            if u.bitwidth > 32:
                val = builder.trunc(val, ir.IntType(32))
            elif u.bitwidth < 32:
                val = builder.zext(val, ir.IntType(32))
            return builder.bitcast(val, ir.FloatType())

        return types.float32(u), codegen


@njit
def roundf(x):
    """C ``roundf``: nearest integer, halfway cases away from zero (returned as float32)."""
    x = f32(x)
    t = f32(np.trunc(x))
    if abs(x - t) >= f32(0.5):
        t = t + (f32(1.0) if x > 0 else f32(-1.0))
    return f32(t)


@njit
def nearest_int(fval):
    """ggml-quants.c ``nearest_int``: round to nearest, ties to even, via the 1.5*2^23 float trick.

    Valid for |fval| <= 4194303; the bit trick is reproduced exactly so that out-of-range or NaN inputs give
    the same (garbage) integer ggml gets.
    """
    val = f32(f32(fval) + f32(12582912.0))
    return np.int64(f32_to_bits(val) & 0x007FFFFF) - 0x00400000


@njit
def quiet_nan(x):
    """The float32 NaN x with its quiet bit set, as an x86 SSE arithmetic instruction returns a NaN operand."""
    return f32_from_bits(f32_to_bits(x) | np.uint32(0x00400000))


@njit
def add_nan_first(a, b):
    """``a + b`` (float32), and when both are NaN the result is ``a``'s NaN (quieted).

    x86 ``addss``/``mulss`` return the destination operand's payload when both operands are NaN, and which C
    operand gcc puts in the destination is a register-allocation choice that LLVM will not reproduce.  Kernels
    that must match ggml's NaN payloads bit for bit (e.g. a dot product over blocks with several NaN scales)
    name the winning operand explicitly with these helpers; with at most one NaN the plain operation is exact."""
    if a != a:
        return quiet_nan(a)
    return f32(a) + f32(b)


@njit
def mul_nan_first(a, b):
    """``a * b`` (float32), and when both are NaN the result is ``a``'s NaN (quieted); see add_nan_first."""
    if a != a:
        return quiet_nan(a)
    return f32(a) * f32(b)
