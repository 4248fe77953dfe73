"""Build the tiny random-weight Hugging Face checkpoints that refimpl.convert is tested on, and transformers' own
float32 logits on them.  A TOOL: it needs torch + transformers + tokenizers + sentencepiece (never a runtime or CI
dependency); run it in the oracle's environment (see spec/convert.md):

    /work/build/convert-venv/bin/python tools/make_hf_checkpoints.py [--out tests/data/convert]

Writes
  ``checkpoints.tar.xz`` — one folder per checkpoint (config.json, generation_config.json, safetensors, tokenizer
      files), exactly as ``save_pretrained`` wrote them.  xz keeps the archive small: the three BPE checkpoints
      share one 50257-token tokenizer.json, and rows >= 1024 of their 50257-row embeddings are zero (rows a random
      model never needs to be random for a conversion test).
  ``transformers_logits.npz`` — ``<name>.tokens`` (int64) and ``<name>.logits`` (float32 (n_tokens, 1024): the
      first 1024 vocabulary columns) of transformers' float32 eager forward pass on each checkpoint, loaded with
      ``from_pretrained(torch_dtype=float32)`` (``--logits-only`` recomputes just this file from the archive).

The checkpoints cover the six architectures refimpl runs, SPM (tokenizer.model) and BPE (tokenizer.json, the GPT-2
vocabulary rebuilt from llama.cpp's models/ggml-vocab-gpt-2.gguf so that convert_hf_to_gguf.py recognises its
pre-tokenizer hash), single-file and sharded safetensors, F32/F16/BF16 storage, tied and untied embeddings, llama3
rope scaling, added special and non-special tokens, chat templates and generation configs.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ROOT / "vendor"
SEED = 1901
N_LOGIT_COLS = 1024          # logits kept per position (the random part of the BPE embeddings)
TOKENS = [1, 17, 42, 99, 250, 7, 300, 3]
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

# name -> (architecture, config kwargs, storage dtype, tokenizer kind, shard size or None, extra generation kwargs)
CHECKPOINTS = {
    "tiny-llama2-spm": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, max_position_embeddings=256, rms_norm_eps=1e-5,
                                      tie_word_embeddings=False), "float32", "spm", None, {}),
    "tiny-llama3-bpe": ("llama", dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                                      rope_theta=500000.0, tie_word_embeddings=True,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
                        "bfloat16", "bpe", "400KB", {"temperature": 0.6, "top_p": 0.9, "do_sample": True}),
    "tiny-mistral-spm": ("mistral", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                                         rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False),
                         "float16", "spm", "60KB", {}),
    "tiny-qwen2-bpe": ("qwen2", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True),
                       "bfloat16", "bpe", None, {}),
    "tiny-qwen3-spm": ("qwen3", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                                     tie_word_embeddings=False), "float32", "spm", None, {"top_k": 20, "do_sample": True}),
    "tiny-gemma3-spm": ("gemma3_text", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                            max_position_embeddings=256, sliding_window=16,
                                            query_pre_attn_scalar=16), "float32", "spm", None, {}),
    "tiny-phi3-spm": ("phi3", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=4, max_position_embeddings=256,
                                   original_max_position_embeddings=256, tie_word_embeddings=False),
                      "float32", "spm", None, {}),
    # rows of 256 so that TQ1_0 / TQ2_0 (256-element blocks) really quantize (the others fall back to F16)
    "tiny-llama-tq-spm": ("llama", dict(hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                                        rms_norm_eps=1e-5, tie_word_embeddings=False), "bfloat16", "spm", None, {}),
    "tiny-gpt2-bpe": ("gpt2", dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, n_ctx=128),
                      "float32", "bpe", None, {}),
}

ARCH_CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                "qwen3": "Qwen3ForCausalLM", "gemma3_text": "Gemma3ForCausalLM", "phi3": "Phi3ForCausalLM",
                "gpt2": "GPT2LMHeadModel"}


def train_spm(workdir: Path) -> Path:
    """A 512-piece BPE SentencePiece model (byte fallback) trained on llama.cpp's Markdown docs."""
    import sentencepiece as spm
    text = []
    for p in sorted((LLAMA / "docs").rglob("*.md")):
        text.append(p.read_text(encoding="utf-8", errors="replace"))
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(text)[:400_000], encoding="utf-8")
    prefix = workdir / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=512, model_type="bpe", byte_fallback=True,
        character_coverage=0.98, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, split_digits=True, minloglevel=2)
    return prefix.with_suffix(".model")


