"""llama-perplexity, llama-imatrix and llama-quantize (the pinned release's tools, scalar build) on tiny-kjv and on
small random models: what they print and the files they write (family `quality`, checked by
tests/test_quality_golden.py).

Inputs
  refimpl/data/kjv-heldout.txt    the first three held-out chapters of tiny-kjv's corpus (tools/train_tiny.py holds
                                  out every 20th chapter: Genesis 20, Exodus 1, Exodus 21), one verse a line, as
                                  `heldout_text()` rebuilds them from Debian's bible-kjv; 10,180 bytes
  refimpl/data/tiny-kjv-q8_0.gguf, golden/model/llama-Q4_K.gguf, golden/model/qwen2-Q8_0.gguf

Files
  quality/cases.json              every case: the tool's command line, its parameters (what refimpl is given), the
                                  numbers it printed (lines, as printed), digests of the files it wrote
  quality/<case>.base-rows.npz    of a --kl-divergence-base file (too big to commit whole: sha256 in cases.json):
                                  `head` uint8 (the header and tokens, bytes), `rows` uint16 (k, nv) = the first and
                                  last scored row of every chunk, `row_index` int64 (k,) their row numbers
  quality/<case>.imatrix.gguf|dat llama-imatrix's output files, whole

How the tools are run (deterministic options): `-t 1 -fa off` (refimpl reproduces the non-flash-attention graph;
`-fa auto` turns flash attention on for the CPU), working directory = the repository root (llama-imatrix stores
the `-f` path as given, so it is the relative `refimpl/data/kjv-heldout.txt`), and a preloaded shim (compiled here
with the C compiler) that (1) makes std::thread::hardware_concurrency() 1, so that process_logits() sums each
chunk's per-token figures on one thread in token order instead of thread-scheduling order, and (2) flushes
common/log.cpp's asynchronous log queue at exit: the pinned release leaks its logger on purpose and otherwise loses
the last lines (the final `[i]` figures, `Final estimate`).  llama.cpp logs with a `0.00.123.456 I ` prefix; it is
stripped.  The timing figures ("seconds per pass - ETA") are dropped.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DESCRIPTION = ("llama-perplexity (perplexity lines, base-logits file digests/rows, KL-divergence report), "
               "llama-imatrix (output files gguf/dat, merges, --show-statistics) and llama-quantize with an imatrix "
               "(IQ4_XS), on tiny-kjv and random models with a held-out KJV text")

ROOT = Path(__file__).resolve().parents[2]
TEXT = "refimpl/data/kjv-heldout.txt"
TINY = "refimpl/data/tiny-kjv-q8_0.gguf"
COMMON = ["-t", "1", "-fa", "off"]

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#ifdef ONE_CPU
int get_nprocs(void) { return 1; }
int get_nprocs_conf(void) { return 1; }
#endif
__attribute__((destructor)) static void flush_llama_log(void) {
    void * (*log_main)(void) = (void * (*)(void)) dlsym(RTLD_DEFAULT, "_Z15common_log_mainv");
    void (*log_pause)(void *) = (void (*)(void *)) dlsym(RTLD_DEFAULT, "_Z16common_log_pauseP10common_log");
    if (log_main && log_pause) log_pause(log_main());
}
"""

