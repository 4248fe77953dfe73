"""The engine's building blocks: weights as stored, the GGUF file seen by a builder, and ``Model``, the forward pass
of a decoder-only transformer split into the blocks llama.cpp's graph builders are made of.

Reading order: ``Model.eval`` -> ``Model.forward`` -> ``embed`` -> ``layer_block`` (``norm``, ``attention`` =
``qkv`` + ``position_qk`` + ``attend`` + output projection, ``feed_forward``) -> ``output_head``.  Each block is a
method an architecture can override alone: a mixture-of-experts model replaces ``feed_forward``; Gemma 3 its
``layer_block`` (post-norms); GPT-2 its ``embed`` (learned positions).  See spec/model.md.

Tracing: with ``eval(tokens, trace=callback)`` every block reports its intermediate tensors under the names
llama.cpp's graph gives them (``cb(cur, "name", il)`` in llama-graph.cpp and src/models/*.cpp: "attn_norm-0",
"Qcur-0", "kq-0", ..., "result_output"), each as a C-contiguous float32 array whose numpy shape is ggml's ``ne``
reversed.  Without a callback the only cost is ``if self.tracing`` at each point.
"""
from __future__ import annotations

import ctypes
import functools
import math
import mmap
import os
import sys

import numpy as np

from .. import gguf as _gguf
from .. import quant
from .hparams import Hparams
from .kv_cache import KVCache
from .layers import (_NO_KQ, ROPE_NORMAL, attention, attention_scores, layer_norm, rms_norm, rope, soft_max_ext,
                     swiglu)

F32 = np.float32


class Weight:
    """One weight tensor as stored: raw rows of its ggml type (a zero-copy view of the mmap)."""

    def __init__(self, name: str, info):
        self.name = name
        self.qtype = info.ggml_type
        self.shape = tuple(info.shape)          # numpy order: (..., n_rows, n_cols)
        data = info.data
        if data.dtype != np.uint8:              # plain types (F32, F16, ...) come typed; matmul wants bytes
            data = data.view(np.uint8).reshape(self.shape[:-1] + (-1,))
        self.raw = data
        self._matrix = None

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.shape[:-1])) if len(self.shape) > 1 else 1

    def matrix(self) -> quant.WeightMatrix:
        if self._matrix is None:                # bound on first use: type, block view and kernels resolved once
            self._matrix = quant.WeightMatrix(self.raw.reshape(self.n_rows, -1), self.qtype)
            runner = self._matrix.fast_runner() if quant.get_kernels() == "fast" else None
            if runner is not None and runner.packed is not None:
                # the fast layer reads its packed copy from now on (refimpl.kernels.packed): the file's pages of
                # this tensor, read once to pack it, leave the process (they stay in the page cache), so a model
                # is in memory once, as llama.cpp's repacked buffers are
                release_file_pages(self.raw)
        return self._matrix

    def mm(self, x: np.ndarray) -> np.ndarray:
        """ggml_mul_mat(W, x): x (n_tokens, n_cols) -> (n_tokens, n_rows)."""
        return self.matrix().matmul(x)

    def rows(self, ids) -> np.ndarray:
        """ggml_get_rows: the dequantized rows ``ids`` (float32 (len(ids), n_cols))."""
        ids = np.asarray(ids, dtype=np.int64)
        n = self.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            bad = ids[(ids < 0) | (ids >= n)][0]
            raise ValueError(f"token id {bad} is out of range for {self.name} ({n} rows)")
        return quant.dequantize(np.ascontiguousarray(self.raw[ids]), self.qtype)

    def floats(self) -> np.ndarray:
        """The whole tensor as float32 (for small vectors: norm weights, biases, rope factors)."""
        return quant.dequantize(np.ascontiguousarray(self.raw), self.qtype).reshape(self.shape)


