"""Tiny random-weight models of every architecture refimpl runs, and llama.cpp's logits for them.

The .gguf files are INPUTS (deterministic random weights, quantized by ggml's own ggml_quantize_chunk); the
goldens are what llama.cpp computes from them:

  model/<arch>-<TYPE>.gguf  the model: 2-D weights in TYPE, 1-D tensors (norms, biases, rope factors) in F32.
                            "Q4_K": Q4_K where the row (ne0) is a multiple of 256, Q5_0 elsewhere (llama-quantize's
                            tensor_type_fallback); those models have n_ff = 256 so ffn_down is Q4_K.
  model/<arch>-<TYPE>.npz   tokens  int32 (n_prompt,)         the prompt (fixed token ids, BOS first)
                            logits  float32 (n_prompt, n_vocab) llama.cpp's logits for every prompt position, from
                                                              ONE llama_decode of the whole prompt (logits_all)
                            greedy  int32 (32,)               llama.cpp's greedy continuation: argmax of the last
                                                              logits, then one llama_decode per token (EOS not
                                                              special: always 32 tokens)
  model/models.json         per model: arch, type, hyperparameters, features, and the llama_cpp.Llama settings

llama.cpp settings (every one that changes numerics is pinned; see SETTINGS): flash attention OFF (KQ mul_mat,
soft_max_ext, KQV mul_mat), KV cache F16, one thread, n_ctx 256, the prompt in one ubatch of <= 64, full-size SWA cache,
YaRN/rope parameters from the model (llama.cpp's -1 defaults, not llama-cpp-python's yarn_attn_factor=1.0).
llama.cpp runs in a forked child, so an abort cannot take the generator down.
"""
from __future__ import annotations

import math
import multiprocessing
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DESCRIPTION = ("tiny random-weight GGUF models of each architecture (llama, qwen2, qwen3, gemma3, phi3, gpt2) in "
               "several weight types, with llama.cpp's logits for every prompt position and its greedy continuation")

N_CTX = 256            # llama.cpp pads the context to a multiple of 256 anyway; say so explicitly
N_BATCH = 64
N_POS_GPT2 = 64        # gpt2's position_embd rows (= its context_length)
N_PROMPT = 16
N_GREEDY = 32
SETTINGS = dict(n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=1, n_threads_batch=1, flash_attn=False,
                type_k=1, type_v=1, swa_full=True, logits_all=True, offload_kqv=True, n_gpu_layers=0,
                yarn_ext_factor=-1.0, yarn_attn_factor=-1.0, yarn_beta_fast=-1.0, yarn_beta_slow=-1.0,
                rope_freq_base=0.0, rope_freq_scale=0.0, use_mmap=False, verbose=False)

TYPE_IDS = {"F32": 0, "F16": 1, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "IQ4_NL": 20}
FILE_TYPE = {"F32": 0, "F16": 1, "Q8_0": 7, "Q4_K": 15, "IQ4_NL": 25}   # llama_ftype (general.file_type)

# ---------------------------------------------------------------------------------------------------- vocab

N_WORDS = 5
N_VOCAB = 3 + 256 + N_WORDS     # <unk> <s> </s>, 256 byte tokens, a few words


def vocab_metadata() -> dict:
    """A SentencePiece ("llama") vocab llama.cpp loads without complaint: specials, all 256 byte tokens, a few
    words.  The goldens use fixed token ids, so the vocab only has to load."""
    from refimpl.gguf.types import GGUFValueType as T
    from refimpl.gguf.values import GGUFValue as V

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["\u2581the", "\u2581a", "\u2581model", "er", "in"][:N_WORDS]
    tokens += words
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)          # UNKNOWN, CONTROL, BYTE, NORMAL
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i + 1) for i in range(len(words))]
    return {
        "tokenizer.ggml.model": V(T.STRING, "llama"),
        "tokenizer.ggml.tokens": V(T.ARRAY, tokens, T.STRING),
        "tokenizer.ggml.scores": V(T.ARRAY, np.asarray(scores, np.float32), T.FLOAT32),
        "tokenizer.ggml.token_type": V(T.ARRAY, np.asarray(types, np.int32), T.INT32),
        "tokenizer.ggml.bos_token_id": V(T.UINT32, 1),
        "tokenizer.ggml.eos_token_id": V(T.UINT32, 2),
        "tokenizer.ggml.unknown_token_id": V(T.UINT32, 0),
        "tokenizer.ggml.add_bos_token": V(T.BOOL, True),
    }


