"""Golden families: one module each, exposing DESCRIPTION, generate(oracle, writer) and optionally
fresh(oracle, rng) -> list of failure strings (random cases compared against the live oracle by --check)."""

FAMILIES = ("floats", "gguf", "quant", "iquant", "matmul", "tokenizer", "model")
