"""``python -m refimpl.generate``: text generation from a GGUF model, llama.cpp's ``llama-cli``/``llama-simple`` style.

    python -m refimpl.generate -m MODEL.gguf -p "Once upon a time" -n 64 --temp 0

Streams the continuation to stdout and ends with llama.cpp-style timings on stderr.  Without ``-m`` it runs the
small model embedded in refimpl (refimpl/data/tiny-kjv-q8_0.gguf) if it is installed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "tiny-kjv-q8_0.gguf"


def default_prompt() -> str:
    """The embedded model's default prompt (refimpl/data/tiny-kjv.json, shared with its golden)."""
    import json

    info = json.loads((DEFAULT_MODEL.parent / "tiny-kjv.json").read_text(encoding="utf-8"))
    return info["prompt"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m refimpl.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help=f"GGUF model file (default: the embedded {DEFAULT_MODEL.name})")
    ap.add_argument("-p", "--prompt", default=None,
                    help="prompt text (default: empty; with the embedded model, its default prompt)")
    ap.add_argument("-n", "--n-predict", type=int, default=64, help="tokens to generate (default 64)")
    ap.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default 0.8)")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-p", type=float, default=0.05)
    ap.add_argument("--typical", type=float, default=1.0, help="typical-p (1.0 = off)")
    ap.add_argument("--repeat-penalty", type=float, default=1.0)
    ap.add_argument("--repeat-last-n", type=int, default=64)
    ap.add_argument("--presence-penalty", type=float, default=0.0)
    ap.add_argument("--frequency-penalty", type=float, default=0.0)
    ap.add_argument("-s", "--seed", type=int, default=0)
    ap.add_argument("-t", "--threads", type=int, default=None, help="threads (default: numba's default)")
    ap.add_argument("--kernels", choices=["reference", "fast"], default=None,
                    help="kernel layer: the readable reference loops or the fast kernels, same bits "
                         "(default: $REFIMPL_KERNELS, else fast)")
    ap.add_argument("-c", "--ctx-size", type=int, default=0, help="context size (default: min(training, 4096))")
    ap.add_argument("-ctk", "--cache-type-k", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("-ctv", "--cache-type-v", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("--ignore-eos", action="store_true", help="keep generating after an end-of-generation token")
    ap.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                    help="load a quant-type plugin (a file or module name; repeatable), see spec/plugins.md")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    path = args.model
    if path is None:
        if not DEFAULT_MODEL.exists():
            print(f"refimpl.generate: no model given (-m MODEL.gguf) and the embedded default model "
                  f"{DEFAULT_MODEL} is not installed.")
            return 0
        path = str(DEFAULT_MODEL)
        if args.prompt is None:
            args.prompt = default_prompt()
    if args.prompt is None:
        args.prompt = ""

    from . import model as model_mod
    from .quant import load_plugins, set_num_threads
    from .sampling import Sampler, SamplerParams
    from .tokenizer import Tokenizer

    if args.threads:
        set_num_threads(args.threads)
    if args.kernels:
        from .quant import set_kernels
        set_kernels(args.kernels)
    t_load0 = time.perf_counter()
    try:
        load_plugins(args.plugin)
        m = model_mod.load(path, n_ctx=args.ctx_size or None, type_k=args.cache_type_k, type_v=args.cache_type_v)
        tok = Tokenizer.from_gguf(m.file.gguf)
    except (ValueError, OSError) as e:
        print(f"refimpl.generate: error: {e}", file=sys.stderr)
        return 1
    t_load = time.perf_counter() - t_load0

    prompt = tok.encode(args.prompt, add_special=True, parse_special=True)
    if not prompt:
        print("refimpl.generate: error: the prompt is empty after tokenization", file=sys.stderr)
        return 1
    if len(prompt) + args.n_predict > m.cache.size:
        print(f"refimpl.generate: error: prompt ({len(prompt)} tokens) + {args.n_predict} do not fit the context "
              f"of {m.cache.size}", file=sys.stderr)
        return 1
    sampler = Sampler(SamplerParams(temp=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                    typical_p=args.typical, repeat_penalty=args.repeat_penalty,
                                    penalty_last_n=args.repeat_last_n, presence_penalty=args.presence_penalty,
                                    frequency_penalty=args.frequency_penalty, seed=args.seed))
    for t in prompt:
        sampler.accept(t)

    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    t0 = time.perf_counter()
    logits = m.eval(prompt, n_past=0, logits="last")[-1]
    t_prompt = time.perf_counter() - t0

    pending = b""
    n_gen = 0
    t_gen = 0.0
    for _ in range(args.n_predict):
        nxt = sampler.sample(logits)
        sampler.accept(nxt)
        if tok.is_eog(nxt) and not args.ignore_eos:
            break
        pending += tok.token_to_piece(nxt, special=False)
        try:                                  # stream whole UTF-8 characters only
            out.write(pending.decode("utf-8"))
            pending = b""
        except UnicodeDecodeError:
            if len(pending) > 8:
                out.write(pending.decode("utf-8", errors="replace"))
                pending = b""
        out.flush()
        n_gen += 1
        if n_gen == args.n_predict:
            break
        t1 = time.perf_counter()
        logits = m.eval([nxt])[-1]
        t_gen += time.perf_counter() - t1
    if pending:
        out.write(pending.decode("utf-8", errors="replace"))
    out.write("\n")
    out.flush()

    def line(label, secs, n, unit):
        per = secs * 1e3 / n if n else 0.0
        tps = n / secs if secs > 0 else 0.0
        return (f"refimpl_perf: {label:>16s} = {secs * 1e3:10.2f} ms / {n:5d} {unit} "
                f"({per:8.2f} ms per token, {tps:8.2f} tokens per second)")

    print(f"refimpl_perf: {'load time':>16s} = {t_load * 1e3:10.2f} ms", file=sys.stderr)
    print(line("prompt eval time", t_prompt, len(prompt), "tokens"), file=sys.stderr)
    print(line("eval time", t_gen, max(n_gen - 1, 0), "runs  "), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
