"""Train refimpl's embedded default model (tiny-kjv) from scratch, and export it to GGUF Q8_0.

    /work/venv/bin/python tools/train_tiny.py            # corpus -> tokenizer -> train -> export (about 25 min)
    /work/venv/bin/python tools/train_tiny.py --export   # only re-export build/tiny-kjv/ to refimpl/data/

What it makes
-------------
A llama-architecture model (RMSNorm, RoPE, SwiGLU, grouped-query attention: the features refimpl's engine runs)
of about 3M parameters, trained on the King James Bible as Debian ships it (package ``bible-kjv-text``, read
through the ``bible`` program of package ``bible-kjv``), with a SentencePiece BPE tokenizer laid out like llama's.

    build/tiny-kjv/corpus/{train,valid}.txt   the text, one verse a line (valid = every 20th chapter)
    build/tiny-kjv/tokenizer.model            SentencePiece model (BPE, byte fallback, unk/bos/eos = 0/1/2)
    build/tiny-kjv/model.safetensors          the trained weights in Hugging Face LlamaForCausalLM layout (F32)
    build/tiny-kjv/config.json                its Hugging Face config
    build/tiny-kjv/train_log.json             hyperparameters, losses, timings
    refimpl/data/tiny-kjv-q8_0.gguf           the GGUF (written by refimpl.gguf, quantized by refimpl.quant)
    refimpl/data/tiny-kjv.md                  the model card (refimpl's validation perplexity is added by
                                              tools/tiny_kjv_perplexity.py once the engine can compute it)
    refimpl/data/tiny-kjv.json                {"prompt": the default prompt, "file": the GGUF's name}

torch is a dependency of this tool only (``pip install torch``, CPU build); refimpl never imports it.

Reproducibility: every random choice comes from ``--seed`` (torch and numpy generators), torch runs with
``torch.use_deterministic_algorithms(True)`` on ``--threads`` CPU threads (2).  The same torch build on the same
CPU with the same thread count gives the same weights; another thread count or BLAS may change the last bits of
the float sums and so the trained weights (not the recipe).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "tiny-kjv"
DATA = ROOT / "refimpl" / "data"
GGUF_NAME = "tiny-kjv-q8_0.gguf"
DEFAULT_PROMPT = "In the beginning"

CORPUS_PACKAGES = ("bible-kjv-text", "bible-kjv")   # the text (/usr/lib/bible.data) and its reader (bible)
BIBLE_DATA = Path("/usr/lib/bible.data")
ALL_VERSES = "Gen1:1-Rev22:21"
VALID_EVERY = 20          # chapter i (0-based, in canonical order) is held out when i % 20 == 19

#: the recipe (recorded in the model card and train_log.json)
HPARAMS = dict(
    vocab_size=2048,
    hidden_size=192,
    num_hidden_layers=5,
    num_attention_heads=6,
    num_key_value_heads=2,
    intermediate_size=512,        # a multiple of 32 so that ffn_down's rows are whole Q8_0 blocks
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
TRAIN = dict(
    seed=1611,                    # the year the King James Version was published
    threads=2,
    batch_size=16,                # sequences per step
    seq_len=256,                  # tokens per sequence: BOS + 255 tokens starting at a verse
    steps=1200,
    lr=3e-3,
    min_lr=3e-4,
    warmup_steps=30,
    weight_decay=0.1,
    betas=(0.9, 0.95),
    grad_clip=1.0,
    eval_every=100,
    eval_batches=4,
)


# ---------------------------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------------------------

def package_version(name: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def locate_corpus(install: bool) -> None:
    """Make sure the ``bible`` program and its data are there; install them with apt-get when asked to."""
    if shutil.which("bible") and BIBLE_DATA.is_file():
        return
    if install and shutil.which("apt-get"):
        print("installing the corpus: apt-get install -y " + " ".join(CORPUS_PACKAGES), flush=True)
        subprocess.run(["apt-get", "update"], check=False)
        subprocess.run(["apt-get", "install", "-y", *CORPUS_PACKAGES], check=True)
        if shutil.which("bible") and BIBLE_DATA.is_file():
            return
    sys.exit("The corpus is the King James Bible from Debian's packages bible-kjv-text (the text) and bible-kjv\n"
             "(the `bible` program that reads it).  Install them with\n\n"
             "    apt-get update && apt-get install -y bible-kjv-text bible-kjv\n\n"
             "or run this tool with --install-corpus (as root).")


def read_verses() -> list[tuple[str, int, str]]:
    """(book, chapter, text) for every verse, in canonical order, as `bible -f` prints them ("Ge1:1 In the ...")."""
    out = subprocess.run(["bible", "-f", ALL_VERSES], capture_output=True, text=True, check=True).stdout
    verses = []
    for line in out.splitlines():
        if not line.strip():
            continue
        ref, _, text = line.partition(" ")
        book_chapter, _, _verse = ref.rpartition(":")
        i = len(book_chapter)
        while i and book_chapter[i - 1].isdigit():
            i -= 1
        verses.append((book_chapter[:i], int(book_chapter[i:]), text.strip()))
    if len(verses) != 31102:
        raise SystemExit(f"expected the 31102 verses of the KJV from `bible`, got {len(verses)}")
    return verses


def split_corpus(verses) -> tuple[list[list[str]], list[list[str]]]:
    """Chapters (lists of verses) for training and validation: every VALID_EVERY-th chapter is held out."""
    chapters: list[list[str]] = []
    last = None
    for book, chapter, text in verses:
        if (book, chapter) != last:
            chapters.append([])
            last = (book, chapter)
        chapters[-1].append(text)
    train = [c for i, c in enumerate(chapters) if i % VALID_EVERY != VALID_EVERY - 1]
    valid = [c for i, c in enumerate(chapters) if i % VALID_EVERY == VALID_EVERY - 1]
    return train, valid


def write_corpus(train, valid) -> None:
    (BUILD / "corpus").mkdir(parents=True, exist_ok=True)
    for name, chapters in (("train", train), ("valid", valid)):
        (BUILD / "corpus" / f"{name}.txt").write_text("".join(v + "\n" for c in chapters for v in c),
                                                      encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------------------------

def train_tokenizer(vocab_size: int) -> None:
    """A SentencePiece BPE model laid out like llama's: unk/bos/eos = 0/1/2, 256 byte-fallback tokens <0x00>..
    <0xFF> right after them, digits split, no normalization (identity), a dummy prefix space, whitespace kept."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(BUILD / "corpus" / "train.txt"), model_prefix=str(BUILD / "tokenizer"), model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, split_digits=True, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", max_sentence_length=16384,
        num_threads=1, minloglevel=2)


