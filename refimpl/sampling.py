"""Token sampling exactly as llama.cpp's sampler chain does it (src/llama-sampler.cpp, order of common/sampling.cpp).

    penalties -> top-k -> typical-p -> top-p -> min-p -> temperature -> dist (seeded draw)   (greedy at temp <= 0)

A seeded run picks the same token ids as the llama.cpp chain built from llama_sampler_init_penalties / _top_k /
_typical / _top_p / _min_p / _temp / _dist(seed) with the same parameters (checked by golden/sampling).  That
needs more than the formulas:

* The candidate array is mirrored as llama_token_data_array: (id, logit, p) records, a size and a ``sorted``
  flag, and every stage moves records in the same order as the C.  Ties between equal logits are resolved the
  way libstdc++ resolves them: std::partial_sort (heap select + sort_heap) and std::sort (introsort, median of
  three, 16-element insertion sort) are reproduced step by step below, and so is llama.cpp's bucket partial sort
  (llama_token_data_array_partial_sort, 128 buckets over [-10, 10]) used for more than 128 candidates.
* Every value is float32 where the C uses float (softmax sums, cumulative sums, entropy), libm expf/logf
  (numba lowers math.exp/math.log on a float32 to the C library call), double where the C uses double (dist).
* The draw is std::mt19937 seeded with ``seed`` and std::uniform_real_distribution<double>(0, 1), which in
  libstdc++ is generate_canonical<double, 53>: two 32-bit outputs, (x0 + x1 * 2^32) / 2^64, clamped below 1.
  llama_sampler_dist_apply then takes the first candidate whose running double sum of expf(l - max) reaches
  sum * rnd; with a single candidate it still consumes one draw.

Greedy (``temp <= 0``) is llama_sampler_greedy: the first maximum after penalties, no draw.  Seed 0xFFFFFFFF
(LLAMA_DEFAULT_SEED) means "random" in llama.cpp; here it is just that seed.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ._jit import f32, njit


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


# ---------------------------------------------------------------------------------------------------------------
# std::mt19937 and std::uniform_real_distribution<double>(0, 1) as libstdc++ implements them


class MT19937:
    """The 32-bit Mersenne Twister (std::mt19937), seeded like ``std::mt19937(seed)``."""

    def __init__(self, seed: int):
        mt = [0] * 624
        mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self.mt = mt
        self.index = 624

    def _twist(self) -> None:
        mt = self.mt
        for i in range(624):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
            v = mt[(i + 397) % 624] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            mt[i] = v
        self.index = 0

    def __call__(self) -> int:
        if self.index >= 624:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF


_ONE_BELOW = float(np.nextafter(1.0, 0.0))


def uniform_01(rng: MT19937) -> float:
    """std::uniform_real_distribution<double>(0, 1)(rng) in libstdc++: generate_canonical<double, 53> takes
    k = ceil(53 / 32) = 2 draws, sum = x0 + x1 * 2^32 (in double), divides by 2^64 and clamps to below 1;
    the distribution then computes x * (1 - 0) + 0 = x."""
    s = float(rng())
    s += float(rng()) * 4294967296.0
    x = s / 18446744073709551616.0
    if x >= 1.0:
        x = _ONE_BELOW
    return x


# ---------------------------------------------------------------------------------------------------------------
# libstdc++ sorting algorithms over a permutation ``v`` of record indices, comparing key[a] with key[b]
# (``desc``: comp(a, b) = key[a] > key[b], else key[a] < key[b]).  Indices into v are relative to its start.


@njit
def _comp(key, desc, a, b):
    if desc:
        return key[a] > key[b]
    return key[a] < key[b]


@njit
def _push_heap(v, first, hole, top, value, key, desc):
    # mirrors std::__push_heap
    while hole > top:
        parent = (hole - 1) // 2
        if not _comp(key, desc, v[first + parent], value):
            break
        v[first + hole] = v[first + parent]
        hole = parent
    v[first + hole] = value


@njit
def _adjust_heap(v, first, hole, length, value, key, desc):
    # mirrors std::__adjust_heap
    top = hole
    second = hole
    while second < (length - 1) // 2:
        second = 2 * (second + 1)
        if _comp(key, desc, v[first + second], v[first + second - 1]):
            second -= 1
        v[first + hole] = v[first + second]
        hole = second
    if (length & 1) == 0 and length >= 2 and second == (length - 2) // 2:
        second = 2 * (second + 1)
        v[first + hole] = v[first + second - 1]
        hole = second - 1
    _push_heap(v, first, hole, top, value, key, desc)


@njit
def _pop_heap(v, first, last, result, key, desc):
    # mirrors std::__pop_heap
    value = v[result]
    v[result] = v[first]
    _adjust_heap(v, first, 0, last - first, value, key, desc)


@njit
def _partial_sort(v, first, middle, last, key, desc):
    # mirrors std::__partial_sort = std::__heap_select + std::__sort_heap
    length = middle - first
    if length >= 2:                                   # std::__make_heap
        parent = (length - 2) // 2
        while True:
            _adjust_heap(v, first, parent, length, v[first + parent], key, desc)
            if parent == 0:
                break
            parent -= 1
    for i in range(middle, last):
        if _comp(key, desc, v[i], v[first]):
            _pop_heap(v, first, middle, i, key, desc)
    while middle - first > 1:                         # std::__sort_heap
        middle -= 1
        _pop_heap(v, first, middle, middle, key, desc)


@njit
def _unguarded_linear_insert(v, last, key, desc):
    val = v[last]
    nxt = last - 1
    while _comp(key, desc, val, v[nxt]):
        v[last] = v[nxt]
        last = nxt
        nxt -= 1
    v[last] = val


@njit
def _insertion_sort(v, first, last, key, desc):
    if first == last:
        return
    for i in range(first + 1, last):
        if _comp(key, desc, v[i], v[first]):
            val = v[i]
            for j in range(i, first, -1):             # std::move_backward
                v[j] = v[j - 1]
            v[first] = val
        else:
            _unguarded_linear_insert(v, i, key, desc)


@njit
def _std_sort(v, first, last, key, desc):
    # mirrors std::sort: std::__introsort_loop(depth 2*floor(log2 n)) + std::__final_insertion_sort.  The
    # recursion on the right part is an explicit stack: the parts are disjoint, so the order does not matter.
    n = last - first
    if n <= 0:
        return
    lg = 0                                            # std::__lg(n) = floor(log2(n))
    while (n >> (lg + 1)) > 0:
        lg += 1
    depth0 = 2 * lg
    stack = [(first, last, depth0)]
    while len(stack) > 0:
        lo, hi, depth = stack.pop()
        while hi - lo > 16:
            if depth == 0:
                _partial_sort(v, lo, hi, hi, key, desc)
                break
            depth -= 1
            # std::__unguarded_partition_pivot: median of (lo+1, mid, hi-1) moved to lo
            mid = lo + (hi - lo) // 2
            a, b, c = lo + 1, mid, hi - 1
            if _comp(key, desc, v[a], v[b]):
                if _comp(key, desc, v[b], v[c]):
                    m = b
                elif _comp(key, desc, v[a], v[c]):
                    m = c
                else:
                    m = a
            elif _comp(key, desc, v[a], v[c]):
                m = a
            elif _comp(key, desc, v[b], v[c]):
                m = c
            else:
                m = b
            t = v[lo]
            v[lo] = v[m]
            v[m] = t
            # std::__unguarded_partition(lo + 1, hi, pivot = lo)
            f = lo + 1
            la = hi
            while True:
                while _comp(key, desc, v[f], v[lo]):
                    f += 1
                la -= 1
                while _comp(key, desc, v[lo], v[la]):
                    la -= 1
                if not f < la:
                    break
                t = v[f]
                v[f] = v[la]
                v[la] = t
                f += 1
            stack.append((f, hi, depth))
            hi = f
    if n > 16:                                        # std::__final_insertion_sort
        _insertion_sort(v, first, first + 16, key, desc)
        for i in range(first + 16, last):
            _unguarded_linear_insert(v, i, key, desc)
    else:
        _insertion_sort(v, first, last, key, desc)


@njit
def _bucket_partial_sort(logit, size, npartial):
    """mirrors llama_token_data_array_partial_sort: the record indices of the top ``npartial`` logits (and the
    rest of the lowest bucket reached), the first npartial of them sorted descending."""
    nbuckets = 128
    bucket_scale = f32(nbuckets) / (f32(10.0) - f32(-10.0))
    bucket_inter = f32(10.0) * bucket_scale
    bucket_idx = np.empty(size, dtype=np.int64)
    histo = np.zeros(nbuckets, dtype=np.int64)
    for i in range(size):
        x = bucket_scale * logit[i] + bucket_inter
        # int(x) on x86 (cvttss2si): out of int32 range or NaN gives INT_MIN
        if x >= f32(-2147483648.0) and x < f32(2147483648.0):
            ib = int(x)
        else:
            ib = -2147483648
        ib = max(0, min(nbuckets - 1, ib))
        bucket_idx[i] = ib
        histo[ib] += 1
    nhave = 0
    ib = nbuckets - 1
    while ib >= 0:
        nhave += histo[ib]
        if nhave >= npartial:
            break
        ib -= 1
    res = np.empty(nhave, dtype=np.int64)
    ptrs = np.zeros(nbuckets, dtype=np.int64)
    pos = 0
    for j in range(nbuckets - 1, ib - 1, -1):
        ptrs[j] = pos
        pos += histo[j]
    for i in range(size):
        j = bucket_idx[i]
        if j >= ib:
            res[ptrs[j]] = i
            ptrs[j] += 1
    pos = 0
    ndone = 0
    for j in range(nbuckets - 1, ib, -1):
        _std_sort(res, pos, pos + histo[j], logit, True)
        pos += histo[j]
        ndone += histo[j]
    _partial_sort(res, pos, pos + npartial - ndone, pos + histo[ib], logit, True)
    return res


# ---------------------------------------------------------------------------------------------------------------
# the candidate array (llama_token_data_array) and the samplers


class Candidates:
    """llama_token_data_array: ``ids``/``logit``/``p`` records (the first ``size`` valid) and ``sorted``."""

    def __init__(self, ids, logits):
        self.ids = np.array(ids, dtype=np.int32)
        self.logit = np.array(logits, dtype=np.float32)
        self.p = np.zeros(self.ids.size, dtype=np.float32)
        self.size = int(self.ids.size)
        self.sorted = False

    def take(self, order) -> None:
        """Write records ``order`` (indices into the current records) to positions 0..len(order)-1."""
        n = len(order)
        self.ids[:n] = self.ids[order]
        self.logit[:n] = self.logit[order]
        self.p[:n] = self.p[order]

    def valid(self):
        return self.ids[:self.size].copy(), self.logit[:self.size].copy()


def _sort_order(logit, size, npartial):
    """The record order llama_token_data_array_partial_sort_inplace produces (first npartial entries)."""
    if npartial <= 128:
        v = np.arange(size, dtype=np.int64)
        _partial_sort(v, 0, npartial, size, logit, True)
        return v[:npartial]
    return _bucket_partial_sort(logit, size, npartial)[:npartial]


def partial_sort_inplace(cur: Candidates, npartial: int) -> None:
    # mirrors llama_token_data_array_partial_sort_inplace
    cur.take(_sort_order(cur.logit, cur.size, npartial))
    cur.size = npartial
    cur.sorted = True


@njit
def _softmax_probs(logit, p, size, sorted_):
    max_l = logit[0]
    if not sorted_:
        for i in range(1, size):
            max_l = max(max_l, logit[i])
    cum_sum = f32(0.0)
    for i in range(size):
        e = f32(math.exp(f32(logit[i] - max_l)))
        p[i] = e
        cum_sum += e
    for i in range(size):
        p[i] = p[i] / cum_sum


def softmax_impl(cur: Candidates, do_sort: bool) -> None:
    # mirrors llama_sampler_softmax_impl
    if cur.size <= 0:
        raise ValueError("softmax of an empty candidate array (GGML_ASSERT(cur_p->size > 0))")
    if do_sort and not cur.sorted:
        partial_sort_inplace(cur, cur.size)
    _softmax_probs(cur.logit, cur.p, cur.size, cur.sorted)


@njit
def _penalize(ids, logit, size, tok, cnt, repeat, freq, present):
    # mirrors llama_sampler_penalties_apply (tok/cnt: the token_count map)
    for i in range(size):
        c = 0
        for j in range(tok.size):
            if tok[j] == ids[i]:
                c = cnt[j]
        if c == 0:
            continue
        if logit[i] <= f32(0.0):
            logit[i] = logit[i] * repeat
        else:
            logit[i] = logit[i] / repeat
        logit[i] = logit[i] - (f32(c) * freq + f32(1.0 if c > 0 else 0.0) * present)


def apply_penalties(cur: Candidates, last, p: SamplerParams) -> None:
    last_n = max(int(p.penalty_last_n), 0)
    repeat, freq, present = f32(p.repeat_penalty), f32(p.frequency_penalty), f32(p.presence_penalty)
    if last_n == 0 or (repeat == f32(1.0) and freq == f32(0.0) and present == f32(0.0)):
        return
    counts: dict[int, int] = {}
    for t in last:
        counts[t] = counts.get(t, 0) + 1
    tok = np.array(list(counts.keys()), dtype=np.int64)
    cnt = np.array(list(counts.values()), dtype=np.int64)
    _penalize(cur.ids, cur.logit, cur.size, tok, cnt, repeat, freq, present)
    cur.sorted = False


def apply_top_k(cur: Candidates, k: int) -> None:
    # mirrors llama_sampler_top_k_impl
    if k <= 0:
        return
    k = min(k, cur.size)
    if not cur.sorted:
        partial_sort_inplace(cur, k)
    cur.size = k


@njit
def _logf(x):
    # libm logf (numba lowers math.log on a float32 to it); logf(0) = -inf, which Python's math.log refuses
    if x == f32(0.0):
        return f32(-np.inf)
    return f32(math.log(x))


@njit
def _typical_order(p, size, p_typ, min_keep):
    entropy = f32(0.0)
    for i in range(size):
        entropy += -p[i] * _logf(p[i])
    shifted = np.empty(size, dtype=np.float32)
    for i in range(size):
        shifted[i] = abs(-_logf(p[i]) - entropy)
    indices = np.arange(size, dtype=np.int64)
    _std_sort(indices, 0, size, shifted, False)
    cum_sum = f32(0.0)
    last_idx = size
    for i in range(size):
        cum_sum += p[indices[i]]
        if cum_sum > p_typ and (min_keep == 0 or i >= min_keep - 1):
            last_idx = i + 1
            break
    return indices[:last_idx].copy()


def apply_typical(cur: Candidates, p_typ: float, min_keep: int) -> None:
    # mirrors llama_sampler_typical_apply
    if f32(p_typ) >= f32(1.0):
        return
    softmax_impl(cur, True)
    keep = _typical_order(cur.p, cur.size, f32(p_typ), int(min_keep))
    cur.take(keep)
    cur.size = len(keep)
    cur.sorted = False


def apply_top_p(cur: Candidates, p_top: float, min_keep: int) -> None:
    # mirrors llama_sampler_top_p_apply (incl. its adaptive top-256 sort of more than 1024 unsorted candidates)
    p_top = f32(p_top)
    if p_top >= f32(1.0):
        return
    softmax_impl(cur, False)
    size = cur.size
    k = size
    buf = None                                        # record order of buf_sort, or None = cur itself
    if not cur.sorted and size > 1024:
        k = min(256, size)
        buf = _bucket_partial_sort(cur.logit, size, k)
    elif not cur.sorted:
        partial_sort_inplace(cur, k)
    cum_sum = f32(0.0)
    last_idx = size
    for i in range(size):
        cum_sum += cur.p[buf[i]] if buf is not None else cur.p[i]
        if cum_sum >= p_top and i + 1 >= min_keep:
            last_idx = i + 1
            break
        if not cur.sorted and i == k - 1:
            k = size
            buf = _bucket_partial_sort(cur.logit, size, k)
    if not cur.sorted:
        cur.take(buf[:last_idx])
        cur.sorted = True
    cur.size = last_idx


def apply_min_p(cur: Candidates, p_min: float, min_keep: int) -> None:
    # mirrors llama_sampler_min_p_apply
    p_min = f32(p_min)
    if p_min <= f32(0.0) or cur.size == 0:
        return
    applied = False
    lg = cur.logit[:cur.size]
    if not cur.sorted:
        max_logit = max(f32(-3.4028234663852886e38), lg.max())
        min_logit = f32(max_logit + f32(math.log(p_min)))
        keep = np.nonzero(lg >= min_logit)[0]
        if len(keep) > 0 and len(keep) >= min_keep:
            cur.take(keep)
            cur.size = len(keep)
            applied = True
    if not applied:
        if not cur.sorted:
            partial_sort_inplace(cur, cur.size)
        min_logit = f32(cur.logit[0] + f32(math.log(p_min)))
        i = 1
        while i < cur.size:
            if cur.logit[i] < min_logit and i >= min_keep:
                break
            i += 1
        cur.size = i


def apply_temp(cur: Candidates, temp: float) -> None:
    # mirrors llama_sampler_temp_impl (llama_sampler_init_temp(1.0) is an empty sampler: no-op either way)
    temp = f32(temp)
    if cur.size == 0 or temp == f32(1.0):
        return
    if temp <= f32(0.0):
        max_i = 0
        max_l = cur.logit[0]
        for i in range(1, cur.size):
            if cur.logit[i] > max_l:
                cur.logit[max_i] = -np.inf
                max_i = i
                max_l = cur.logit[i]
            else:
                cur.logit[i] = -np.inf
        return
    cur.logit[:cur.size] = cur.logit[:cur.size] / temp


@njit
def _dist_select(logit, p, size, sorted_, rnd):
    max_l = logit[0]
    if not sorted_:
        for i in range(1, size):
            max_l = max(max_l, logit[i])
    sum_cum = 0.0                                     # double in the C
    for i in range(size):
        e = f32(math.exp(f32(logit[i] - max_l)))
        p[i] = e
        sum_cum += np.float64(e)
    sum_tgt = sum_cum * rnd
    sum_run = 0.0
    for i in range(size):
        sum_run += np.float64(p[i])
        if sum_run >= sum_tgt:
            return i
    return size - 1                                   # the C's fallback ("don't think this can happen")


def apply_dist(cur: Candidates, rng: MT19937) -> int:
    """mirrors llama_sampler_dist_apply; returns the selected position (-1 for no candidates)."""
    if cur.size == 0:
        return -1
    if cur.size == 1:
        uniform_01(rng)                               # still one draw, to stay aligned with backend sampling
        return 0
    # the draw happens after the softmax in the C; the order does not matter (the softmax uses no randomness)
    return int(_dist_select(cur.logit, cur.p, cur.size, cur.sorted, uniform_01(rng)))


# functional forms (ids, logits) -> (ids, logits), each running one stage on an unsorted candidate array


def _stage(fn, ids, logits, *args):
    cur = Candidates(ids, logits)
    fn(cur, *args)
    return cur.valid()


def penalties(ids, logits, last, p: SamplerParams):
    return _stage(apply_penalties, ids, logits, list(last), p)


def top_k(ids, logits, k: int):
    return _stage(apply_top_k, ids, logits, k)


def typical(ids, logits, p_typ: float, min_keep: int):
    return _stage(apply_typical, ids, logits, p_typ, min_keep)


def top_p(ids, logits, p_top: float, min_keep: int):
    return _stage(apply_top_p, ids, logits, p_top, min_keep)


def min_p(ids, logits, p_min: float, min_keep: int):
    return _stage(apply_min_p, ids, logits, p_min, min_keep)


class Sampler:
    """The common sampler chain over the last logits row; ``accept(token)`` feeds the penalty window."""

    def __init__(self, params: SamplerParams | None = None):
        self.p = params or SamplerParams()
        self.last_n = max(int(self.p.penalty_last_n), 0)   # llama_sampler_init_penalties clamps at 0
        self.last = deque(maxlen=self.last_n or None)
        self.rng = MT19937(int(self.p.seed) & 0xFFFFFFFF)

    def accept(self, token: int) -> None:
        if self.last_n != 0:
            self.last.append(int(token))

    def sample(self, logits: np.ndarray) -> int:
        p = self.p
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim != 1:
            raise ValueError(f"expected one row of logits, got shape {logits.shape}")
        cur = Candidates(np.arange(logits.size, dtype=np.int32), logits)
        apply_penalties(cur, self.last, p)
        if p.temp <= 0.0:
            # llama_sampler_greedy_apply: the first maximum
            return int(cur.ids[int(np.argmax(cur.logit[:cur.size]))])
        apply_top_k(cur, int(p.top_k))
        apply_typical(cur, p.typical_p, int(p.min_keep))
        apply_top_p(cur, p.top_p, int(p.min_keep))
        apply_min_p(cur, p.min_p, int(p.min_keep))
        apply_temp(cur, p.temp)
        sel = apply_dist(cur, self.rng)
        return int(cur.ids[sel])
