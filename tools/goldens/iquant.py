"""The i-quants (IQ1_S … IQ4_XS): the same cases as the quant family (quant/inputs.npz, quant/cases.json)."""
from __future__ import annotations

from .quant import fresh_types, generate_types

DESCRIPTION = "ggml i-quant formats (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS)"

TYPES = {
    "IQ2_XXS": 16, "IQ2_XS": 17, "IQ3_XXS": 18, "IQ1_S": 19, "IQ4_NL": 20, "IQ3_S": 21, "IQ2_S": 22,
    "IQ4_XS": 23, "IQ1_M": 29,
}


def generate(oracle, w) -> None:
    generate_types(oracle, w, TYPES, seed=5100, write_inputs=False)


def fresh(oracle, rng) -> list[str]:
    return fresh_types(oracle, rng, TYPES)
