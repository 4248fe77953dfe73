"""One compiled call per layer for a one-token decode step (the fast layer's answer to Python's per-op cost).

refimpl.model.base.Model.layer_block runs a layer as a dozen Python-level steps, each a call into numba (norm,
three projections, RoPE twice, the cache store, attention, the output projection, norm, gate/up, SwiGLU, down).
For one token each step is microseconds of work and microseconds of Python and argument typing around it: on the
5-layer tiny-kjv model that overhead was half of a decode step.  ``layer_step`` below makes the same calls, with the
same kernels on the same arrays in the same order, from one compiled function, so the bits are those of
layer_block (tests/test_decode_step.py compares logits and the KV cache bit for bit, and the golden model tests
run with it).

It serves the plain pre-norm llama layer only: RMS norm, separate q/k/v without biases, RoPE without YaRN, an F16
or F32 KV cache, a SwiGLU feed-forward, quantized weights (block formats with an activation type).  The model
uses it when nothing of that block structure is overridden or traced (refimpl.model.base.Model._decode_plan says
which); anything else takes layer_block.

Weights come in as raw uint8 rows and are viewed as blocks inside (numba types an argument of a structured dtype
in Python on every call; a view inside costs nothing).
"""
from __future__ import annotations

import numpy as np

from ..model.kv_cache import _store_k, _store_v
from ..model.layers import _attention_parallel, _rms_norm_rows, _rope_rows, _swiglu_rows
from . import drivers
from .packed import GROUP, PackedFormat
from .._jit import njit
from .jitcache import cached_closure

_STEPS: dict = {}


@njit(inline="always")
def _blocks(raw, dtype):
    # raw uint8 rows (rows, row bytes) viewed as blocks of ``dtype`` (rows, blocks per row)
    return raw.reshape(-1).view(dtype).reshape(raw.shape[0], -1)


def _matmul_part(fmt, vfmt):
    # the fast runner's vec_dot-path driver of one weight format (convert, pack, rows in one compiled call)
    return drivers._runner_parts(fmt, vfmt)[1]


def _projections(formats):
    """A compiled ``project(cur, acts, ws, outs)``: outs[m] = ws[m] @ cur for the weight matrices of ``formats``
    (tuples of the same length: raw uint8 weights, activation scratch, outputs), as the model's mm_many computes
    them: one grouped call (drivers.matmul_group: one activation quantization, one parallel region) when all
    have one format, else one call each.  Same bits either way (each output is its own row's dot product)."""
    key = ("project",) + tuple((id(f), id(v)) for f, v in formats)
    hit = _STEPS.get(key)
    if hit is not None:
        return hit[1]
    (f0, v0) = formats[0]
    if all(f is f0 and v is v0 for f, v in formats):
        group = drivers._group_parts(f0, v0)
        w_t, a_t = f0.block_dtype, v0.block_dtype
        if len(formats) == 3:
            @cached_closure
            def project(cur, acts, ws, outs):
                w0, w1, w2 = ws
                group(cur, _blocks(acts[0], a_t), cur.shape[1], (_blocks(w0, w_t), _blocks(w1, w_t), _blocks(w2, w_t)),
                      outs)
        else:
            @cached_closure
            def project(cur, acts, ws, outs):
                w0, w1 = ws
                group(cur, _blocks(acts[0], a_t), cur.shape[1], (_blocks(w0, w_t), _blocks(w1, w_t)), outs)
    else:
        m0, m1 = _matmul_part(*formats[0]), _matmul_part(*formats[1])
        w0_t, w1_t = formats[0][0].block_dtype, formats[1][0].block_dtype
        a0_t, a1_t = formats[0][1].block_dtype, formats[1][1].block_dtype
        if len(formats) == 3:
            m2 = _matmul_part(*formats[2])
            w2_t, a2_t = formats[2][0].block_dtype, formats[2][1].block_dtype

            @cached_closure
            def project(cur, acts, ws, outs):
                n = cur.shape[1]
                m0(cur, _blocks(acts[0], a0_t), n, _blocks(ws[0], w0_t), outs[0])
                m1(cur, _blocks(acts[1], a1_t), n, _blocks(ws[1], w1_t), outs[1])
                m2(cur, _blocks(acts[2], a2_t), n, _blocks(ws[2], w2_t), outs[2])
        else:
            @cached_closure
            def project(cur, acts, ws, outs):
                n = cur.shape[1]
                m0(cur, _blocks(acts[0], a0_t), n, _blocks(ws[0], w0_t), outs[0])
                m1(cur, _blocks(acts[1], a1_t), n, _blocks(ws[1], w1_t), outs[1])
    _STEPS[key] = (formats, project)
    return project


