"""The per-token log-softmax kernels of llama.cpp's tools/perplexity/perplexity.cpp, in the C's precision and order.

Each function mirrors one C function over one chunk's scored rows (``logits`` (n_token, n_vocab) float32, the
row ``i`` predicting ``targets[i]``), and returns the chunk's *local* sums, as the C's ``process_logits`` worker
does before it adds them to the run's totals: the caller adds them in chunk order (see ``quality.perplexity``).

C float semantics that matter (x86-64, FLT_EVAL_METHOD 0):
* ``logits[i] - max_logit`` is a float subtraction; ``expf`` is libm's (numba lowers ``math.exp`` on a float32 to
  the C library call); ``sum_exp`` is a double; ``log(sum_exp)`` a double ``log``;
* ``const float x = <double expression>`` rounds to float; ``float * float`` stays float even when assigned to a
  double (``const double p_diff2 = p_diff*p_diff``).
"""
from __future__ import annotations

import math

import numpy as np

from .._jit import f32, f32_from_bits, f32_to_bits, njit


@njit
def _expf(x):
    return f32(math.exp(f32(x)))


@njit
def _nearest_int(fval):
    # perplexity.cpp's nearest_int (the 1.5*2^23 trick), as an int32
    val = f32(f32(fval) + f32(12582912.0))
    return np.int32(np.int64(f32_to_bits(val) & 0x007FFFFF) - 0x00400000)


@njit
def _put_float(words, k, x):
    # a float stored in a uint16 array (d[k] of `float * d = (float *)log_prob`), little-endian
    bits = f32_to_bits(x)
    words[2 * k] = np.uint16(bits & 0xFFFF)
    words[2 * k + 1] = np.uint16(bits >> 16)


@njit
def _get_float(words, k):
    return f32_from_bits(np.uint32(words[2 * k]) | (np.uint32(words[2 * k + 1]) << np.uint32(16)))


@njit
def nll_rows(logits, targets):
    """process_logits + log_softmax(n_vocab, logits, tok) (the plain perplexity run).

    Returns (sum of nll, sum of nll², logit of the target per row, probability of the target per row)."""
    n_token, n_vocab = logits.shape
    local_nll = 0.0
    local_nll2 = 0.0
    logit_history = np.empty(n_token, np.float32)
    prob_history = np.empty(n_token, np.float32)
    for i in range(n_token):
        row = logits[i]
        tok = targets[i]
        max_logit = row[0]
        for j in range(1, n_vocab):
            max_logit = max(max_logit, row[j])         # std::max(a, b): b only if a < b
        sum_exp = 0.0
        for j in range(n_vocab):
            sum_exp += np.float64(_expf(row[j] - max_logit))
        # logits[tok] - max_logit - log(sum_exp): a float difference, then a double one
        log_softmax = np.float64(f32(row[tok] - max_logit)) - math.log(sum_exp)
        v = -log_softmax
        local_nll += v
        local_nll2 += v * v
        logit_history[i] = row[tok]
        prob_history[i] = _expf(row[tok] - max_logit) / f32(sum_exp)
    return local_nll, local_nll2, logit_history, prob_history


