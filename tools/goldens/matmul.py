"""Dot products and matmul: every weight type against its activation type, as ggml's CPU backend computes them.

  matmul/activations.npz  x.<case> float32 (n_tokens, n) and xq.<VEC_DOT_TYPE>.<case>: each activation row
                          quantized by type_traits_cpu[vec_dot_type].from_float (raw rows, uint8)
  matmul/<TYPE>.npz       w.<case> raw weight rows (uint8), vec_dot.<case> float32 (n_tokens, n_rows) from
                          type_traits_cpu.vec_dot one pair at a time, mul_mat.<case> float32 (n_tokens, n_rows) from a
                          ggml graph with ggml_mul_mat (the two agree bit for bit on the scalar build)
  matmul/nan_scales.npz   w.<TYPE>, y.<TYPE> raw rows whose F16/F32 scales were overwritten with NaNs (distinct
                          payloads, both signs) and infinities, vec_dot.<TYPE> float32: which NaN payload the C's
                          float operations let through
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = "vec_dot and ggml_mul_mat for every weight type, plus the quantized activations"

VEC_DOT_TYPE_NAMES = {0: "F32", 1: "F16", 30: "BF16", 8: "Q8_0", 9: "Q8_1", 15: "Q8_K"}

# case -> (weight family, n_rows, n (row length), activation family, n_tokens)
CASES = {
    "small": ("gauss", 8, 256, "gauss", 3),
    "long": ("gauss", 4, 4096, "gauss", 2),
    "edge": ("student_t2", 4, 1024, "edge", 5),
}


def weight_types(oracle) -> dict[str, int]:
    from .iquant import TYPES as IQ
    from .quant import TYPES as Q

    out = {}
    for name, tid in {**Q, **IQ}.items():
        if oracle.type_traits_cpu(tid).vec_dot:
            out[name] = tid
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _scale_fields(dtype: np.dtype) -> list[tuple[int, str]]:
    # (byte offset, "f16" | "f32") of a block's scale fields: d, m, dmin, s stored as F16 (or Q8_K's float d).
    # refimpl's block layouts only choose which input bytes to overwrite; the expected values are ggml's vec_dot.
    out = []
    for name in ("d", "m", "dmin", "s"):
        if dtype.names and name in dtype.names:
            ft, off = dtype.fields[name][:2]
            if ft == np.dtype("<u2"):
                out.append((off, "f16"))
            elif ft == np.dtype("<f4"):
                out.append((off, "f32"))
    return out


def _poke_scales(raw: np.ndarray, block_bytes: int, fields, rng) -> None:
    # about a third of the scales become NaN (random payload and sign) or +-Inf
    for b in range(raw.size // block_bytes):
        for off, kind in fields:
            r = rng.random()
            if r > 0.35:
                continue
            sign = int(rng.integers(0, 2))
            if kind == "f16":
                bits = (sign << 15) | 0x7C00 | (int(rng.integers(1, 0x400)) if r < 0.25 else 0)
                raw[b * block_bytes + off:b * block_bytes + off + 2] = np.array([bits], "<u2").view(np.uint8)
            else:
                bits = (sign << 31) | 0x7F800000 | (int(rng.integers(1, 1 << 23)) if r < 0.25 else 0)
                raw[b * block_bytes + off:b * block_bytes + off + 4] = np.array([bits], "<u4").view(np.uint8)


def make_nan_scales(oracle, types: dict[str, int], seed: int = 6004, pairs: int = 24) -> dict[str, np.ndarray]:
    from refimpl import quant

    out = {}
    for name, tid in types.items():
        fmt = quant.TYPES.get(name)
        wf = _scale_fields(np.dtype(fmt.block_dtype))
        if not wf:
            continue
        vdt = int(oracle.type_traits_cpu(tid).vec_dot_type)
        vfmt = quant.TYPES.get(vdt)
        rng = np.random.default_rng([seed, tid])
        n = 256 * 3
        wq = quantize_weights(oracle, tid, rng.standard_normal((pairs, n)).astype(np.float32))
        yq = quantize_activation(oracle, vdt, rng.standard_normal((pairs, n)).astype(np.float32))
        for r in range(pairs):
            _poke_scales(wq[r], fmt.type_size, wf, rng)
            _poke_scales(yq[r], vfmt.type_size, _scale_fields(np.dtype(vfmt.block_dtype)), rng)
        out[f"w.{name}"] = wq
        out[f"y.{name}"] = yq
        out[f"vec_dot.{name}"] = np.array([oracle.vec_dot(tid, n, wq[r], yq[r]) for r in range(pairs)], np.float32)
    return out


def make_activations(seed: int = 6001) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {}
    for case, (_, _, n, afam, n_tok) in CASES.items():
        if afam == "gauss":
            x[case] = rng.standard_normal((n_tok, n)).astype(np.float32)
        else:  # one token per edge: huge, tiny, zeros, outliers, mixed signs constant
            a = np.empty((n_tok, n), np.float32)
            a[0] = rng.standard_normal(n) * 1e4
            a[1] = rng.standard_normal(n) * 1e-6
            a[2] = 0.0
            a[3] = rng.standard_normal(n)
            a[3, rng.integers(0, n, n // 64)] = 500.0
            a[4] = np.where(np.arange(n) % 2 == 0, 0.75, -0.75)
            x[case] = a
    return x


def make_weights(case: str, seed: int = 6002) -> np.ndarray:
    fam, n_rows, n, _, _ = CASES[case]
    rng = np.random.default_rng([seed, list(CASES).index(case)])
    if fam == "gauss":
        return rng.standard_normal((n_rows, n)).astype(np.float32)
    return rng.standard_t(2, (n_rows, n)).astype(np.float32)


def quantize_weights(oracle, tid: int, w: np.ndarray) -> np.ndarray:
    if tid == 0:
        return np.ascontiguousarray(w).view(np.uint8)
    im = None
    if oracle.requires_imatrix(tid):
        im = np.random.default_rng(6003).uniform(0.1, 2.0, w.shape[1]).astype(np.float32)
    return oracle.quantize_chunk(tid, w, im)


def quantize_activation(oracle, vdt: int, x: np.ndarray) -> np.ndarray:
    if vdt == 0:
        return np.ascontiguousarray(x).view(np.uint8)
    return np.stack([oracle.from_float_cpu(vdt, row) for row in x])


def generate(oracle, w) -> None:
    acts = make_activations()
    types = weight_types(oracle)
    vdts = sorted({int(oracle.type_traits_cpu(t).vec_dot_type) for t in types.values()})
    arrays = {f"x.{c}": a for c, a in acts.items()}
    for vdt in vdts:
        for case, a in acts.items():
            arrays[f"xq.{VEC_DOT_TYPE_NAMES[vdt]}.{case}"] = quantize_activation(oracle, vdt, a)
    w.npz("activations.npz", arrays, "x.<case>: float32 activations; xq.<VEC_DOT_TYPE>.<case>: the same rows "
          "quantized by type_traits_cpu.from_float of the vec_dot type")
    for name, tid in types.items():
        vdt = int(oracle.type_traits_cpu(tid).vec_dot_type)
        out = {}
        for case, (_, n_rows, n, _, n_tok) in CASES.items():
            wq = quantize_weights(oracle, tid, make_weights(case))
            xq = arrays[f"xq.{VEC_DOT_TYPE_NAMES[vdt]}.{case}"]
            vd = np.array([[oracle.vec_dot(tid, n, wq[r], xq[t]) for r in range(n_rows)] for t in range(n_tok)],
                          dtype=np.float32)
            mm = oracle.mul_mat(tid, wq, n, acts[case])
            out[f"w.{case}"] = wq
            out[f"vec_dot.{case}"] = vd
            out[f"mul_mat.{case}"] = mm
        w.npz(f"{name}.npz", out, f"{name} weights against {VEC_DOT_TYPE_NAMES[vdt]} activations: raw weight rows, "
              "vec_dot per (token, row) and ggml_mul_mat output")
    w.npz("nan_scales.npz", make_nan_scales(oracle, types), "w.<TYPE>, y.<TYPE>: raw weight / activation rows "
          "(768 elements) with NaN (distinct payloads) and Inf scales; vec_dot.<TYPE>: ggml's vec_dot of each pair")


def fresh(oracle, rng) -> list[str]:
    from refimpl import quant

    fails = []
    if not hasattr(quant, "matmul"):
        return ["matmul: refimpl.quant.matmul is not implemented"]
    for name, tid in weight_types(oracle).items():
        bs = int(oracle.type_traits(tid).blck_size)
        n = bs * int(rng.integers(1, 5)) * (256 // bs if bs < 256 else 1)
        w_f = (rng.standard_normal((3, n)) * np.exp(rng.uniform(-3, 3))).astype(np.float32)
        x = (rng.standard_t(3, (2, n)) * np.exp(rng.uniform(-3, 3))).astype(np.float32)
        wq = quantize_weights(oracle, tid, w_f)
        theirs = oracle.mul_mat(tid, wq, n, x)
        try:
            ours = quant.matmul(wq, name, x)
        except Exception as e:
            fails.append(f"matmul/{name}: raised {type(e).__name__}: {e}")
            continue
        if ours.shape != theirs.shape or not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
            fails.append(f"matmul/{name}: differs from ggml_mul_mat on a fresh case (n={n})")
    return fails
