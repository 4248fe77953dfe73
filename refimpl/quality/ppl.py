"""llama-perplexity's default mode and its KL-divergence mode (tools/perplexity/perplexity.cpp: ``perplexity()``,
``kl_divergence()``), number for number.

Reading order: ``perplexity`` (chunks, the base-logits file), then ``kl_divergence`` and ``KLDivergenceResult``
(the report's statistics).  The per-token kernels are in ``logprobs``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import logprobs
from .._atomic import atomic_output
from ._common import (batch_layout, cdiv, cfmt, csqrt, eval_chunk, open_model, pack_i32,
                      read_text_file, tokenize)

LOGITS_MAGIC = b"_logits_"


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="chunk", desc=desc, file=sys.stderr, leave=False)


def _emit(out, s: str) -> None:
    if out is not None:
        out.write(s)
        out.flush()


def _tokens_for(tok, text, tokens) -> np.ndarray:
    if (text is None) == (tokens is None):
        raise ValueError("give the text or its tokens (exactly one)")
    if tokens is not None:
        return np.asarray(tokens, dtype=np.int32).reshape(-1)
    return tokenize(tok, text)


def _too_short(n_tokens: int, n_ctx: int, what: str = "evaluate perplexity with") -> ValueError:
    # perplexity.cpp's two LOG_ERR lines
    return ValueError(f"you need at least {2 * n_ctx} tokens to {what} a context of {n_ctx}; "
                      f"the data file you provided tokenizes to only {n_tokens} tokens")


# ------------------------------------------------------------------------------------------------- perplexity
@dataclass
class PerplexityResult:
    """What ``perplexity()`` computed: llama-perplexity's printed figures and the sums behind them."""
    ppl: float                      # exp(mean negative log-likelihood): "Final estimate: PPL = ..."
    ppl_error: float | None         # its "+/- ..." (None where llama.cpp prints "Unexpected negative ...")
    n_ctx: int
    n_chunk: int
    n_tokens: int                   # tokens of the whole text (with BOS)
    count: int                      # tokens scored: n_chunk * (n_ctx - 1 - n_ctx/2)
    nll: float                      # sum of -log p(token) over the scored tokens (double, llama.cpp's order)
    nll2: float                     # sum of their squares
    chunk_ppl: list[float] = field(default_factory=list)   # the running "[i]" figures, one per chunk
    # per scored token (the plain run only): logit and probability of the actual next token
    logit_history: np.ndarray | None = None
    prob_history: np.ndarray | None = None

    def running_line(self) -> str:
        """The ``[1]x,[2]y,...`` line as llama-perplexity prints it."""
        return "".join(f"[{i + 1}]{p:.4f}," for i, p in enumerate(self.chunk_ppl))

    def final_line(self) -> str:
        if self.ppl_error is None:
            return "Unexpected negative standard deviation of log(prob)"
        return f"Final estimate: PPL = {cfmt('%.4f', self.ppl)} +/- {cfmt('%.5f', self.ppl_error)}"


def _final_estimate(nll: float, nll2: float, count: int) -> tuple[float, float | None]:
    # end of perplexity(): the error of exp(mean) from the variance of the per-token nll
    nll2 /= count
    nll /= count
    ppl = math.exp(nll)
    nll2 -= nll * nll
    if nll2 > 0:
        nll2 = math.sqrt(nll2 / (count - 1))
        return ppl, nll2 * ppl
    return ppl, None


