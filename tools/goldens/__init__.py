"""Golden families: one module each, exposing DESCRIPTION, generate(oracle, writer) and optionally
fresh(oracle, rng) -> list of failure strings (random cases compared against the live oracle by --check)."""

FAMILIES = ("floats", "gguf", "quant", "iquant", "matmul", "simd", "tokenizer", "model", "default_model", "sampling",
            "edge_blocks", "trace", "chat_template", "convert", "quantize_model", "quality")

#: families that need something beyond the scalar oracle (an environment variable names it); skipped by a bare
#: `make_golden.py` / `--check` when it is not set, an error when asked for by name
OPTIONAL = {"simd": "REFIMPL_SIMD_LIB", "convert": "REFIMPL_CONVERT_PYTHON", "quantize_model": "REFIMPL_LLAMA_TOOLS",
            "quality": "REFIMPL_LLAMA_TOOLS"}
