"""Quality measures as llama.cpp's tools compute them, number for number (spec/quality.md)."""
from .perplexity import (BaseLogits, KLDivergenceResult, PerplexityResult, kl_divergence, perplexity,
                         read_base_logits)

__all__ = ["perplexity", "PerplexityResult", "kl_divergence", "KLDivergenceResult", "BaseLogits",
           "read_base_logits"]