def gpt2_tokenizer_object():
    """GPT-2's byte-level BPE rebuilt from llama.cpp's ggml-vocab-gpt-2.gguf (tokens and merges)."""
    sys.path.insert(0, str(LLAMA / "gguf-py"))
    from gguf import GGUFReader
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    r = GGUFReader(str(LLAMA / "models" / "ggml-vocab-gpt-2.gguf"))

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in strings("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    return tok


def save_tokenizer(kind: str, out: Path, spm_model: Path, arch: str):
    from transformers import GPT2TokenizerFast, LlamaTokenizer
    if kind == "spm":
        tok = LlamaTokenizer(vocab_file=str(spm_model), legacy=True, add_bos_token=True, add_eos_token=False)
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    else:
        tok = GPT2TokenizerFast(tokenizer_object=gpt2_tokenizer_object(), bos_token="<|endoftext|>",
                                eos_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=1024)
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.add_tokens(["[CUSTOM]"])                      # a non-special added token (USER_DEFINED in GGUF)
    if arch != "gpt2":
        tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out))
    return len(tok)


def build(name: str, spec, spm_model: Path, out_root: Path):
    import torch
    import transformers
    arch, kwargs, dtype, tok_kind, shard, gen_extra = spec
    out = out_root / name
    out.mkdir(parents=True)
    n_tok = save_tokenizer(tok_kind, out, spm_model, arch)
    vocab_size = n_tok if tok_kind == "spm" else n_tok + 5     # BPE: 5 [PAD] ids past the tokenizer
    cfg_cls = transformers.AutoConfig.for_model(arch).__class__
    extra = dict(bos_token_id=1, eos_token_id=2) if tok_kind == "spm" else dict(bos_token_id=50256,
                                                                                eos_token_id=50256)
    if arch == "phi3":
        extra["pad_token_id"] = 0
    cfg = cfg_cls(vocab_size=vocab_size, **extra, **kwargs)
    cfg.architectures = [ARCH_CLASSES[arch]]
    torch.manual_seed(SEED + sum(map(ord, name)))
    model = getattr(transformers, ARCH_CLASSES[arch])(cfg)
    with torch.no_grad():
        for p in model.parameters():                       # default init leaves norms at 1 and biases at 0
            p.copy_(torch.randn_like(p) * 0.5)
        emb = model.get_input_embeddings().weight
        if emb.shape[0] > N_LOGIT_COLS:
            emb[N_LOGIT_COLS:] = 0
    model = model.to(getattr(torch, dtype))
    model.generation_config = transformers.GenerationConfig(bos_token_id=extra["bos_token_id"],
                                                            eos_token_id=extra["eos_token_id"], **gen_extra)
    model.save_pretrained(str(out), safe_serialization=True, **({"max_shard_size": shard} if shard else {}))


def transformers_logits(model_dir: Path) -> np.ndarray:
    """transformers' float32 forward pass on the checkpoint as a user loads it (``from_pretrained`` with
    ``torch_dtype=float32``, eager attention): logits (n_tokens, N_LOGIT_COLS) for ``TOKENS``."""
    import torch
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    with torch.no_grad():
        return model(torch.tensor([TOKENS])).logits[0, :, :N_LOGIT_COLS].numpy().astype(np.float32)


def write_logits(ck: Path, out: Path) -> None:
    logits = {}
    for name in CHECKPOINTS:
        logits[f"{name}.logits"] = transformers_logits(ck / name)
        logits[f"{name}.tokens"] = np.array(TOKENS, dtype=np.int64)
    sys.path.insert(0, str(ROOT / "tools"))
    from goldens._io import npz_bytes
    (out / "transformers_logits.npz").write_bytes(npz_bytes(logits))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "convert")
    ap.add_argument("--add", nargs="+", metavar="NAME",
                    help="build only these checkpoints and add them to the existing archive (the others stay "
                         "byte for byte), then recompute the logits")
    ap.add_argument("--logits-only", action="store_true",
                    help="recompute transformers_logits.npz from the committed checkpoints.tar.xz only")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ck = tmp / "checkpoints"
        if args.logits_only:
            with tarfile.open(args.out / "checkpoints.tar.xz", "r:xz") as tar:
                tar.extractall(ck, filter="data")
            write_logits(ck, args.out)
            return 0
        spm_model = train_spm(tmp)
        todo = CHECKPOINTS
        if args.add:
            with tarfile.open(args.out / "checkpoints.tar.xz", "r:xz") as tar:
                tar.extractall(ck, filter="data")
            todo = {n: CHECKPOINTS[n] for n in args.add}
            for n in todo:
                shutil.rmtree(ck / n, ignore_errors=True)
        for name, spec in todo.items():
            build(name, spec, spm_model, ck)
            print(name, "ok", file=sys.stderr)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz", preset=9) as tar:
            for path in sorted(ck.rglob("*")):
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(ck)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o755 if path.is_dir() else 0o644
                if path.is_file():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        (args.out / "checkpoints.tar.xz").write_bytes(buf.getvalue())
        write_logits(ck, args.out)
    print(f"wrote {args.out}/checkpoints.tar.xz ({(args.out / 'checkpoints.tar.xz').stat().st_size} bytes)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
