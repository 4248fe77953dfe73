"""The operations of a transformer forward pass, computed the way ggml's CPU backend computes them.

Every function here mirrors one ggml-cpu op of the scalar build that llama.cpp's goldens come from.  "Scalar"
means no AVX/F16C/FMA — but x86-64 always has SSE2, and a few ggml-cpu vector functions have an ``__SSE2__``
branch that the scalar build therefore runs: ``ggml_vec_soft_max_f32``, ``ggml_vec_silu_f32``,
``ggml_vec_swiglu_f32`` and ``ggml_vec_cvar_f32`` process 4 floats at a time with ``ggml_v_expf`` (a polynomial
exp, NOT libm's ``expf``) and sum the 4 lanes as ``(v0+v1)+(v2+v3)``.  Only the tail of a row (n % 4 elements)
goes through libm.  ``expf_sse2`` below is that polynomial, lane by lane (SSE2 has no FMA: every multiply-add
rounds twice).

libm calls (``expf``, ``tanhf``, ``sinf``, ``cosf``, ``powf``, ``logf``) are made from numba on float32
arguments, which LLVM lowers to the same glibc functions the C build calls.

Arrays are float32 (rows last-axis contiguous) unless said otherwise; float sums follow the C loops exactly
(``ggml_float`` = double where ggml uses it).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import f32, f32_from_bits, f32_to_bits, mul_nan_first, njit
from ..floats import F16_TO_F32, fp16_to_fp32, fp32_to_fp16
from ..quant.layer import get_kernels

# ----------------------------------------------------------------------------------------------- exp and friends


# ggml_v_expf's constants, written as C hex-float literals
_EXP_R = float.fromhex("0x1.8p23")
_EXP_LOG2E = float.fromhex("0x1.715476p+0")
_EXP_LN2_HI = float.fromhex("0x1.62e4p-1")
_EXP_LN2_LO = float.fromhex("0x1.7f7d1cp-20")
_EXP_C5 = float.fromhex("0x1.0e4020p-7")
_EXP_C4 = float.fromhex("0x1.573e2ep-5")
_EXP_C3 = float.fromhex("0x1.555e66p-3")
_EXP_C2 = float.fromhex("0x1.fffdb6p-2")
_EXP_C1 = float.fromhex("0x1.ffffecp-1")


@njit
def expf_sse2(x):
    """One lane of ggml_v_expf (ggml-cpu/vec.h, ``__SSE2__`` branch; MADD128 = multiply then add, no FMA).

    ggml's port of ARM optimized-routines' expf: max error 1.45 ulp + 0.5; x > 88.38 -> Inf, x < -103.97 -> 0."""
    x = f32(x)
    r = f32(_EXP_R)
    z = x * f32(_EXP_LOG2E) + r
    n = z - r
    b = x - n * f32(_EXP_LN2_HI)
    b = b - n * f32(_EXP_LN2_LO)
    e = (f32_to_bits(z) << np.uint32(23)) & np.uint32(0xFFFFFFFF)
    k = f32_from_bits((e + np.uint32(0x3F800000)) & np.uint32(0xFFFFFFFF))
    u = b * b
    j = (f32(_EXP_C5) * b + f32(_EXP_C4)) * u + (f32(_EXP_C3) * b + f32(_EXP_C2))
    j = j * u + f32(_EXP_C1) * b
    if not (abs(n) > f32(126.0)):
        return j * k + k
    # |n| > 126: scale in two steps (s1, s2) so that 2^n does not overflow/underflow early
    g = np.uint32(0x82000000) if n <= f32(0.0) else np.uint32(0)
    s1 = f32_from_bits((g + np.uint32(0x7F000000)) & np.uint32(0xFFFFFFFF))
    s2 = f32_from_bits((e - g) & np.uint32(0xFFFFFFFF))
    if abs(n) > f32(192.0):
        return s1 * s1
    return (s2 * j + s2) * s1


@njit
def expf_libm(x):
    """libm ``expf`` (numba lowers math.exp on a float32 to the C library call)."""
    return f32(math.exp(f32(x)))


@njit
def silu_f32(x):
    """ggml_silu_f32: x/(1+expf(-x)) with libm expf (the scalar tail of the vector loops)."""
    return x / (f32(1.0) + expf_libm(-x))


@njit
def silu_sse2(x):
    """One lane of ggml_v_silu (SSE2): x / (1 + v_expf(0 - x))."""
    return x / (f32(1.0) + expf_sse2(f32(0.0) - x))


@njit
def _swiglu_rows(gate, up, out):
    # mirrors ggml_vec_swiglu_f32 (vec.cpp): lanes of 4 through ggml_v_silu, the row tail through ggml_silu_f32
    nrows, n = gate.shape
    n4 = n - n % 4
    for r in prange(nrows):
        for i in range(n4):
            out[r, i] = silu_sse2(gate[r, i]) * up[r, i]
        for i in range(n4, n):
            out[r, i] = silu_f32(gate[r, i]) * up[r, i]


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """ggml_swiglu_split(gate, up) = silu(gate) * up, row by row."""
    gate = np.ascontiguousarray(gate, dtype=np.float32)
    up = np.ascontiguousarray(up, dtype=np.float32)
    if gate.shape != up.shape or gate.ndim != 2:
        raise ValueError(f"swiglu expects two (n_tokens, n_ff) arrays of the same shape, got {gate.shape} {up.shape}")
    out = np.empty_like(gate)
    _swiglu_rows(gate, up, out)
    return out


@njit
def gelu_f32(x):
    """ggml_gelu_f32 (vec.h): 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x))), C's left-to-right
    products."""
    return (f32(0.5) * x) * (f32(1.0) + f32(math.tanh((f32(0.7978845834732055664062) * x)
                                                        * (f32(1.0) + (f32(0.044715) * x) * x))))


@njit
def _gelu_table():
    # ggml_cpu_init: ggml_table_gelu_f16[i] = fp32_to_fp16(ggml_gelu_f32(fp16_to_fp32(i))) for all 65536 halves
    t = np.empty(65536, dtype=np.uint16)
    for i in range(65536):
        t[i] = fp32_to_fp16(gelu_f32(fp16_to_fp32(np.uint16(i))))
    return t


_GELU_TABLE = None


def gelu_table() -> np.ndarray:
    global _GELU_TABLE
    if _GELU_TABLE is None:
        _GELU_TABLE = _gelu_table()
    return _GELU_TABLE


@njit
def _gelu_rows(x, table, out):
    # mirrors ggml_vec_gelu_f32 with GGML_GELU_FP16 defined (vec.h): a lookup of the f16-rounded input
    nrows, n = x.shape
    for r in prange(nrows):
        for i in range(n):
            v = x[r, i]
            if v <= f32(-10.0):
                out[r, i] = f32(0.0)
            elif v >= f32(10.0):
                out[r, i] = v
            else:
                out[r, i] = F16_TO_F32[table[np.int64(fp32_to_fp16(v))]]


@njit
def _geglu_rows(x, g, table, out):
    # mirrors ggml_vec_geglu_f32 with GGML_GELU_FP16 (vec.h)
    nrows, n = x.shape
    for r in prange(nrows):
        for i in range(n):
            v = x[r, i]
            if v <= f32(-10.0):
                out[r, i] = f32(0.0)
            elif v >= f32(10.0):
                out[r, i] = v * g[r, i]
            else:
                out[r, i] = F16_TO_F32[table[np.int64(fp32_to_fp16(v))]] * g[r, i]


def gelu(x: np.ndarray) -> np.ndarray:
    """ggml_gelu (tanh approximation through ggml's f16 lookup table) on rows."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    _gelu_rows(x2, gelu_table(), out)
    return out.reshape(x.shape)


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """ggml_geglu_split(gate, up) = gelu(gate) * up (table gelu)."""
    gate = np.ascontiguousarray(gate, dtype=np.float32)
    up = np.ascontiguousarray(up, dtype=np.float32)
    if gate.shape != up.shape or gate.ndim != 2:
        raise ValueError(f"geglu expects two (n_tokens, n_ff) arrays of the same shape, got {gate.shape} {up.shape}")
    out = np.empty_like(gate)
    _geglu_rows(gate, up, gelu_table(), out)
    return out


# ----------------------------------------------------------------------------------------------- norms


@njit
def _rms_norm_rows(x, eps, out):
    # mirrors ggml_compute_forward_rms_norm_f32 (ops.cpp): double sum of float squares, mean rounded to float
    nrows, n = x.shape
    for r in prange(nrows):
        s = 0.0
        for i in range(n):
            s += np.float64(x[r, i] * x[r, i])
        mean = f32(s / n)
        scale = f32(1.0) / f32(math.sqrt(mean + eps))
        for i in range(n):
            out[r, i] = x[r, i] * scale


def rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """ggml_rms_norm over the last axis (without the weight: multiply by it afterwards, as ggml_mul does)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    _rms_norm_rows(x2, np.float32(eps), out)
    return out.reshape(x.shape)


@njit
def _layer_norm_rows(x, eps, out):
    # mirrors ggml_compute_forward_norm_f32 (ops.cpp) with ggml_vec_sum_f32 and the SSE2 ggml_vec_cvar_f32
    nrows, n = x.shape
    n4 = n - n % 4
    for r in prange(nrows):
        s = 0.0
        for i in range(n):
            s += np.float64(x[r, i])
        mean = f32(s) / f32(n)
        var = 0.0
        for i in range(0, n4, 4):
            v0 = x[r, i] - mean
            v1 = x[r, i + 1] - mean
            v2 = x[r, i + 2] - mean
            v3 = x[r, i + 3] - mean
            out[r, i] = v0
            out[r, i + 1] = v1
            out[r, i + 2] = v2
            out[r, i + 3] = v3
            var += np.float64((v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3))
        for i in range(n4, n):
            v = x[r, i] - mean
            out[r, i] = v
            var += np.float64(v * v)
        variance = f32(var / n)
        scale = f32(1.0) / f32(math.sqrt(variance + eps))
        for i in range(n):
            out[r, i] = out[r, i] * scale


def layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """ggml_norm over the last axis (mean 0, variance 1; weight and bias are separate ggml_mul/ggml_add)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    _layer_norm_rows(x2, np.float32(eps), out)
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------------------------- RoPE

ROPE_NORMAL = 0   # GGML_ROPE_TYPE_NORMAL: rotate adjacent pairs (x[2i], x[2i+1])   (llama)
ROPE_NEOX = 2     # GGML_ROPE_TYPE_NEOX: rotate (x[i], x[i + n_dims/2])             (qwen2/3, gemma3, phi3)


@njit
def _rope_yarn_corr_dim(n_dims, n_ctx_orig, n_rot, base):
    # ggml_rope_yarn_corr_dim (ggml.c): n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base))
    den = f32(n_rot) * f32(2.0) * f32(math.pi)
    return f32(n_dims) * f32(math.log(f32(f32(n_ctx_orig) / den))) / (f32(2.0) * f32(math.log(f32(base))))


def rope_yarn_corr_dims(n_dims: int, n_ctx_orig: int, freq_base: float, beta_fast: float, beta_slow: float):
    """ggml_rope_yarn_corr_dims (ggml.c): the dimension range YaRN blends over."""
    start = math.floor(_rope_yarn_corr_dim(n_dims, n_ctx_orig, f32(beta_fast), f32(freq_base)))
    end = math.ceil(_rope_yarn_corr_dim(n_dims, n_ctx_orig, f32(beta_slow), f32(freq_base)))
    return f32(max(0.0, start)), f32(min(float(n_dims - 1), end))


@njit
def _rope_cache(p, n_cache, freq_scale, freq_factors, corr0, corr1, ext_factor, mscale, theta_scale, cache):
    # mirrors ggml_rope_cache_init + rope_yarn + rope_yarn_ramp (ops.cpp); theta is a float multiplied step by step
    theta = f32(p)
    for i0 in range(0, n_cache, 2):
        ff = freq_factors[i0 // 2] if freq_factors.shape[0] > 0 else f32(1.0)
        theta_extrap = theta / ff
        theta_interp = freq_scale * theta_extrap
        th = theta_interp
        ms = mscale
        if ext_factor != f32(0.0):
            y = (f32(i0 // 2) - corr0) / max(f32(0.001), corr1 - corr0)
            ramp = f32(1.0) - min(f32(1.0), max(f32(0.0), y))
            ramp_mix = ramp * ext_factor
            th = theta_interp * (f32(1.0) - ramp_mix) + theta_extrap * ramp_mix
            ms = ms * (f32(1.0) + f32(0.1) * f32(math.log(f32(1.0) / freq_scale)))
        cache[i0] = f32(math.cos(th)) * ms
        cache[i0 + 1] = f32(math.sin(th)) * ms
        theta = theta * theta_scale


@njit
def _rope_rows(x, pos, n_dims, neox, freq_base, freq_scale, freq_factors, corr0, corr1, ext_factor, attn_factor,
               out):
    # mirrors ggml_compute_forward_rope_flt<float> (ops.cpp), forward direction, n_offs = 0
    n_tok, n_head, hd = x.shape
    theta_scale = f32(math.pow(freq_base, f32(-2.0) / f32(n_dims)))
    for t in prange(n_tok):
        cache = np.empty(hd, dtype=np.float32)
        _rope_cache(pos[t], hd, freq_scale, freq_factors, corr0, corr1, ext_factor, attn_factor,
                    theta_scale, cache)
        for h in range(n_head):
            for i in range(n_dims, hd):
                out[t, h, i] = x[t, h, i]
            for i0 in range(0, n_dims, 2):
                c = cache[i0]
                s = cache[i0 + 1]
                if neox:
                    a = i0 // 2
                    b = a + n_dims // 2
                else:
                    a = i0
                    b = i0 + 1
                x0 = x[t, h, a]
                x1 = x[t, h, b]
                out[t, h, a] = x0 * c - x1 * s
                out[t, h, b] = x0 * s + x1 * c


def rope(x: np.ndarray, positions, n_dims: int, mode: int, freq_base: float, freq_scale: float = 1.0,
         freq_factors=None, ext_factor: float = 0.0, attn_factor: float = 1.0, beta_fast: float = 32.0,
         beta_slow: float = 1.0, n_ctx_orig: int = 0) -> np.ndarray:
    """ggml_rope_ext on ``x`` (n_tokens, n_head, head_dim) at ``positions`` (n_tokens,)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"rope expects (n_tokens, n_head, head_dim), got shape {x.shape}")
    if n_dims % 2 or n_dims > x.shape[2]:
        raise ValueError(f"rope: n_dims must be even and <= head_dim {x.shape[2]}, got {n_dims}")
    if x.shape[2] % 2:
        raise ValueError(f"rope: head_dim must be even, got {x.shape[2]}")
    if mode not in (ROPE_NORMAL, ROPE_NEOX):
        raise ValueError(f"rope mode {mode} is not supported (0 = normal, 2 = neox)")
    pos = np.ascontiguousarray(positions, dtype=np.int32)
    ff = np.zeros(0, np.float32) if freq_factors is None else np.ascontiguousarray(freq_factors, dtype=np.float32)
    if ff.size and ff.size < n_dims // 2:
        raise ValueError(f"rope freq_factors need at least {n_dims // 2} values, got {ff.size}")
    corr0, corr1 = (rope_yarn_corr_dims(n_dims, n_ctx_orig, freq_base, beta_fast, beta_slow)
                    if ext_factor != 0.0 else (f32(0), f32(0)))
    out = np.empty_like(x)
    _rope_rows(x, pos, n_dims, mode == ROPE_NEOX, f32(freq_base), f32(freq_scale), ff, f32(corr0), f32(corr1),
               f32(ext_factor), f32(attn_factor), out)
    return out


# ----------------------------------------------------------------------------------------------- attention


@njit
def softmax_sse2_sum(w, n_kv, valid_lo, valid_hi, mx, out):
    """ggml_vec_soft_max_f32 (vec.cpp, SSE2 branch) over a row of n_kv scores of which only [valid_lo, valid_hi)
    are unmasked (the others are -INF, exp 0).  Writes exp(w - max) into out (masked lanes: out must hold zeros),
    returns the double sum.

    The lanes of the 4-wide loop are ggml_v_expf each (expf_sse2), the tail libm's expf; the sum adds each group
    of four in float, then into the double, in order.  The exps are computed first in one pass with no branches
    (LLVM vectorizes it), then summed: the same operations on the same values as lane by lane."""
    n4 = n_kv - n_kv % 4
    for i in range(valid_lo, min(valid_hi, n4)):
        out[i] = expf_sse2(w[i] - mx)
    for i in range(max(valid_lo, n4), valid_hi):
        out[i] = expf_libm(w[i] - mx)
    s = 0.0
    for i0 in range(0, n4, 4):
        if i0 + 4 <= valid_lo or i0 >= valid_hi:
            continue        # a block of masked lanes sums to +0
        s += np.float64((out[i0] + out[i0 + 1]) + (out[i0 + 2] + out[i0 + 3]))
    for i in range(n4, n_kv):
        if valid_lo <= i < valid_hi:
            s += np.float64(out[i])
    return s


@njit
def dot_nan_first(x, x0, x_step, y, lo, hi):
    """ggml_vec_dot_f16/f32's ``sumf += (ggml_float)(x[i]*y[i])`` over lo <= i < hi, x[i] = x[x0 + i * x_step],
    with the NaN the C's SSE instructions keep when both operands are NaN named explicitly: the first (``x``, then
    ``sumf``; see refimpl._jit.add_nan_first).  LLVM commutes a plain multiply's or add's operands as it likes, so a
    sum over several NaN payloads would otherwise depend on how its loop was compiled.  A sum with no NaN has the
    same bits either way, and a NaN, once in a sum, stays: the attention kernels (this module's and
    refimpl.kernels.attention's) sum plainly and redo only the sums that come out NaN with this one."""
    acc = 0.0
    for i in range(lo, hi):
        if acc == acc:
            acc = acc + np.float64(mul_nan_first(x[x0 + i * x_step], y[i]))
    return acc


@njit(inline="always")
def attention_task(task, n_tasks, n_head, group, positions, window):
    """(t, h, kvh, lo, hi) of task ``task``: token t's head h (its K/V head kvh) attends to cells lo..hi-1.  Tasks
    are taken from both ends in turn: a causal token's work grows with its position, and prange hands each thread
    one contiguous range of tasks (the first half of the tokens would be a third of the work)."""
    k = task // 2 if task % 2 == 0 else n_tasks - 1 - task // 2
    t = k // n_head
    h = k % n_head
    p = positions[t]
    lo = max(0, p - window + 1) if window > 0 else 0
    return t, h, h // group, lo, p + 1


@njit(inline="always")
def attention_query(q, t, h, k_f16):
    """Query row (t, h) as the scores' vec_dot reads it: rounded to F16 when the K cache is F16."""
    hd = q.shape[2]
    qh = np.empty(hd, dtype=np.float32)
    for d in range(hd):
        qh[d] = F16_TO_F32[fp32_to_fp16(q[t, h, d])] if k_f16 else q[t, h, d]
    return qh


@njit(inline="always")
def attention_probabilities(w, n_kv, lo, hi, kq_scale, v_f16):
    """ggml_soft_max_ext of the scores w[lo:hi] (the other cells masked), rounded to F16 when the V cache is F16
    (the output's vec_dot type): an array of n_kv, zeros outside lo..hi-1."""
    mx = -np.inf
    for j in range(lo, hi):
        v = w[j] * kq_scale + f32(0.0)        # ggml_vec_scale_f32, then += slope(1.0f) * mask(0.0f)
        w[j] = v
        mx = max(mx, v)
    e = np.zeros(n_kv, dtype=np.float32)
    s = softmax_sse2_sum(w, n_kv, lo, hi, f32(mx), e)
    inv = f32(1.0 / s)
    for j in range(lo, hi):
        v = e[j] * inv
        e[j] = F16_TO_F32[fp32_to_fp16(v)] if v_f16 else v
    return e


@njit(inline="always")
def redo_nan_scores(w, k_cache, kvh, qh, lo, hi):
    # a score that came out NaN, summed again with the C's NaN operand order (dot_nan_first)
    for j in range(lo, hi):
        if w[j] != w[j]:
            w[j] = f32(dot_nan_first(k_cache[kvh].ravel(), j, k_cache.shape[2], qh, 0, qh.shape[0]))


@njit(inline="always")
def redo_nan_outputs(out_row, v_cache, kvh, e, lo, hi):
    # likewise for the outputs
    hd_v = v_cache.shape[2]
    for d in range(hd_v):
        if out_row[d] != out_row[d]:
            out_row[d] = f32(dot_nan_first(v_cache[kvh].ravel(), d, hd_v, e, lo, hi))


def _attention_impl(q, k_cache, v_cache, kq_pre, positions, n_kv, window, kq_scale, k_f16, v_f16, out):
    # llama.cpp's non-flash attention (llm_graph_context::build_attn_mha), for one sequence in cells 0..n-1:
    #   kq  = ggml_mul_mat(k, q)            vec_dot over head_dim; q rounded to F16 if the cache is F16
    #   kq  = ggml_soft_max_ext(kq, mask, kq_scale)   mask: 0 or -INF (causal, sliding window)
    #   kqv = ggml_mul_mat(v^T, kq)         vec_dot over the n_kv cells; probabilities rounded to F16 likewise
    # k_cache (n_head_kv, hd, n_ctx) and v_cache (n_head_kv, n_ctx, hd) hold the values the cache stores, as
    # float32 (F16 cells already rounded).  ggml's vec_dot_f16/f32 add float products into a double.
    # kq_pre, if not empty, holds KQ computed elsewhere (Q8_0 keys: vec_dot_q8_0_q8_0 through refimpl.quant).
    n_tok, n_head, hd = q.shape
    group = n_head // k_cache.shape[0]
    n_tasks = n_tok * n_head
    for task in prange(n_tasks):
        t, h, kvh, lo, hi = attention_task(task, n_tasks, n_head, group, positions, window)
        qh = attention_query(q, t, h, k_f16)
        w = np.empty(n_kv, dtype=np.float32)
        if kq_pre.shape[0] > 0:
            for j in range(lo, hi):
                w[j] = kq_pre[t, h, j]
        else:
            # w[j] = vec_dot(k[j], q): each cell's sum over d in order, all cells advanced together
            acc = np.zeros(hi - lo, dtype=np.float64)
            for d in range(hd):
                kd = k_cache[kvh, d, lo:hi]
                x = qh[d]
                for j in range(hi - lo):
                    acc[j] += np.float64(kd[j] * x)
            for j in range(hi - lo):
                w[lo + j] = f32(acc[j])
            redo_nan_scores(w, k_cache, kvh, qh, lo, hi)
        e = attention_probabilities(w, n_kv, lo, hi, kq_scale, v_f16)
        # out[d] = vec_dot(v^T[d], probabilities): each dimension's sum over cells in order, all d together
        hd_v = v_cache.shape[2]
        acc_v = np.zeros(hd_v, dtype=np.float64)
        for j in range(lo, hi):
            vj = v_cache[kvh, j]
            x = e[j]
            for d in range(hd_v):
                acc_v[d] += np.float64(vj[d] * x)
        for d in range(hd_v):
            out[t, h, d] = f32(acc_v[d])
        redo_nan_outputs(out[t, h], v_cache, kvh, e, lo, hi)


# Heads (and tokens) are split over the threads; a single head of a single token has nothing to split.  One decoded
# token's 9 heads over 150 cells: 36 us serial, 28 us on 2 threads (measured).
_attention_parallel = njit(parallel=True)(_attention_impl)
_attention_serial = njit(_attention_impl)

_NO_KQ = np.zeros((0, 0, 0), dtype=np.float32)


def attention(q, k_cache, v_cache, positions, n_kv: int, kq_scale: float, *, window: int = 0,
              k_f16: bool = True, v_f16: bool = True, kq=None) -> np.ndarray:
    """Causal self-attention of ``q`` (n_tokens, n_head, head_dim) over the cached keys/values of cells
    0..positions[t] (the last ``window`` of them if > 0).  ``k_cache`` is (n_head_kv, hd_k, n_cells), ``v_cache``
    (n_head_kv, n_cells, hd_v) (see refimpl.model.kv_cache), float32 holding the stored values; ``k_f16``/``v_f16``: that cache is F16, so ggml
    rounds q / the probabilities to F16 (the vec_dot type) before the dots.  ``kq`` (n_tokens, n_head, n_cells): precomputed scores.
    Returns (n_tokens, n_head, hd_v)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    n_tok, n_head, _ = q.shape
    if n_head % k_cache.shape[0]:
        raise ValueError(f"n_head {n_head} is not a multiple of n_head_kv {k_cache.shape[0]}")
    out = np.empty((n_tok, n_head, v_cache.shape[2]), dtype=np.float32)
    if n_tok > 1 and get_kernels() == "fast":
        # the fast layer's kernel for a batch of queries: the same sums with their dots register-blocked
        from ..kernels.attention import attention_blocked as kernel
    else:
        kernel = _attention_parallel if n_tok * n_head > 1 else _attention_serial
    kernel(q, k_cache, v_cache, _NO_KQ if kq is None else np.ascontiguousarray(kq, dtype=np.float32),
               np.ascontiguousarray(positions, dtype=np.int64), int(n_kv), int(window), f32(kq_scale),
               bool(k_f16), bool(v_f16), out)
    return out


# ----------------------------------------------------------------------------------------------- attention, traced
# The attention kernel above computes only the cells a query attends to.  A trace shows llama.cpp's kq and
# kq_soft_max tensors, which span all n_kv cells (masked ones too), so these compute them in full, with the same
# sums in the same order as ggml_mul_mat(k, q) and ggml_soft_max_ext.


@njit
def _scores_impl(q, k_cache, n_kv, k_f16, out):
    # ggml_mul_mat(k, q): out[t, h, j] = vec_dot(k[j], q[t, h]), terms over head_dim in order into a double
    n_tok, n_head, hd = q.shape
    group = n_head // k_cache.shape[0]
    for t in range(n_tok):
        for h in range(n_head):
            kvh = h // group
            qh = attention_query(q, t, h, k_f16)
            acc = np.zeros(n_kv, dtype=np.float64)
            for d in range(hd):
                x = qh[d]
                kd = k_cache[kvh, d]
                for j in range(n_kv):
                    acc[j] += np.float64(kd[j] * x)
            for j in range(n_kv):
                out[t, h, j] = f32(acc[j])
            redo_nan_scores(out[t, h], k_cache, kvh, qh, 0, n_kv)


def attention_scores(q, k_cache, n_kv: int, k_f16: bool = True) -> np.ndarray:
    """KQ over the first ``n_kv`` cells of an F16/F32 K cache (n_head_kv, hd, n_cells): (n_tok, n_head, n_kv)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty((q.shape[0], q.shape[1], n_kv), dtype=np.float32)
    _scores_impl(q, k_cache, int(n_kv), bool(k_f16), out)
    return out


@njit
def _soft_max_impl(kq, positions, kq_scale, window, out):
    # ggml_compute_forward_soft_max_f32: w = kq*scale + slope*mask (mask 0 or -INF), max, ggml_vec_soft_max_f32,
    # then ggml_vec_scale_f32 by (float)(1.0/sum); masked cells come out as exact zeros
    n_tok, n_head, n_kv = kq.shape
    for t in range(n_tok):
        p = positions[t]
        hi = p + 1
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            w = np.empty(n_kv, dtype=np.float32)
            mx = -np.inf
            for j in range(lo, hi):
                w[j] = kq[t, h, j] * kq_scale + f32(0.0)
                mx = max(mx, w[j])
            e = np.zeros(n_kv, dtype=np.float32)
            s = softmax_sse2_sum(w, n_kv, lo, hi, f32(mx), e)
            inv = f32(1.0 / s)
            for j in range(n_kv):
                out[t, h, j] = e[j] * inv


def soft_max_ext(kq, positions, kq_scale: float, window: int = 0) -> np.ndarray:
    """ggml_soft_max_ext(kq, causal mask, kq_scale) over every cell of ``kq`` (n_tok, n_head, n_kv): cell j is
    visible to the token at position p when j <= p (and p - j < window if window > 0)."""
    kq = np.ascontiguousarray(kq, dtype=np.float32)
    out = np.empty_like(kq)
    _soft_max_impl(kq, np.ascontiguousarray(positions, dtype=np.int64), f32(kq_scale), int(window), out)
    return out


# ----------------------------------------------------------------------------------------------- soft-capping


@njit
def _softcap_rows(x, cap, out):
    # ggml_scale(x, 1/cap) (ggml_vec_scale_f32), ggml_tanh (ggml_vec_tanh_f32: libm tanhf), ggml_scale(cap)
    inv = f32(1.0) / cap
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = f32(math.tanh(x[r, i] * inv)) * cap


def softcap(x: np.ndarray, cap) -> np.ndarray:
    """Logit soft-capping cap * tanh(x / cap) with libm's tanhf (numpy's float32 tanh is not tanhf)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    _softcap_rows(x2, f32(cap), out)
    return out.reshape(x.shape)