# ---------------------------------------------------------------------------------------------------- architectures

@dataclass
class Config:
    arch: str
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int | None = None          # None: n_embd / n_head (no key_length/value_length keys)
    n_ff: int = 96
    eps: float = 1e-5
    rope_base: float | None = 10000.0
    tied: bool = True
    extra: dict = field(default_factory=dict)   # extra metadata (suffix after "<arch>.") -> value
    features: list = field(default_factory=list)

    @property
    def hd(self) -> int:
        return self.head_dim if self.head_dim is not None else self.n_embd // self.n_head


def llama3_rope_freqs(n_rot: int, base: float, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      orig_ctx=8192) -> np.ndarray:
    """rope_freqs.weight as convert_hf_to_gguf.py writes it for Llama 3.x (LlamaModel.generate_extra_tensors)."""
    freqs = 1.0 / (base ** (np.arange(0, n_rot, 2, dtype=np.float64) / n_rot))
    low_wl, high_wl = orig_ctx / low_freq_factor, orig_ctx / high_freq_factor
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (orig_ctx / wl - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, np.float32)


# The configurations: shapes chosen to reproduce each real family's features at toy size.
CONFIGS = {
    # Llama 3 shape: GQA 2, untied output, llama3 rope_freqs, rope base 500000
    "llama": Config("llama", n_head=4, n_head_kv=2, rope_base=500000.0, tied=False,
                    features=["GQA 4/2", "untied output", "llama3 rope_freqs", "rope NORM"]),
    # Qwen2 0.5B shape: q/k/v biases, tied embeddings, GQA
    "qwen2": Config("qwen2", n_head=4, n_head_kv=2, eps=1e-6, rope_base=1000000.0, tied=True,
                    features=["GQA 4/2", "tied output", "q/k/v biases", "rope NEOX"]),
    # Qwen3 shape: per-head q/k RMSNorm, head_dim 32 with n_embd/n_head = 16
    "qwen3": Config("qwen3", n_head=4, n_head_kv=2, head_dim=32, eps=1e-6, rope_base=1000000.0, tied=True,
                    features=["GQA 4/2", "tied output", "q/k norm", "head_dim 32 != n_embd/n_head", "rope NEOX"]),
    # Gemma 3 shape: MQA, head_dim != n_embd/n_head, layer 0 sliding (window 4 < prompt), layer 1 global with
    # linear rope scaling 8 and base 1e6, local base 10000, post-norms, final logit soft-capping
    "gemma3": Config("gemma3", n_head=4, n_head_kv=1, head_dim=32, eps=1e-6, rope_base=1000000.0, tied=True,
                     extra={"attention.sliding_window": ("u32", 4), "attention.sliding_window_pattern": ("u32", 2),
                            "rope.freq_base_swa": ("f32", 10000.0), "rope.scaling.type": ("str", "linear"),
                            "rope.scaling.factor": ("f32", 8.0), "final_logit_softcapping": ("f32", 15.0)},
                     features=["MQA 4/1", "tied output", "head_dim 32 != n_embd/n_head", "embedding scale",
                               "post-norms", "GELU-tanh gate", "SWA window 4, pattern 2 (layer 0 local)",
                               "rope base local 1e4 / global 1e6, global linear scale 8", "final soft-cap 15"]),
    # Phi-3 shape: fused qkv and gate-up, LongRoPE factors (long ones in use: n_ctx > original context 32),
    # rope attn_factor, untied output, GQA (as Phi-3-medium)
    "phi3": Config("phi3", n_head=4, n_head_kv=2, rope_base=10000.0, tied=False,
                   extra={"rope.scaling.attn_factor": ("f32", 1.1902380),
                          "rope.scaling.original_context_length": ("u32", 32)},
                   features=["GQA 4/2", "untied output", "fused qkv", "fused gate-up", "rope_factors_long/short",
                             "rope attn_factor", "rope NEOX"]),
    # GPT-2 shape: learned positions, LayerNorm with bias, GELU, fused qkv with bias, all biases, tied output
    "gpt2": Config("gpt2", n_head=4, n_head_kv=4, rope_base=None, tied=True,
                   features=["MHA", "tied output", "learned positions", "LayerNorm + bias", "GELU", "fused qkv"]),
}