def layer_step(formats):
    """The compiled one-token layer for weight formats ``formats`` = (q, k, v, o, gate, up, down), each a pair
    (QuantFormat, activation QuantFormat).  Cached per combination."""
    key = tuple((id(f), id(v)) for f, v in formats)
    hit = _STEPS.get(key)
    if hit is not None:
        return hit[1]
    # output rows per weight row: a packed matrix (refimpl.kernels.packed) has one row per group of GROUP rows
    rq, rk, rv, ro, rg, ru, rd = (GROUP if isinstance(f, PackedFormat) else 1 for f, _ in formats)
    qkv = _projections(formats[0:3])
    gate_up = _projections(formats[4:6])
    mo, md = _matmul_part(*formats[3]), _matmul_part(*formats[6])
    wo_t, wd_t = formats[3][0].block_dtype, formats[6][0].block_dtype
    ao_t, ad_t = formats[3][1].block_dtype, formats[6][1].block_dtype

    @cached_closure
    def step(x, attn_norm, ffn_norm, wq, wk, wv, wo, wg, wu, wd, acts, k_cache, v_cache, pos, eps,
             n_head, n_head_kv, head_dim, n_rot, neox, freq_base, freq_scale, freq_factors, attn_factor,
             n_kv, window, kq_scale, k_f16, v_f16, kq_none):
        # x (1, n_embd) float32: the residual stream in, the layer's output returned (as Model.layer_block)
        # --- attention: norm, q/k/v, RoPE, store, attention, output projection (Model.attention)
        cur = np.empty_like(x)
        _rms_norm_rows(x, eps, cur)
        cur = cur * attn_norm
        q = np.empty((1, wq.shape[0] * rq), np.float32)
        k = np.empty((1, wk.shape[0] * rk), np.float32)
        v = np.empty((1, wv.shape[0] * rv), np.float32)
        a_q, a_k, a_v, a_o, a_g, a_u, a_d = acts
        qkv(cur, (a_q, a_k, a_v), (wq, wk, wv), (q, k, v))
        q3 = q.reshape(1, n_head, head_dim)
        k3 = k.reshape(1, n_head_kv, head_dim)
        v3 = v.reshape(1, n_head_kv, v.shape[1] // n_head_kv)
        positions32 = np.full(1, pos, np.int32)
        qr = np.empty_like(q3)
        _rope_rows(q3, positions32, n_rot, neox, freq_base, freq_scale, freq_factors, np.float32(0.0),
                   np.float32(0.0), np.float32(0.0), attn_factor, qr)
        kr = np.empty_like(k3)
        _rope_rows(k3, positions32, n_rot, neox, freq_base, freq_scale, freq_factors, np.float32(0.0),
                   np.float32(0.0), np.float32(0.0), attn_factor, kr)
        _store_k(k_cache, pos, kr, k_f16)
        _store_v(v_cache, pos, v3, v_f16)
        att = np.empty((1, n_head, v_cache.shape[2]), np.float32)
        _attention_parallel(qr, k_cache, v_cache, kq_none, np.full(1, pos, np.int64), n_kv, window, kq_scale,
                            k_f16, v_f16, att)
        att2 = att.reshape(1, -1)
        o = np.empty((1, wo.shape[0] * ro), np.float32)
        mo(att2, _blocks(a_o, ao_t), att2.shape[1], _blocks(wo, wo_t), o)
        ffn_inp = o + x
        # --- feed-forward: norm, up/gate, SwiGLU, down (Model.feed_forward)
        cur = np.empty_like(ffn_inp)
        _rms_norm_rows(ffn_inp, eps, cur)
        cur = cur * ffn_norm
        up = np.empty((1, wu.shape[0] * ru), np.float32)
        gate = np.empty((1, wg.shape[0] * rg), np.float32)
        gate_up(cur, (a_g, a_u), (wg, wu), (gate, up))
        h = np.empty_like(gate)
        _swiglu_rows(gate, up, h)
        down = np.empty((1, wd.shape[0] * rd), np.float32)
        md(h, _blocks(a_d, ad_t), h.shape[1], _blocks(wd, wd_t), down)
        return down + ffn_inp

    _STEPS[key] = (formats, step)
    return step
