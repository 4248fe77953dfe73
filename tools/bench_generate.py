"""Speed of refimpl.model against llama.cpp as users run it, on models whose matrices really are each type.

    LLAMA_CPP_LIB_PATH=/work/build/simd/bin python tools/bench_generate.py [--types Q8_0 Q4_0 Q4_K Q6_K IQ4_XS]
        [--shapes 110m 1b] [--threads 2] [--prompt 128 512] [--gen 32] [--keep DIR] [--tiny-kjv]

llama.cpp runs through the installed ``llama_cpp`` package with the shared libraries of ``--llama-lib`` (default
``$LLAMA_CPP_LIB_PATH``, else ``/work/build/simd/bin`` when it exists): a native (SIMD) build of the same release,
loaded with ``llama_cpp.Llama``'s defaults, so with the CPU "extra buffer types" (``use_extra_bufts``: the REPACK
buffers that rearrange Q4_0/Q4_K/IQ4_NL... weights for AVX2/AVX-512) on, as users get them.  Only the thread
count is set (both sides: ``--threads``).

Models (random weights: speed does not depend on them; built once, reused from ``--keep``):

* ``110m``: llama, n_embd 768, 12 layers, 12/4 heads, ff 2048, vocab 32000, untied output (~125M parameters);
* ``1b``:   llama, n_embd 2048, 16 layers, 32/8 heads, ff 8192, vocab 32000, untied output (~1.1B parameters);
* ``--tiny-kjv``: the shipped refimpl/data/tiny-kjv-q8_0.gguf.

Every matrix (token embedding and output included) is of the named type: n_embd and ff are multiples of 256, so no
K-quant falls back to another type.  The per-tensor type mix of every model is printed, read from the file.

Figures, each a best of ``--repeat`` in this one process, refimpl and llama.cpp taking turns:

* prompt tok/s for each ``--prompt`` length (one batch, logits of the last token only: llama.cpp's default);
* decode tok/s (``--gen`` greedy tokens one at a time) and the GB/s of weights that rate reads: every weight byte
  but the token embedding's (one row of it), per token; printed beside the machine's bandwidth, measured here as
  a 2-thread numpy copy of a 1 GiB array (bytes read + bytes written per second);
* time to first token on a warm cache: a fresh ``python`` process that imports, loads the model and evaluates a
  10-token prompt, timed from process start; one run warms numba's cache and the page cache, then the best of
  ``--repeat`` runs (and the largest peak RSS of those, after 16 more tokens).

Not a test: speed is never asserted.  The machine is shared, so the ratios (same process, turns) are the figures
to read; absolute numbers vary by +-20% between runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY_KJV = ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf"
SIMD_DEFAULT = Path("/work/build/simd/bin")

SHAPES = {
    "110m": dict(n_vocab=32000, n_embd=768, n_layer=12, n_head=12, n_head_kv=4, n_ff=2048, n_ctx=2048),
    "1b": dict(n_vocab=32000, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, n_ctx=2048),
}


# ------------------------------------------------------------------------------------------------ the models
def build(path: Path, qtype: str, shape: dict, seed: int = 0) -> None:
    """A llama GGUF with every matrix in ``qtype``.  Each distinct matrix shape is quantized once and its bytes
    stored in every layer (the file still holds one copy per tensor, so decoding reads them all; quantizing a 1B
    model tensor by tensor would take longer than the benchmark)."""
    from refimpl import gguf, quant
    s = shape
    rng = np.random.default_rng(seed)
    hd = s["n_embd"] // s["n_head"]
    fmt = quant.get_type(qtype)
    cache: dict = {}

    def mat(rows, cols, scale=0.05):
        if cols % fmt.block_size:
            raise ValueError(f"{qtype} needs rows of a multiple of {fmt.block_size}; shape has {cols}")
        if (rows, cols) not in cache:
            r = min(rows, 2048)                  # larger matrices: a 2048-row quantized slab tiled
            x = rng.standard_normal((r, cols), dtype=np.float32) * np.float32(scale)
            im = np.ones(cols, np.float32) if fmt.requires_imatrix else None
            q = quant.quantize(x, qtype, imatrix=im) if im is not None else quant.quantize(x, qtype)
            cache[(rows, cols)] = np.ascontiguousarray(np.tile(q, (-(-rows // r), 1))[:rows])
        return gguf.Tensor(qtype, (rows, cols), cache[(rows, cols)])

    u32 = lambda v: gguf.GGUFValue(gguf.GGUFValueType.UINT32, int(v))  # noqa: E731  (llama.cpp checks key types)
    tokens = [f"<t{i}>" for i in range(s["n_vocab"])]
    tokens[0], tokens[1], tokens[2] = "<unk>", "<s>", "</s>"
    meta = {
        "general.architecture": "llama",
        "llama.context_length": u32(s["n_ctx"]),
        "llama.embedding_length": u32(s["n_embd"]),
        "llama.block_count": u32(s["n_layer"]),
        "llama.feed_forward_length": u32(s["n_ff"]),
        "llama.attention.head_count": u32(s["n_head"]),
        "llama.attention.head_count_kv": u32(s["n_head_kv"]),
        "llama.rope.dimension_count": u32(hd),
        "llama.rope.freq_base": np.float32(10000.0),
        "llama.attention.layer_norm_rms_epsilon": np.float32(1e-5),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.zeros(s["n_vocab"], np.float32),
        "tokenizer.ggml.token_type": np.ones(s["n_vocab"], np.int32),
        "tokenizer.ggml.bos_token_id": u32(1),
        "tokenizer.ggml.eos_token_id": u32(2),
    }
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    e, kv = s["n_embd"], s["n_head_kv"] * hd
    tensors = {"token_embd.weight": mat(s["n_vocab"], e), "output_norm.weight": ones(e),
               "output.weight": mat(s["n_vocab"], e)}
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = ones(e)
        tensors[p + "attn_q.weight"] = mat(e, e)
        tensors[p + "attn_k.weight"] = mat(kv, e)
        tensors[p + "attn_v.weight"] = mat(kv, e)
        tensors[p + "attn_output.weight"] = mat(e, e)
        tensors[p + "ffn_norm.weight"] = ones(e)
        tensors[p + "ffn_gate.weight"] = mat(s["n_ff"], e)
        tensors[p + "ffn_up.weight"] = mat(s["n_ff"], e)
        tensors[p + "ffn_down.weight"] = mat(e, s["n_ff"])
    tmp = path.with_name(path.name + ".tmp")
    gguf.write(tmp, meta, tensors)
    os.replace(tmp, path)


def type_mix(path: Path) -> tuple[str, int]:
    """'Q4_K: 86 tensors 70.1 MB, F32: 25 tensors ...' and the bytes one decoded token reads (all weights but the
    token embedding, of which one row)."""
    from refimpl import gguf
    f = gguf.read(path)
    mix: dict[str, list] = {}
    per_token = 0
    for name, info in f.tensors.items():
        nbytes = int(info.data.nbytes)
        t = str(info.ggml_type)
        m = mix.setdefault(t, [0, 0])
        m[0] += 1
        m[1] += nbytes
        per_token += nbytes // int(info.shape[0]) if name == "token_embd.weight" else nbytes
    text = ", ".join(f"{t}: {n} tensors {b / 1e6:.1f} MB" for t, (n, b) in sorted(mix.items(), key=lambda kv: -kv[1][1]))
    return text, per_token


def kv_bytes(path: Path, n_ctx: int) -> int:
    """Bytes of an F16 K and V cache of ``n_ctx`` cells."""
    from refimpl import gguf
    f = gguf.read(path)
    arch = f.get("general.architecture")
    n_layer, n_embd = f.get(f"{arch}.block_count"), f.get(f"{arch}.embedding_length")
    n_head, n_head_kv = f.get(f"{arch}.attention.head_count"), f.get(f"{arch}.attention.head_count_kv") or 0
    n_head_kv = n_head_kv or n_head
    return int(2 * n_layer * n_ctx * (n_embd // n_head) * n_head_kv * 2)


def n_params(path: Path) -> int:
    from refimpl import gguf
    return sum(int(np.prod(info.shape)) for info in gguf.read(path).tensors.values())


# ------------------------------------------------------------------------------------------- the machine
def memory_bandwidth(threads: int, size: int = 1 << 30, repeat: int = 5) -> float:
    """GB/s of a ``threads``-thread numpy copy of ``size`` bytes (read + write bytes; numpy releases the GIL)."""
    src = np.ones(size // 8, np.float64)
    dst = np.ones_like(src)                  # touched: page faults are not memory bandwidth
    parts = np.array_split(np.arange(src.size), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            t0 = time.perf_counter()
            list(pool.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))
            best = min(best, time.perf_counter() - t0)
    return 2 * size / best / 1e9


# ------------------------------------------------------------------------------------------------ refimpl
class Refimpl:
    name = "refimpl"

    def __init__(self, path: Path, threads: int, n_ctx: int):
        from refimpl import model
        from refimpl.quant import set_num_threads
        set_num_threads(threads)
        self.m = model.load(path, n_ctx=n_ctx)
        self.n_vocab = self.m.n_vocab
        self.m.eval([1, 2, 3, 4, 5, 6, 7, 8], n_past=0)      # warm-up: compilation, both matmul paths
        self.m.eval([5])

    def prompt(self, toks) -> int:
        return int(np.argmax(self.m.eval(toks, n_past=0, logits="last")[-1]))

    def step(self, tok: int) -> int:
        return int(np.argmax(self.m.eval([tok])[-1]))

    def close(self):
        self.m = None


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, llama_cpp, path: Path, threads: int, n_ctx: int):
        # Llama's defaults (llama_model_default_params: mmap, use_extra_bufts=True -> repacked weights;
        # n_batch 512), only the threads set: its default is cpu_count // 2
        self.m = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.n_vocab = self.m.n_vocab()
        self.m.eval([1, 2, 3, 4, 5, 6, 7, 8])

    def prompt(self, toks) -> int:
        self.m.reset()
        self.m.eval([int(t) for t in toks])
        return int(np.argmax(self.m.scores[self.m.n_tokens - 1]))

    def step(self, tok: int) -> int:
        self.m.eval([tok])
        return int(np.argmax(self.m.scores[self.m.n_tokens - 1]))

    def close(self):
        self.m.close()


def time_prompt(engine, toks) -> float:
    t0 = time.perf_counter()
    engine.prompt(toks)
    return time.perf_counter() - t0


def time_decode(engine, toks, n_gen: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) per decoded token."""
    nxt = engine.prompt(toks)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_gen):
        nxt = engine.step(nxt)
    return (time.perf_counter() - t0) / n_gen, (time.process_time() - c0) / n_gen