def perplexity(model, text: str | None = None, *, tokens=None, n_ctx: int = 512, n_batch: int = 2048,
               n_chunks: int = -1, kl_divergence_base=None, progress: bool = False, out=None,
               on_chunk=None) -> PerplexityResult:
    """llama-perplexity's default run (``perplexity()`` in perplexity.cpp) on ``text`` (or its ``tokens``, as
    common_tokenize gives them: BOS first).

    ``model``: a GGUF path or a loaded ``refimpl.model.Model``.  The text is cut into ``n_chunks`` (default all)
    chunks of ``n_ctx`` tokens; each chunk starts with BOS (when the vocab adds one) and is evaluated from an empty
    cache; only its second half is scored (``first = n_ctx/2``).  ``kl_divergence_base``: a path to write
    llama.cpp's base-logits file to (``--kl-divergence-base``), byte for byte.  ``out``: a text stream that gets
    llama-perplexity's stdout lines as they are computed (``[i]ppl,``).  ``on_chunk(i, running_ppl)`` is called
    after each chunk.  Raises ValueError for a text too short for the context.
    """
    m, tok = open_model(model, n_ctx)
    n_seq, n_batch = batch_layout(n_ctx, n_batch)
    toks = _tokens_for(tok, text, tokens)
    if toks.size < 2 * n_ctx:
        raise _too_short(toks.size, n_ctx)
    if toks.size and (toks.min() < 0 or toks.max() >= m.n_vocab):
        raise ValueError(f"token ids must be in [0, {m.n_vocab})")
    n_chunk_max = toks.size // n_ctx
    n_chunk = n_chunk_max if n_chunks < 0 else min(n_chunks, n_chunk_max)
    if n_chunk == 0:
        raise ValueError("--chunks 0: no chunk to evaluate")
    n_vocab = tok.n_tokens
    first = n_ctx // 2
    n_scored = n_ctx - 1 - first
    bos = tok.bos_id if tok.add_bos else None

    if kl_divergence_base is None:
        return _run(m, toks, n_ctx, n_batch, n_chunk, n_vocab, first, n_scored, bos, None, progress, out, on_chunk)
    with atomic_output(kl_divergence_base) as f:
        # the header: "_logits_", n_ctx, n_vocab, n_chunk, then the tokens of every chunk (BOS not substituted)
        f.write(LOGITS_MAGIC + pack_i32(n_ctx, n_vocab, n_chunk))
        f.write(toks[:n_chunk * n_ctx].astype("<i4").tobytes())
        return _run(m, toks, n_ctx, n_batch, n_chunk, n_vocab, first, n_scored, bos, f, progress, out, on_chunk)