def encode_chapters(sp, chapters) -> tuple[np.ndarray, np.ndarray]:
    """All verses' token ids as one stream (verses joined by a space: running text) and each verse's start.

    A verse is encoded on its own; with the dummy prefix its first word gets its "▁", exactly what encoding the
    space-joined text gives (BPE pieces never cross a "▁" word start)."""
    ids, starts = [], []
    n = 0
    for chapter in chapters:
        for verse in chapter:
            t = sp.encode(verse)
            starts.append(n)
            ids.extend(t)
            n += len(t)
    return np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# model (Hugging Face LlamaForCausalLM semantics, written out; torch only here)
# ---------------------------------------------------------------------------------------------------------------

def build_model(hp):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class RMSNorm(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            d, h, kv = hp["hidden_size"], hp["num_attention_heads"], hp["num_key_value_heads"]
            self.h, self.kv, self.hd = h, kv, d // h
            self.q_proj = nn.Linear(d, h * self.hd, bias=False)
            self.k_proj = nn.Linear(d, kv * self.hd, bias=False)
            self.v_proj = nn.Linear(d, kv * self.hd, bias=False)
            self.o_proj = nn.Linear(h * self.hd, d, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            q = self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2)
            k = self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
            v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
            # HF's RoPE pairs dimension i with i + hd/2 (rotate_half); convert_hf_to_gguf permutes Q/K rows so
            # that llama.cpp's adjacent-pair rotation computes the same thing.
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = self.h // self.kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.hd))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            d, f = hp["hidden_size"], hp["intermediate_size"]
            self.gate_proj = nn.Linear(d, f, bias=False)
            self.up_proj = nn.Linear(d, f, bias=False)
            self.down_proj = nn.Linear(f, d, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm(hp["hidden_size"], hp["rms_norm_eps"])
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(hp["hidden_size"], hp["rms_norm_eps"])
            self.mlp = MLP()

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(hp["vocab_size"], hp["hidden_size"])
            self.layers = nn.ModuleList(Layer() for _ in range(hp["num_hidden_layers"]))
            self.norm = RMSNorm(hp["hidden_size"], hp["rms_norm_eps"])

    class LlamaForCausalLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            self.lm_head = nn.Linear(hp["hidden_size"], hp["vocab_size"], bias=False)
            hd = hp["hidden_size"] // hp["num_attention_heads"]
            inv_freq = 1.0 / (hp["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            pos = torch.arange(hp["max_position_embeddings"], dtype=torch.float32)
            freqs = torch.outer(pos, inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.register_buffer("cos", emb.cos(), persistent=False)
            self.register_buffer("sin", emb.sin(), persistent=False)
            self.apply(self._init)
            # GPT-2 style: residual projections scaled down by depth
            for name, p in self.named_parameters():
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * hp["num_hidden_layers"]))

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

        def forward(self, idx):
            t = idx.shape[1]
            cos, sin = self.cos[:t], self.sin[:t]
            x = self.model.embed_tokens(idx)
            for layer in self.model.layers:
                x = layer(x, cos, sin)
            return self.lm_head(self.model.norm(x))

    return LlamaForCausalLM()


def hf_config(hp) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32", "attention_bias": False,
        "mlp_bias": False, "head_dim": hp["hidden_size"] // hp["num_attention_heads"], **hp,
    }


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------

def make_batch(rng, stream, starts, batch_size, seq_len, bos_id):
    """BOS + (seq_len - 1) tokens from a random verse start (the prompt a user gives also follows a BOS)."""
    n = seq_len - 1
    usable = starts[starts + n + 1 <= stream.size]
    picks = usable[rng.integers(0, usable.size, size=batch_size)]
    x = np.empty((batch_size, seq_len), dtype=np.int64)
    y = np.empty((batch_size, seq_len), dtype=np.int64)
    for i, s in enumerate(picks):
        x[i, 0] = bos_id
        x[i, 1:] = stream[s:s + n]
        y[i] = stream[s:s + n + 1]
    return x, y


def valid_windows(stream, seq_len, bos_id):
    """The whole validation stream cut into consecutive windows of BOS + (seq_len - 1) tokens."""
    n = seq_len - 1
    k = (stream.size - 1) // n
    x = np.empty((k, seq_len), dtype=np.int64)
    y = np.empty((k, seq_len), dtype=np.int64)
    for i in range(k):
        s = i * n
        x[i, 0] = bos_id
        x[i, 1:] = stream[s:s + n]
        y[i] = stream[s:s + n + 1]
    return x, y


def train(args) -> None:
    import sentencepiece as spm
    import torch
    import torch.nn.functional as F

    tr = dict(TRAIN)
    if args.steps is not None:
        tr["steps"] = args.steps
    torch.set_num_threads(tr["threads"])
    torch.manual_seed(tr["seed"])
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(tr["seed"])

    sp = spm.SentencePieceProcessor(model_file=str(BUILD / "tokenizer.model"))
    bos = sp.bos_id()
    corpus = {}
    for name in ("train", "valid"):
        lines = (BUILD / "corpus" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        corpus[name] = encode_chapters(sp, [lines])
    train_stream, train_starts = corpus["train"]
    valid_stream, _ = corpus["valid"]
    vx, vy = valid_windows(valid_stream, tr["seq_len"], bos)
    print(f"tokens: train {train_stream.size}, valid {valid_stream.size} ({vx.shape[0]} windows)", flush=True)

    model = build_model(HPARAMS)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=tr["lr"], betas=tr["betas"], eps=1e-8)

    def lr_at(step):
        if step < tr["warmup_steps"]:
            return tr["lr"] * (step + 1) / tr["warmup_steps"]
        p = (step - tr["warmup_steps"]) / max(1, tr["steps"] - tr["warmup_steps"])
        return tr["min_lr"] + 0.5 * (tr["lr"] - tr["min_lr"]) * (1 + math.cos(math.pi * p))

    def evaluate(x, y, max_windows=None):
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, x.shape[0] if max_windows is None else min(max_windows, x.shape[0]), 32):
                xb = torch.from_numpy(x[s:s + 32])
                yb = torch.from_numpy(y[s:s + 32])
                logits = model(xb)
                total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                         reduction="sum").item()
                count += yb.numel()
        model.train()
        return total / count

    log = {"hparams": HPARAMS, "train": tr, "n_params": n_params, "tokens_train": int(train_stream.size),
           "tokens_valid": int(valid_stream.size), "history": []}
    t0 = time.time()
    ema = None
    for step in range(tr["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = make_batch(rng, train_stream, train_starts, tr["batch_size"], tr["seq_len"], bos)
        logits = model(torch.from_numpy(x))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0 or step == tr["steps"] - 1:
            el = time.time() - t0
            print(f"step {step:5d}  loss {loss.item():.4f}  (ema {ema:.4f})  lr {lr_at(step):.2e}  "
                  f"{el:7.1f} s  {(step + 1) * tr['batch_size'] * tr['seq_len'] / el:7.0f} tok/s", flush=True)
        if (step + 1) % tr["eval_every"] == 0 and step + 1 < tr["steps"]:
            vl = evaluate(vx, vy, max_windows=tr["eval_batches"] * 32)
            log["history"].append({"step": step + 1, "train_loss_ema": ema, "valid_loss_partial": vl,
                                   "seconds": time.time() - t0})
            print(f"  eval step {step + 1}: valid loss (first {tr['eval_batches'] * 32} windows) {vl:.4f}",
                  flush=True)
    train_seconds = time.time() - t0
    # final losses over fixed, complete sets: the whole validation stream, and as many training windows
    train_x, train_y = valid_windows(train_stream, tr["seq_len"], bos)
    final_train = evaluate(train_x, train_y, max_windows=vx.shape[0])
    final_valid = evaluate(vx, vy)
    log.update(train_seconds=train_seconds, final_train_loss=final_train, final_valid_loss=final_valid,
               final_train_loss_windows=int(min(vx.shape[0], train_x.shape[0])),
               final_valid_loss_windows=int(vx.shape[0]), torch_version=torch.__version__)
    print(f"done in {train_seconds:.0f} s: train loss {final_train:.4f}, valid loss {final_valid:.4f} "
          f"(ppl {math.exp(final_valid):.2f})", flush=True)

    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(BUILD / "model.safetensors"), metadata={"format": "pt"})
    (BUILD / "config.json").write_text(json.dumps(hf_config(HPARAMS), indent=2) + "\n")
    (BUILD / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    sample = sample_text(model, sp, DEFAULT_PROMPT, 60)
    print("greedy sample (torch, F32):", sample, flush=True)
    log["torch_greedy_sample"] = sample
    (BUILD / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")


def sample_text(model, sp, prompt, n):
    import torch

    ids = [sp.bos_id()] + sp.encode(prompt)
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-HPARAMS["max_position_embeddings"]:]]))
            ids.append(int(logits[0, -1].argmax()))
    return sp.decode(ids[1:])