def release_file_pages(a: np.ndarray) -> None:
    """madvise(MADV_DONTNEED) over the whole pages of ``a`` when ``a`` is a view of a read-only file mapping (a
    GGUF's mmap): the pages leave this process's resident set and come back from the page cache if read again.
    Anything else (arrays in anonymous memory, where DONTNEED would zero the data) is left alone."""
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):            # np.frombuffer(mmap) (refimpl.gguf.reader)
        base = base.obj
    if not isinstance(base, mmap.mmap) or sys.platform != "linux" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    start = a.__array_interface__["data"][0]
    lo, hi = (start + page - 1) // page * page, (start + a.nbytes) // page * page
    if hi > lo:
        _libc().madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), mmap.MADV_DONTNEED)


@functools.lru_cache(maxsize=1)
def _libc():
    lib = ctypes.CDLL(None, use_errno=True)
    lib.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return lib


def mm_many(weights, x: np.ndarray) -> list:
    """``[w.mm(x) for w in weights]``: on the fast layer's decode path (a few tokens, weights of one type), one
    compiled call for all of them (refimpl.kernels.drivers.matmul_group: one thread hand-off instead of one per
    matrix).  Each output is computed exactly as by its own ``mm``."""
    if len(weights) > 1 and quant.get_kernels() == "fast" and x.ndim == 2:
        from ..kernels.drivers import matmul_group
        outs = matmul_group([w.matrix() for w in weights], x)
        if outs is not None:
            return outs
    return [w.mm(x) for w in weights]


