"""What perplexity, KL-divergence and imatrix share: opening the model, reading and tokenizing the text, the chunk
layout and the evaluation of one chunk, C-style number formatting."""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np


def open_model(model, n_ctx: int):
    """A refimpl Model with a KV cache of at least ``n_ctx`` cells (``model`` is a path or a loaded Model) and its
    tokenizer."""
    from ..model import Model, load
    from ..tokenizer import Tokenizer

    if isinstance(model, (str, os.PathLike)):
        m = load(model, n_ctx=n_ctx)
    elif isinstance(model, Model):
        m = model
        if m.cache is None or m.cache.size < n_ctx:
            m.new_context(n_ctx)
    else:
        raise TypeError(f"model must be a path or a refimpl.model.Model, got {type(model).__name__}")
    tok = getattr(m, "_quality_tokenizer", None)
    if tok is None:
        tok = Tokenizer.from_gguf(m.file.gguf)
        m._quality_tokenizer = tok
    return m, tok


def read_text_file(path) -> str:
    """``-f FNAME`` as common/arg.cpp reads it: the whole file, one trailing newline removed."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    if text.endswith("\n"):
        text = text[:-1]
    return text


def tokenize(tok, text: str, parse_special: bool = False) -> np.ndarray:
    """common_tokenize(ctx, text, add_special=true, parse_special): BOS first when the vocab adds it."""
    if tok.add_eos:
        # perplexity.cpp: GGML_ASSERT(!llama_vocab_get_add_eos(vocab))
        raise ValueError("the vocabulary adds EOS to every text; llama-perplexity refuses such models")
    return np.asarray(tok.encode(text, add_special=True, parse_special=parse_special), dtype=np.int32)


def batch_layout(n_ctx: int, n_batch: int) -> tuple[int, int]:
    """llama_perplexity()/imatrix main(): n_parallel = max(1, n_batch / n_ctx) sequences share one batch, and the
    batch is capped at n_parallel * n_ctx.  Returns (n_seq, n_batch)."""
    if n_ctx <= 0:
        raise ValueError(f"the context size (-c) must be > 0, got {n_ctx}")
    if n_batch <= 0:
        raise ValueError(f"the batch size (-b) must be > 0, got {n_batch}")
    n_seq = max(1, n_batch // n_ctx)
    n_batch = min(n_batch, n_seq * n_ctx)
    return n_seq, n_batch


def eval_chunk(m, chunk: np.ndarray, n_batch: int, bos: int | None, first: int = 0) -> np.ndarray:
    """The logits (n_ctx - first, n_vocab) of rows ``first..n_ctx-1`` of one chunk, its first token replaced by BOS
    (``bos``; None: kept), evaluated from an empty cache in pieces of ``n_batch`` tokens as the tools' batch loop
    does (the KV cache carries the earlier pieces; every row's logits are the same either way).

    Rows before ``first`` get no logits, as in perplexity.cpp's batches (``need_logits = pos >= first``): they are
    evaluated in their own pieces with ``logits="last"``, which also skips the last layer's work after attention
    for them (llama.cpp's ``inp_out_ids``)."""
    chunk = np.array(chunk, dtype=np.int64)
    if bos is not None:
        chunk[0] = bos
    n_ctx = chunk.size
    cuts = sorted(set(range(0, n_ctx, n_batch)) | ({first} if 0 < first < n_ctx else set()) | {n_ctx})
    parts = []
    for b, e in zip(cuts[:-1], cuts[1:]):
        if e <= first:
            m.eval(chunk[b:e], n_past=b, logits="last")
        else:
            parts.append(m.eval(chunk[b:e], n_past=b, logits="all"))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# ----------------------------------------------------------------------------------------------- C formatting
def cfloat(x: float) -> str:
    """How glibc's printf spells a non-finite double (Python says 'nan' for both signs)."""
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return "-inf" if x < 0 else "inf"


def cfmt(spec: str, x) -> str:
    """printf(spec, x) for one double (``spec`` like '%10.6f'), including C's nan/inf spelling and width."""
    x = float(x)
    if math.isfinite(x):
        return spec % x
    width = spec[1:].split(".")[0].rstrip("lf")
    return ("%" + width + "s") % cfloat(x)


def cdiv(a: float, b: float) -> float:
    """a / b in C doubles (Inf or NaN where Python raises)."""
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def csqrt(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.sqrt(np.float64(x)))


def pack_i32(*values: int) -> bytes:
    return struct.pack("<" + "i" * len(values), *values)
