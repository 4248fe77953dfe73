"""Conversion time and peak memory: ``python -m refimpl.convert`` against the pinned ``convert_hf_to_gguf.py`` on
a ~100M-parameter llama-shaped checkpoint (random BF16 weights in 2 safetensors shards, the tiny SentencePiece
tokenizer of tests/data/convert), both writing F16 (``--outtype f16``), each in its own process, the same run.

    REFIMPL_CONVERT_PYTHON=/path/to/python-with-torch-and-transformers python tools/bench_convert.py [--repeat 2]

Prints wall time (best of ``--repeat``), peak RSS of the process (``ru_maxrss``), the ratio script/refimpl (> 1:
refimpl faster), the largest shard size, and whether both outputs are byte-identical.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"
CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=768, intermediate_size=2048,
              num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048,
              rms_norm_eps=1e-5, rope_theta=10000.0, vocab_size=32000, tie_word_embeddings=False,
              bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")


def make_checkpoint(dest: Path) -> tuple[int, int]:
    """A random BF16 llama checkpoint in two shards (+ the tiny SPM tokenizer); (parameters, largest shard bytes)."""
    from safetensors.numpy import save_file
    c = CONFIG
    h, ff, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (V, h), "model.norm.weight": (h,), "lm_head.weight": (V, h)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (ff, h), p + "mlp.up_proj.weight": (ff, h),
                       p + "mlp.down_proj.weight": (h, ff)})
    rng = np.random.default_rng(19)
    names = list(shapes)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, largest, n_params = {}, 0, 0
    dest.mkdir(parents=True)
    for k, part in enumerate(halves, 1):
        fname = f"model-{k:05d}-of-00002.safetensors"
        tensors = {}
        for n in part:
            x = (rng.standard_normal(shapes[n], dtype=np.float32) * 0.02).view(np.uint32)
            tensors[n] = (x >> 16).astype(np.uint16)     # bf16 bits (truncation is fine for random data)
            n_params += x.size
            weight_map[n] = fname
        save_file(tensors, str(dest / fname))
        # safetensors.numpy has no bf16 dtype: rewrite the header with dtype BF16 (same width as U16)
        raw = (dest / fname).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        for k, v in header.items():
            if k != "__metadata__":
                v["dtype"] = "BF16"
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        raw = len(hb).to_bytes(8, "little") + hb + raw[8 + n:]
        (dest / fname).write_bytes(raw)
        largest = max(largest, len(raw))
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (dest / "config.json").write_text(json.dumps(CONFIG))
    with tarfile.open(ROOT / "tests" / "data" / "convert" / "checkpoints.tar.xz", "r:xz") as tar:
        for member in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            f = tar.extractfile(f"tiny-llama2-spm/{member}")
            (dest / member).write_bytes(f.read())
    return n_params, largest


def run(cmd: list[str], env=None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return wall, usage.ru_maxrss * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--script-python", default=os.environ.get("REFIMPL_CONVERT_PYTHON"),
                    help="a Python with torch and transformers for convert_hf_to_gguf.py ($REFIMPL_CONVERT_PYTHON)")
    ap.add_argument("--make-checkpoint", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_checkpoint:
        print(json.dumps(make_checkpoint(args.make_checkpoint)))
        return 0
    if not args.script_python:
        ap.error("set REFIMPL_CONVERT_PYTHON (or --script-python) to a Python with torch and transformers")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ck = tmp / "bench-llama-100m"
        # made in a child process: a child forked from a parent holding the random arrays would start with their
        # pages, and its ru_maxrss would count them
        made = subprocess.run([sys.executable, __file__, "--make-checkpoint", str(ck)], check=True,
                              capture_output=True, text=True)
        n_params, largest = json.loads(made.stdout)
        out_r, out_s = tmp / "refimpl.gguf", tmp / "script.gguf"
        env = dict(os.environ, PYTHONPATH=str(VENDOR / "gguf-py"))
        cmd_r = [sys.executable, "-m", "refimpl.convert", str(ck), "--outfile", str(out_r), "--outtype", "f16"]
        cmd_s = [args.script_python, str(VENDOR / "convert_hf_to_gguf.py"), str(ck), "--outfile", str(out_s),
                 "--outtype", "f16"]
        run(cmd_r)                                    # warm-up: numba's on-disk cache, page cache
        results = {"refimpl": [], "convert_hf_to_gguf.py": []}
        for _ in range(args.repeat):
            results["refimpl"].append(run(cmd_r))
            results["convert_hf_to_gguf.py"].append(run(cmd_s, env))
        same = hashlib.sha256(out_r.read_bytes()).hexdigest() == hashlib.sha256(out_s.read_bytes()).hexdigest()
    best = {k: (min(w for w, _ in v), max(r for _, r in v)) for k, v in results.items()}
    print(f"checkpoint: llama {n_params / 1e6:.0f}M parameters, BF16, 2 shards (largest {largest / 1e6:.0f} MB) "
          f"-> F16 GGUF; best of {args.repeat}")
    print(f"{'converter':24s} {'time s':>8s} {'peak RSS MB':>12s}")
    for k, (w, r) in best.items():
        print(f"{k:24s} {w:8.2f} {r / 1e6:12.0f}")
    ratio = best["convert_hf_to_gguf.py"][0] / best["refimpl"][0]
    print(f"speed ratio (script time / refimpl time): {ratio:.2f}x")
    print(f"refimpl peak RSS - largest shard: {(best['refimpl'][1] - largest) / 1e6:.0f} MB (target <= 200 MB)")
    print(f"outputs byte-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
