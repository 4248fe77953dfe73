"""llama.cpp on refimpl's embedded default model (refimpl/data/tiny-kjv-q8_0.gguf, made by tools/train_tiny.py).

  default_model/tiny-kjv.npz   tokens         int32 (n_prompt,)          llama.cpp's tokenization of the default
                                                                         prompt (BOS added, as llama_tokenize does)
                               logits         float32 (n_prompt, n_vocab) its logits for every prompt position, from
                                                                         ONE llama_decode of the whole prompt
                               greedy         int32 (64,)                its greedy continuation: argmax (first
                                                                         maximum) of the last logits, then one
                                                                         llama_decode per token, EOS not special
                               greedy_logits  float32 (64, n_vocab)      the logits each greedy token was chosen from
  default_model/tiny-kjv.json  the prompt, the model file and its sha256, llama.cpp's detokenized continuation
                               (hex of the bytes and as text), the llama_cpp.Llama settings, and llama.cpp's
                               tokenization (BOS added, specials not parsed) of the texts in TEXTS

The prompt and the file name come from refimpl/data/tiny-kjv.json, the one place the generate CLI reads them from.
llama.cpp's settings are the ones of the `model` family (tools/goldens/model.py SETTINGS): flash attention off,
F16 KV cache, one thread, n_ctx 256, the prompt in one ubatch.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np

DESCRIPTION = ("llama.cpp's tokenization, prompt logits and 64-token greedy continuation (with the logits of each "
               "step) of the default prompt on refimpl's embedded model refimpl/data/tiny-kjv-q8_0.gguf")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "refimpl" / "data"
N_GREEDY = 64
#: texts whose llama.cpp tokenization is recorded too (inputs: verses, the corpus's punctuation, and what the
#: corpus never has, so byte fallback and split digits are exercised)
TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And God said, Let there be light: and there was light.",
    "Jesus wept.",
    "The LORD is my shepherd; I shall not want.",
    "For God so loved the world, that he gave his only begotten Son, that whosoever believeth in him should not "
    "perish, but have everlasting life.",
    "Blessed are the meek: for they shall inherit the earth.",
    "(Selah.) Hallelujah! What? Amen -- Alpha and Omega's end",
    "In 1611, 31102 verses; 66 books.",
    "  leading spaces, and\ttabs\nand newlines\n",
    "naïve café — ÆSIR “quoted” 日本語 🦙",
    "",
    " ",
]


def settings() -> dict:
    from goldens.model import SETTINGS

    return dict(SETTINGS)


def default_model() -> tuple[str, Path]:
    info = json.loads((DATA / "tiny-kjv.json").read_text(encoding="utf-8"))
    return info["prompt"], DATA / info["file"]


def _run_llama(path: str, prompt: str, conn) -> None:
    try:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, **settings())
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.eval(tokens)
        n_vocab = llm.n_vocab()
        logits = np.array(llm.scores[:len(tokens), :n_vocab], dtype=np.float32)
        greedy, greedy_logits = [], []
        last = logits[-1]
        for _ in range(N_GREEDY):
            tok = int(np.argmax(last))          # first maximum, as llama_sampler_greedy
            greedy.append(tok)
            greedy_logits.append(last)
            llm.eval([tok])
            last = np.array(llm.scores[llm.n_tokens - 1, :n_vocab], dtype=np.float32)
        text = llm.detokenize(greedy)           # llama_detokenize, specials removed, as a CLI prints them
        texts = [{"text": t, "tokens": llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)}
                 for t in TEXTS]
        conn.send(("ok", (np.asarray(tokens, np.int32), logits, np.asarray(greedy, np.int32),
                          np.stack(greedy_logits).astype(np.float32), bytes(text), texts)))
    except BaseException as e:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def run_llama(path: Path, prompt: str):
    """In a forked child, so that an abort in llama.cpp cannot take the generator down."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_run_llama, args=(str(path), prompt, child))
    p.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        p.join()
        raise RuntimeError(f"llama.cpp died on {path} (exit code {p.exitcode})")
    p.join()
    if status != "ok":
        raise RuntimeError(f"llama.cpp failed on {path}: {payload}")
    return payload


def generate(oracle, w) -> None:
    prompt, path = default_model()
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run tools/train_tiny.py (or --export) first")
    tokens, logits, greedy, greedy_logits, text, texts = run_llama(path, prompt)
    w.npz("tiny-kjv.npz", {"tokens": tokens, "logits": logits, "greedy": greedy, "greedy_logits": greedy_logits},
          f"llama.cpp on {path.name}: prompt tokens and logits, greedy continuation ({N_GREEDY} tokens) and the "
          f"logits each greedy token came from")
    w.json("tiny-kjv.json", {
        "prompt": prompt,
        "model": f"refimpl/data/{path.name}",
        "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "n_greedy": N_GREEDY,
        "continuation_hex": text.hex(),
        "continuation": text.decode("utf-8", errors="replace"),
        "settings": settings(),
        "tokenized": texts,
    }, "the default prompt, the model's sha256, llama.cpp's detokenized greedy continuation, its settings, and "
       "llama.cpp's tokenization (BOS added) of a few texts")
    print(f"  {path.name}: prompt {tokens.tolist()} -> {prompt + text.decode('utf-8', 'replace')!r}", flush=True)