def compare(engines, prompts, n_gen, repeat, n_vocab) -> dict:
    """Best-of-``repeat`` seconds per figure and engine, the engines taking turns within each round."""
    best: dict = {}
    for _ in range(repeat):
        for e in engines:
            for n in prompts:
                toks = (np.arange(n) * 7919 + 3) % n_vocab
                k = (e.name, f"prompt{n}")
                best[k] = min(best.get(k, float("inf")), time_prompt(e, toks))
            wall, cpu = time_decode(e, [1, 2, 3, 4], n_gen)
            for k, v in (((e.name, "decode"), wall), ((e.name, "decode_cpu"), cpu)):
                best[k] = min(best.get(k, float("inf")), v)
    return best


# VmHWM (this process's peak RSS), not getrusage's ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child
# of the benchmark would report the parent's peak
PEAK_RSS = ("hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(t1 - t0, int(hwm) / 1024)\n")

TTFT_SCRIPT = {
    "refimpl": ("import time, numpy as np; t0 = time.perf_counter()\n"
                "from refimpl import model\nfrom refimpl.quant import set_num_threads\n"
                "set_num_threads({threads})\nm = model.load({path!r}, n_ctx=64)\n"
                "tok = int(np.argmax(m.eval(list(range(3, 13)), logits='last')[-1]))\n"
                "t1 = time.perf_counter()\n"
                "for _ in range(16): tok = int(np.argmax(m.eval([tok])[-1]))\n"
                + PEAK_RSS),
    "llama.cpp": ("import time, numpy as np; t0 = time.perf_counter()\n"
                  "import llama_cpp\n"
                  "m = llama_cpp.Llama({path!r}, n_ctx=64, n_threads={threads}, n_threads_batch={threads}, "
                  "verbose=False)\n"
                  "m.eval(list(range(3, 13))); tok = int(np.argmax(m.scores[m.n_tokens - 1]))\n"
                  "t1 = time.perf_counter()\n"
                  "for _ in range(16): m.eval([tok]); tok = int(np.argmax(m.scores[m.n_tokens - 1]))\n"
                  + PEAK_RSS),
}


