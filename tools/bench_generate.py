"""Speed of refimpl.model against llama.cpp on a SmolLM2-135M-shaped llama, both measured in this process.

    REFIMPL_SIMD_LIB=/path/to/simd/llama_cpp/lib python tools/bench_generate.py [--types Q8_0 Q4_K]
        [--threads 2] [--prompt 128] [--gen 32] [--keep DIR]

llama.cpp runs through the installed ``llama_cpp`` package with its shared libraries taken from ``--llama-lib``
(default ``$REFIMPL_SIMD_LIB``; llama-cpp-python's LLAMA_CPP_LIB_PATH): the issue's comparison is against a SIMD
build (``CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-cache-dir llama-cpp-python==0.3.36`` in its own venv), not the scalar oracle.
The build's features are printed.  Random weights (speed does not depend on them): n_embd 576, 30 layers,
9 heads, 3 KV heads, ff 1536, vocab 49152, tied embeddings.  Prompt: ``--prompt`` tokens in one batch, logits of
the last only (llama.cpp's default); decode: ``--gen`` greedy tokens one at a time.  Prints tokens/s for both
and the ratio.  Not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SHAPE = dict(n_vocab=49152, n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, n_ctx=2048)


def build(path: Path, qtype: str, seed: int = 0) -> None:
    from refimpl import gguf, quant
    s = SHAPE
    rng = np.random.default_rng(seed)
    hd = s["n_embd"] // s["n_head"]

    def mat(rows, cols, scale=0.05):
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * scale)
        # Q4_K needs rows of 256: ggml falls back (llama-quantize) for the others; here 576 and 1536 are fine for
        # Q8_0, and for Q4_K 576 is not a multiple of 256 -> Q5_0 fallback as llama-quantize does
        t = qtype if cols % quant.get_type(qtype).block_size == 0 else "Q5_0"
        return gguf.Tensor(t, (rows, cols), quant.quantize(x, t))

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
        "llama.rope.freq_base": np.float32(100000.0),
        "llama.attention.layer_norm_rms_epsilon": np.float32(1e-5),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.zeros(s["n_vocab"], np.float32),
        "tokenizer.ggml.token_type": np.ones(s["n_vocab"], np.int32),
        "tokenizer.ggml.bos_token_id": u32(1),
        "tokenizer.ggml.eos_token_id": u32(2),
    }
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    tensors = {"token_embd.weight": mat(s["n_vocab"], s["n_embd"]), "output_norm.weight": ones(s["n_embd"])}
    kv = s["n_head_kv"] * hd
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = ones(s["n_embd"])
        tensors[p + "attn_q.weight"] = mat(s["n_embd"], s["n_embd"])
        tensors[p + "attn_k.weight"] = mat(kv, s["n_embd"])
        tensors[p + "attn_v.weight"] = mat(kv, s["n_embd"])
        tensors[p + "attn_output.weight"] = mat(s["n_embd"], s["n_embd"])
        tensors[p + "ffn_norm.weight"] = ones(s["n_embd"])
        tensors[p + "ffn_gate.weight"] = mat(s["n_ff"], s["n_embd"])
        tensors[p + "ffn_up.weight"] = mat(s["n_ff"], s["n_embd"])
        tensors[p + "ffn_down.weight"] = mat(s["n_embd"], s["n_ff"])
    gguf.write(path, meta, tensors)


def bench_refimpl(path: Path, threads: int, n_prompt: int, n_gen: int, repeat: int) -> dict:
    from refimpl import model
    from refimpl.quant import set_num_threads
    set_num_threads(threads)
    m = model.load(path, n_ctx=n_prompt + n_gen + 8)
    toks = (np.arange(n_prompt) * 7919 + 3) % m.n_vocab
    m.eval(toks[:8], n_past=0)                  # warm-up: numba compilation
    m.eval([5])
    t_prompt = float("inf")
    for _ in range(repeat):                      # best of `repeat`
        t0 = time.perf_counter()
        lg = m.eval(toks, n_past=0, logits="last")   # llama.cpp computes only the last row too
        t_prompt = min(t_prompt, time.perf_counter() - t0)
    nxt = int(np.argmax(lg[-1]))
    t0 = time.perf_counter()
    for _ in range(n_gen):
        nxt = int(np.argmax(m.eval([nxt])[-1]))
    t_gen = time.perf_counter() - t0
    return {"prompt_tps": n_prompt / t_prompt, "decode_tps": n_gen / t_gen}


def load_llama_cpp(lib_dir: str | None):
    """Import llama_cpp with its libraries from ``lib_dir`` (must happen before the first import)."""
    if lib_dir:
        os.environ["LLAMA_CPP_LIB_PATH"] = lib_dir
    import llama_cpp
    llama_cpp.llama_backend_init()
    return llama_cpp


def bench_llama_cpp(llama_cpp, path: Path, threads: int, n_prompt: int, n_gen: int, repeat: int) -> dict:
    m = llama_cpp.Llama(str(path), n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_threads_batch=threads,
                        n_batch=512, flash_attn=False, verbose=False)
    toks = [int(t) for t in (np.arange(n_prompt) * 7919 + 3) % m.n_vocab()]
    m.eval(toks[:8])                             # warm-up
    t_prompt = float("inf")
    for _ in range(repeat):
        m.reset()
        t0 = time.perf_counter()
        m.eval(toks)
        t_prompt = min(t_prompt, time.perf_counter() - t0)
    nxt = int(np.argmax(m.scores[m.n_tokens - 1]))
    t0 = time.perf_counter()
    for _ in range(n_gen):
        m.eval([nxt])
        nxt = int(np.argmax(m.scores[m.n_tokens - 1]))
    t_gen = time.perf_counter() - t0
    m.close()
    return {"prompt_tps": n_prompt / t_prompt, "decode_tps": n_gen / t_gen}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", nargs="+", default=["Q8_0", "Q4_K"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="prompt timings: best of this many (both sides)")
    ap.add_argument("--keep", help="directory to keep/reuse the generated models in")
    ap.add_argument("--llama-lib", default=os.environ.get("REFIMPL_SIMD_LIB"),
                    help="directory of the llama.cpp shared libraries to compare with (default $REFIMPL_SIMD_LIB; "
                         "unset: the installed llama_cpp's own)")
    args = ap.parse_args(argv)
    llama_cpp = load_llama_cpp(args.llama_lib)
    print("llama.cpp:", llama_cpp.llama_print_system_info().decode().strip())
    print(f"threads: {args.threads}, prompt {args.prompt} tokens (best of {args.repeat}), "
          f"decode {args.gen} tokens\n")
    d = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_generate_"))
    d.mkdir(parents=True, exist_ok=True)
    print("| type | refimpl prompt tok/s | llama.cpp prompt tok/s | ratio | refimpl decode tok/s | "
          "llama.cpp decode tok/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for qt in args.types:
        path = d / f"smollm2-135m-shape-{qt}.gguf"
        if not path.exists():
            build(path, qt)
        r = bench_refimpl(path, args.threads, args.prompt, args.gen, args.repeat)
        c = bench_llama_cpp(llama_cpp, path, args.threads, args.prompt, args.gen, args.repeat)
        print(f"| {qt} | {r['prompt_tps']:.1f} | {c['prompt_tps']:.1f} | {r['prompt_tps'] / c['prompt_tps']:.2f} | "
              f"{r['decode_tps']:.1f} | {c['decode_tps']:.1f} | {r['decode_tps'] / c['decode_tps']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
