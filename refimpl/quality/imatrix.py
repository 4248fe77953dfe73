"""llama-imatrix (tools/imatrix/imatrix.cpp): the importance matrix — per matmul weight, the per-column sums of the
squared activations that multiply it, and how many activation rows were summed — number for number.

Reading order: ``compute_imatrix`` (chunks and micro-batches, as llama.cpp splits them), ``ImatrixCollector``
(``IMatrixCollector::collect_imatrix`` / ``load_imatrix``, and the ``Imatrix`` it hands to
``refimpl.imatrix_file`` for writing), then ``statistics`` (``--show-statistics``).

Which activations: llama.cpp's graph callback sees every GGML_OP_MUL_MAT whose weight (src0) is named ``blk.*``
(plus ``output.weight`` with ``--process-output``) and whose micro-batch has at least 16 rows.  refimpl computes
the same rows (its logits are llama.cpp's bit for bit) and sees them by wrapping each such weight's ``mm``.
Per column the sum ``acc[j] += x[j]*x[j]`` is a float32 sum in row order, so the order of the rows matters: rows
arrive micro-batch by micro-batch, and a micro-batch holding several sequences holds each sequence's slice in
turn (``llama_batch_allocr::split_equal``).  ``compute_imatrix`` evaluates the sequences in exactly that order,
each in its own KV cache.
"""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .._jit import f32, njit
from . import logprobs
from ._common import batch_layout, open_model, read_text_file, tokenize  # noqa: F401  (read_text_file: CLI)


@njit
def _add_squares(acc, rows):
    """acc[j] += x[j]*x[j] for each row x in order (collect_imatrix's inner loops, float32)."""
    n, m = rows.shape
    for r in range(n):
        for j in range(m):
            x = rows[r, j]
            acc[j] = acc[j] + x * x


def micro_batches(n_ctx: int, n_batch: int, n_ubatch: int, n_seq_batch: int, n_stream: int):
    """The micro-batches llama_decode cuts the tools' batches into, for one group of ``n_seq_batch`` chunks.

    Yields lists of (seq, start, end): the token slices of each sequence, in the order their rows are laid out.
    One stream (n_seq = 1): ``split_simple``, n_ubatch consecutive tokens of each n_batch batch.  Several streams
    (non-unified KV cache, one per sequence): ``split_equal(sequential=true)`` takes every sequence of the batch
    and the same number of tokens from each, as many as fit n_ubatch."""
    n_ubatch = min(n_ubatch, n_batch)
    for b0 in range(0, n_ctx, n_batch):                         # the tools' batch loop (num_batches)
        b1 = min(n_ctx, b0 + n_batch)
        if n_stream == 1:
            for u0 in range(b0, b1, n_ubatch):
                yield [(0, u0, min(b1, u0 + n_ubatch))]
        else:
            per_seq = max(1, n_ubatch // n_seq_batch)
            for u0 in range(b0, b1, per_seq):
                u1 = min(b1, u0 + per_seq)
                yield [(s, u0, u1) for s in range(n_seq_batch)]


def _weights(obj, seen=None):
    """Every refimpl.model.Weight reachable from the model's attributes (layers, blocks, lists), once each."""
    from ..model import Weight

    seen = set() if seen is None else seen
    out = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, Weight):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif hasattr(o, "__dict__") and not isinstance(o, (type, np.ndarray)) and type(o).__module__.startswith(
                "refimpl.model"):
            stack.extend(vars(o).values())
    return out


@dataclass
class Stats:
    """IMatrixCollector's Stats: per-column sums of squares (float32, n_mat * n_col) and counts (int64, n_mat)."""
    values: np.ndarray
    counts: np.ndarray


class ImatrixError(ValueError):
    pass


