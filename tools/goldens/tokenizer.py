"""Tokenizer goldens: random Unicode / byte strings tokenized and detokenized by llama.cpp for every vocab file.

The strings (seeded) mix all Unicode planes, combining marks, emoji and ZWJ sequences, CJK, whitespace runs
(ASCII and Unicode, incl. U+0085, U+00A0, U+3000, \\v, \\f, \\x1c), digits, contractions, invalid UTF-8 and
surrogate encodings, and special-token look-alikes (the vocabulary's own special texts, whole and broken,
with spaces around them).  llama.cpp's answers come from llama-cpp-python (vocab_only) calling the C API:
``llama_tokenize`` (add_special, parse_special) and ``llama_detokenize`` (remove_special, unparse_special).

Stored as JSON (golden/tokenizer/<vocab>.json): inputs as hex, ids as int lists, detokenized bytes as hex.
"""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

DESCRIPTION = ("random Unicode/byte strings (all planes, marks, emoji, CJK, whitespace runs, invalid UTF-8, "
               "special-token look-alikes) tokenized and detokenized by llama.cpp for every ggml-vocab file")

ROOT = Path(__file__).resolve().parents[2]
N_STRINGS = 80
MODES = ((False, False), (True, True))  # (add_special, parse_special)
DETOK_MODES = ((False, False), (True, True))  # (remove_special, unparse_special)

_WS = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u3000",
       "\u2028", "\u2009", " \n ", "\t\t", "    "]
_WORDS = ["Hello", "world", "the", "THE", "don't", "I'LL", "we're", "it's", "a", "llama.cpp", "3.14159",
          "1234567", "000", "x86_64", "foo_bar", "http://example.com/?q=1&r=2", "__init__", "''", "'s", "'t",
          "naïve", "café", "Straße", "İstanbul", "ǅ", "ﬁ", "Ωmega", "Привет", "мир", "Γειά", "שלום", "مرحبا",
          "नमस्ते", "ภาษาไทย", "한국어", "日本語", "中文字符", "𠀀𠀁", "😀", "👩‍👩‍👧‍👦", "🏳️‍🌈", "✅", "🦙", "1️⃣",
          "e\u0301", "a\u0308\u0323", "\u0301", "\u200d", "\ufeff", "\u00ad", "½", "²", "٣", "Ⅻ", "𝟘𝟙",
          "(", ")", "{", "}", "[", "]", "<", ">", "!", "?", ".", ",", ";", ":", "...", "!!!", "?!", "$",
          "+", "=", "^", "~", "|", "`", "@", "#", "%", "&", "*", "-", "--", "/", "\\", "\"", "'", "▁", "▁▁"]
_SPECIAL_LIKE = ["<s>", "</s>", "<unk>", "<pad>", "<mask>", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]",
                 "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
                 "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<|end|>", "<|user|>", "<|assistant|>",
                 "<|START_OF_TURN_TOKEN|>", "<|fim_prefix|>", "<fim_middle>", "<0x0A>", "<0xFF>",
                 "<|endof", "endoftext|>", "< s>", "<s >", "<<s>>", "</s</s>>", "<|im_start|", "<|<|im_end|>|>"]
_INVALID = [b"\x80", b"\xbf", b"\xc0", b"\xc1\xbf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf0\x9f", b"\xf0\x9f\x98", b"\xf8", b"\xfe", b"\xff", b"\xe0\x80\x80", b"\xc0\x80", b"\x00"]


def _random_cpt(rng) -> str:
    r = rng.random()
    if r < 0.25:
        c = int(rng.integers(0x20, 0x7F))
    elif r < 0.45:
        c = int(rng.integers(0x80, 0x800))
    elif r < 0.70:
        c = int(rng.integers(0x800, 0x10000))
    elif r < 0.85:
        c = int(rng.integers(0x10000, 0x30000))
    else:
        c = int(rng.integers(0x30000, 0x110000))
    if 0xD800 <= c <= 0xDFFF:
        c = 0xFFFD
    return chr(c)


def random_strings(seed: int, n: int, special_texts: list[bytes] = ()) -> list[bytes]:
    """Seeded test strings as bytes (some deliberately not valid UTF-8)."""
    rng = np.random.default_rng(seed)
    specials = [s.encode() for s in _SPECIAL_LIKE] + list(special_texts)
    out = [b"", b" ", b"\n", b"  \n\n  ", b"<s>", b" <s> ", b"\xff"]
    while len(out) < n:
        parts = []
        for _ in range(int(rng.integers(1, 14))):
            r = rng.random()
            if r < 0.30:
                parts.append(_WORDS[int(rng.integers(len(_WORDS)))].encode())
            elif r < 0.50:
                parts.append(_WS[int(rng.integers(len(_WS)))].encode())
            elif r < 0.70:
                parts.append("".join(_random_cpt(rng) for _ in range(int(rng.integers(1, 6)))).encode())
            elif r < 0.85:
                parts.append(specials[int(rng.integers(len(specials)))])
            elif r < 0.92:
                parts.append(_INVALID[int(rng.integers(len(_INVALID)))])
            else:
                parts.append(str(int(rng.integers(0, 10 ** int(rng.integers(1, 12))))).encode())
        out.append(b"".join(parts))
    return out[:n]


