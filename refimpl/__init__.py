"""refimpl: a readable, bit-exact Python reference implementation of the llama.cpp stack."""
__version__ = "0.1.0"

#: The llama.cpp every golden file is tied to (the copy vendored in this llama-cpp-python release).
ORACLE_LLAMA_CPP_PYTHON = "0.3.36"


def set_num_threads(n: int) -> None:
    """Threads for refimpl's parallel kernels (matmul); also settable with REFIMPL_NUM_THREADS."""
    from .quant.matmul import set_num_threads as _set

    _set(n)
