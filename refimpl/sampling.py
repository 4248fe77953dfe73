"""Token sampling in the order of llama.cpp's common sampler chain (common/sampling.cpp, src/llama-sampler.cpp).

    penalties -> top-k -> typical-p -> top-p -> min-p -> temperature -> seeded draw      (greedy at temp <= 0)

Each stage is the llama_sampler_* function of the same name, applied to (candidate ids, logits).  The final
draw uses numpy's PCG64 seeded with ``seed``, not llama.cpp's std::mt19937 + std::discrete_distribution, so a
seeded run is reproducible within refimpl but does not pick the same tokens as llama.cpp (greedy does).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class SamplerParams:
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    min_keep: int = 1
    seed: int = 0


def _softmax(logits: np.ndarray) -> np.ndarray:
    # llama_sampler_softmax_impl: p = exp(l - max) / sum
    e = np.exp(logits.astype(np.float64) - logits.max())
    return e / e.sum()


def penalties(ids, logits, last, p: SamplerParams):
    """llama_sampler_penalties_apply: repeat penalty divides positive logits and multiplies negative ones, then
    frequency (count) and presence (seen) penalties are subtracted."""
    if not last or (p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0):
        return ids, logits
    counts: dict[int, int] = {}
    for t in last:
        counts[t] = counts.get(t, 0) + 1
    logits = logits.copy()
    for i, t in enumerate(ids):
        c = counts.get(int(t), 0)
        if c == 0:
            continue
        if logits[i] <= 0:
            logits[i] *= p.repeat_penalty
        else:
            logits[i] /= p.repeat_penalty
        logits[i] -= c * p.frequency_penalty + (1 if c > 0 else 0) * p.presence_penalty
    return ids, logits


def top_k(ids, logits, k: int):
    """llama_sampler_top_k_impl: the k highest logits, sorted descending (k <= 0: all)."""
    if k <= 0 or k >= len(ids):
        order = np.argsort(-logits, kind="stable")
    else:
        part = np.argpartition(-logits, k - 1)[:k]
        order = part[np.argsort(-logits[part], kind="stable")]
    return ids[order], logits[order]


def typical(ids, logits, p_typ: float, min_keep: int):
    """llama_sampler_typical_apply: keep tokens whose surprise is closest to the entropy, up to mass p."""
    if p_typ >= 1.0:
        return ids, logits
    probs = _softmax(logits)
    entropy = -np.sum(probs * np.log(probs + 1e-300))
    shifted = np.abs(-np.log(probs + 1e-300) - entropy)
    order = np.argsort(shifted, kind="stable")
    cum = np.cumsum(probs[order])
    last = len(order)
    for i in range(len(order)):
        if cum[i] > p_typ and i + 1 >= min_keep:
            last = i + 1
            break
    keep = order[:last]
    return ids[keep], logits[keep]


def top_p(ids, logits, p_top: float, min_keep: int):
    """llama_sampler_top_p_apply: the smallest prefix (by probability) whose mass reaches p."""
    if p_top >= 1.0:
        return ids, logits
    order = np.argsort(-logits, kind="stable")
    ids, logits = ids[order], logits[order]
    cum = np.cumsum(_softmax(logits))
    last = len(ids)
    for i in range(len(ids)):
        if cum[i] >= p_top and i + 1 >= min_keep:
            last = i + 1
            break
    return ids[:last], logits[:last]


def min_p(ids, logits, p_min: float, min_keep: int):
    """llama_sampler_min_p_apply: keep logits >= max + log(min_p) (probability >= min_p * p_max)."""
    if p_min <= 0.0 or len(ids) == 0:
        return ids, logits
    keep = logits >= logits.max() + np.log(p_min)
    if keep.sum() < min_keep:
        order = np.argsort(-logits, kind="stable")[:min_keep]
        return ids[order], logits[order]
    return ids[keep], logits[keep]


class Sampler:
    """The common sampler chain over the last logits row; ``accept(token)`` feeds the penalty window."""

    def __init__(self, params: SamplerParams | None = None):
        self.p = params or SamplerParams()
        self.last = deque(maxlen=max(self.p.penalty_last_n, 0) or None)
        self.rng = np.random.Generator(np.random.PCG64(self.p.seed & 0xFFFFFFFF))

    def accept(self, token: int) -> None:
        if self.p.penalty_last_n != 0:
            self.last.append(int(token))

    def sample(self, logits: np.ndarray) -> int:
        p = self.p
        logits = np.asarray(logits, dtype=np.float32)
        ids = np.arange(logits.size)
        ids, lg = penalties(ids, logits, list(self.last), p)
        if p.temp <= 0.0:
            return int(ids[int(np.argmax(lg))])                     # greedy: first maximum
        ids, lg = top_k(ids, lg, p.top_k)
        ids, lg = typical(ids, lg, p.typical_p, p.min_keep)
        ids, lg = top_p(ids, lg, p.top_p, p.min_keep)
        ids, lg = min_p(ids, lg, p.min_p, p.min_keep)
        lg = lg / np.float32(p.temp)
        probs = _softmax(lg)
        return int(ids[self.rng.choice(len(ids), p=probs)])