def vocab_files() -> list[Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from sdist import vocab_dir
    return sorted(vocab_dir().glob("ggml-vocab-*.gguf"))


class LlamaVocab:
    """llama.cpp's tokenizer through llama-cpp-python's C bindings (a vocab-only model)."""

    def __init__(self, path: Path):
        import llama_cpp
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def tokenize(self, text: bytes, add_special: bool, parse_special: bool) -> list[int]:
        n = len(text) + 8
        while True:
            buf = (self.lib.llama_token * n)()
            got = self.lib.llama_tokenize(self.vocab, text, len(text), buf, n, add_special, parse_special)
            if got >= 0:
                return list(buf[:got])
            n = -got

    def detokenize(self, ids: list[int], remove_special: bool, unparse_special: bool) -> bytes:
        arr = (self.lib.llama_token * max(len(ids), 1))(*ids)
        n = 64 + 8 * len(ids)
        while True:
            buf = ctypes.create_string_buffer(n)
            got = self.lib.llama_detokenize(self.vocab, arr, len(ids), buf, n, remove_special, unparse_special)
            if got >= 0:
                return buf.raw[:got]
            n = -got

    def special_texts(self) -> list[bytes]:
        texts = []
        for i in range(self.lib.llama_vocab_n_tokens(self.vocab)):
            attr = self.lib.llama_vocab_get_attr(self.vocab, i)
            if attr & (1 << 3 | 1 << 4):  # CONTROL | USER_DEFINED
                t = self.lib.llama_vocab_get_text(self.vocab, i)
                if t and len(t) < 40:
                    texts.append(t)
        return texts[:200]


def cases_for(path: Path, oracle_vocab: LlamaVocab, seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    specials = oracle_vocab.special_texts()
    pick = [specials[int(i)] for i in rng.integers(0, len(specials), size=min(24, len(specials)))] if specials else []
    strings = random_strings(seed, n, pick)
    cases = []
    for s in strings:
        case = {"text": s.hex()}
        for add_special, parse_special in MODES:
            ids = oracle_vocab.tokenize(s, add_special, parse_special)
            case[f"ids_{int(add_special)}{int(parse_special)}"] = ids
        ids = case["ids_11"]
        for remove_special, unparse_special in DETOK_MODES:
            case[f"detok_{int(remove_special)}{int(unparse_special)}"] = oracle_vocab.detokenize(
                ids, remove_special, unparse_special).hex()
        cases.append(case)
    return {"vocab": path.name, "seed": seed, "cases": cases}


def _seed_of(name: str) -> int:
    return 7000 + sum(name.encode()) % 1000


def generate(oracle, w) -> None:
    for path in vocab_files():
        vocab = LlamaVocab(path)
        w.json(f"{path.stem}.json", cases_for(path, vocab, _seed_of(path.stem), N_STRINGS),
               f"{N_STRINGS} random strings for {path.name}: llama_tokenize ids for (add_special, parse_special) "
               f"in {MODES}, llama_detokenize of the (True, True) ids for (remove_special, unparse_special) in "
               f"{DETOK_MODES}")


def fresh(oracle, rng) -> list[str]:
    from refimpl.tokenizer import Tokenizer
    fails = []
    seed = int(rng.integers(1 << 30))
    for path in vocab_files():
        vocab = LlamaVocab(path)
        tok = Tokenizer.from_gguf(path)
        data = cases_for(path, vocab, seed, 30)
        for case in data["cases"]:
            text = bytes.fromhex(case["text"])
            for add_special, parse_special in MODES:
                want = case[f"ids_{int(add_special)}{int(parse_special)}"]
                got = tok.encode(text, add_special=add_special, parse_special=parse_special)
                if got != want:
                    fails.append(f"tokenizer/{path.stem}: encode({text!r}, {add_special}, {parse_special}) "
                                 f"= {got} != {want}")
            for remove_special, unparse_special in DETOK_MODES:
                want = bytes.fromhex(case[f"detok_{int(remove_special)}{int(unparse_special)}"])
                got = tok.detokenize(case["ids_11"], remove_special, unparse_special)
                if got != want:
                    fails.append(f"tokenizer/{path.stem}: detokenize({case['ids_11']}) = {got!r} != {want!r}")
    return fails