#: perplexity cases: id -> (model, n_ctx, n_batch, chunks, writes a base-logits file)
PPL_CASES = {
    "ppl.tiny-kjv.c128": (TINY, 128, 2048, 4, False),
    "ppl.tiny-kjv.c128.base": (TINY, 128, 2048, 4, True),
    "ppl.tiny-kjv.c64.b32": (TINY, 64, 32, 3, False),       # n_batch < n_ctx: two batches per chunk
    "ppl.llama-Q4_K.c32": ("golden/model/llama-Q4_K.gguf", 32, 2048, 5, True),
    "ppl.qwen2-Q8_0.c32": ("golden/model/qwen2-Q8_0.gguf", 32, 64, 4, False),
    # the other architectures of golden/model: base-logits files (every logit of the scored rows, quantized)
    **{f"ppl.{m}.c32.base": (f"golden/model/{m}.gguf", 32, 2048, 3, True)
       for m in ("gemma3-Q8_0", "phi3-Q8_0", "gpt2-Q8_0", "qwen3-Q4_K")},
}
#: KL-divergence: id -> (model made by llama-quantize from TINY (ftype), base-logits case)
KLD_CASES = {"kld.tiny-kjv.Q4_K_M": ("Q4_K_M", "ppl.tiny-kjv.c128.base")}
#: imatrix cases: id -> dict of options (model, n_ctx, n_batch, n_ubatch, chunks, process_output, in_files,
#: formats, text)
IMATRIX_CASES = {
    # 5 chunks of 128 in one batch of 5 sequences: split_equal micro-batches of 102 + 26 tokens per sequence
    "imatrix.tiny-kjv.c128.x5": dict(model=TINY, n_ctx=128, chunks=5, process_output=True, formats=("gguf", "dat")),
    # one sequence per batch, micro-batches of 48 tokens (split_simple)
    "imatrix.tiny-kjv.c96.b96.ub48": dict(model=TINY, n_ctx=96, n_batch=96, n_ubatch=48, chunks=3, formats=("gguf",)),
    "imatrix.llama-Q4_K.c32": dict(model="golden/model/llama-Q4_K.gguf", n_ctx=32, chunks=6, formats=("gguf",)),
    # tied output (gemma3, gpt2: not collected), fused QKV (phi3, gpt2), per-head norms (qwen3)
    **{f"imatrix.{m}.c32": dict(model=f"golden/model/{m}.gguf", n_ctx=32, chunks=4, process_output=True,
                                formats=("gguf",)) for m in ("gemma3-Q8_0", "phi3-Q8_0", "gpt2-Q8_0", "qwen3-Q4_K")},
    # merge two files, then merge a legacy file into a new computation
    "imatrix.merge": dict(in_files=("imatrix.tiny-kjv.c128.x5.gguf", "imatrix.tiny-kjv.c96.b96.ub48.gguf"),
                          formats=("gguf",)),
    "imatrix.tiny-kjv.c128.from-dat": dict(model=TINY, n_ctx=128, chunks=2, in_files=("imatrix.tiny-kjv.c128.x5.dat",),
                                           formats=("gguf",)),
}
STATS_CASE = "imatrix.tiny-kjv.c128.x5"
#: llama-quantize with llama-imatrix's matrix: id -> (ftype, imatrix case)
QUANT_CASES = {"quantize.tiny-kjv.IQ4_XS": ("IQ4_XS", "imatrix.tiny-kjv.c128.x5")}

_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [IWEDN] ", re.M)
_PREFIX_MIDLINE = re.compile(r"(?<=[^\n])\d+\.\d\d\.\d\d\d\.\d\d\d [IWEDN] ")