# ---------------------------------------------------------------------------------------------------------------
# export: HF safetensors -> GGUF (convert_hf_to_gguf.py's layout for LlamaForCausalLM + a sentencepiece vocab)
# ---------------------------------------------------------------------------------------------------------------

def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """LlamaModel.permute (convert_hf_to_gguf): rows of each head go from HF's halves layout [x0..x_{d/2-1},
    y0..] to llama.cpp's interleaved pairs [x0, y0, x1, y1, ...] that its NORM RoPE rotates."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def export(args) -> None:
    import sentencepiece as spm
    from safetensors.numpy import load_file

    # import refimpl from this checkout
    sys.path.insert(0, str(ROOT))
    from refimpl import gguf, quant
    from refimpl.gguf import GGUFValue, GGUFValueType as VT

    cfg = json.loads((BUILD / "config.json").read_text())
    log = json.loads((BUILD / "train_log.json").read_text())
    w = load_file(str(BUILD / "model.safetensors"))
    sp = spm.SentencePieceProcessor(model_file=str(BUILD / "tokenizer.model"))

    # --- vocabulary: _create_vocab_sentencepiece (base.py) ---
    # SentencePieceTokenTypes: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)
    if len(tokens) != cfg["vocab_size"]:
        raise SystemExit(f"tokenizer has {len(tokens)} pieces, config says {cfg['vocab_size']}")

    def u32(v):
        return GGUFValue(VT.UINT32, int(v))

    def f32(v):
        return GGUFValue(VT.FLOAT32, float(v))

    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    # key order as convert_hf_to_gguf writes them (GGUFWriter: general.*, then hparams, then the tokenizer)
    meta = {
        "general.architecture": GGUFValue(VT.STRING, "llama"),
        "general.type": GGUFValue(VT.STRING, "model"),
        "general.name": GGUFValue(VT.STRING, "tiny-kjv"),
        "general.description": GGUFValue(VT.STRING, "refimpl's embedded default model: a %d-parameter llama "
                                         "trained by tools/train_tiny.py on the King James Bible "
                                         "(Debian bible-kjv-text)" % log["n_params"]),
        "general.license": GGUFValue(VT.STRING, "mit"),
        "general.size_label": GGUFValue(VT.STRING, "%.1fM" % (log["n_params"] / 1e6)),
        "llama.block_count": u32(cfg["num_hidden_layers"]),
        "llama.context_length": u32(cfg["max_position_embeddings"]),
        "llama.embedding_length": u32(cfg["hidden_size"]),
        "llama.feed_forward_length": u32(cfg["intermediate_size"]),
        "llama.attention.head_count": u32(n_head),
        "llama.attention.head_count_kv": u32(n_kv),
        "llama.rope.freq_base": f32(cfg["rope_theta"]),
        "llama.attention.layer_norm_rms_epsilon": f32(cfg["rms_norm_eps"]),
        "llama.attention.key_length": u32(cfg["head_dim"]),
        "llama.attention.value_length": u32(cfg["head_dim"]),
        "general.file_type": u32(7),                       # LLAMA_FTYPE_MOSTLY_Q8_0
        "llama.vocab_size": u32(cfg["vocab_size"]),
        "llama.rope.dimension_count": u32(cfg["head_dim"]),
        "general.quantization_version": u32(2),            # GGML_QNT_VERSION
        "tokenizer.ggml.model": GGUFValue(VT.STRING, "llama"),
        "tokenizer.ggml.pre": GGUFValue(VT.STRING, "default"),
        "tokenizer.ggml.tokens": GGUFValue(VT.ARRAY, tokens, VT.STRING),
        "tokenizer.ggml.scores": GGUFValue(VT.ARRAY, np.asarray(scores, dtype=np.float32), VT.FLOAT32),
        "tokenizer.ggml.token_type": GGUFValue(VT.ARRAY, np.asarray(types, dtype=np.int32), VT.INT32),
        "tokenizer.ggml.bos_token_id": u32(sp.bos_id()),
        "tokenizer.ggml.eos_token_id": u32(sp.eos_id()),
        "tokenizer.ggml.unknown_token_id": u32(sp.unk_id()),
        "tokenizer.ggml.add_bos_token": GGUFValue(VT.BOOL, True),
        "tokenizer.ggml.add_eos_token": GGUFValue(VT.BOOL, False),
    }

    # --- tensors: HF name -> GGUF name (gguf-py tensor_mapping), Q/K permuted, norms F32, the rest Q8_0 ---
    tensors = {}

    def put(name, arr, kind):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if kind == "F32":
            tensors[name] = arr
        else:
            raw = quant.quantize(arr, "Q8_0")
            tensors[name] = gguf.Tensor("Q8_0", arr.shape, raw)

    put("token_embd.weight", w["model.embed_tokens.weight"], "Q8_0")
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", w[p + "input_layernorm.weight"], "F32")
        put(f"blk.{i}.attn_q.weight", permute_qk(w[p + "self_attn.q_proj.weight"], n_head), "Q8_0")
        put(f"blk.{i}.attn_k.weight", permute_qk(w[p + "self_attn.k_proj.weight"], n_kv), "Q8_0")
        put(f"blk.{i}.attn_v.weight", w[p + "self_attn.v_proj.weight"], "Q8_0")
        put(f"blk.{i}.attn_output.weight", w[p + "self_attn.o_proj.weight"], "Q8_0")
        put(f"blk.{i}.ffn_norm.weight", w[p + "post_attention_layernorm.weight"], "F32")
        put(f"blk.{i}.ffn_gate.weight", w[p + "mlp.gate_proj.weight"], "Q8_0")
        put(f"blk.{i}.ffn_up.weight", w[p + "mlp.up_proj.weight"], "Q8_0")
        put(f"blk.{i}.ffn_down.weight", w[p + "mlp.down_proj.weight"], "Q8_0")
    put("output_norm.weight", w["model.norm.weight"], "F32")
    if not cfg["tie_word_embeddings"]:
        put("output.weight", w["lm_head.weight"], "Q8_0")

    DATA.mkdir(parents=True, exist_ok=True)
    out = DATA / GGUF_NAME
    gguf.write(out, meta, tensors)
    size = out.stat().st_size
    print(f"wrote {out.relative_to(ROOT)} ({size} bytes, {len(tensors)} tensors)")
    if size >= 10 * 2**20:
        raise SystemExit(f"{out} is {size} bytes; the embedded model must stay under 10 MB")
    tmp = DATA / ".tiny-kjv.json.tmp"
    tmp.write_text(json.dumps({"prompt": DEFAULT_PROMPT, "file": GGUF_NAME, "n_predict": 64}, indent=2) + "\n")
    os.replace(tmp, DATA / "tiny-kjv.json")
    write_card(cfg, log, size)


def write_card(cfg, log, size) -> None:
    tr = log["train"]
    card_path = DATA / "tiny-kjv.md"
    marker = "<!-- refimpl-perplexity -->"
    ppl_line = (f"{marker} **Validation perplexity by refimpl (Q8_0 GGUF): NOT YET MEASURED** — run "
                f"`tools/train_tiny.py --perplexity` (refimpl's engine) to fill this line in.")
    if card_path.is_file():
        for line in card_path.read_text(encoding="utf-8").splitlines():
            if line.startswith(marker):
                ppl_line = line
    hist = "\n".join(f"| {h['step']} | {h['train_loss_ema']:.3f} | {h['valid_loss_partial']:.3f} |"
                     for h in log["history"])
    card = f"""# tiny-kjv — refimpl's embedded default model