def ttft(which: str, path: Path, threads: int, lib: str | None, repeat: int = 3) -> tuple[float, float]:
    """Seconds from process start (before the imports) to the first token's logits, on a warm cache: the best of
    ``repeat`` fresh processes after one that warms the caches (best of, as the throughput figures: on this shared
    machine the same start varies by +-0.15 s, and idle file pages, the model's and the shared libraries', are
    reclaimed between runs); and the largest peak RSS (MB) of those processes after 16 more decoded tokens."""
    env = dict(os.environ)
    if lib:
        env["LLAMA_CPP_LIB_PATH"] = lib
    # a warm start has Python's bytecode cache too (a user's default): a sandbox's PYTHONDONTWRITEBYTECODE would make
    # every fresh process compile every imported module from source (~0.17 s of refimpl's start here)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = TTFT_SCRIPT[which].format(path=str(path), threads=threads)
    times, peaks = [], []
    for run in range(1 + repeat):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             cwd=tempfile.gettempdir())   # not ROOT: PYTHONPATH may name another refimpl
        if out.returncode:
            raise RuntimeError(f"{which} TTFT run failed:\n{out.stderr[-2000:]}")
        if run:
            t, rss = out.stdout.strip().splitlines()[-1].split()
            times.append(float(t))
            peaks.append(float(rss))
    return min(times), max(peaks)