# weight types per architecture (the issue: llama in every type; the others at least F32, Q8_0, Q4_K)
TYPES = {
    "llama": ["F32", "F16", "Q8_0", "Q4_K", "IQ4_NL"],
    "qwen2": ["F32", "Q8_0", "Q4_K"],
    "qwen3": ["F32", "Q8_0", "Q4_K"],
    "gemma3": ["F32", "Q8_0", "Q4_K", "IQ4_NL"],
    "phi3": ["F32", "Q8_0", "Q4_K"],
    "gpt2": ["F32", "Q8_0", "Q4_K"],
}


def config_for(arch: str, type_name: str) -> Config:
    import copy

    c = copy.deepcopy(CONFIGS[arch])
    if type_name == "Q4_K":
        c.n_ff = 256          # so that ffn_down's rows are one Q4_K super-block
    return c


# Layer outputs (attn_output, ffn_down) scaled up so that the residual stream is not dominated by the input
# embedding: otherwise a tied random model predicts its own last token forever and greedy decoding tests little.
OUT_SCALE = 3.0
# Gemma scales the embedding by sqrt(n_embd) = 8 and normalises each layer's output: post-norm weights of that order
POST_NORM_SCALE = 8.0


def make_tensors(c: Config, seed: int) -> dict[str, np.ndarray]:
    """float32 tensors in numpy order (ne1, ne0).  Scales: weights ~ N(0, 1/fan_in) so activations stay O(1);
    embeddings ~ N(0, 0.5^2) so tied logits are O(5); norms ~ 1 + N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    E, V, F, hd = c.n_embd, N_VOCAB, c.n_ff, c.hd
    nq, nkv = c.n_head * hd, c.n_head_kv * hd

    def w(rows, cols, scale=1.0):
        return (rng.standard_normal((rows, cols)) * (scale / math.sqrt(cols))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def bias(n, scale=0.1):
        return (scale * rng.standard_normal(n)).astype(np.float32)

    t: dict[str, np.ndarray] = {}
    t["token_embd.weight"] = (0.5 * rng.standard_normal((V, E))).astype(np.float32)
    if c.arch == "gpt2":
        t["position_embd.weight"] = (0.3 * rng.standard_normal((N_POS_GPT2, E))).astype(np.float32)
    t["output_norm.weight"] = norm(E)
    if c.arch == "gpt2":
        t["output_norm.bias"] = bias(E)
    if not c.tied:
        t["output.weight"] = w(V, E, 4.0)
    if c.arch == "llama":
        t["rope_freqs.weight"] = llama3_rope_freqs(hd, c.rope_base)
    if c.arch == "phi3":
        t["rope_factors_long.weight"] = np.linspace(1.0, 6.0, hd // 2).astype(np.float32)
        t["rope_factors_short.weight"] = np.linspace(1.0, 1.5, hd // 2).astype(np.float32)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = norm(E)
        if c.arch == "gpt2":
            t[p + "attn_norm.bias"] = bias(E)
        if c.arch in ("phi3", "gpt2"):
            t[p + "attn_qkv.weight"] = w(nq + 2 * nkv, E)
            if c.arch == "gpt2":
                t[p + "attn_qkv.bias"] = bias(nq + 2 * nkv)
        else:
            t[p + "attn_q.weight"] = w(nq, E)
            t[p + "attn_k.weight"] = w(nkv, E)
            t[p + "attn_v.weight"] = w(nkv, E)
            if c.arch == "qwen2":
                t[p + "attn_q.bias"] = bias(nq, 0.3)
                t[p + "attn_k.bias"] = bias(nkv, 1.0)       # Qwen2's k biases are large
                t[p + "attn_v.bias"] = bias(nkv, 0.1)
        if c.arch in ("qwen3", "gemma3"):
            t[p + "attn_q_norm.weight"] = norm(hd)
            t[p + "attn_k_norm.weight"] = norm(hd)
        t[p + "attn_output.weight"] = w(E, nq, OUT_SCALE)
        if c.arch == "gpt2":
            t[p + "attn_output.bias"] = bias(E)
        if c.arch == "gemma3":
            t[p + "post_attention_norm.weight"] = POST_NORM_SCALE * norm(E)
        t[p + "ffn_norm.weight"] = norm(E)
        if c.arch == "gpt2":
            t[p + "ffn_norm.bias"] = bias(E)
        if c.arch == "phi3":
            t[p + "ffn_up.weight"] = w(2 * F, E)            # gate and up fused: [gate; up] rows
        else:
            if c.arch != "gpt2":
                t[p + "ffn_gate.weight"] = w(F, E)
            t[p + "ffn_up.weight"] = w(F, E)
            if c.arch == "gpt2":
                t[p + "ffn_up.bias"] = bias(F)
        t[p + "ffn_down.weight"] = w(E, F, OUT_SCALE)
        if c.arch == "gpt2":
            t[p + "ffn_down.bias"] = bias(E)
        if c.arch == "gemma3":
            t[p + "post_ffw_norm.weight"] = POST_NORM_SCALE * norm(E)
    return t


def metadata(c: Config, type_name: str) -> dict:
    from refimpl.gguf.types import GGUFValueType as T
    from refimpl.gguf.values import GGUFValue as V

    a = c.arch
    m = {
        "general.architecture": V(T.STRING, a),
        # no architecture name here: llama-vocab keys per-token attributes off general.name ("phi3" -> <|end|> ...)
        "general.name": V(T.STRING, f"refimpl tiny random model {type_name}"),
        "general.file_type": V(T.UINT32, FILE_TYPE[type_name]),
        f"{a}.context_length": V(T.UINT32, N_POS_GPT2 if a == "gpt2" else N_CTX),
        f"{a}.embedding_length": V(T.UINT32, c.n_embd),
        f"{a}.block_count": V(T.UINT32, c.n_layer),
        f"{a}.feed_forward_length": V(T.UINT32, c.n_ff),
        f"{a}.attention.head_count": V(T.UINT32, c.n_head),
        f"{a}.attention.head_count_kv": V(T.UINT32, c.n_head_kv),
    }
    if a == "gpt2":
        m[f"{a}.attention.layer_norm_epsilon"] = V(T.FLOAT32, c.eps)
    else:
        m[f"{a}.attention.layer_norm_rms_epsilon"] = V(T.FLOAT32, c.eps)
    if c.head_dim is not None:
        m[f"{a}.attention.key_length"] = V(T.UINT32, c.head_dim)
        m[f"{a}.attention.value_length"] = V(T.UINT32, c.head_dim)
    if c.rope_base is not None:
        m[f"{a}.rope.freq_base"] = V(T.FLOAT32, c.rope_base)
        m[f"{a}.rope.dimension_count"] = V(T.UINT32, c.hd)
    for k, (kind, v) in c.extra.items():
        m[f"{a}.{k}"] = {"u32": lambda x: V(T.UINT32, x), "f32": lambda x: V(T.FLOAT32, x),
                         "str": lambda x: V(T.STRING, x)}[kind](v)
    m[f"{a}.vocab_size"] = V(T.UINT32, N_VOCAB)
    m.update(vocab_metadata())
    return m


def quantize_tensors(oracle, tensors: dict[str, np.ndarray], type_name: str) -> dict:
    """2-D weights in the model type via ggml_quantize_chunk (F16 too); 1-D tensors stay F32."""
    from refimpl.gguf.writer import Tensor

    out = {}
    for name, x in tensors.items():
        if x.ndim == 1 or type_name == "F32":
            out[name] = x
            continue
        qt = type_name
        if type_name == "Q4_K" and x.shape[1] % 256:
            qt = "Q5_0"                                   # llama-quantize's tensor_type_fallback for Q4_K
        raw = oracle.quantize_chunk(TYPE_IDS[qt], x, None)
        out[name] = Tensor(qt, x.shape, np.ascontiguousarray(raw).reshape(-1))
    return out


def prompt_tokens(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([[1], rng.integers(3, N_VOCAB, N_PROMPT - 1)]).astype(np.int32)


# ---------------------------------------------------------------------------------------------------- llama.cpp

def _run_llama(path: str, tokens: list[int], conn) -> None:
    try:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, **SETTINGS)
        llm.eval(tokens)
        n_vocab = llm.n_vocab()
        logits = np.array(llm.scores[:len(tokens), :n_vocab], dtype=np.float32)
        greedy = []
        last = logits[-1]
        for _ in range(N_GREEDY):
            tok = int(np.argmax(last))       # first maximum, as llama_sampler_greedy
            greedy.append(tok)
            llm.eval([tok])
            last = np.array(llm.scores[llm.n_tokens - 1, :n_vocab], dtype=np.float32)
        conn.send(("ok", logits, np.asarray(greedy, np.int32)))
    except BaseException as e:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(e), None))
    finally:
        conn.close()


def run_llama(path: str, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_run_llama, args=(path, [int(t) for t in tokens], child))
    p.start()
    child.close()
    try:
        status, a, b = parent.recv()
    except EOFError:
        p.join()
        raise RuntimeError(f"llama.cpp died on {path} (exit code {p.exitcode})")
    p.join()
    if status != "ok":
        raise RuntimeError(f"llama.cpp failed on {path}: {a}")
    return a, b


# ---------------------------------------------------------------------------------------------------- generate

def model_names() -> list[tuple[str, str]]:
    return [(arch, t) for arch in CONFIGS for t in TYPES[arch]]


def build_model(oracle, arch: str, type_name: str, path: Path) -> Config:
    from refimpl.gguf import write

    c = config_for(arch, type_name)
    seed = [7100, list(CONFIGS).index(arch), c.n_ff]   # same weights for every type of one shape
    tensors = quantize_tensors(oracle, make_tensors(c, seed), type_name)
    write(path, metadata(c, type_name), tensors)
    return c


def generate(oracle, w) -> None:
    index = {"settings": {k: v for k, v in SETTINGS.items()}, "n_vocab": N_VOCAB, "n_prompt": N_PROMPT,
             "n_greedy": N_GREEDY, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch, type_name in model_names():
            name = f"{arch}-{type_name}"
            path = Path(tmp) / f"{name}.gguf"
            c = build_model(oracle, arch, type_name, path)
            tokens = prompt_tokens(7200 + list(CONFIGS).index(arch))
            logits, greedy = run_llama(str(path), tokens)
            w.raw(f"{name}.gguf", path.read_bytes(),
                  f"input model: tiny random {arch}, 2-D weights {type_name} (quantized by ggml_quantize_chunk)")
            w.npz(f"{name}.npz", {"tokens": tokens, "logits": logits, "greedy": greedy},
                  f"llama.cpp logits for every prompt position and greedy continuation of {N_GREEDY} tokens, "
                  f"{name}")
            index["models"][name] = {
                "arch": arch, "type": type_name, "gguf": f"model/{name}.gguf", "golden": f"model/{name}.npz",
                "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_head_kv": c.n_head_kv,
                "head_dim": c.hd, "n_ff": c.n_ff, "tied_output": c.tied, "features": c.features,
                "max_abs_logit": float(np.abs(logits).max()),
            }
            print(f"  {name}: {path.stat().st_size:,} bytes, max|logit| {np.abs(logits).max():.3f}, "
                  f"greedy {greedy[:8].tolist()}...", flush=True)
    w.json("models.json", index, "index of the model goldens: shapes, features, llama.cpp settings")
