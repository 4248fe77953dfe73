"""llama-quantize's output for small models, described per tensor: golden/quantize_model/cases.json.

INPUTS (not committed; rebuilt bit for bit by ``build_inputs`` from fixed seeds, their sha256 recorded):

* synthetic models made for the quantizer, whose tensor names and hyperparameters are real but whose matrices
  have few rows (llama-quantize reads only the hyperparameters and the tensors, never builds the graph, and
  only a row's LENGTH decides types and fallbacks):
  ``llama-gqa4``  llama, 8 blocks, 8 heads / 2 KV heads (GQA 4), every matrix 256 wide
  ``llama-gqa4-f16``  the same in F16
  ``qwen2-576``   qwen2, 8 blocks, GQA 3, tied embeddings, rows 576 wide (the 256-block types fall back),
                  ffn_down 1536 wide, q/k/v biases
  ``moe8``        llama with 8 experts (3-D ffn_*_exps, ffn_gate_inp), 4 blocks
  ``llama-70b``   llama with 80 blocks and GQA 8 (llama.cpp's 70B model type), attn_v/attn_output/ffn_down only
  ``falcon-qkv``, ``phi3-qkv``  8 blocks, fused attn_qkv (falcon has its own output/attn_output/ffn_down rules)
* the six architecture models of the ``model`` family, ``golden/model/<arch>-F32.gguf`` (64 wide: every
  256-block type falls back; gpt2 and phi3 have fused attn_qkv, gpt2 a position_embd)
* random importance matrices for them, written by refimpl.imatrix_file (GGUF, and .dat for one case).

GOLDENS: for every case (model x ftype x options) the pinned llama-quantize (scalar build,
tools/build_llama_tools.py) is run with one thread, and its output is described in cases.json:
``file_sha256``, ``file_size``, ``header_sha256`` (everything before the tensor data), ``kv`` ("key type value" strings in file order: the
value as JSON, ``bits:`` for f32, ``sha256:`` of the encoded value for arrays) and ``tensors`` ("name type
ne0,ne1,ne2,ne3 offset sha256-of-the-data" strings, in file order);
or, when llama-quantize refuses the case, ``error`` (its exit code and last log line).  ``imatrix_roundtrip``:
sha256 of what llama-imatrix writes when it loads each input imatrix and saves it again (GGUF and .dat).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
DESCRIPTION = ("llama-quantize's output (per-tensor types, shapes, sha256; metadata; whole-file sha256) for small "
               "random-weight models over every ftype and the option combinations, and llama-imatrix's re-save of "
               "the input imatrices")

ARCH_MODELS = ("llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2")
ALL_FTYPES = ("Q1_0", "Q2_0", "Q4_0", "Q4_1", "MXFP4_MOE", "Q5_0", "Q5_1", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
              "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M", "Q3_K", "IQ3_XS",
              "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_K", "Q4_K_S", "Q4_K_M", "Q5_K", "Q5_K_S",
              "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32", "COPY")
# the ftypes whose mix has a type tensor_requires_imatrix (IQ3_XS uses IQ3_XXS for attn_q/attn_k/ffn_gate/ffn_up)
NEEDS_IMATRIX = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"}


# ---------------------------------------------------------------------------------------------- input models

def _values(seed: int, n: int) -> np.ndarray:
    """n deterministic float32 weights: PCG64's raw stream (stable across numpy versions) through exactly
    rounded float64 arithmetic only, roughly bell-shaped with a heavy tail and an outlier every 97th value."""
    raw = np.random.PCG64(seed).random_raw(n) if n else np.zeros(0, dtype=np.uint64)
    u = (raw >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24)) * 2.0 - 1.0     # [-1, 1)
    v = 0.5 * u + 0.5 * u * u * u
    v[::97] *= 8.0
    return v.astype(np.float32)


@dataclass
class ModelSpec:
    name: str
    arch: str
    n_layer: int
    kv: dict
    tensors: list           # (name, numpy shape) in file order
    dtype: str = "F32"      # of the 2-D+ weights; 1-D tensors are always F32


def _blk(i, t):
    return f"blk.{i}.{t}"


def model_specs() -> list[ModelSpec]:
    specs = []
    # llama-gqa4: 8 blocks, 256-wide rows, 16 rows per matrix (k/v 8)
    t = [("token_embd.weight", (32, 256)), ("output_norm.weight", (256,)), ("output.weight", (32, 256))]
    for i in range(8):
        t += [(_blk(i, "attn_norm.weight"), (256,)), (_blk(i, "attn_q.weight"), (16, 256)),
              (_blk(i, "attn_k.weight"), (8, 256)), (_blk(i, "attn_v.weight"), (8, 256)),
              (_blk(i, "attn_output.weight"), (16, 256)), (_blk(i, "ffn_norm.weight"), (256,)),
              (_blk(i, "ffn_gate.weight"), (16, 256)), (_blk(i, "ffn_up.weight"), (16, 256)),
              (_blk(i, "ffn_down.weight"), (16, 256))]
    kv = {"context_length": 256, "embedding_length": 256, "block_count": 8, "feed_forward_length": 256,
          "attention.head_count": 8, "attention.head_count_kv": 2, "rope.dimension_count": 32}
    specs.append(ModelSpec("llama-gqa4", "llama", 8, kv, t))
    specs.append(ModelSpec("llama-gqa4-f16", "llama", 8, kv, t, dtype="F16"))

    # qwen2-576: tied embeddings, 576-wide rows, ffn_down 1536 wide, biases
    t = [("token_embd.weight", (24, 576)), ("output_norm.weight", (576,))]
    for i in range(8):
        t += [(_blk(i, "attn_norm.weight"), (576,)), (_blk(i, "attn_q.weight"), (8, 576)),
              (_blk(i, "attn_q.bias"), (8,)), (_blk(i, "attn_k.weight"), (4, 576)), (_blk(i, "attn_k.bias"), (4,)),
              (_blk(i, "attn_v.weight"), (4, 576)), (_blk(i, "attn_v.bias"), (4,)),
              (_blk(i, "attn_output.weight"), (8, 576)), (_blk(i, "ffn_norm.weight"), (576,)),
              (_blk(i, "ffn_gate.weight"), (8, 576)), (_blk(i, "ffn_up.weight"), (8, 576)),
              (_blk(i, "ffn_down.weight"), (8, 1536))]
    kv = {"context_length": 256, "embedding_length": 576, "block_count": 8, "feed_forward_length": 1536,
          "attention.head_count": 9, "attention.head_count_kv": 3}
    specs.append(ModelSpec("qwen2-576", "qwen2", 8, kv, t))

    # moe8: 8 experts, 4 blocks
    t = [("token_embd.weight", (16, 256)), ("output_norm.weight", (256,)), ("output.weight", (16, 256))]
    for i in range(4):
        t += [(_blk(i, "attn_norm.weight"), (256,)), (_blk(i, "attn_q.weight"), (8, 256)),
              (_blk(i, "attn_k.weight"), (8, 256)), (_blk(i, "attn_v.weight"), (8, 256)),
              (_blk(i, "attn_output.weight"), (8, 256)), (_blk(i, "ffn_norm.weight"), (256,)),
              (_blk(i, "ffn_gate_inp.weight"), (8, 256)),
              (_blk(i, "ffn_gate_exps.weight"), (8, 4, 256)), (_blk(i, "ffn_up_exps.weight"), (8, 4, 256)),
              (_blk(i, "ffn_down_exps.weight"), (8, 4, 256))]
    kv = {"context_length": 256, "embedding_length": 256, "block_count": 4, "feed_forward_length": 256,
          "attention.head_count": 8, "attention.head_count_kv": 8, "expert_count": 8, "expert_used_count": 2,
          "rope.dimension_count": 32}
    specs.append(ModelSpec("moe8", "llama", 4, kv, t))

    # llama-70b: 80 blocks with GQA 8: llama.cpp types it LLM_TYPE_70B (attn_v gets more bits); only the tensors
    # the rules look at, 4 rows each
    t = [("token_embd.weight", (4, 256)), ("output.weight", (4, 256))]
    for i in range(80):
        t += [(_blk(i, "attn_v.weight"), (4, 256)), (_blk(i, "attn_output.weight"), (4, 256)),
              (_blk(i, "ffn_down.weight"), (4, 256))]
    kv = {"context_length": 256, "embedding_length": 256, "block_count": 80, "feed_forward_length": 256,
          "attention.head_count": 64, "attention.head_count_kv": 8, "attention.layer_norm_rms_epsilon": 1e-5}
    specs.append(ModelSpec("llama-70b", "llama", 80, kv, t))

    # falcon (its own rules for output, attn_output, ffn_down) and phi3 (fused attn_qkv), 8 blocks, 256 wide
    for arch, eps_key in (("falcon", "attention.layer_norm_epsilon"), ("phi3", "attention.layer_norm_rms_epsilon")):
        t = [("token_embd.weight", (8, 256)), ("output_norm.weight", (256,)), ("output.weight", (8, 256))]
        for i in range(8):
            t += [(_blk(i, "attn_norm.weight"), (256,)), (_blk(i, "attn_qkv.weight"), (12, 256)),
                  (_blk(i, "attn_output.weight"), (8, 256)), (_blk(i, "ffn_up.weight"), (8, 256)),
                  (_blk(i, "ffn_down.weight"), (8, 256))]
        kv = {"context_length": 256, "embedding_length": 256, "block_count": 8, "feed_forward_length": 256,
              "attention.head_count": 8, "attention.head_count_kv": 2, eps_key: 1e-5}
        specs.append(ModelSpec(f"{arch}-qkv", arch, 8, kv, t))
    return specs


def write_model(spec: ModelSpec, path: Path) -> None:
    from refimpl.gguf import GGUFValue, GGUFValueType as T, Tensor, write
    from refimpl.floats import fp32_to_fp16_row

    meta = {"general.architecture": GGUFValue(T.STRING, spec.arch),
            "general.name": GGUFValue(T.STRING, f"refimpl quantizer test model {spec.name}"),
            "general.file_type": GGUFValue(T.UINT32, 1 if spec.dtype == "F16" else 0)}
    for k, v in spec.kv.items():
        meta[f"{spec.arch}.{k}"] = GGUFValue(T.FLOAT32, v) if isinstance(v, float) else GGUFValue(T.UINT32, v)
    if spec.arch in ("llama", "qwen2") and f"{spec.arch}.attention.layer_norm_rms_epsilon" not in meta:
        meta[f"{spec.arch}.attention.layer_norm_rms_epsilon"] = GGUFValue(T.FLOAT32, 1e-5)
    tensors = []
    for seed, (name, shape) in enumerate(spec.tensors):
        x = _values(1000 + seed, int(np.prod(shape))).reshape(shape)
        if len(shape) == 1:
            x = (1.0 + 0.1 * x).astype(np.float32)      # norms and biases near 1
            tensors.append((name, x))
        elif spec.dtype == "F16":
            tensors.append((name, Tensor("F16", shape, fp32_to_fp16_row(x.reshape(-1)).reshape(shape))))
        else:
            tensors.append((name, x))
    write(path, meta, tensors)


def build_imatrix(model_path: Path, seed: int):
    """A random imatrix for every 2-D+ weight of a model except the token embeddings (what llama-imatrix
    collects): integer counts, chunk size 512, chunk count = max count // 512 (what llama-imatrix derives when it
    loads a file), one expert count 0 in each expert tensor (partial data)."""
    from refimpl import gguf
    from refimpl.imatrix_file import Imatrix, ImatrixEntry

    entries = {}
    with gguf.read(model_path) as f:
        for k, t in enumerate(f.tensors.list()):
            if len(t.shape) < 2 or t.name == "token_embd.weight" or not t.name.endswith(".weight"):
                continue
            n_mat = t.ne[2]
            n_col = t.ne[0]
            sums = (np.abs(_values(seed * 7919 + k, n_mat * n_col)) * 40.0 + 0.25).astype(np.float32)
            counts = np.array([512.0 * (3 + (k + e) % 5) for e in range(n_mat)], dtype=np.float32)
            if n_mat > 1:
                counts[(k % n_mat)] = 0.0
            entries[t.name] = ImatrixEntry(sums.reshape(n_mat, n_col), counts)
    max_count = max(int(e.counts.max()) for e in entries.values())
    return Imatrix(entries=entries, datasets=["golden-random.txt"], chunk_count=max_count // 512, chunk_size=512)


def build_inputs(folder: Path) -> dict[str, str]:
    """Write every input of the cases into ``folder``; return file name -> sha256."""
    from refimpl.imatrix_file import write_imatrix

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for spec in model_specs():
        write_model(spec, folder / f"{spec.name}.gguf")
    for arch in ARCH_MODELS:
        shutil.copyfile(ROOT / "golden" / "model" / f"{arch}-F32.gguf", folder / f"{arch}-F32.gguf")
    for seed, name in enumerate(["llama-gqa4", "qwen2-576", "moe8"] + [f"{a}-F32" for a in ARCH_MODELS]
                                + ["llama-70b", "falcon-qkv", "phi3-qkv"]):
        imat = build_imatrix(folder / f"{name}.gguf", seed + 1)
        write_imatrix(folder / f"{name}.imatrix.gguf", imat)
        if name == "llama-gqa4":
            write_imatrix(folder / f"{name}.imatrix.dat", imat, fmt="dat")
    (folder / "tensor-types.txt").write_text("attn_v=q8_0\n  blk\\.[1-3]\\.ffn_up=Q5_1 output=q4_k\n")
    for p in sorted(folder.iterdir()):
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------------------ cases

@dataclass
class Case:
    id: str
    model: str                      # input file name (without .gguf), or "@<case id>" for another case's output
    ftype: str
    options: list = field(default_factory=list)     # llama-quantize options, before the positional arguments
    imatrix: str | None = None      # input imatrix file name

    def argv(self, src: str, dst: str) -> list[str]:
        a = list(self.options)
        if self.imatrix:
            a += ["--imatrix", self.imatrix]
        return a + [src, dst, self.ftype, "1"]


def cases() -> list[Case]:
    out: list[Case] = []

    def im(model, ftype):
        return f"{model}.imatrix.gguf" if ftype in NEEDS_IMATRIX else None

    for ft in ALL_FTYPES:                                   # every ftype on the 256-wide GQA-4 model
        out.append(Case(f"llama-gqa4/{ft}", "llama-gqa4", ft, imatrix=im("llama-gqa4", ft)))
    for ft in ("IQ4_XS", "IQ4_NL", "Q4_0", "Q5_0", "Q4_K_M", "Q3_K_M"):   # rules that change with an imatrix
        out.append(Case(f"llama-gqa4/{ft}+imatrix", "llama-gqa4", ft, imatrix="llama-gqa4.imatrix.gguf"))
    for ft in ALL_FTYPES:                                   # every quantized ftype on the 576-wide model
        if ft not in ("F16", "BF16", "F32", "COPY", "Q3_K", "Q4_K", "Q5_K"):
            out.append(Case(f"qwen2-576/{ft}", "qwen2-576", ft, imatrix=im("qwen2-576", ft)))
    for ft in ("Q4_K_M", "Q2_K", "Q3_K_M", "Q4_K_S", "IQ2_XS", "IQ2_M", "IQ3_M", "IQ3_XS", "IQ4_XS", "MXFP4_MOE",
               "Q8_0"):
        out.append(Case(f"moe8/{ft}", "moe8", ft,
                        imatrix="moe8.imatrix.gguf" if ft in NEEDS_IMATRIX or ft == "IQ4_XS" else None))
    for model, fts in (("llama-70b", ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_M", "IQ3_M", "Q5_K_M")),
                       ("falcon-qkv", ("Q2_K", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_M")),
                       ("phi3-qkv", ("Q3_K_M", "Q3_K_L", "Q4_K_M", "Q5_K_M", "IQ3_M", "IQ2_M"))):
        for ft in fts:
            out.append(Case(f"{model}/{ft}", model, ft, imatrix=f"{model}.imatrix.gguf" if ft in NEEDS_IMATRIX else None))
    for arch in ARCH_MODELS:                                # every architecture on a few ftypes
        for ft in ("Q4_K_M", "Q5_K_S", "Q8_0", "IQ4_XS", "Q2_K"):
            out.append(Case(f"{arch}-F32/{ft}", f"{arch}-F32", ft,
                            imatrix=f"{arch}-F32.imatrix.gguf" if ft == "IQ4_XS" else None))
    g = "llama-gqa4"
    out += [
        Case("opt/pure-Q4_K_M", g, "Q4_K_M", ["--pure"]),
        Case("opt/pure-Q2_K_S", g, "Q2_K_S", ["--pure"], imatrix=f"{g}.imatrix.gguf"),
        Case("opt/leave-output-Q4_K_M", g, "Q4_K_M", ["--leave-output-tensor"]),
        Case("opt/output-and-embedding-types", g, "Q4_K_M",
             ["--output-tensor-type", "q8_0", "--token-embedding-type", "Q4_0"]),
        Case("opt/tensor-type", g, "Q4_K_M",
             ["--tensor-type", "attn_(q|k)=q5_0", "--tensor-type", "BLK\\.[0-3]\\.FFN_DOWN=iq4_nl",
              "--tensor-type", "output=bf16"]),
        Case("opt/tensor-type-file", g, "Q6_K", ["--tensor-type-file", "tensor-types.txt"]),
        Case("opt/tensor-type-f16-ignored", g, "F16", ["--tensor-type", "attn_q=q8_0"]),
        Case("opt/override-kv", g, "Q4_K_M",
             ["--override-kv", "general.name=str:quantized by the golden", "--override-kv",
              "llama.context_length=int:-4096", "--override-kv", "test.float=float:0.5",
              "--override-kv", "test.bool=bool:true"]),
        Case("opt/override-kv-gqa", g, "Q2_K", ["--override-kv", "llama.attention.head_count_kv=int:8"]),
        Case("opt/prune-layers", g, "IQ4_XS", ["--prune-layers", "1,5"], imatrix=f"{g}.imatrix.gguf"),
        Case("opt/prune-layers-Q4_K_M", g, "Q4_K_M", ["--prune-layers", "0,7"]),
        Case("opt/imatrix-dat", g, "IQ2_XS", imatrix=f"{g}.imatrix.dat"),
        Case("opt/include-weights", g, "IQ4_XS", ["--include-weights", "ffn"], imatrix=f"{g}.imatrix.gguf"),
        Case("opt/exclude-weights", g, "IQ4_XS", ["--exclude-weights", "attn"], imatrix=f"{g}.imatrix.gguf"),
        Case("opt/exclude-needed-weights", g, "IQ2_XXS", ["--exclude-weights", "attn_q"],
             imatrix=f"{g}.imatrix.gguf"),
        Case("opt/numeric-ftype", g, "15"),
        Case("opt/f16-input-Q4_K_M", "llama-gqa4-f16", "Q4_K_M"),
        Case("opt/f16-input-COPY", "llama-gqa4-f16", "COPY"),
        Case("opt/f16-input-F32", "llama-gqa4-f16", "F32"),
        Case("opt/requantize-no-flag", f"@llama-gqa4/Q8_0", "Q4_K_M"),
        Case("opt/requantize-Q8_0-Q4_K_M", f"@llama-gqa4/Q8_0", "Q4_K_M", ["--allow-requantize"]),
        Case("opt/requantize-Q4_K_M-IQ4_NL", f"@llama-gqa4/Q4_K_M", "IQ4_NL", ["--allow-requantize"]),
        Case("opt/requantize-Q8_0-same", f"@llama-gqa4/Q8_0", "Q8_0"),
        Case("opt/missing-imatrix", g, "IQ2_XS"),
    ]
    return out


# --------------------------------------------------------------------------------------------------- describe

def describe(path: Path) -> dict:
    """The golden description of a GGUF file: sha256 of the whole file and of its header, the KV pairs and the
    tensors (name, type, ne, offset, sha256 of the data)."""
    from refimpl import gguf

    data = path.read_bytes()
    with gguf.read(path) as f:
        kv = []
        for k, v in f.metadata.items():
            if v.type_name.startswith("arr"):
                from refimpl.gguf.writer import encode_value
                value = "sha256:" + hashlib.sha256(encode_value(v)).hexdigest()
            elif v.type_name == "f32":
                value = f"bits:{v.f32_bits():08x}"
            else:
                value = json.dumps(v.value, ensure_ascii=False)
            kv.append(f"{k} {v.type_name} {value}")
        tensors = [f"{t.name} {t.ggml_type} {','.join(map(str, t.ne))} {t.offset} "
                   + hashlib.sha256(data[f.data_offset + t.offset:f.data_offset + t.offset + t.nbytes]).hexdigest()
                   for t in f.tensors.list()]
        header = data[:f.data_offset]
    return {"file_sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
            "header_sha256": hashlib.sha256(header).hexdigest(), "kv": kv, "tensors": tensors}


def run_llama_quantize(case: Case, folder: Path, outputs: dict) -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    from build_llama_tools import tool_env, tool_path

    exe = tool_path("llama-quantize")
    src = case.model[1:].replace("/", "__") + ".out.gguf" if case.model.startswith("@") else case.model + ".gguf"
    dst = case.id.replace("/", "__") + ".out.gguf"
    r = subprocess.run([str(exe), *case.argv(src, dst)], cwd=folder, env=tool_env(exe), capture_output=True,
                       text=True, errors="replace")
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        return {"error": {"returncode": r.returncode, "last_line": lines[-1] if lines else ""}}
    return describe(folder / dst)


def imatrix_roundtrip(folder: Path) -> dict:
    """llama-imatrix -m MODEL --in-file X -o Y (no prompt: the model is never loaded): it loads X and saves it
    again, as GGUF and as .dat."""
    sys.path.insert(0, str(ROOT / "tools"))
    from build_llama_tools import tool_env, tool_path

    exe = tool_path("llama-imatrix")
    out = {}
    for p in sorted(folder.glob("*.imatrix.gguf")):
        entry = {}
        for fmt in ("gguf", "dat"):
            dst = folder / f"{p.name}.resaved.{fmt}"
            model = p.name.replace(".imatrix.gguf", ".gguf")
            r = subprocess.run([str(exe), "-m", model, "--in-file", p.name, "-o", dst.name, "--output-format", fmt],
                               cwd=folder,
                               env=tool_env(exe), capture_output=True, text=True, errors="replace")
            if r.returncode != 0:
                raise RuntimeError(f"llama-imatrix failed on {p.name}: {r.stderr[-2000:]}")
            entry[fmt] = hashlib.sha256(dst.read_bytes()).hexdigest()
        out[p.name] = entry
    return out


def generate(oracle, w) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from build_llama_tools import tool_path, is_scalar_build

    exe = tool_path("llama-quantize")
    if not is_scalar_build(exe.parent.parent):
        raise SystemExit(f"{exe} is not from a scalar build (tools/build_llama_tools.py --check)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = build_inputs(folder)
        results = {}
        for case in cases():
            results[case.id] = {"model": case.model, "ftype": case.ftype, "options": case.options,
                                "imatrix": case.imatrix, **run_llama_quantize(case, folder, results)}
            print(f"  {case.id}: {'error' if 'error' in results[case.id] else 'ok'}", flush=True)
        doc = {"inputs": inputs, "tool": "llama-quantize (llama-cpp-python 0.3.36's llama.cpp, scalar build), "
                                          "one thread", "cases": results,
               "imatrix_roundtrip": imatrix_roundtrip(folder)}
    w.json("cases.json", doc, "llama-quantize's output for every case (model x ftype x options): per-tensor type, "
                              "ne, offset and sha256, KV pairs, header and file sha256, or its error; sha256 of the "
                              "inputs; llama-imatrix's re-save of each input imatrix")
