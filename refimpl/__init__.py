"""refimpl: a readable, bit-exact Python reference implementation of the llama.cpp stack."""
__version__ = "0.1.0"

#: The llama.cpp every golden file is tied to (the copy vendored in this llama-cpp-python release).
ORACLE_LLAMA_CPP_PYTHON = "0.3.36"