`refimpl/data/{GGUF_NAME}` ({size:,} bytes) is what `python -m refimpl.generate` runs when it is given no model.
It is a toy: a {log['n_params']:,}-parameter llama trained for {log['train_seconds'] / 60:.0f} minutes on two CPU cores. It writes
King-James-style English, not sense. It exists so that refimpl runs out of the box, with no download, and so that
its output can be checked against llama.cpp's on a real (if small) model.

Recipe: `tools/train_tiny.py` (corpus → tokenizer → training → export; needs `torch`, a tool dependency only).
To remake everything here:

    python tools/train_tiny.py --install-corpus     # corpus, tokenizer, training, GGUF, this card
    python tools/make_golden.py default_model       # llama.cpp's answers on the new file
    python tools/train_tiny.py --perplexity         # refimpl's validation perplexity -> this card
    python tools/train_tiny.py --card               # this card again, with llama.cpp's continuation

## Corpus
- The King James Version of the Bible (1611; public domain), as Debian ships it: package `bible-kjv-text`
  {package_version('bible-kjv-text') or '?'} (the text, `/usr/lib/bible.data`), read with the `bible` program of package
  `bible-kjv` {package_version('bible-kjv') or '?'}: `bible -f {ALL_VERSES}`, verse references stripped.
- 31,102 verses in 1,189 chapters. Validation: every {VALID_EVERY}th chapter (0-based index % {VALID_EVERY} ==
  {VALID_EVERY - 1}, canonical order) is held out; the rest is training text.