@njit
def nll_rows_quantized(logits, targets, log_probs):
    """process_logits(out, ...) + log_softmax(n_vocab, logits, log_prob, tok): the --kl-divergence-base run.

    Fills ``log_probs`` (n_token, nv) uint16 — per row the float scale and minimum log-probability (as the four
    uint16 words of two floats), then one uint16 per vocabulary entry, padding left as it is — and returns the
    chunk's (sum of nll, sum of nll²).  The nll is the float ``max_logit + log_sum_exp - logits[tok]``."""
    n_token, n_vocab = logits.shape
    local_nll = 0.0
    local_nll2 = 0.0
    for i in range(n_token):
        row = logits[i]
        max_logit = row[0]
        min_logit = row[0]
        for j in range(1, n_vocab):
            max_logit = max(max_logit, row[j])
            min_logit = min(min_logit, row[j])
        min_logit = max(min_logit, f32(max_logit - f32(16.0)))
        sum_exp = 0.0
        for j in range(n_vocab):
            sum_exp += np.float64(_expf(row[j] - max_logit))
        log_sum_exp = f32(math.log(sum_exp))
        min_log_prob = f32(f32(min_logit - max_logit) - log_sum_exp)
        scale = f32(f32(max_logit - min_logit) / f32(65535.0))
        out = log_probs[i]
        _put_float(out, 0, scale)
        _put_float(out, 1, min_log_prob)
        if scale != 0:
            inv_scale = f32(f32(1.0) / scale)
            for j in range(n_vocab):
                if row[j] > min_logit:
                    out[4 + j] = np.uint16(_nearest_int(f32(inv_scale * f32(row[j] - min_logit))) & 0xFFFF)
                else:
                    out[4 + j] = 0
        else:
            for j in range(n_vocab):
                out[4 + j] = 0
        v = np.float64(f32(f32(max_logit + log_sum_exp) - row[targets[i]]))
        local_nll += v
        local_nll2 += v * v
    return local_nll, local_nll2


#: the fields of kl_divergence_result, in order (KLD_SUMS[k] is index k of the sums array)
KLD_SUMS = ("sum_nll", "sum_nll2", "sum_nll_base", "sum_nll_base2", "sum_nll_nll_base", "sum_kld", "sum_kld2",
            "sum_p_diff", "sum_p_diff2", "sum_p_diff4")


@njit
def kld_rows(logits, targets, base_log_probs, kld_values, p_diff_values):
    """process_logits + log_softmax(n_vocab, logits, base_log_prob, tok, kld): the --kl-divergence run.

    Returns the chunk's local kl_divergence_result: (sums float64[10] in KLD_SUMS order, max |Δp| (float32),
    n_same_top, count); fills kld_values / p_diff_values (float32, one per row)."""
    n_token, n_vocab = logits.shape
    sums = np.zeros(10, np.float64)
    max_p_diff = f32(0.0)
    n_same_top = 0
    count = 0
    for i in range(n_token):
        row = logits[i]
        tok = targets[i]
        base = base_log_probs[i]
        max_logit = row[0]
        imax = 0
        for j in range(1, n_vocab):
            if row[j] > max_logit:
                max_logit = row[j]
                imax = j
        sum_exp = 0.0
        for j in range(n_vocab):
            sum_exp += np.float64(_expf(row[j] - max_logit))
        log_sum_exp = f32(math.log(sum_exp))
        scale = _get_float(base, 0)
        min_log_prob = _get_float(base, 1)

        nll = f32(f32(max_logit + log_sum_exp) - row[tok])
        sums[0] += nll
        sums[1] += f32(nll * nll)
        nll_base = -f32(f32(scale * f32(base[4 + tok])) + min_log_prob)
        sums[2] += nll_base
        sums[3] += f32(nll_base * nll_base)
        sums[4] += f32(nll * nll_base)

        max_logit = f32(max_logit + log_sum_exp)
        s = 0.0
        imax_base = -1
        p_log_base_max = f32(0.0)
        for j in range(n_vocab):
            p_log_base = f32(f32(scale * f32(base[4 + j])) + min_log_prob)
            if j == 0 or p_log_base > p_log_base_max:
                p_log_base_max = p_log_base
                imax_base = j
            if p_log_base > f32(-16.0):
                p_base = _expf(p_log_base)
                s += np.float64(f32(p_base * f32(f32(p_log_base - row[j]) + max_logit)))
        sums[5] += s
        sums[6] += s * s
        count += 1
        if imax == imax_base:
            n_same_top += 1

        p_base = _expf(-nll_base)
        p = _expf(-nll)
        p_diff = f32(p - p_base)
        sums[7] += p_diff
        p_diff2 = np.float64(f32(p_diff * p_diff))
        sums[8] += p_diff2
        sums[9] += p_diff2 * p_diff2
        max_p_diff = max(max_p_diff, abs(p_diff))
        kld_values[i] = f32(s)
        p_diff_values[i] = p_diff
    return sums, max_p_diff, n_same_top, count