def heldout_text() -> str:
    """The committed text, rebuilt from the KJV with tools/train_tiny.py's split (needs Debian's bible-kjv)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    _, valid = train_tiny.split_corpus(train_tiny.read_verses())
    return "".join(v + "\n" for c in valid[:3] for v in c)


def _clean(text: str) -> str:
    # a message logged without a newline ("... ETA ") is followed by the next message's prefix on the same line
    return _PREFIX.sub("", _PREFIX_MIDLINE.sub("\n", text))


def build_shim(work: Path, one_cpu: bool) -> Path:
    """Compile SHIM_C into ``work``: the log flush at exit, and with ``one_cpu`` get_nprocs() = 1."""
    src = work / "oracle_shim.c"
    shim = work / ("oracle_shim_1cpu.so" if one_cpu else "oracle_shim_flush.so")
    src.write_text(SHIM_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("a C compiler (cc) is needed to build the oracle shim")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", *(["-DONE_CPU"] if one_cpu else []), str(src), "-o", str(shim),
                    "-ldl"], check=True)
    return shim


class Tools:
    def __init__(self, work: Path):
        sys.path.insert(0, str(ROOT / "tools"))
        from build_llama_tools import is_scalar_build, tool_env, tool_path

        self.exe = {t: tool_path(t) for t in ("llama-perplexity", "llama-imatrix", "llama-quantize")}
        if not is_scalar_build(self.exe["llama-perplexity"].parent.parent):
            raise SystemExit(f"{self.exe['llama-perplexity']} is not from a scalar build "
                             f"(tools/build_llama_tools.py --check)")
        self.env = tool_env(self.exe["llama-perplexity"])
        self.env["LD_PRELOAD"] = str(build_shim(work, one_cpu=True))

    def run(self, tool: str, args: list[str], cwd: Path = ROOT) -> tuple[str, str]:
        r = subprocess.run([str(self.exe[tool]), *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                           errors="replace")
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): {r.stderr[-3000:]}")
        return _clean(r.stdout), _clean(r.stderr)


def _ppl_lines(stdout: str, stderr: str) -> dict:
    running = [ln for ln in stdout.splitlines() if ln.startswith("[1]")]
    final = [ln for ln in stderr.splitlines() + stdout.splitlines()
             if ln.startswith(("Final estimate", "Unexpected negative"))]
    if len(running) != 1 or len(final) != 1:
        raise RuntimeError(f"unexpected llama-perplexity output:\n{stdout}\n{stderr[-2000:]}")
    return {"running": running[0], "final": final[0]}


def _base_rows(data: bytes, n_ctx: int, n_vocab: int, n_chunk: int) -> dict:
    nv = 2 * ((n_vocab + 1) // 2) + 4
    n_scored = n_ctx - 1 - n_ctx // 2
    head_len = 20 + 4 * n_ctx * n_chunk
    rows = np.frombuffer(data[head_len:], "<u2").reshape(n_chunk * n_scored, nv)
    idx = np.array(sorted({c * n_scored + k for c in range(n_chunk) for k in (0, n_scored - 1)}), np.int64)
    return {"head": np.frombuffer(data[:head_len], np.uint8).copy(), "rows": rows[idx].copy(), "row_index": idx}


def generate(oracle, w) -> None:
    from refimpl import gguf

    if not (ROOT / TEXT).is_file():
        raise SystemExit(f"{TEXT} is missing (heldout_text() rebuilds it)")
    cases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="refimpl-quality-") as tmp:
        work = Path(tmp)
        tools = Tools(work)

        for cid, (model, n_ctx, n_batch, chunks, base) in PPL_CASES.items():
            args = ["-m", model, "-f", TEXT, "-c", str(n_ctx), "-b", str(n_batch), "--chunks", str(chunks), *COMMON]
            base_path = work / f"{cid}.kld"
            if base:
                args += ["--kl-divergence-base", str(base_path)]
            out, err = tools.run("llama-perplexity", args)
            case = {"tool": "llama-perplexity", "argv": [a if a != str(base_path) else "BASE_FILE" for a in args],
                    "model": model, "n_ctx": n_ctx, "n_batch": n_batch, "chunks": chunks, **_ppl_lines(out, err)}
            if base:
                data = base_path.read_bytes()
                n_vocab, n_chunk = np.frombuffer(data[12:20], "<i4").tolist()
                case["base_file"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                     "n_vocab": n_vocab, "n_chunk": n_chunk, "rows": f"{cid}.base-rows.npz"}
                w.npz(f"{cid}.base-rows.npz", _base_rows(data, n_ctx, n_vocab, n_chunk),
                      f"llama-perplexity --kl-divergence-base ({cid}): header+tokens bytes and the first/last scored "
                      f"row of each chunk")
            cases[cid] = case
            print(f"  {cid}: {case['final']}", flush=True)

        for cid, (ftype, base_case) in KLD_CASES.items():
            qpath = work / f"tiny-kjv-{ftype}.gguf"
            tools.run("llama-quantize", ["--allow-requantize", str(ROOT / TINY), str(qpath), ftype, "1"])
            args = ["-m", str(qpath), "--kl-divergence-base", str(work / f"{base_case}.kld"), "--kl-divergence",
                    "-c", str(PPL_CASES[base_case][1]), *COMMON]
            out, _ = tools.run("llama-perplexity", args)
            lines = out.splitlines()
            start = lines.index(next(ln for ln in lines if ln.startswith("chunk ")))
            report = lines[start:]
            while report and not report[-1].strip():
                report.pop()
            cases[cid] = {"tool": "llama-perplexity", "argv": ["-m", f"tiny-kjv-{ftype}.gguf", "--kl-divergence-base",
                                                               "BASE_FILE", "--kl-divergence", *args[5:]],
                          "quantized_model": {"ftype": ftype, "from": TINY, "allow_requantize": True,
                                              "sha256": hashlib.sha256(qpath.read_bytes()).hexdigest()},
                          "base_case": base_case, "report": report}
            print(f"  {cid}: " + next(ln for ln in report if ln.startswith("Mean    KLD")), flush=True)

        for cid, o in IMATRIX_CASES.items():
            case = {"tool": "llama-imatrix", "outputs": {}}
            for fmt in o["formats"]:
                name = f"{cid}.{fmt}"
                args = []
                if "model" in o:
                    args += ["-m", o["model"], "-f", TEXT, "-c", str(o["n_ctx"]), "--chunks", str(o["chunks"])]
                    if "n_batch" in o:
                        args += ["-b", str(o["n_batch"])]
                    if "n_ubatch" in o:
                        args += ["-ub", str(o["n_ubatch"])]
                    if o.get("process_output"):
                        args += ["--process-output"]
                else:
                    args += ["-m", TINY]                      # llama-imatrix insists on -m even to merge
                for f in o.get("in_files", ()):
                    args += ["--in-file", str(work / f)]
                args += ["-o", str(work / name), "--output-format", fmt, *COMMON]
                out, err = tools.run("llama-imatrix", args)
                data = (work / name).read_bytes()
                w.raw(f"{name}", data, f"llama-imatrix output ({cid}, --output-format {fmt})")
                case["outputs"][fmt] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(),
                                        "argv": [a.replace(str(work) + "/", "") for a in args]}
                if "model" in o:
                    case.update(_ppl_lines(out, ""))
            case["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
            cases[cid] = case
            print(f"  {cid}: {', '.join(case['outputs'])}", flush=True)

        stats_file = work / f"{STATS_CASE}.gguf"
        _, err = tools.run("llama-imatrix", ["-m", TINY, "--in-file", str(stats_file), "--show-statistics"],
                           cwd=work)
        text = err[err.index("\nComputing statistics"):]
        text = text.replace(str(stats_file), stats_file.name)
        cases["imatrix.show-statistics"] = {"tool": "llama-imatrix",
                                            "argv": ["--in-file", stats_file.name, "--show-statistics"],
                                            "in_file": stats_file.name, "stderr": text}

        for cid, (ftype, im_case) in QUANT_CASES.items():
            # run where the matrix is, so that quantize.imatrix.file holds the plain name "imatrix.gguf"
            shutil.copy(work / f"{im_case}.gguf", work / "imatrix.gguf")
            tools.run("llama-quantize", ["--allow-requantize", "--imatrix", "imatrix.gguf", str(ROOT / TINY),
                                         f"out-{ftype}.gguf", ftype, "1"], cwd=work)
            data = (work / f"out-{ftype}.gguf").read_bytes()
            f = gguf.read(work / f"out-{ftype}.gguf")
            cases[cid] = {"tool": "llama-quantize",
                          "argv": ["--allow-requantize", "--imatrix", "imatrix.gguf", TINY, f"out-{ftype}.gguf",
                                   ftype, "1"],
                          "ftype": ftype, "imatrix_case": im_case, "sha256": hashlib.sha256(data).hexdigest(),
                          "bytes": len(data), "imatrix_file_key": f.get("quantize.imatrix.file")}
            print(f"  {cid}: {cases[cid]['sha256'][:16]}", flush=True)

    w.json("cases.json", {"text": TEXT, "text_sha256": hashlib.sha256((ROOT / TEXT).read_bytes()).hexdigest(),
                          "common_args": COMMON, "cases": cases},
           "every case: command line, parameters, the numbers printed (as printed), digests of the files written")
