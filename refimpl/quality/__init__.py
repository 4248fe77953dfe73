"""Quality measures computed as llama.cpp's tools compute them, number for number (spec/quality.md).

    from refimpl import quality
    r = quality.perplexity("model.gguf", text, n_ctx=512)            # llama-perplexity
    r.ppl, r.ppl_error, r.final_line()
    quality.perplexity("base.gguf", text, kl_divergence_base="base.kld")
    k = quality.kl_divergence("quant.gguf", "base.kld")             # llama-perplexity --kl-divergence
    k.statistics()["kld_mean"], print(k.report())
    from refimpl.quality.imatrix import compute_imatrix               # llama-imatrix
"""
from .ppl import (KLD_TABLE_HEADER, BaseLogits, KLDivergenceResult, PerplexityResult, kl_divergence, perplexity,
                  read_base_logits)

__all__ = ["perplexity", "PerplexityResult", "kl_divergence", "KLDivergenceResult", "BaseLogits",
           "read_base_logits", "KLD_TABLE_HEADER"]