- Tokens: {log['tokens_train']:,} training, {log['tokens_valid']:,} validation. Verses are joined by a space (running
  text, no newlines).

## Tokenizer
SentencePiece {_spm_version()} BPE trained on the training text: vocab {cfg['vocab_size']}, `byte_fallback=True`
(256 `<0xNN>` tokens), `split_digits=True`, `normalization_rule_name=identity`, `add_dummy_prefix=True`,
`remove_extra_whitespaces=False`, unk/bos/eos = 0/1/2 (`<unk>`, `<s>`, `</s>`) like llama. In the GGUF as
convert_hf_to_gguf.py writes a SentencePiece vocab: `tokenizer.ggml.model = "llama"`, `pre = "default"`,
tokens/scores/token_type from the model, BOS added, EOS not.

## Architecture (llama)
| hyperparameter | value |
| --- | --- |
| parameters | {log['n_params']:,} |
| vocab | {cfg['vocab_size']} |
| n_embd | {cfg['hidden_size']} |
| layers | {cfg['num_hidden_layers']} |
| heads / KV heads (GQA) | {cfg['num_attention_heads']} / {cfg['num_key_value_heads']} (head dim {cfg['head_dim']}) |
| feed-forward (SwiGLU) | {cfg['intermediate_size']} |
| context | {cfg['max_position_embeddings']} |
| RoPE | theta {cfg['rope_theta']:g}, NORM (adjacent pairs after convert_hf_to_gguf's Q/K permutation) |
| RMSNorm eps | {cfg['rms_norm_eps']:g} |
| output | untied (`output.weight`) |

## Training
| setting | value |
| --- | --- |
| seed | {tr['seed']} (torch and numpy), `torch.use_deterministic_algorithms(True)` |
| torch | {log['torch_version']} (CPU), {tr['threads']} threads |
| batch | {tr['batch_size']} sequences × {tr['seq_len']} tokens (BOS + 255 tokens from a random verse start) |
| steps | {tr['steps']} ({tr['steps'] * tr['batch_size'] * (tr['seq_len'] - 1):,} training tokens, \
{tr['steps'] * tr['batch_size'] * (tr['seq_len'] - 1) / log['tokens_train']:.1f} epochs) |
| optimizer | AdamW, betas {tuple(tr['betas'])}, weight decay {tr['weight_decay']} (matrices only), grad clip {tr['grad_clip']} |
| learning rate | {tr['lr']:g}, {tr['warmup_steps']} warm-up steps, cosine decay to {tr['min_lr']:g} |
| init | normal(0, 0.02); o_proj/down_proj 0.02/sqrt(2·layers) |
| wall time | {log['train_seconds']:.0f} s on 2 cores of a shared AMD EPYC machine |

| step | train loss (EMA) | validation loss (first {tr['eval_batches'] * 32} windows) |
| --- | --- | --- |
{hist}

Final (torch, F32 weights): **train loss {log['final_train_loss']:.4f}** (first {log['final_train_loss_windows']}
windows of the training stream), **validation loss {log['final_valid_loss']:.4f}** (perplexity
{math.exp(log['final_valid_loss']):.2f}; the whole validation stream in {log['final_valid_loss_windows']}
windows of BOS + 255 tokens). Loss is nats per token.

Greedy continuation by torch (F32) of "{DEFAULT_PROMPT}": {log.get('torch_greedy_sample', '')!r}

## Export
HF-layout `model.safetensors` + `config.json` (build/tiny-kjv/, not committed), then GGUF v3 through
`refimpl.gguf.write` with convert_hf_to_gguf.py's llama layout (tensor names, Q/K rows permuted by
`LlamaModel.permute`), every 2-D weight (token_embd and output included) quantized to Q8_0 by
`refimpl.quant.quantize` (bit-exact with ggml_quantize_chunk), norms F32, `general.file_type = 7` (MOSTLY_Q8_0).