# --------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", nargs="+", default=["Q8_0", "Q4_0", "Q4_K", "Q6_K", "IQ4_XS"])
    ap.add_argument("--shapes", nargs="*", default=["110m"], choices=sorted(SHAPES))
    ap.add_argument("--tiny-kjv", action="store_true", help="also the shipped tiny-kjv model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many rounds (engines take turns)")
    ap.add_argument("--no-ttft", action="store_true", help="skip the fresh-process time-to-first-token runs")
    ap.add_argument("--keep", help="directory to keep/reuse the generated models in")
    default_lib = os.environ.get("LLAMA_CPP_LIB_PATH") or (str(SIMD_DEFAULT) if SIMD_DEFAULT.is_dir() else None)
    ap.add_argument("--llama-lib", default=default_lib,
                    help="directory of the llama.cpp shared libraries (default $LLAMA_CPP_LIB_PATH, else "
                         f"{SIMD_DEFAULT} if present, else the installed llama_cpp's own)")
    args = ap.parse_args(argv)
    if args.llama_lib:
        os.environ["LLAMA_CPP_LIB_PATH"] = args.llama_lib       # before the first import of llama_cpp
    import llama_cpp
    llama_cpp.llama_backend_init()
    print("llama.cpp:", args.llama_lib or "(installed llama_cpp libs)")
    print("  ", llama_cpp.llama_print_system_info().decode().strip())
    print("   Llama(...) defaults: use_extra_bufts (REPACK) =",
          bool(llama_cpp.llama_model_default_params().use_extra_bufts)
          if hasattr(llama_cpp.llama_model_default_params(), "use_extra_bufts") else "n/a")
    bw = memory_bandwidth(args.threads)
    print(f"machine: {os.cpu_count()} CPUs, memory bandwidth {bw:.1f} GB/s "
          f"({args.threads}-thread numpy copy of 1 GiB, read + write)")
    print(f"threads: {args.threads}; prompts {args.prompt} tokens; decode {args.gen} tokens; best of {args.repeat}\n")

    d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_generate_"))
    d.mkdir(parents=True, exist_ok=True)
    models = []
    for shape in args.shapes:
        for qt in args.types:
            path = d / f"llama-{shape}-{qt}.gguf"
            if not path.exists():
                print(f"building {path.name} ...", file=sys.stderr, flush=True)
                build(path, qt, SHAPES[shape])
            models.append((f"{shape} {qt}", path))
    if args.tiny_kjv:
        models.append(("tiny-kjv", TINY_KJV))

    rows = []
    for label, path in models:
        mix, per_token = type_mix(path)
        size = path.stat().st_size
        print(f"## {label}: {path.name}, {n_params(path) / 1e6:.0f}M parameters, {size / 1e6:.1f} MB; "
              f"{per_token / 1e6:.1f} MB of weights read per decoded token\n   type mix: {mix}", flush=True)
        n_ctx = max(args.prompt) + args.gen + 16
        ref = Refimpl(path, args.threads, n_ctx)
        cpp = LlamaCpp(llama_cpp, path, args.threads, n_ctx)
        best = compare([ref, cpp], args.prompt, args.gen, args.repeat, ref.n_vocab)
        ref.close()
        cpp.close()
        ttfts = {} if args.no_ttft else {w: ttft(w, path, args.threads, args.llama_lib, args.repeat)
                                          for w in TTFT_SCRIPT}
        row = {"label": label, "best": best, "per_token": per_token, "ttft": ttfts, "size": size,
               "kv": kv_bytes(path, 64)}
        rows.append(row)
        print_row(row, args.prompt, bw)
    print("\n## summary (refimpl / llama.cpp, same process; GB/s = weight bytes read per second while decoding; "
          f"machine {bw:.1f} GB/s)\n")
    print("| model | " + " | ".join(f"prompt {n} tok/s" for n in args.prompt) +
          " | decode tok/s | decode GB/s | TTFT s (warm) |")
    print("|---|" + "---|" * (len(args.prompt) + 3))
    for row in rows:
        print(table_row(row, args.prompt))
    return 0