def _run(m, toks, n_ctx, n_batch, n_chunk, n_vocab, first, n_scored, bos, base_file, progress, out, on_chunk):
    nv = 2 * ((n_vocab + 1) // 2) + 4          # uint16 words per token in the base file
    log_probs = np.zeros((n_scored, nv), np.uint16) if base_file is not None else None
    nll = nll2 = 0.0
    count = 0
    chunk_ppl = []
    logit_hist = np.zeros(toks.size, np.float32)
    prob_hist = np.zeros(toks.size, np.float32)
    bar = _progress(n_chunk, progress, "perplexity")
    t0 = time.perf_counter()
    try:
        for i in range(n_chunk):
            start = i * n_ctx
            logits = eval_chunk(m, toks[start:start + n_ctx], n_batch, bos, first)
            rows = np.ascontiguousarray(logits[:n_ctx - 1 - first, :n_vocab], dtype=np.float32)
            targets = toks[start + first + 1:start + n_ctx].astype(np.int64)
            if base_file is None:
                s, s2, lh, ph = logprobs.nll_rows(rows, targets)
                logit_hist[start + first + 1:start + n_ctx] = lh
                prob_hist[start + first + 1:start + n_ctx] = ph
            else:
                s, s2 = logprobs.nll_rows_quantized(rows, targets, log_probs)
                base_file.write(log_probs.astype("<u2").tobytes())
            # the worker's local sums join the totals once per chunk
            nll += s
            nll2 += s2
            count += n_scored
            chunk_ppl.append(math.exp(nll / count))
            _emit(out, f"[{i + 1}]{chunk_ppl[-1]:.4f},")
            if i == 0:
                dt = time.perf_counter() - t0
                print(f"perplexity: {dt:.2f} seconds per pass - ETA {dt * n_chunk / 60:.2f} minutes",
                      file=sys.stderr)
            if on_chunk is not None:
                on_chunk(i, chunk_ppl[-1])
            bar.update(1)
    finally:
        bar.close()
    _emit(out, "\n")
    ppl, err = _final_estimate(nll, nll2, count)
    res = PerplexityResult(ppl=ppl, ppl_error=err, n_ctx=n_ctx, n_chunk=n_chunk, n_tokens=int(toks.size),
                           count=count, nll=nll, nll2=nll2, chunk_ppl=chunk_ppl)
    if base_file is None:
        res.logit_history, res.prob_history = logit_hist, prob_hist
    return res


# ---------------------------------------------------------------------------------------------- KL divergence
@dataclass
class BaseLogits:
    """A llama.cpp base-logits file (``--kl-divergence-base``): its header and tokens, and where its per-chunk
    uint16 log-probabilities start."""
    path: str
    n_ctx: int
    n_vocab: int
    n_chunk: int
    tokens: np.ndarray            # int32 (n_chunk * n_ctx,)
    data_offset: int
    nv: int                       # uint16 words per token row: 2*((n_vocab+1)/2) + 4

    @property
    def n_scored(self) -> int:
        return self.n_ctx - 1 - self.n_ctx // 2


def read_base_logits(path) -> BaseLogits:
    """Open and check a base-logits file; ValueError naming what is wrong (kl_divergence()'s checks, plus the size
    the C only finds out when a read fails)."""
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(20)
        if len(head) < 8 or head[:8] != LOGITS_MAGIC:
            raise ValueError(f"{path} does not look like a file containing log-probabilities "
                             f"(no '_logits_' magic at offset 0)")
        if len(head) < 20:
            raise ValueError(f"{path}: failed reading n_ctx, n_vocab, n_chunk (file ends at offset {len(head)})")
        n_ctx, n_vocab, n_chunk = np.frombuffer(head[8:20], "<i4").tolist()
        if n_ctx <= 1 or n_vocab <= 0 or n_chunk <= 0:
            raise ValueError(f"{path}: bad header at offset 8: n_ctx={n_ctx}, n_vocab={n_vocab}, n_chunk={n_chunk}")
        nv = 2 * ((n_vocab + 1) // 2) + 4
        n_scored = n_ctx - 1 - n_ctx // 2
        tok_bytes = n_ctx * n_chunk * 4
        expected = 20 + tok_bytes + n_chunk * n_scored * nv * 2
        f.seek(0, 2)
        size = f.tell()
        if size != expected:
            raise ValueError(f"{path}: {size} bytes, expected {expected} for n_ctx={n_ctx}, n_vocab={n_vocab}, "
                             f"n_chunk={n_chunk} ({'truncated' if size < expected else 'trailing data'})")
        f.seek(20)
        tokens = np.frombuffer(f.read(tok_bytes), "<i4").astype(np.int32)
    if tokens.min() < 0 or tokens.max() >= n_vocab:
        raise ValueError(f"{path}: token ids outside [0, {n_vocab}) at offset 20")
    return BaseLogits(path, n_ctx, n_vocab, n_chunk, tokens, 20 + tok_bytes, nv)


def _mean_and_uncertainty(s: float, s2: float, count: int) -> tuple[float, float]:
    if count < 1:
        return 0.0, 0.0
    f = s / count
    df = s2 / count - f * f
    df = csqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0
    return f, df


def _covariance(sa: float, sb: float, sab: float, count: int) -> float:
    if count < 10:
        return 0.0
    var = sab / count - (sa / count) * (sb / count)
    return var / (count - 1)


def _percentile(values: np.ndarray, fraction: float) -> np.float32:
    """kl_divergence()'s percentile lambda, in float: linear interpolation between the sorted neighbours."""
    f = np.float32(fraction)
    if f <= 0:
        return values[0]
    if f >= 1:
        return values[-1]
    p = f * np.float32(values.size - 1)
    ip = int(p)
    p = np.float32(p - np.float32(ip))
    return np.float32((np.float32(1) - p) * values[ip] + p * values[min(ip + 1, values.size - 1)])


def _median(values: np.ndarray) -> np.float32:
    n = values.size
    if n % 2 == 0:
        return np.float32(np.float32(0.5) * np.float32(values[n // 2] + values[n // 2 - 1]))
    return values[n // 2]


KLD_PERCENTILES = (("99.9%", 0.999), ("99.0%", 0.990), ("95.0%", 0.950), ("90.0%", 0.900))
KLD_LOW_PERCENTILES = (("10.0%", 0.100), (" 5.0%", 0.050), (" 1.0%", 0.010), (" 0.1%", 0.001))
DP_PERCENTILES = (("99.9%", 0.999), ("99.0%", 0.990), ("95.0%", 0.950), ("90.0%", 0.900), ("75.0%", 0.750))
DP_LOW_PERCENTILES = (("25.0%", 0.250), ("10.0%", 0.100), (" 5.0%", 0.050), (" 1.0%", 0.010), (" 0.1%", 0.001))


@dataclass
class KLDivergenceResult:
    """kl_divergence()'s accumulated kl_divergence_result and the per-token values, with the report's statistics
    as properties/methods.  ``report()`` is the text llama-perplexity prints after the chunk table."""
    n_ctx: int
    n_chunk: int
    count: int
    sums: dict[str, float]                 # sum_nll, sum_nll2, sum_nll_base, ... (logprobs.KLD_SUMS)
    max_p_diff: float
    n_same_top: int
    kld_values: np.ndarray                 # float32 per scored token (unsorted, token order)
    p_diff_values: np.ndarray
    chunk_lines: list[str] = field(default_factory=list)

    # --- the statistics, computed as the C computes them (double, libm) ---
    def _mu(self, a: str, b: str) -> tuple[float, float]:
        return _mean_and_uncertainty(self.sums[a], self.sums[b], self.count)

    @property
    def log_ppl(self):
        return self._mu("sum_nll", "sum_nll2")

    @property
    def log_ppl_base(self):
        return self._mu("sum_nll_base", "sum_nll_base2")

    @property
    def log_ppl_cov(self) -> float:
        return _covariance(self.sums["sum_nll"], self.sums["sum_nll_base"], self.sums["sum_nll_nll_base"],
                           self.count)

    def statistics(self) -> dict[str, float]:
        """Every figure of the final report, by name (values as the C holds them before printing)."""
        s = {}
        lp, lpb, cov = self.log_ppl, self.log_ppl_base, self.log_ppl_cov
        s["ppl"] = ppl_val = math.exp(lp[0])
        s["ppl_unc"] = ppl_unc = ppl_val * lp[1]
        s["ppl_base"] = ppl_base_val = math.exp(lpb[0])
        s["ppl_base_unc"] = ppl_base_unc = ppl_base_val * lpb[1]
        s["cor_ln_ppl"] = cdiv(cov, lp[1] * lpb[1])
        s["ln_ppl_ratio"] = ratio = lp[0] - lpb[0]
        s["ln_ppl_ratio_unc"] = ratio_unc = csqrt(lp[1] * lp[1] + lpb[1] * lpb[1] - 2.0 * cov)
        s["ppl_ratio"] = math.exp(ratio)
        s["ppl_ratio_unc"] = s["ppl_ratio"] * ratio_unc
        ppl_cov = ppl_val * ppl_base_val * cov
        s["ppl_diff"] = ppl_val - ppl_base_val
        s["ppl_diff_unc"] = csqrt(ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov)
        s["kld_mean"], s["kld_mean_unc"] = self._mu("sum_kld", "sum_kld2")
        kv = np.sort(self.kld_values)
        pv = np.sort(self.p_diff_values)
        s["kld_max"] = float(kv[-1])
        for name, frac in KLD_PERCENTILES + KLD_LOW_PERCENTILES:
            s[f"kld_{name.strip()}"] = float(_percentile(kv, frac))
        s["kld_median"] = float(_median(kv))
        s["kld_min"] = float(kv[0])
        s["dp_mean"], s["dp_mean_unc"] = self._mu("sum_p_diff", "sum_p_diff2")
        s["dp_max"] = float(pv[-1])
        for name, frac in DP_PERCENTILES + DP_LOW_PERCENTILES:
            s[f"dp_{name.strip()}"] = float(_percentile(pv, frac))
        s["dp_median"] = float(_median(pv))
        s["dp_min"] = float(pv[0])
        mse = self._mu("sum_p_diff2", "sum_p_diff4")
        s["dp_rms"] = rms = csqrt(mse[0])
        s["dp_rms_unc"] = cdiv(0.5, rms) * mse[1]
        s["same_top"] = same = self.n_same_top / self.count
        s["same_top_unc"] = csqrt(same * (1.0 - same) / (self.count - 1))
        return s

    def report(self) -> str:
        """The statistics block llama-perplexity prints (empty when fewer than 100 tokens were scored)."""
        if self.count < 100:
            return ""
        s = self.statistics()
        L = ["====== Perplexity statistics ======",
             f"Mean PPL(Q)                   : {cfmt('%10.6f', s['ppl'])} ± {cfmt('%10.6f', s['ppl_unc'])}",
             f"Mean PPL(base)                : {cfmt('%10.6f', s['ppl_base'])} ± {cfmt('%10.6f', s['ppl_base_unc'])}",
             f"Cor(ln(PPL(Q)), ln(PPL(base))): {cfmt('%6.2f', 100.0 * s['cor_ln_ppl'])}%",
             f"Mean ln(PPL(Q)/PPL(base))     : {cfmt('%10.6f', s['ln_ppl_ratio'])} ± "
             f"{cfmt('%10.6f', s['ln_ppl_ratio_unc'])}",
             f"Mean PPL(Q)/PPL(base)         : {cfmt('%10.6f', s['ppl_ratio'])} ± {cfmt('%10.6f', s['ppl_ratio_unc'])}",
             f"Mean PPL(Q)-PPL(base)         : {cfmt('%10.6f', s['ppl_diff'])} ± {cfmt('%10.6f', s['ppl_diff_unc'])}",
             "",
             "====== KL divergence statistics ======",
             f"Mean    KLD: {cfmt('%10.6f', s['kld_mean'])} ± {cfmt('%10.6f', s['kld_mean_unc'])}",
             f"Maximum KLD: {cfmt('%10.6f', s['kld_max'])}"]
        L += [f"{name}   KLD: {cfmt('%10.6f', s['kld_' + name.strip()])}" for name, _ in KLD_PERCENTILES]
        L += [f"Median  KLD: {cfmt('%10.6f', s['kld_median'])}"]
        L += [f"{name}   KLD: {cfmt('%10.6f', s['kld_' + name.strip()])}" for name, _ in KLD_LOW_PERCENTILES]
        L += [f"Minimum KLD: {cfmt('%10.6f', s['kld_min'])}",
              "",
              "====== Token probability statistics ======",
              f"Mean    Δp: {cfmt('%6.3f', 100.0 * s['dp_mean'])} ± {cfmt('%5.3f', 100.0 * s['dp_mean_unc'])} %",
              f"Maximum Δp: {cfmt('%6.3f', 100.0 * s['dp_max'])}%"]
        L += [f"{name}   Δp: {cfmt('%6.3f', 100.0 * s['dp_' + name.strip()])}%" for name, _ in DP_PERCENTILES]
        L += [f"Median  Δp: {cfmt('%6.3f', 100.0 * s['dp_median'])}%"]
        L += [f"{name}   Δp: {cfmt('%6.3f', 100.0 * s['dp_' + name.strip()])}%" for name, _ in DP_LOW_PERCENTILES]
        L += [f"Minimum Δp: {cfmt('%6.3f', 100.0 * s['dp_min'])}%",
              f"RMS Δp    : {cfmt('%6.3f', 100.0 * s['dp_rms'])} ± {cfmt('%5.3f', 100.0 * s['dp_rms_unc'])} %",
              f"Same top p: {cfmt('%6.3f', 100.0 * s['same_top'])} ± {cfmt('%5.3f', 100.0 * s['same_top_unc'])} %"]
        return "\n".join(L) + "\n"


KLD_TABLE_HEADER = ("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
                    "Δp RMS            Same top p")


def _chunk_line(i: int, sums: dict, n_same_top: int, count: int) -> str:
    """One row of kl_divergence()'s running table (the totals so far)."""
    lp = _mean_and_uncertainty(sums["sum_nll"], sums["sum_nll2"], count)
    ppl_val = math.exp(lp[0])
    lpb = _mean_and_uncertainty(sums["sum_nll_base"], sums["sum_nll_base2"], count)
    cov = _covariance(sums["sum_nll"], sums["sum_nll_base"], sums["sum_nll_nll_base"], count)
    ratio_unc = csqrt(lp[1] * lp[1] + lpb[1] * lpb[1] - 2.0 * cov)
    kl = _mean_and_uncertainty(sums["sum_kld"], sums["sum_kld2"], count)
    mse = _mean_and_uncertainty(sums["sum_p_diff2"], sums["sum_p_diff4"], count)
    rms = csqrt(mse[0])
    rms_unc = cdiv(0.5, rms) * mse[1]
    top = 1.0 * n_same_top / count
    top_unc = csqrt(cdiv(top * (1 - top), count - 1))
    return (f"{i:4d}"
            f"    {cfmt('%9.4f', ppl_val)} ± {cfmt('%9.4f', ppl_val * lp[1])}"
            f"    {cfmt('%10.5f', lp[0] - lpb[0])} ± {cfmt('%10.5f', ratio_unc)}"
            f"    {cfmt('%10.5f', kl[0])} ± {cfmt('%10.5f', kl[1])}"
            f"    {cfmt('%6.3f', 100.0 * rms)} ± {cfmt('%6.3f', 100.0 * rms_unc)} %"
            f"    {cfmt('%6.3f', 100.0 * top)} ± {cfmt('%6.3f', 100.0 * top_unc)} %")


def kl_divergence(model, base, *, n_batch: int = 2048, n_ctx: int | None = None, progress: bool = False, out=None,
                  on_chunk=None) -> KLDivergenceResult:
    """llama-perplexity --kl-divergence (``kl_divergence()`` in perplexity.cpp): evaluate ``model`` on the tokens of
    the base-logits file ``base`` (a path or a ``BaseLogits``) chunk by chunk, and compare its distribution at
    each scored token with the base model's.  ``out`` gets the running table as llama-perplexity prints it; the
    final report is ``result.report()``.  ``n_ctx``: the context asked for (``-c``); like llama.cpp, a file made
    with a larger chunk than the n_parallel * n_ctx cells it gives is refused (None: the file's).  ValueError for a
    file from another vocabulary, or a corrupt one."""
    if not isinstance(base, BaseLogits):
        base = read_base_logits(base)
    if n_ctx is not None:
        n_seq, _ = batch_layout(n_ctx, n_batch)
        if base.n_ctx > n_seq * n_ctx:
            raise ValueError(f"{base.path} has been computed with {base.n_ctx}, while the current context is "
                             f"{n_ctx}. Increase it with -c and retry")
    n_ctx = base.n_ctx
    m, tok = open_model(model, n_ctx)
    if base.n_vocab != tok.n_tokens:
        raise ValueError(f"{base.path}: inconsistent vocabulary ({base.n_vocab} vs {tok.n_tokens} of the model)")
    _, n_batch = batch_layout(n_ctx, n_batch)
    first = n_ctx // 2
    n_scored = base.n_scored
    bos = tok.bos_id if tok.add_bos else None
    sums = {k: 0.0 for k in logprobs.KLD_SUMS}
    max_p_diff = np.float32(0.0)
    n_same_top = count = 0
    kld_values = np.zeros(n_scored * base.n_chunk, np.float32)
    p_diff_values = np.zeros(n_scored * base.n_chunk, np.float32)
    lines = []
    bar = _progress(base.n_chunk, progress, "kl-divergence")
    _emit(out, "\n" + KLD_TABLE_HEADER + "\n")
    try:
        with open(base.path, "rb") as f:
            f.seek(base.data_offset)
            for i in range(base.n_chunk):
                start = i * n_ctx
                logits = eval_chunk(m, base.tokens[start:start + n_ctx], n_batch, bos, first)
                rows = np.ascontiguousarray(logits[:n_ctx - 1 - first, :base.n_vocab], dtype=np.float32)
                targets = base.tokens[start + first + 1:start + n_ctx].astype(np.int64)
                chunk_lp = np.frombuffer(f.read(n_scored * base.nv * 2), "<u2").reshape(n_scored, base.nv)
                sl = slice(i * n_scored, (i + 1) * n_scored)
                local, local_max, local_top, local_count = logprobs.kld_rows(
                    rows, targets, np.ascontiguousarray(chunk_lp), kld_values[sl], p_diff_values[sl])
                # the worker's local kl_divergence_result joins the totals field by field
                for k, name in enumerate(logprobs.KLD_SUMS):
                    sums[name] += float(local[k])
                max_p_diff = max(max_p_diff, np.float32(local_max))
                n_same_top += int(local_top)
                count += int(local_count)
                line = _chunk_line(i + 1, sums, n_same_top, count)
                lines.append(line)
                _emit(out, line + "\n")
                if on_chunk is not None:
                    on_chunk(i, line)
                bar.update(1)
    finally:
        bar.close()
    _emit(out, "\n")
    res = KLDivergenceResult(n_ctx=n_ctx, n_chunk=base.n_chunk, count=count, sums=sums,
                             max_p_diff=float(max_p_diff), n_same_top=n_same_top, kld_values=kld_values,
                             p_diff_values=p_diff_values, chunk_lines=lines)
    _emit(out, res.report())
    return res
