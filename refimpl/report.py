"""``python -m refimpl.report``: the comparison llama.cpp's CONTRIBUTING asks of a new quantization type.

    python -m refimpl.report -m MODEL.gguf -f TEXT --types Q4_0 Q4_K_M IQ4_XS mlx-q4-g64 \\
        [--plugin examples/plugins/mlx_affine.py] [--imatrix FILE] [-o DIR] [-c N_CTX] [--chunks N] [-t N]

For each type the model is quantized (``refimpl.quantize_model``; a file already made in DIR is reused), then
measured:

* file size and bits per weight (all tensor data bits / all elements, as llama-quantize's "BPW");
* perplexity, and the KL-divergence against the base model (the model given, which should be F32/F16/BF16 or
  Q8_0): mean, 99th percentile and maximum, and "same top p" -- all from ``refimpl.quality``, the numbers
  llama-perplexity --kl-divergence prints;
* prompt and decode speed in tokens/s (``--n-prompt`` tokens in one batch, then ``--n-gen`` single-token steps,
  after a warm-up that compiles the kernels).

It writes DIR/report.md (a Markdown table, also printed), DIR/report.json and DIR/report.png (bits per weight
against mean KLD: the ggml types as one line, plugin types as separate marked points; needs matplotlib, the
``refimpl[report]`` extra -- without it the plot is skipped with a note).  Progress goes to stderr per type and
step.

Reading order: ``main`` (arguments) -> ``run_report`` (the loop over types) -> ``measure_type`` -> ``markdown``,
``plot``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_path, atomic_write_bytes

BASE_TYPES = ("F32", "F16", "BF16", "Q8_0")


@dataclass
class TypeReport:
    """One row of the report."""
    type: str
    path: str
    plugin: bool = False
    reused: bool = False
    file_bytes: int = 0
    bpw: float = float("nan")
    ppl: float = float("nan")
    ppl_error: float = float("nan")
    kld_mean: float = float("nan")
    kld_99: float = float("nan")
    kld_max: float = float("nan")
    same_top_p: float = float("nan")
    prompt_tps: float = float("nan")
    decode_tps: float = float("nan")
    tensor_types: dict = field(default_factory=dict)     # ggml type -> number of tensors
    error: str | None = None


def _log(msg: str) -> None:
    from tqdm import tqdm
    tqdm.write(msg, file=sys.stderr)


def bits_per_weight(path) -> tuple[float, dict]:
    """8 * (bytes of all tensor data) / (elements of all tensors), and the count of tensors per type."""
    from . import gguf
    with gguf.read(path) as f:
        nbytes = sum(t.nbytes for t in f.tensors.values())
        n = sum(t.n_elements for t in f.tensors.values())
        counts: dict[str, int] = {}
        for t in f.tensors.values():
            counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
    return (8.0 * nbytes / n if n else float("nan")), counts


def measure_speed(path, tokens: np.ndarray, n_prompt: int, n_gen: int, repeats: int = 3) -> tuple[float, float]:
    """Prompt tokens/s (one batch of ``n_prompt``) and decode tokens/s (``n_gen`` steps of one token), each the
    best of ``repeats`` runs (the machine may be shared), after a warm-up that compiles every kernel."""
    from . import model as model_mod
    m = model_mod.load(path, n_ctx=n_prompt + n_gen + 1)
    prompt = np.asarray(tokens[:n_prompt], dtype=np.int64)
    m.eval(prompt[:8], n_past=0, logits="last")
    m.eval(prompt[:1], logits="last")
    best_prompt = best_gen = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits = m.eval(prompt, n_past=0, logits="last")
        best_prompt = min(best_prompt, time.perf_counter() - t0)
        token = int(np.argmax(logits[-1]))
        t0 = time.perf_counter()
        for _ in range(n_gen):
            token = int(np.argmax(m.eval([token], logits="last")[-1]))
        best_gen = min(best_gen, time.perf_counter() - t0)
    return len(prompt) / best_prompt, n_gen / best_gen


def measure_type(rep: TypeReport, base_logits: str, tokens: np.ndarray, n_prompt: int, n_gen: int,
                 progress: bool, step) -> None:
    from . import quality
    rep.file_bytes = os.path.getsize(rep.path)
    rep.bpw, rep.tensor_types = bits_per_weight(rep.path)
    step("KL-divergence and perplexity")
    res = quality.kl_divergence(rep.path, base_logits, progress=progress)
    s = res.statistics()
    rep.ppl, rep.ppl_error = s["ppl"], s["ppl_unc"]
    rep.kld_mean, rep.kld_99, rep.kld_max = s["kld_mean"], s["kld_99.0%"], s["kld_max"]
    rep.same_top_p = s["same_top"]
    step("speed")
    rep.prompt_tps, rep.decode_tps = measure_speed(rep.path, tokens, n_prompt, n_gen)


def _is_plugin(name: str) -> bool:
    from .quant.plugins import is_plugin
    return is_plugin(name)


def _base_type(path) -> str:
    """The dominant 2-D weight type of a model (what it is "in")."""
    _, counts = bits_per_weight(path)
    quant = {k: v for k, v in counts.items() if k not in ("F32",)} or counts
    return max(quant, key=quant.get)


def default_output_dir(model) -> Path:
    """MODEL-report/ in the current directory (not beside the model: the embedded one lives inside the package)."""
    return Path.cwd() / (Path(model).stem + "-report")


def run_report(model, text_path, types, *, out_dir=None, imatrix=None, n_ctx: int = 512, n_chunks: int = -1,
               n_prompt: int = 128, n_gen: int = 32, threads: int | None = None, force: bool = False,
               progress: bool = True, plot_path: bool = True) -> list[TypeReport]:
    """Quantize ``model`` to each of ``types`` (reusing files in ``out_dir``) and measure each; returns the rows
    (the base model first) and writes report.md / report.json / report.png in ``out_dir``."""
    from . import quality
    from .quality._common import open_model, read_text_file, tokenize
    from .quant import set_num_threads
    from .quantize import quantize_model
    from .quantize.ftypes import resolve_ftype

    model = os.fspath(model)
    if not os.path.isfile(model):
        raise ValueError(f"model {model} does not exist")
    types = list(dict.fromkeys(types))
    if not types:
        raise ValueError("--types: give at least one type")
    ftypes = [resolve_ftype(t) for t in types]          # every name checked before any work
    out_dir = Path(out_dir or default_output_dir(model))
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads:
        set_num_threads(threads)
    text = read_text_file(text_path)
    stem = Path(model).stem
    suffix = "-imat" if imatrix else ""

    base_type = _base_type(model)
    if base_type not in BASE_TYPES:
        _log(f"warning: the base model is {base_type}, not F32/F16/BF16/Q8_0: KL-divergences are measured "
             f"against an already degraded model")
    m, tok = open_model(model, n_ctx)
    if m.n_ctx_train and n_ctx > m.n_ctx_train:
        _log(f"warning: -c {n_ctx} is more than the model's training context ({m.n_ctx_train})")
    tokens = tokenize(tok, text)
    n_prompt = min(n_prompt, len(tokens))

    n_steps = len(types) + 1
    base = TypeReport(type=f"base ({base_type})", path=model)
    _log(f"[0/{len(types)}] base {stem} ({base_type}): perplexity and base logits")
    base_logits = str(out_dir / f"{stem}.kld-base.bin")
    res = quality.perplexity(m, text, n_ctx=n_ctx, n_chunks=n_chunks, kl_divergence_base=base_logits,
                             progress=progress)
    del m
    base.file_bytes = os.path.getsize(model)
    base.bpw, base.tensor_types = bits_per_weight(model)
    base.ppl, base.ppl_error = res.ppl, (res.ppl_error if res.ppl_error is not None else float("nan"))
    base.kld_mean = base.kld_99 = base.kld_max = 0.0
    base.same_top_p = 1.0
    _log(f"[0/{len(types)}] base: speed")
    base.prompt_tps, base.decode_tps = measure_speed(model, tokens, n_prompt, n_gen)
    rows = [base]

    for i, (name, ft) in enumerate(zip(types, ftypes), 1):
        path = out_dir / f"{stem}-{ft.name}{suffix}.gguf"
        rep = TypeReport(type=ft.name, path=str(path), plugin=_is_plugin(ft.name))

        def step(what, i=i, name=ft.name):
            _log(f"[{i}/{len(types)}] {name}: {what}")

        try:
            if path.exists() and not force:
                rep.reused = True
                step(f"reusing {path}")
            else:
                step("quantizing")
                quantize_model(model, path, ft, imatrix=imatrix, allow_requantize=True, progress=progress)
            measure_type(rep, base_logits, tokens, n_prompt, n_gen, progress, step)
        except (ValueError, OSError) as e:
            rep.error = str(e)
            step(f"error: {e}")
        rows.append(rep)
        write_outputs(rows, out_dir, model, text_path, n_ctx, plot=False)     # partial results survive a crash
    write_outputs(rows, out_dir, model, text_path, n_ctx, plot=plot_path)
    return rows


# ------------------------------------------------------------------------------------------------------ outputs

def _fmt(x: float, spec: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(rows: list[TypeReport], model: str, text: str, n_ctx: int) -> str:
    lines = [f"Model `{Path(model).name}`, text `{Path(text).name}`, context {n_ctx}.  KLD and same-top-p against "
             f"the base model; PPL ± its uncertainty; speed on this machine (refimpl, not llama.cpp).",
             "",
             "| type | size (MiB) | bpw | PPL | KLD mean | KLD 99% | KLD max | same top p | prompt tok/s | "
             "decode tok/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = f"{r.type} (plugin)" if r.plugin else r.type
        if r.error:
            lines.append(f"| {name} | error: {r.error.splitlines()[0][:120]} |||||||||")
            continue
        lines.append(
            f"| {name} | {r.file_bytes / 1048576:.3f} | {_fmt(r.bpw, '.3f')} | {_fmt(r.ppl, '.4f')} ± "
            f"{_fmt(r.ppl_error, '.4f')} | {_fmt(r.kld_mean, '.6f')} | {_fmt(r.kld_99, '.6f')} | "
            f"{_fmt(r.kld_max, '.4f')} | {_fmt(100 * r.same_top_p, '.2f')}% | {_fmt(r.prompt_tps, '.1f')} | "
            f"{_fmt(r.decode_tps, '.1f')} |")
    return "\n".join(lines) + "\n"


def write_outputs(rows, out_dir: Path, model, text, n_ctx, plot: bool) -> None:
    atomic_write_bytes(out_dir / "report.md", markdown(rows, model, text, n_ctx).encode())
    atomic_write_bytes(out_dir / "report.json", json.dumps([asdict(r) for r in rows], indent=1).encode())
    if plot:
        try:
            plot_report(rows, out_dir / "report.png")
        except ImportError:
            _log("note: matplotlib is not installed (pip install 'refimpl[report]'): no report.png")


def plot_report(rows: list[TypeReport], path: Path) -> None:
    """Bits per weight against mean KLD: ggml's types as one line (by bpw), plugin types as marked points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows[1:] if r.error is None and r.kld_mean > 0 and not math.isnan(r.kld_mean)]
    ggml = sorted((r for r in ok if not r.plugin), key=lambda r: r.bpw)
    plugins = [r for r in ok if r.plugin]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
    if ggml:
        ax.plot([r.bpw for r in ggml], [r.kld_mean for r in ggml], "o-", color="tab:blue", label="ggml types")
        for k, r in enumerate(ggml):        # labels alternate above/below the line so neighbours do not overlap
            ax.annotate(r.type, (r.bpw, r.kld_mean), textcoords="offset points", fontsize=7,
                        xytext=(4, 5) if k % 2 == 0 else (4, -11))
    markers = "^sDvP*X<>hp"
    for k, r in enumerate(plugins):         # one marker per plugin type, named in the legend
        ax.plot([r.bpw], [r.kld_mean], markers[k % len(markers)], color=plt.cm.tab10((k + 1) % 10), markersize=8,
                linestyle="none", label=f"{r.type} (plugin)")
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight")
    ax.set_ylabel(f"mean KL-divergence vs {rows[0].type}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("KL-divergence against bits per weight", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:      # savefig picks the format from the extension
            fig.savefig(tmp)
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refimpl.report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True, help="base GGUF model (F32/F16/BF16 or Q8_0)")
    p.add_argument("-f", "--file", required=True, help="text to measure perplexity and KL-divergence on")
    p.add_argument("--types", nargs="+", required=True, metavar="TYPE",
                   help="llama-quantize types (Q4_K_M, IQ4_XS, ...) and registered plugin types (mlx-q4-g64, ...)")
    p.add_argument("--imatrix", help="importance matrix for quantizing (llama-imatrix GGUF or .dat)")
    p.add_argument("-o", "--output-dir", help="where the models and the report go (default: ./MODEL-report/)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="load a quant-type plugin (a file or module name; repeatable), see spec/plugins.md")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="perplexity context (default 512)")
    p.add_argument("--chunks", type=int, default=-1, help="max chunks of the text (default: all)")
    p.add_argument("--n-prompt", type=int, default=128, help="prompt tokens for the speed test (default 128)")
    p.add_argument("--n-gen", type=int, default=32, help="decoded tokens for the speed test (default 32)")
    p.add_argument("-t", "--threads", type=int, default=0, help="threads for the matmul (default: all)")
    p.add_argument("--force", action="store_true", help="quantize again even where DIR already has the file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .quant import load_plugins
    try:
        load_plugins(args.plugin)
        rows = run_report(args.model, args.file, args.types, out_dir=args.output_dir, imatrix=args.imatrix,
                          n_ctx=args.ctx_size, n_chunks=args.chunks, n_prompt=args.n_prompt, n_gen=args.n_gen,
                          threads=args.threads or None, force=args.force, progress=not args.no_progress)
    except (ValueError, OSError) as e:
        print(f"refimpl.report: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("refimpl.report: interrupted", file=sys.stderr)
        return 130
    out_dir = Path(args.output_dir or default_output_dir(args.model))
    sys.stdout.write((out_dir / "report.md").read_text())
    print(f"\nwritten: {out_dir / 'report.md'}, {out_dir / 'report.json'}"
          + (f", {out_dir / 'report.png'}" if (out_dir / "report.png").exists() else ""), file=sys.stderr)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