def _fmt_pair(r, c, unit=""):
    return f"{r:.1f} / {c:.1f}{unit} ({r / c:.2f}x)"


def table_row(row, prompts) -> str:
    b = row["best"]
    cells = [_fmt_pair(n / b[("refimpl", f"prompt{n}")], n / b[("llama.cpp", f"prompt{n}")]) for n in prompts]
    dr, dc = 1 / b[("refimpl", "decode")], 1 / b[("llama.cpp", "decode")]
    cells.append(_fmt_pair(dr, dc))
    cells.append(_fmt_pair(dr * row["per_token"] / 1e9, dc * row["per_token"] / 1e9))
    t = row["ttft"]
    cells.append(f"{t['refimpl'][0]:.2f} / {t['llama.cpp'][0]:.2f}" if t else "-")
    return f"| {row['label']} | " + " | ".join(cells) + " |"


def print_row(row, prompts, bw) -> None:
    b = row["best"]
    dr = 1 / b[("refimpl", "decode")]
    dc = 1 / b[("llama.cpp", "decode")]
    for n in prompts:
        r, c = n / b[("refimpl", f"prompt{n}")], n / b[("llama.cpp", f"prompt{n}")]
        print(f"   prompt {n:4d}: refimpl {r:8.1f} tok/s   llama.cpp {c:8.1f} tok/s   ratio {r / c:.2f}")
    cr, cc = b[("refimpl", "decode_cpu")] * 1e3, b[("llama.cpp", "decode_cpu")] * 1e3
    print(f"   decode CPU : refimpl {cr:8.2f} ms/token  llama.cpp {cc:8.2f} ms/token   (process CPU time, all threads: "
          "robust to a busy machine at --threads 1; spinning worker threads count at more)")
    gr, gc = dr * row["per_token"] / 1e9, dc * row["per_token"] / 1e9
    print(f"   decode     : refimpl {dr:8.1f} tok/s   llama.cpp {dc:8.1f} tok/s   ratio {dr / dc:.2f}   "
          f"(weights read: {gr:.1f} vs {gc:.1f} GB/s; machine {bw:.1f} GB/s)")
    t = row["ttft"]
    if t:
        print(f"   TTFT (fresh process, warm cache, 10-token prompt, best of the timed runs): refimpl "
              f"{t['refimpl'][0]:.2f} s, llama.cpp {t['llama.cpp'][0]:.2f} s")
        print(f"   largest peak RSS of those processes after 16 decoded tokens: refimpl {t['refimpl'][1]:.0f} MB, "
              f"llama.cpp {t['llama.cpp'][1]:.0f} MB (file {row['size'] / 1e6:.0f} MB + KV cache of 64 cells "
              f"{row['kv'] / 1e6:.1f} MB + 200 MB = {(row['size'] + row['kv']) / 1e6 + 200:.0f} MB budget)")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