## Perplexity of the shipped GGUF
{ppl_line}

## Check against llama.cpp
`golden/default_model/` (family `default_model` of tools/make_golden.py): llama.cpp's greedy continuation of the
default prompt (64 tokens), its logits for the prompt and for every greedy step, and its tokenization of a few
texts; `tests/test_default_model.py` checks refimpl against them.

{llama_cpp_sample()}
"""
    tmp = card_path.with_suffix(".md.tmp")
    tmp.write_text(card, encoding="utf-8")
    os.replace(tmp, card_path)
    print(f"wrote {card_path.relative_to(ROOT)}")


def refimpl_perplexity() -> None:
    """Validation perplexity of the shipped GGUF computed by refimpl's engine, written into the model card.

    The same windows as the torch validation loss: the validation verses tokenized (refimpl's tokenizer, no BOS)
    and joined, cut into consecutive windows of BOS + 255 tokens, every position scored (next-token
    log-softmax in float64 of refimpl's float32 logits), one eval per window from an empty cache."""
    sys.path.insert(0, str(ROOT))
    from refimpl import model
    from refimpl.tokenizer import Tokenizer

    path = DATA / GGUF_NAME
    tok = Tokenizer.from_gguf(str(path))
    m = model.load(str(path), n_ctx=256)
    lines = (BUILD / "corpus" / "valid.txt").read_text(encoding="utf-8").splitlines()
    stream = np.asarray([t for v in lines for t in tok.encode(v, add_special=False)], dtype=np.int64)
    x, y = valid_windows(stream, TRAIN["seq_len"], tok.bos_id)
    t0 = time.time()
    nll, count = 0.0, 0
    for i in range(x.shape[0]):
        logits = m.eval(x[i], n_past=0).astype(np.float64)
        mx = logits.max(axis=1, keepdims=True)
        logz = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
        nll += float((logz - logits[np.arange(y.shape[1]), y[i]]).sum())
        count += y.shape[1]
    loss = nll / count
    secs = time.time() - t0
    print(f"refimpl: validation loss {loss:.4f}, perplexity {math.exp(loss):.2f} over {count} tokens "
          f"({x.shape[0]} windows, {secs:.0f} s)")
    line = (f"<!-- refimpl-perplexity --> **Validation perplexity by refimpl (Q8_0 GGUF): {math.exp(loss):.2f}** "
            f"(loss {loss:.4f} nats/token over {count:,} tokens: the {x.shape[0]} validation windows of BOS + "
            f"{TRAIN['seq_len'] - 1} tokens, every position scored, one `refimpl.model` eval per window; "
            f"`tools/train_tiny.py --perplexity`, {secs:.0f} s).")
    card = DATA / "tiny-kjv.md"
    text = card.read_text(encoding="utf-8").splitlines()
    text = [line if t.startswith("<!-- refimpl-perplexity -->") else t for t in text]
    tmp = card.with_suffix(".md.tmp")
    tmp.write_text("\n".join(text) + "\n", encoding="utf-8")
    os.replace(tmp, card)


def llama_cpp_sample() -> str:
    """llama.cpp's greedy continuation from the golden, if the golden was made from the file shipped now."""
    import hashlib

    g = ROOT / "golden" / "default_model" / "tiny-kjv.json"
    if not g.is_file():
        return "(llama.cpp's continuation: run tools/make_golden.py default_model, then --card)"
    info = json.loads(g.read_text(encoding="utf-8"))
    if info["model_sha256"] != hashlib.sha256((DATA / GGUF_NAME).read_bytes()).hexdigest():
        return "(the golden is from another file: run tools/make_golden.py default_model, then --card)"
    return (f"llama.cpp's greedy continuation of \"{info['prompt']}\" ({info['n_greedy']} tokens, Q8_0 GGUF; "
            f"refimpl's is the same):\n\n> {info['prompt']}{info['continuation']}")


def _spm_version() -> str:
    import sentencepiece

    return sentencepiece.__version__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--install-corpus", action="store_true", help="apt-get install the corpus if it is missing")
    ap.add_argument("--export", action="store_true", help="only export build/tiny-kjv/ to refimpl/data/")
    ap.add_argument("--card", action="store_true", help="only rewrite the model card")
    ap.add_argument("--perplexity", action="store_true",
                    help="compute the shipped GGUF's validation perplexity with refimpl, write it into the card")
    ap.add_argument("--steps", type=int, default=None, help=f"training steps (default {TRAIN['steps']})")
    args = ap.parse_args(argv)
    if args.perplexity:
        refimpl_perplexity()
        return 0
    if args.card:
        cfg = json.loads((BUILD / "config.json").read_text())
        log = json.loads((BUILD / "train_log.json").read_text())
        write_card(cfg, log, (DATA / GGUF_NAME).stat().st_size)
        return 0
    if not args.export:
        locate_corpus(args.install_corpus)
        verses = read_verses()
        train_set, valid_set = split_corpus(verses)
        write_corpus(train_set, valid_set)
        print(f"corpus: {len(verses)} verses, {len(train_set)} training / {len(valid_set)} validation chapters",
              flush=True)
        train_tokenizer(HPARAMS["vocab_size"])
        train(args)
    export(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
