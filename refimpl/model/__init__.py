"""The inference engine: GGUF model -> logits, computed the way llama.cpp's CPU backend computes them.

    >>> from refimpl import model
    >>> m = model.load("model.gguf")                  # mmap; weights stay in their ggml type
    >>> logits = m.eval([1, 15043, 3186])              # (n_tokens, n_vocab), every position
    >>> nxt = m.eval([42], n_past=3)                   # incremental decoding through the KV cache

Weights never get dequantized for a matmul: ``refimpl.quant.matmul`` quantizes the activations to the weight
type's vec_dot type and runs ggml's vec_dot, as ggml_mul_mat does.  Token embeddings are dequantized row by row
(ggml_get_rows).  Shared ops: ``refimpl.model.layers``; the KV cache: ``refimpl.model.kv_cache``; one file per
architecture, registered by its ``general.architecture`` name.  See spec/model.md.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

from .. import gguf as _gguf
from .. import quant
from .kv_cache import KVCache

__all__ = ["load", "Model", "Weight", "ModelFile", "ARCHITECTURES", "register"]

ARCHITECTURES: dict[str, type] = {}
_ARCH_MODULES = ("llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2")


def register(name: str):
    """Class decorator: the Model subclass for GGUF files whose general.architecture is ``name``."""
    def deco(cls):
        ARCHITECTURES[name] = cls
        cls.arch = name
        return cls
    return deco


def _import_architectures() -> None:
    for mod in _ARCH_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:      # an architecture not written yet
            if e.name != f"{__name__}.{mod}":
                raise


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

    def mm(self, x: np.ndarray) -> np.ndarray:
        """ggml_mul_mat(W, x): x (n_tokens, n_cols) -> (n_tokens, n_rows)."""
        if self._matrix is None:                # bound on first use: type, block view and kernels resolved once
            self._matrix = quant.WeightMatrix(self.raw.reshape(self.n_rows, -1), self.qtype)
        return self._matrix.matmul(x)

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
        info = self.gguf.tensors.get(name) if hasattr(self.gguf.tensors, "get") else None
        if info is None and name in self.gguf.tensors:
            info = self.gguf.tensors[name]
        if info is None:
            if required:
                raise ValueError(f"{self.path}: missing tensor {name!r} (architecture {self.arch})")
            return None
        return Weight(name, info)

    def vector(self, name: str, required: bool = True) -> np.ndarray | None:
        w = self.weight(name, required)
        return None if w is None else w.floats()


class Model:
    """Base class: an architecture subclass sets ``self.n_vocab``, builds its weights in ``__init__(mf)`` and
    implements ``forward(tokens, positions) -> logits`` using ``self.cache``."""

    arch = "?"
    # per-architecture KV cache shape; subclasses set these
    n_layer = n_head_kv = head_dim_k = head_dim_v = 0
    n_ctx_train = 4096

    def __init__(self, mf: ModelFile):
        self.file = mf
        self.cache: KVCache | None = None
        self.n_past = 0
        # rows of the last hidden state that get logits (llama.cpp's inp_out_ids); set by eval
        self.output_rows = slice(None)

    # ------------------------------------------------------------------ context
    def new_context(self, n_ctx: int | None = None, type_k: str = "f16", type_v: str = "f16") -> None:
        """A fresh (empty) KV cache of ``n_ctx`` cells (default: the training context, at most 4096)."""
        n_ctx = n_ctx or min(self.n_ctx_train, 4096)
        self.cache = KVCache(self.n_layer, self.n_head_kv, self.head_dim_k, self.head_dim_v, n_ctx, type_k, type_v)
        self.n_past = 0

    def eval(self, tokens, n_past: int | None = None, logits: str = "all") -> np.ndarray:
        """Logits (n_tokens, n_vocab) for every position of ``tokens`` placed after the first ``n_past`` cached
        tokens (default: after everything evaluated so far; ``n_past=0`` restarts the sequence).

        ``logits="last"`` computes only the last position's (shape (1, n_vocab)), as llama.cpp does unless a
        batch asks for more: the output matmul is the largest of the model.  Each row is computed on its own,
        so the last row is the same either way."""
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
        positions = np.arange(n_past, n_past + tokens.size, dtype=np.int64)
        self.output_rows = slice(-1, None) if logits == "last" else slice(None)
        try:
            out = self.forward(tokens, positions)
        finally:
            self.output_rows = slice(None)
        self.n_past = n_past + tokens.size
        self.cache.used = self.n_past
        return out

    def forward(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def attend(self, il: int, q, k, v, positions, kq_scale, window: int = 0) -> np.ndarray:
        """Store this batch's K/V in layer ``il``'s cache cells and attend over cells 0..pos (the last ``window``
        if > 0): llm_graph_context::build_attn without flash attention.  q (n_tok, n_head, hd_k), k/v
        (n_tok, n_head_kv, hd) -> (n_tok, n_head, hd_v)."""
        from .layers import attention

        cache = self.cache
        cache.store(il, positions, k, v)
        n_kv = cache.n_kv(int(positions[-1]) + 1)
        kq = None
        if cache.type_k == "q8_0":
            # K stored as Q8_0 rows: KQ is ggml_mul_mat(k, q), i.e. vec_dot_q8_0_q8_0 with q quantized to Q8_0
            n_cells = int(positions[-1]) + 1
            group = q.shape[1] // k.shape[1]
            kq = np.zeros((q.shape[0], q.shape[1], n_cells), np.float32)
            for h in range(q.shape[1]):
                kq[:, h, :] = quant.matmul(cache.k_raw[il][h // group, :n_cells], "Q8_0", q[:, h, :])
        return attention(q, cache.k[il], cache.v[il], positions, n_kv, kq_scale, window=window,
                         k_f16=cache.type_k == "f16", v_f16=cache.type_v == "f16", kq=kq)


def load(path, n_ctx: int | None = None, type_k: str = "f16", type_v: str = "f16") -> Model:
    """Open a GGUF model (mmap) and build the Model for its architecture."""
    mf = ModelFile(path)
    _import_architectures()
    cls = ARCHITECTURES.get(mf.arch)
    if cls is None:
        raise ValueError(f"{mf.path}: unsupported architecture {mf.arch!r} "
                         f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    m = cls(mf)
    m.new_context(n_ctx, type_k, type_v)
    return m