class ModelFile:
    """A GGUF file seen by a model builder: typed metadata lookups and weights by name, with clear errors."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.gguf = _gguf.read(self.path)
        self.arch = self.gguf.get("general.architecture")
        if self.arch is None:
            raise ValueError(f"{self.path}: no general.architecture key; not a model file")

    _MISSING = object()

    def get(self, key: str, default=_MISSING):
        """Metadata value; ``{arch}`` in the key is replaced by the architecture name."""
        full = key.replace("{arch}", self.arch)
        v = self.gguf.get(full)
        if v is None:
            if default is ModelFile._MISSING:
                raise ValueError(f"{self.path}: required metadata key {full!r} is missing")
            return default
        return v

    def weight(self, name: str, required: bool = True) -> Weight | None:
        info = self.gguf.tensors.get(name)
        if info is None:
            if required:
                raise ValueError(f"{self.path}: missing tensor {name!r} (architecture {self.arch})")
            return None
        return Weight(name, info)

    def vector(self, name: str, required: bool = True) -> np.ndarray | None:
        w = self.weight(name, required)
        return None if w is None else w.floats()


class Layer:
    """The weights of one block ``blk.{il}.*``.  ``TENSORS`` maps an attribute to (GGUF tensor name, kind,
    required): kind "matrix" stays in its ggml type (a ``Weight`` for matmuls), "vector" is dequantized to float32
    (norm weights, biases).  Every attribute the shared blocks read exists and is None when the model lacks it."""

    TENSORS: dict[str, tuple[str, str, bool]] = {}

    attn_norm = attn_norm_b = wq = wk = wv = wqkv = bq = bk = bv = bqkv = wo = bo = q_norm = k_norm = None
    ffn_norm = ffn_norm_b = ffn_gate = ffn_up = ffn_down = ffn_gate_b = ffn_up_b = ffn_down_b = None

    def __init__(self, mf: ModelFile, il: int):
        for attr, (name, kind, required) in self.TENSORS.items():
            full = f"blk.{il}.{name}"
            setattr(self, attr, mf.weight(full, required) if kind == "matrix" else mf.vector(full, required))


def _add(x, b):
    return x if b is None else x + b


class Model:
    """A decoder-only transformer in llama.cpp's block structure.  An architecture subclass names its
    ``hparams_class``, ``layer_class`` and the few hooks that differ (``rope_mode``, ``norm_type`` ...), and
    overrides only the blocks its graph builder changes."""

    arch = "?"
    hparams_class = Hparams
    layer_class = Layer
    norm_type = "rms"              # build_norm: "rms" (ggml_rms_norm) or "layer" (ggml_norm)
    rope_mode = ROPE_NORMAL
    # trace names some graphs give and others do not (None: that tensor has no name of its own in the graph)
    attn_out_name: str | None = None      # the output projection (llama: "attn_out")
    ffn_inp_name: str | None = "ffn_inp"  # attention output + residual

    def __init__(self, mf: ModelFile):
        self.file = mf
        self.tok_embd = mf.weight("token_embd.weight")
        self.hp = hp = self.hparams_class.from_gguf(mf, n_vocab=self.tok_embd.shape[0])
        self.output_norm = mf.vector("output_norm.weight")
        self.output_norm_b = mf.vector("output_norm.bias", required=False)
        # untied output, or the token embedding reused (TENSOR_DUPLICATED)
        self.output = mf.weight("output.weight", required=False) or self.tok_embd
        self.layers = [self.layer_class(mf, il) for il in range(hp.n_layer)]
        # build_attn's kq_scale: 1.0f/sqrtf(float(n_embd_head)) (architectures that pre-scale q pass 1)
        self.kq_scale = F32(1.0) / F32(math.sqrt(F32(hp.head_dim)))
        self.cache: KVCache | None = None
        self.n_past = 0
        # rows of the last hidden state that get logits (llama.cpp's inp_out_ids); set by eval
        self.output_rows = slice(None)
        self.tracing = False
        self._trace = None

    # --------------------------------------------------------------------------------- shape of the KV cache
    @property
    def n_vocab(self) -> int:
        return self.hp.n_vocab

    @property
    def n_layer(self) -> int:
        return self.hp.n_layer

    @property
    def n_head_kv(self) -> int:
        return self.hp.n_head_kv

    @property
    def head_dim_k(self) -> int:
        return self.hp.head_dim

    @property
    def head_dim_v(self) -> int:
        return self.hp.head_dim

    @property
    def n_ctx_train(self) -> int:
        return self.hp.n_ctx_train

    # ------------------------------------------------------------------------------------------------ context
    def new_context(self, n_ctx: int | None = None, type_k: str = "f16", type_v: str = "f16") -> None:
        """A fresh (empty) KV cache of ``n_ctx`` cells (default: the training context, at most 4096)."""
        n_ctx = n_ctx or min(self.n_ctx_train, 4096)
        self.cache = KVCache(self.n_layer, self.n_head_kv, self.head_dim_k, self.head_dim_v, n_ctx, type_k, type_v)
        self.n_past = 0

    def eval(self, tokens, n_past: int | None = None, logits: str = "all", trace=None) -> np.ndarray:
        """Logits (n_tokens, n_vocab) for every position of ``tokens`` placed after the first ``n_past`` cached
        tokens (default: after everything evaluated so far; ``n_past=0`` restarts the sequence).

        ``logits="last"`` computes only the last position's (shape (1, n_vocab)), as llama.cpp does unless a
        batch asks for more: the output matmul is the largest of the model.  Each row is computed on its own,
        so the last row is the same either way.

        ``trace(name, array)`` is called for every intermediate tensor, in computation order, under llama.cpp's
        graph names (see the module docstring and spec/model.md)."""
        if logits not in ("all", "last"):
            raise ValueError(f"logits must be 'all' or 'last', got {logits!r}")
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise ValueError("eval needs at least one token")
        if self.cache is None:
            self.new_context()
        if n_past is None:
            n_past = self.n_past
        if not 0 <= n_past <= self.n_past:
            raise ValueError(f"n_past must be between 0 and {self.n_past} (the tokens cached), got {n_past}")
        if n_past + tokens.size > self.cache.size:
            raise ValueError(f"context full: {n_past} + {tokens.size} tokens do not fit {self.cache.size} cells")
        if tokens.min() < 0 or tokens.max() >= self.n_vocab:
            raise ValueError(f"token ids must be in [0, {self.n_vocab}), got {tokens.min()}..{tokens.max()}")
        if trace is not None and not callable(trace):
            raise ValueError(f"trace must be a callable (name, array), got {type(trace).__name__}")
        positions = np.arange(n_past, n_past + tokens.size, dtype=np.int64)
        self.output_rows = slice(-1, None) if logits == "last" else slice(None)
        self.tracing, self._trace = trace is not None, trace
        try:
            out = self.forward(tokens, positions)
        finally:
            self.output_rows = slice(None)
            self.tracing, self._trace = False, None
        self.n_past = n_past + tokens.size
        self.cache.used = self.n_past
        return out

    def emit(self, name: str, il: int, a: np.ndarray) -> None:
        """Hand one intermediate tensor to the trace callback, named as llama.cpp's graph callback names it
        (llm_graph_context::cb: "name-il" inside layer il, plain "name" for il < 0)."""
        self._trace(f"{name}-{il}" if il >= 0 else name, np.array(a, dtype=np.float32, order="C", copy=True))

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The graph: embeddings, the layers, the output head."""
        x = self.embed(tokens, positions)
        last = self.hp.n_layer - 1
        plan = self._decode_plan() if tokens.size == 1 and not self.tracing else None
        for il, layer in enumerate(self.layers):
            if plan is not None and plan[il] is not None:
                x = self._decode_layer(il, x, int(positions[0]), plan[il])     # the same bits, one call
            else:
                x = self.layer_block(il, layer, x, positions, self.output_rows if il == last else None)
        return self.output_head(x)

    # ------------------------------------------------------------------------- one-token decode, one call/layer
    # A one-token step of a plain llama layer runs as one compiled call (refimpl.kernels.decode.layer_step: the
    # calls layer_block makes, in its order, on the fast layer's kernels), when the fast kernels are on and this
    # class leaves the layer's blocks as they are here.  Everything else runs layer_block.
    _PLAIN_BLOCKS = ("layer_block", "norm", "attention", "qkv", "position_qk", "rope", "attend", "feed_forward",
                     "ffn_down", "_linear")

    def _decode_plan(self):
        """Per layer, what _decode_layer needs (or None: that layer takes layer_block); None when no layer can."""
        if quant.get_kernels() != "fast" or os.environ.get("REFIMPL_DECODE_STEP", "1") == "0":
            return None
        cache = self.cache
        key = (cache.type_k, cache.type_v, id(cache))
        if getattr(self, "_plan_key", None) == key:
            return self._plan
        self._plan_key, self._plan = key, None
        hp = self.hp
        if (self.norm_type != "rms" or self.rope_mode not in (ROPE_NORMAL, 2) or cache.type_k not in ("f16", "f32")
                or cache.type_v not in ("f16", "f32") or hp.n_rot % 2 or hp.n_rot > hp.head_dim or hp.head_dim % 2
                or any(getattr(type(self), m) is not getattr(Model, m) for m in self._PLAIN_BLOCKS)):
            return None
        from ..kernels.decode import layer_step
        plan = []
        for il, layer in enumerate(self.layers):
            mats = (layer.wq, layer.wk, layer.wv, layer.wo, layer.ffn_gate, layer.ffn_up, layer.ffn_down)
            plain = (all(w is not None for w in mats) and layer.ffn_norm is not None
                     and all(getattr(layer, b) is None for b in ("attn_norm_b", "bq", "bk", "bv", "bo", "q_norm",
                                                                 "k_norm", "wqkv", "ffn_norm_b", "ffn_gate_b",
                                                                 "ffn_up_b", "ffn_down_b")))
            matrices = [w.matrix() for w in mats] if plain else []
            if not plain or any(m.vfmt is None or m.prepared is not None for m in matrices):
                plan.append(None)
                continue
            ff = self.rope_factors(il)
            base, scale = self.rope_base_scale(il)
            # each matrix as the fast layer reads it: its packed copy (refimpl.kernels.packed) where it has one
            runners = [m.fast_runner() for m in matrices]
            raw = tuple(r.read_blocks.view(np.uint8) for r in runners)
            formats = tuple((r.read_fmt, m.vfmt) for m, r in zip(matrices, runners))
            acts = tuple(np.zeros((1, m.vfmt.row_size(m.n)), np.uint8) for m in matrices)
            plan.append(dict(
                step=layer_step(formats), weights=raw, acts=acts,
                attn_norm=np.ascontiguousarray(layer.attn_norm, np.float32),
                ffn_norm=np.ascontiguousarray(layer.ffn_norm, np.float32),
                freq_factors=(np.zeros(0, np.float32) if ff is None else np.ascontiguousarray(ff, np.float32)),
                freq_base=F32(base), freq_scale=F32(scale), window=int(self.window(il))))
        if all(p is None for p in plan):
            return None
        self._plan = plan
        return plan

    def _decode_layer(self, il: int, x: np.ndarray, pos: int, p: dict) -> np.ndarray:
        hp, cache = self.hp, self.cache
        if pos + 1 > cache.size:
            raise ValueError(f"context full: position {pos} does not fit a cache of {cache.size} cells")
        return p["step"](np.ascontiguousarray(x, np.float32), p["attn_norm"], p["ffn_norm"], *p["weights"],
                         p["acts"], cache.k[il], cache.v[il], pos, F32(hp.eps), hp.n_head, hp.n_head_kv,
                         hp.head_dim, hp.n_rot, self.rope_mode == 2, p["freq_base"], p["freq_scale"],
                         p["freq_factors"], F32(hp.rope_attn_factor), cache.n_kv(pos + 1), p["window"],
                         F32(self.kq_scale), cache.type_k == "f16", cache.type_v == "f16", _NO_KQ)

    def embed(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """build_inp_embd: ggml_get_rows(tok_embd, tokens)."""
        x = self.tok_embd.rows(tokens)
        if self.tracing:
            self.emit("embd", -1, x)
        return x

    def layer_block(self, il: int, layer: Layer, x: np.ndarray, positions: np.ndarray, out_rows) -> np.ndarray:
        """One pre-norm layer (llama_model_llama::graph): x + attention(norm(x)), then + feed_forward(norm(.)).
        ``out_rows`` (last layer only): inp_out_ids, the rows that get logits (ggml_get_rows)."""
        cur = self.norm(x, layer.attn_norm, layer.attn_norm_b, "attn_norm", il)
        cur = self.attention(il, layer, cur, positions)
        if out_rows is not None:
            cur, x = cur[out_rows], x[out_rows]
        ffn_inp = cur + x
        if self.tracing and self.ffn_inp_name:
            self.emit(self.ffn_inp_name, il, ffn_inp)
        cur = self.norm(ffn_inp, layer.ffn_norm, layer.ffn_norm_b, "ffn_norm", il)
        cur = self.feed_forward(il, layer, cur)
        if self.tracing:
            self.emit("ffn_out", il, cur)
        x = cur + ffn_inp
        if self.tracing:
            self.emit("l_out", il, x)
        return x

    def norm(self, x: np.ndarray, w, b, name: str, il: int, norm_il: int | None = None) -> np.ndarray:
        """build_norm: ggml_rms_norm (or ggml_norm), then ggml_mul by the weight and ggml_add of the bias.
        The bare norm is traced as "norm" (at layer ``norm_il``, default ``il``; gemma3 passes -1 where its graph
        does), a weighted one with a bias to follow as "norm_w", the result as ``name``."""
        cur = rms_norm(x, self.hp.eps) if self.norm_type == "rms" else layer_norm(x, self.hp.eps)
        if self.tracing:
            self.emit("norm", il if norm_il is None else norm_il, cur)
        cur = cur * w
        if b is not None:
            if self.tracing:
                self.emit("norm_w", il if norm_il is None else norm_il, cur)
            cur = cur + b
        if self.tracing:
            self.emit(name, il, cur)
        return cur

    # ---------------------------------------------------------------------------------------------- attention
    def attention(self, il: int, layer: Layer, cur: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """build_qkv, RoPE, build_attn: (n_tokens, n_embd) -> the output projection (n_tokens, n_embd)."""
        q, k, v = self.qkv(il, layer, cur)
        q, k = self.position_qk(il, layer, q, k, positions)
        a = self.attend(il, q, k, v, positions, self.kq_scale, window=self.window(il))
        out = _add(layer.wo.mm(a.reshape(a.shape[0], -1)), layer.bo)
        if self.tracing and self.attn_out_name:
            self.emit(self.attn_out_name, il, out)
        return out

    def qkv(self, il: int, layer: Layer, cur: np.ndarray):
        """llm_graph_context::build_qkv: q (n_tokens, n_head, head_dim), k and v (n_tokens, n_head_kv, head_dim)
        from separate projections (+ biases) or one fused ``wqkv`` whose rows are [q | k | v]."""
        hp = self.hp
        n_tok, hd = cur.shape[0], hp.head_dim
        shapes = {"Qcur": (n_tok, hp.n_head, hd), "Kcur": (n_tok, hp.n_head_kv, hd), "Vcur": (n_tok, hp.n_head_kv, hd)}
        if layer.wqkv is not None:
            qkv = layer.wqkv.mm(cur)
            if self.tracing:
                self.emit("wqkv", il, qkv)
            if layer.bqkv is not None:
                qkv = qkv + layer.bqkv
                if self.tracing:
                    self.emit("wqkv_b", il, qkv)
            nq, nkv = hp.n_head * hd, hp.n_head_kv * hd
            out = {"Qcur": qkv[:, :nq], "Kcur": qkv[:, nq:nq + nkv], "Vcur": qkv[:, nq + nkv:nq + 2 * nkv]}
            out = {name: a.reshape(shapes[name]) for name, a in out.items()}          # ggml_view_3d
        else:
            out = {}
            projections = (("Qcur", layer.wq, layer.bq), ("Kcur", layer.wk, layer.bk), ("Vcur", layer.wv, layer.bv))
            products = mm_many([w for _, w, _ in projections], cur)
            for (name, w, b), a in zip(projections, products):
                if self.tracing:
                    self.emit(name, il, a)
                if b is not None:
                    a = a + b
                    if self.tracing:
                        self.emit(name, il, a)
                out[name] = a.reshape(shapes[name])                                      # ggml_reshape_3d
        if self.tracing:
            for name, a in out.items():
                self.emit(name, il, a)
        return out["Qcur"], out["Kcur"], out["Vcur"]

    def position_qk(self, il: int, layer: Layer, q, k, positions):
        """Per-head q/k RMSNorm where the layer has it (qwen3), then RoPE of q and k."""
        if layer.q_norm is not None:
            q = self.norm(q, layer.q_norm, None, "Qcur_normed", il)
        q = self.rope(il, q, positions)
        if self.tracing:
            self.emit("Qcur", il, q)
        if layer.k_norm is not None:
            k = self.norm(k, layer.k_norm, None, "Kcur_normed", il)
        k = self.rope(il, k, positions)
        if self.tracing:
            self.emit("Kcur", il, k)
        return q, k

    def rope(self, il: int, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """ggml_rope_ext with this layer's base, scale and frequency factors."""
        hp = self.hp
        base, scale = self.rope_base_scale(il)
        return rope(x, positions, hp.n_rot, self.rope_mode, base, scale, freq_factors=self.rope_factors(il),
                    attn_factor=hp.rope_attn_factor, n_ctx_orig=hp.n_ctx_orig)

    def rope_base_scale(self, il: int):
        """llama_model::get_rope_freq_base / get_rope_freq_scale."""
        return self.hp.rope_freq_base, self.hp.rope_freq_scale

    def rope_factors(self, il: int):
        """llama_model::get_rope_factors: per-dimension frequency factors, or None."""
        return None

    def window(self, il: int) -> int:
        """Sliding-window size of layer ``il`` (0: attends to every earlier position)."""
        return 0

    def attend(self, il: int, q, k, v, positions, kq_scale, window: int = 0) -> np.ndarray:
        """Store this batch's K/V in layer ``il``'s cache cells and attend over cells 0..pos (the last ``window``
        if > 0): llm_graph_context::build_attn without flash attention.  q (n_tok, n_head, hd_k), k/v
        (n_tok, n_head_kv, hd) -> (n_tok, n_head, hd_v)."""
        cache = self.cache
        cache.store(il, positions, k, v)
        n_kv = cache.n_kv(int(positions[-1]) + 1)
        kq = None
        if cache.type_k == "q8_0":
            kq = self._kq_q8_0(il, q, int(positions[-1]) + 1)
        out = attention(q, cache.k[il], cache.v[il], positions, n_kv, kq_scale, window=window,
                        k_f16=cache.type_k == "f16", v_f16=cache.type_v == "f16", kq=kq)
        if self.tracing:
            self._trace_attention(il, q, positions, n_kv, kq_scale, window, out)
        return out

    def _kq_q8_0(self, il: int, q, n_cells: int) -> np.ndarray:
        # K stored as Q8_0 rows: KQ is ggml_mul_mat(k, q), i.e. vec_dot_q8_0_q8_0 with q quantized to Q8_0
        cache = self.cache
        group = q.shape[1] // cache.n_head_kv
        kq = np.zeros((q.shape[0], q.shape[1], n_cells), np.float32)
        for h in range(q.shape[1]):
            kq[:, h, :] = quant.matmul(cache.k_raw[il][h // group, :n_cells], "Q8_0", q[:, h, :])
        return kq

    def _trace_attention(self, il, q, positions, n_kv, kq_scale, window, out) -> None:
        # build_attn_mha's tensors over all n_kv cells, masked ones included, in ggml's layouts:
        # kq and kq_soft_max ne [n_kv, n_tokens, n_head], kqv ne [head_dim, n_tokens, n_head], kqv_out
        # ne [n_head*head_dim, n_tokens].  The attention kernel computes only the unmasked cells; here the scores
        # of every cell are computed again the same way (the same sums in the same order).
        cache = self.cache
        if cache.type_k == "q8_0":
            kq = self._kq_q8_0(il, q, n_kv)
        else:
            kq = attention_scores(q, cache.k[il], n_kv, k_f16=cache.type_k == "f16")
        self.emit("kq", il, kq.transpose(1, 0, 2))
        self.emit("kq_soft_max", il, soft_max_ext(kq, positions, kq_scale, window).transpose(1, 0, 2))
        self.emit("kqv", il, out.transpose(1, 0, 2))
        self.emit("kqv_out", il, out.reshape(out.shape[0], -1))

    # ------------------------------------------------------------------------------------------- feed-forward
    def feed_forward(self, il: int, layer: Layer, cur: np.ndarray) -> np.ndarray:
        """build_ffn with a parallel gate (LLM_FFN_SILU, LLM_FFN_PAR): down(silu(gate(x)) * up(x)), + biases."""
        up, gate = mm_many([layer.ffn_up, layer.ffn_gate], cur)
        up = self._linear(layer.ffn_up, layer.ffn_up_b, cur, "ffn_up", il, product=up)
        gate = self._linear(layer.ffn_gate, layer.ffn_gate_b, cur, "ffn_gate", il, product=gate)
        cur = swiglu(gate, up)                                  # ggml_swiglu_split
        if self.tracing:
            self.emit("ffn_swiglu", il, cur)
        return self.ffn_down(il, layer, cur)

    def ffn_down(self, il: int, layer: Layer, cur: np.ndarray) -> np.ndarray:
        """build_ffn's down projection; with a bias the matmul is traced as "ffn_down" (the sum is "ffn_out")."""
        cur = layer.ffn_down.mm(cur)
        if layer.ffn_down_b is not None:
            if self.tracing:
                self.emit("ffn_down", il, cur)
            cur = cur + layer.ffn_down_b
        return cur

    def _linear(self, w: Weight, b, cur: np.ndarray, name: str, il: int, product=None) -> np.ndarray:
        # build_lora_mm (+ ggml_add of the bias), traced as build_ffn names them: "name", then "name_b";
        # ``product``: w.mm(cur) already computed (with others, by mm_many)
        out = w.mm(cur) if product is None else product
        if self.tracing:
            self.emit(name, il, out)
        if b is not None:
            out = out + b
            if self.tracing:
                self.emit(name + "_b", il, out)
        return out

    # ------------------------------------------------------------------------------------------------- output
    def output_head(self, x: np.ndarray) -> np.ndarray:
        """The final norm ("result_norm") and the output matmul ("result_output")."""
        x = self.norm(x, self.output_norm, self.output_norm_b, "result_norm", -1)
        logits = self.logits(x)
        if self.tracing:
            self.emit("result_output", -1, logits)
        return logits

    def logits(self, x: np.ndarray) -> np.ndarray:
        """lm_head: ggml_mul_mat(output, x)."""
        return self.output.mm(x)