class ImatrixCollector:
    """IMatrixCollector: the running sums, their chunk count and the datasets, as imatrix.cpp keeps them."""

    def __init__(self, chunk_size: int, process_output: bool = False):
        self.chunk_size = chunk_size                # m_params.n_ctx / m_params.n_parallel: the user's -c
        self.process_output = process_output
        self.stats: dict[str, Stats] = {}
        self.datasets: list[str] = []
        self.last_chunk = 0

    # --- which weights: collect_imatrix(ask=true) ---
    def wants(self, name: str) -> bool:
        return name.startswith("blk.") or (self.process_output and name == "output.weight")

    # --- collect_imatrix(ask=false), the dense GGML_OP_MUL_MAT branch ---
    def collect(self, name: str, rows: np.ndarray) -> None:
        """Add one micro-batch's activation rows (n_rows, n_col) float32 of weight ``name``."""
        n_col = rows.shape[1]
        e = self.stats.get(name)
        if e is None:
            e = self.stats[name] = Stats(np.zeros(0, np.float32), np.zeros(0, np.int64))
        if e.counts.size > 1 and np.all(e.counts == e.counts[0]):
            e.counts = e.counts[:1].copy()          # "use a single count per dense tensor"
        if e.values.size == 0:
            e.values = np.zeros(n_col, np.float32)
            e.counts = np.zeros(1, np.int64)
        elif e.values.size != n_col:
            raise ImatrixError(f"inconsistent size for {name} ({e.values.size} vs {n_col})")
        _add_squares(e.values, np.ascontiguousarray(rows, dtype=np.float32))
        if not np.all(np.isfinite(e.values)):
            raise ImatrixError(f"non-finite values detected in {name}")
        for i in range(e.counts.size):
            e.counts[i] += rows.shape[0]
            self.last_chunk = max(self.last_chunk, int(e.counts[i] // self.chunk_size))

    # --- load_imatrix: merge a file (--in-file) ---
    def load(self, path) -> None:
        from .. import imatrix_file

        try:
            im = imatrix_file.read_imatrix(path)
        except (ValueError, OSError) as e:
            raise ImatrixError(f"{path}: not a valid imatrix file: {e}") from e
        legacy = _is_legacy(im, path)
        for name, entry in sorted(im.entries.items()):
            sums = np.asarray(entry.sums, dtype=np.float32).reshape(-1)
            counts = np.asarray(entry.counts).reshape(-1)
            e = self.stats.get(name)
            if e is None:
                e = self.stats[name] = Stats(np.zeros(0, np.float32), np.zeros(0, np.int64))
            if legacy:
                # sums hold (raw_sum/raw_count)*ncall and counts {ncall}: rebuild the raw form with chunk_size
                if e.values.size == 0:
                    e.values = np.zeros(sums.size, np.float32)
                    e.counts = np.zeros(1, np.int64)
                e.values += sums * np.float32(self.chunk_size)
                e.counts += np.int64(int(counts[0])) * self.chunk_size
            else:
                n_counts = counts.size
                if e.values.size == 0:
                    e.values = np.zeros(sums.size, np.float32)
                elif sums.size != e.values.size:
                    raise ImatrixError(f"{path}: mismatched sums size for {name}: {sums.size} != {e.values.size}")
                if e.counts.size == 0:
                    e.counts = np.zeros(n_counts, np.int64)
                elif e.counts.size == 1 and n_counts > 1:
                    e.counts = np.full(n_counts, e.counts[0], np.int64)
                elif n_counts != e.counts.size:
                    raise ImatrixError(f"{path}: mismatched counts size for {name}: {n_counts} != {e.counts.size}")
                e.values += sums
                # the loader rounds the stored float counts (std::lround)
                e.counts += np.array([_lround(c) for c in counts], np.int64)
        self.datasets.extend(im.datasets)
        max_count = max((int(c) for s in self.stats.values() for c in s.counts), default=0)
        self.last_chunk = max_count // self.chunk_size

    # --- save_imatrix: the Imatrix handed to refimpl.imatrix_file ---
    def to_imatrix(self, prompt_file: str = ""):
        """What save_imatrix writes: every entry (sorted by name), sums (n_mat, n_col) and counts as float32, the
        datasets (loaded ones, then this run's text file), the chunk count and size."""
        from .. import imatrix_file

        entries = {}
        for name in sorted(self.stats):
            s = self.stats[name]
            n_mat = s.counts.size
            if s.values.size == 0 or n_mat == 0:
                continue
            entries[name] = imatrix_file.ImatrixEntry(
                sums=s.values.reshape(n_mat, -1).astype(np.float32),
                counts=s.counts.astype(np.float32))
        datasets = list(self.datasets) + ([prompt_file] if prompt_file else [])
        return imatrix_file.Imatrix(entries=entries, datasets=datasets, chunk_count=self.last_chunk,
                                    chunk_size=self.chunk_size)


def _lround(x: float) -> int:
    x = float(x)
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _is_legacy(im, path) -> bool:
    fmt = getattr(im, "format", None) or getattr(im, "fmt", None)
    if fmt is not None:
        return str(fmt) == "dat"
    if hasattr(im, "is_legacy"):
        return bool(im.is_legacy)
    with open(path, "rb") as f:
        return f.read(4) != b"GGUF"


@dataclass
class ImatrixResult:
    collector: ImatrixCollector
    n_chunk: int
    chunk_ppl: list[float] = field(default_factory=list)   # the "[i]" running perplexity (unless compute_ppl off)
    ppl: float | None = None
    ppl_error: float | None = None

    def imatrix(self, prompt_file: str = ""):
        return self.collector.to_imatrix(prompt_file)


def compute_imatrix(model, text: str | None = None, *, tokens=None, n_ctx: int = 512, n_batch: int = 2048,
                    n_ubatch: int = 512, n_chunks: int = -1, from_chunk: int = 0, process_output: bool = False,
                    compute_ppl: bool = True, parse_special: bool = False, in_files=(),
                    collector: ImatrixCollector | None = None, progress: bool = False, out=None) -> ImatrixResult:
    """compute_imatrix() of imatrix.cpp: evaluate ``n_chunks`` chunks of ``n_ctx`` tokens of ``text`` (BOS first in
    each), collecting the squared activations of every ``blk.*`` matmul weight (and ``output.weight`` with
    ``process_output``) micro-batch by micro-batch, in llama.cpp's order.  ``from_chunk``: chunks of the text
    skipped first (``--chunk``).  ``in_files``: imatrix files merged first (``--in-file``).  ``out`` gets the ``[i]ppl,`` line.  Returns the collector's state; write it with
    ``refimpl.imatrix_file.write_imatrix(path, result.imatrix(prompt_file), fmt)``."""
    from tqdm import tqdm

    n_seq, n_batch = batch_layout(n_ctx, n_batch)
    col = collector or ImatrixCollector(n_ctx, process_output)
    for p in in_files:
        col.load(p)
    m, tok = open_model(model, n_ctx)
    toks = tokenize(tok, text, parse_special) if tokens is None else np.asarray(tokens, np.int32).reshape(-1)
    if from_chunk > 0:
        if (from_chunk + 2) * n_ctx >= toks.size:
            raise ValueError(f"there will be not enough tokens left after removing {from_chunk} chunks")
        toks = toks[from_chunk * n_ctx:]
    if toks.size < 2 * n_ctx:
        raise ValueError(f"you need at least {2 * n_ctx} tokens for a context of {n_ctx} tokens; "
                         f"the data file you provided tokenizes to only {toks.size} tokens")
    n_chunk_max = toks.size // n_ctx
    n_chunk = n_chunk_max if n_chunks < 0 else min(n_chunks, n_chunk_max)
    if n_chunk == 0:
        raise ValueError("--chunks 0: no chunk to evaluate")
    n_vocab = tok.n_tokens
    first = n_ctx // 2
    bos = tok.bos_id if tok.add_bos else None

    watched = [w for w in _weights(m) if col.wants(w.name)]
    current: list = [None]                   # the micro-batch's per-weight row lists while it is collected

    def wrap(w):
        inner = type(w).mm.__get__(w)

        def mm(x):
            if current[0] is not None:
                current[0].setdefault(w.name, []).append(np.asarray(x, np.float32).reshape(-1, x.shape[-1]))
            return inner(x)
        return mm

    for w in watched:
        w.mm = wrap(w)
    nll = nll2 = 0.0
    count = 0
    chunk_ppl = []
    bar = tqdm(total=n_chunk, disable=not progress, unit="chunk", desc="imatrix", file=sys.stderr, leave=False)
    t0 = time.perf_counter()
    try:
        for i in range(0, n_chunk, n_seq):
            n_seq_batch = min(n_seq, n_chunk - i)
            caches = []
            for _ in range(n_seq_batch):
                m.new_context(n_ctx)
                caches.append(m.cache)
            chunk_tokens = []
            for s in range(n_seq_batch):
                c = np.array(toks[(i + s) * n_ctx:(i + s + 1) * n_ctx], dtype=np.int64)
                if bos is not None:
                    c[0] = bos
                chunk_tokens.append(c)
            logits = [[] for _ in range(n_seq_batch)]
            for ub in micro_batches(n_ctx, n_batch, n_ubatch, n_seq_batch, n_seq):
                n_rows = sum(e - b for _, b, e in ub)
                current[0] = {} if n_rows >= 16 else None     # "why are small batches ignored (<16 tokens)?"
                for s, b, e in ub:
                    m.cache = caches[s]
                    m.n_past = b
                    logits[s].append(m.eval(chunk_tokens[s][b:e], n_past=b, logits="all"))
                if current[0] is not None:
                    for name, parts in current[0].items():
                        col.collect(name, parts[0] if len(parts) == 1 else np.concatenate(parts))
                current[0] = None
            if compute_ppl:
                for s in range(n_seq_batch):
                    lg = np.concatenate(logits[s])
                    start = (i + s) * n_ctx
                    rows = np.ascontiguousarray(lg[first:n_ctx - 1, :n_vocab], dtype=np.float32)
                    targets = toks[start + first + 1:start + n_ctx].astype(np.int64)
                    a, b2, _, _ = logprobs.nll_rows(rows, targets)
                    nll += a
                    nll2 += b2
                    count += n_ctx - 1 - first
                    chunk_ppl.append(math.exp(nll / count))
                    if out is not None:
                        out.write(f"[{i + s + 1}]{chunk_ppl[-1]:.4f},")
                        out.flush()
            if i == 0:
                dt = time.perf_counter() - t0
                print(f"compute_imatrix: {dt:.2f} seconds per pass - ETA {dt * n_chunk / n_seq / 60:.2f} minutes",
                      file=sys.stderr)
            bar.update(n_seq_batch)
    finally:
        bar.close()
        for w in watched:
            del w.mm
        m.new_context(n_ctx)
    res = ImatrixResult(col, n_chunk, chunk_ppl)
    if compute_ppl and count:
        from .ppl import _final_estimate

        res.ppl, res.ppl_error = _final_estimate(nll, nll2, count)
    return res


# ------------------------------------------------------------------------------------------ --show-statistics
@njit
def _sum_f32(v):
    s = f32(0.0)
    for x in v:
        s = s + x
    return s


@njit
def _dot_f32(a, b):
    s = f32(0.0)
    for k in range(a.size):
        s = s + a[k] * b[k]
    return s


@njit
def _entropy(acts, total):
    e = f32(0.0)
    for a in acts:
        p = f32(a / total)
        if p > 0:
            e = e - p * f32(math.log2(p))
    return e


@dataclass
class TensorStatistics:
    """imatrix.cpp's tensor_statistics (float32 figures, as the C keeps them)."""
    tensor: str
    values: np.ndarray
    total_sqract: np.float32
    mean_sqract: np.float32
    max_sqract: np.float32
    min_sqract: np.float32
    elements: int
    stddev: np.float32
    active: np.float32
    entropy: np.float32
    zd: np.float32
    cossim: np.float32 = np.float32(0.0)


def _compute_statistics(name: str, e: Stats) -> TensorStatistics | None:
    n_mat = e.counts.size
    if n_mat == 0 or e.values.size % n_mat:
        return None
    row = e.values.size // n_mat
    parts = [e.values[i * row:(i + 1) * row] / np.float32(e.counts[i]) for i in range(n_mat) if e.counts[i] != 0]
    if not parts:
        return None
    acts = np.concatenate(parts).astype(np.float32)
    n = np.float32(acts.size)
    total = _sum_f32(acts)
    mean = np.float32(total / n)
    sq_total = _dot_f32(acts, acts)
    var = np.float32(np.float32(sq_total / n) - np.float32(mean * mean))
    dev = np.float32(math.sqrt(max(np.float32(0.0), var)))
    inactive = int(np.count_nonzero(np.abs(acts) <= np.float32(1e-5)))
    active = np.float32(1 - np.float32(inactive) / n)
    entropy = _entropy(acts, total) if total > 0 else np.float32(0.0)
    z = 0
    if dev > 0:
        z = int(np.count_nonzero(((acts - mean) / dev) > 1))
    return TensorStatistics(name, e.values, total, mean, acts.max(), acts.min(), acts.size, dev, active, entropy,
                            np.float32(np.float32(z) / np.float32(acts.size)))


def _split_name(name: str) -> tuple[str, str]:
    """process_tensor_name: ('blk' number or '-', the part before 'weight')."""
    parts = name.split(".")
    layer = tensor = ""
    for i, p in enumerate(parts):
        if p == "blk" and i + 1 < len(parts):
            layer = parts[i + 1]
            break
    for i, p in enumerate(parts):
        if p == "weight" and i > 0:
            tensor = parts[i - 1]
            break
    return layer or "-", tensor or name


def statistics(collector: ImatrixCollector) -> list[TensorStatistics]:
    """compute_statistics + compute_cossim for every entry, sorted as show_statistics sorts them."""
    ts = [t for t in (_compute_statistics(n, s) for n, s in collector.stats.items()) if t is not None]
    by_name = {t.tensor: t for t in ts}
    pat = re.compile(r"blk\.(\d+)\.")
    for t in ts:
        mt = pat.search(t.tensor)
        if mt:
            prev = by_name.get(t.tensor[:mt.start(1)] + str(int(mt.group(1)) - 1) + t.tensor[mt.end(1):])
            if prev is not None:
                dp = _dot_f32(t.values, prev.values)
                cur = np.float32(math.sqrt(_dot_f32(t.values, t.values)))
                pm = np.float32(math.sqrt(_dot_f32(prev.values, prev.values)))
                t.cossim = np.float32(dp / np.float32(cur * pm))
    import functools

    def cmp(a, b):
        na, nb = _split_name(a.tensor)[1], _split_name(b.tensor)[1]
        if na != nb:
            return -1 if na < nb else 1
        if a.total_sqract != b.total_sqract:
            return -1 if a.total_sqract > b.total_sqract else 1
        return 0
    return sorted(ts, key=functools.cmp_to_key(cmp))


def statistics_report(collector: ImatrixCollector, source: str) -> str:
    """The text show_statistics prints (the per-tensor table and the per-layer weighted averages)."""
    ts = statistics(collector)
    if not ts:
        raise ImatrixError(f"cannot compute statistics for {source}")
    L = [f"\nComputing statistics for {source} ({len(ts)} tensors)",
         "\n" + "\t".join((" Layer", "       Tensor", "          Σ(Act²)", "  Min", "            Max", "           μ",
                           "   σ", " % Active", "N", "   Entropy", "E (norm)", "ZD", "  CosSim")),
         "=" * 169]
    ws: dict[int, list] = {}
    for t in ts:
        layer, name = _split_name(t.tensor)
        try:
            blk = int(layer)
        except ValueError:
            blk = -1
        en = np.float32(100.0) * np.float32(t.entropy / np.float32(math.log2(t.elements))) if t.elements > 0 \
            else np.float32(0)
        L.append("%5s\t%-20s\t%10.2f\t%8.4f\t%11.4f\t%6.2f\t%6.2f\t%8.2f%%\t%6d\t%10.4f\t%6.2f%%\t%10.2f%%\t%8.4f" % (
            layer, name, t.total_sqract, t.min_sqract, t.max_sqract, t.mean_sqract, t.stddev,
            np.float32(t.active * np.float32(100)), t.elements, t.entropy, en, np.float32(100) * t.zd, t.cossim))
        n = np.float32(t.elements)
        add = [np.float32(n * t.total_sqract), np.float32(n * t.zd), np.float32(n * t.cossim), t.elements]
        if blk in ws:
            w = ws[blk]
            w[0], w[1], w[2] = np.float32(w[0] + add[0]), np.float32(w[1] + add[1]), np.float32(w[2] + add[2])
            w[3] += t.elements
        else:
            ws[blk] = add
    layers = sum(1 for k in ws if k >= 0)
    L += [f"\nComputing weighted average statistics per layer ({layers} layers)",
          "\n" + "\t".join(("  Layer", "     μΣ(Act²)", "      μZD", "μCosSim")),
          "=" * 48]
    for blk in sorted(ws):
        w = ws[blk]
        if w[3] == 0 or blk < 0:
            continue
        n = np.float32(w[3])
        L.append("%5d\t%14.2f\t%10.4f%%\t%6.4f" % (blk, np.float32(w[0] / n), np.float32(100) * np.float32(w[1] / n),
                                                 np.float32(w[2] / n)))
    return "\n".join(L) + "\n\n"
