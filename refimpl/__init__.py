"""refimpl: a readable, bit-exact Python reference implementation of the llama.cpp stack."""
import os as _os

__version__ = "0.1.0"

# numba's OpenMP threads spin for GOMP_SPINCOUNT (default 300000) iterations after each parallel loop before they
# sleep.  refimpl alternates numba loops with BLAS calls in its own worker threads (refimpl.kernels.intdot), and the
# spinning took a core from them: 128-token prompts ran 1.4x slower (tools/bench_generate.py).  10000 keeps the
# quick wake-up that back-to-back numba loops (decoding) rely on.  Read by libgomp when it loads, so it only
# applies if nothing loaded OpenMP earlier; a value the user set wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

#: The llama.cpp every golden file is tied to (the copy vendored in this llama-cpp-python release).
ORACLE_LLAMA_CPP_PYTHON = "0.3.36"


def set_num_threads(n: int) -> None:
    """Threads for refimpl's parallel kernels (matmul); also settable with REFIMPL_NUM_THREADS."""
    from .quant.matmul import set_num_threads as _set

    _set(n)


def quantize_model(src, dst=None, ftype="Q8_0", **kwargs):
    """Quantize a GGUF model as llama-quantize does, byte for byte; see refimpl.quantize.quantize_model."""
    from .quantize import quantize_model as _quantize_model

    return _quantize_model(src, dst, ftype, **kwargs)
