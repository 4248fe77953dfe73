"""Tokenizer metadata, as convert_hf_to_gguf.py writes it (conversion/base.py ``_set_vocab_sentencepiece``,
``_create_vocab_sentencepiece``, ``_set_vocab_gpt2``, ``get_vocab_base``, ``get_vocab_base_pre``;
conversion/phi.py's own SentencePiece reader; gguf-py's ``SpecialVocab``).

* SentencePiece (``tokenizer.model``): pieces, scores and types from the ``sentencepiece`` library (a core
  dependency), overridden by ``added_tokens.json`` and ``tokenizer_config.json``'s ``added_tokens_decoder``.
* Byte-level BPE (``tokenizer.json``): the vocabulary, added tokens and the pre-tokenizer check hash come from the
  Hugging Face ``tokenizers`` library — the Rust tokenizer that ``transformers.AutoTokenizer`` wraps, without
  torch or transformers.  It is the optional extra ``refimpl[convert]``: llama.cpp identifies a BPE
  pre-tokenizer only by hashing the token ids its real tokenizer gives for ``CHKTXT``, and only the real
  tokenizer reproduces them for every pre-tokenizer in the table.
"""
from __future__ import annotations

import hashlib
import json

from .bpe_pre_hashes import CHKTXT, HASHES

# SentencePieceTokenTypes / gguf.TokenType
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPECIAL_TOKEN_TYPES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
#: SpecialVocab.add_to_gguf calls gw.add_{typ}_token_id; types without a GGUFWriter method are skipped
SPECIAL_ID_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                   "sep": "seperator_token_id", "pad": "padding_token_id", "mask": "mask_token_id",
                   "eot": "eot_token_id", "eom": "eom_token_id"}
ADD_TOKEN_KEYS = {"bos": "add_bos_token", "eos": "add_eos_token", "sep": "add_sep_token"}


def does_token_look_special(token) -> bool:
    text = token.decode("utf-8") if isinstance(token, (bytes, bytearray)) else token
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _load_spm(model):
    from sentencepiece import SentencePieceProcessor
    path = model.ckpt.file("tokenizer.model")
    if not path.is_file():
        raise FileNotFoundError(f"File not found: {path}")
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{path}: not a valid SentencePiece model ({e})") from None
    return sp


def _spm_base(sp, vocab_size):
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [UNUSED] * vocab_size
    for i in range(sp.vocab_size()):
        if i >= vocab_size:
            break
        t = NORMAL
        if sp.IsUnknown(i):
            t = UNKNOWN
        elif sp.IsControl(i):
            t = CONTROL
        elif sp.IsUnused(i):
            t = UNUSED
        elif sp.IsByte(i):
            t = BYTE
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = t
    return tokens, scores, types


def sentencepiece_vocab(model):
    """_create_vocab_sentencepiece: (tokens as bytes, scores, token types)."""
    sp = _load_spm(model)
    vocab_size = model.find_hparam(["vocab_size_per_layer_input", "vocab_size"], optional=True) or sp.vocab_size()
    tokens, scores, types = _spm_base(sp, vocab_size)
    added = model.ckpt.json("added_tokens.json")
    if added:
        for key, tid in added.items():
            if tid >= vocab_size:
                continue
            tokens[tid], scores[tid], types[tid] = key.encode("utf-8"), -1000.0, USER_DEFINED
    cfg = model.ckpt.json("tokenizer_config.json")
    if cfg:
        for tid, data in cfg.get("added_tokens_decoder", {}).items():
            tid = int(tid)
            token = data["content"]
            if tid >= vocab_size:
                continue
            if data.get("special") or does_token_look_special(token):
                types[tid] = CONTROL
            else:
                token = token.replace("\u2581", " ")
                types[tid] = USER_DEFINED
            scores[tid] = -1000.0
            tokens[tid] = token.encode("utf-8")
    if vocab_size > len(tokens):
        for i in range(1, vocab_size - len(tokens) + 1):
            tokens.append(f"[PAD{i}]".encode())
            scores.append(-1000.0)
            types.append(UNUSED)
    return tokens, scores, types


def _write_spm(model, w, tokens, scores, types) -> None:
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_string("tokenizer.ggml.pre", "default")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    SpecialVocab(model.ckpt, n_vocab=len(tokens)).add_to(w)


def set_vocab_sentencepiece(model, w) -> None:
    _write_spm(model, w, *sentencepiece_vocab(model))


def set_vocab_phi3(model, w) -> None:
    """Phi3MiniModel.set_vocab: its own reading of the added tokens (tokenizer.json's added_tokens too, and no
    range checks on tokenizer_config.json's ids)."""
    sp = _load_spm(model)
    vocab_size = model.hparams.get("vocab_size", sp.vocab_size())
    tokens, scores, types = _spm_base(sp, vocab_size)
    n = len(tokens)

    def put(tid, token, special):
        if tid >= n:
            raise ValueError(f"{model.dir}: added token {token!r} has id {tid}, past vocab_size {n}")
        tokens[tid], scores[tid] = token.encode("utf-8"), -1000.0
        types[tid] = CONTROL if special else USER_DEFINED

    added = model.ckpt.json("added_tokens.json")
    if added:
        for key, tid in added.items():
            if tid < vocab_size:
                put(tid, key, False)
    cfg = model.ckpt.json("tokenizer_config.json")
    if cfg:
        for tid, data in cfg.get("added_tokens_decoder", {}).items():
            put(int(tid), data["content"], data.get("special"))
    tj = model.ckpt.json("tokenizer.json")
    if tj:
        for data in tj.get("added_tokens", []):
            put(int(data["id"]), data["content"], data.get("special"))
    _write_spm(model, w, tokens, scores, types)


def check_not_llama_hf_spm(model) -> None:
    """LlamaModel.set_vocab's middle path (gguf-py LlamaHfVocab: a SentencePiece-style BPE tokenizer.json with
    byte fallback, converted through transformers) is not implemented: say so instead of writing a wrong vocab."""
    tj = model.ckpt.json("tokenizer.json")
    if tj is None:
        raise ValueError(f"{model.dir}: no tokenizer: expected tokenizer.model (SentencePiece) or tokenizer.json")
    m = tj.get("model", {})
    is_llama3 = m.get("type") == "BPE" and m.get("ignore_merges", False) and not m.get("byte_fallback", True)
    if not is_llama3 and m.get("type") == "BPE" and m.get("byte_fallback", False) \
            and (tj.get("decoder") or {}).get("type") == "Sequence":
        raise ValueError(f"{model.dir}: tokenizer.json is a SentencePiece-style BPE with byte fallback and there "
                         f"is no tokenizer.model; refimpl.convert needs tokenizer.model for this tokenizer")


# ---------------------------------------------------------------------------------------------- BPE (gpt2)
def _hf_tokenizer(model):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ValueError(f"{model.dir}: converting a tokenizer.json (BPE) vocabulary needs the 'tokenizers' "
                         f"package: pip install 'refimpl[convert]'") from None
    path = model.ckpt.file("tokenizer.json")
    if not path.is_file():
        raise ValueError(f"{model.dir}: no tokenizer: expected tokenizer.json (BPE) or tokenizer.model")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the Rust library raises its own exception type
        raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None


def bpe_pre_name(ids: list[int], model_dir) -> str:
    chkhsh = hashlib.sha256(str(ids).encode()).hexdigest()
    res = None
    for h, name in HASHES:
        if h == chkhsh:
            res = name
    if res is None:
        raise ValueError(f"{model_dir}: the BPE pre-tokenizer was not recognized (chkhsh {chkhsh}); llama.cpp's "
                         f"convert_hf_to_gguf.py has no entry for it either (update get_vocab_base_pre())")
    return res


def _cleanup(text: str) -> str:
    """PreTrainedTokenizerBase.clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def bpe_vocab(model):
    """get_vocab_base: (tokens, token types, pre-tokenizer name)."""
    tok = _hf_tokenizer(model)
    vocab = tok.get_vocab(with_added_tokens=True)
    vocab_size = model.hparams.get("vocab_size", len(vocab))
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"{model.dir}: tokenizer.json has token id {max(vocab.values())}, past config.json's "
                         f"vocab_size {vocab_size}")
    pre = bpe_pre_name(tok.encode(CHKTXT, add_special_tokens=True).ids, model.dir)
    reverse = {i: t for t, i in vocab.items()}
    decoder = tok.get_added_tokens_decoder()
    added = {t.content: i for i, t in sorted(decoder.items())}
    cfg = model.ckpt.json("tokenizer_config.json") or {}
    cleanup = bool(cfg.get("clean_up_tokenization_spaces", False))
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        token = reverse[i]
        if token in added:
            if not decoder[i].normalized:
                token = tok.decode(tok.encode(token, add_special_tokens=False).ids, skip_special_tokens=False)
                if cleanup:
                    token = _cleanup(token)
            if decoder[i].special or does_token_look_special(token):
                types.append(CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(token)
    return tokens, types, pre


def set_vocab_gpt2(model, w) -> None:
    tokens, types, pre = bpe_vocab(model)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    SpecialVocab(model.ckpt, load_merges=True).add_to(w)


# ---------------------------------------------------------------------------------------------- SpecialVocab
class SpecialVocab:
    """gguf-py's SpecialVocab: merges, special token ids, add_*_token flags, chat template, normalizer flags, read
    from tokenizer.json, tokenizer_config.json (+ chat_template.jinja/.json) and config.json."""

    def __init__(self, ckpt, load_merges: bool = False, n_vocab: int | None = None):
        self.ckpt = ckpt
        self.n_vocab = n_vocab
        self.load_merges = load_merges
        self.merges: list[str] = []
        self.special_token_ids: dict[str, int] = {}
        self.add_special_token: dict[str, bool] = {}
        self.chat_template = None
        self.normalizer_lowercase = None
        self.normalizer_strip_accents = None
        self.special_token_types = SPECIAL_TOKEN_TYPES
        self._from_tokenizer_json()
        self._from_config_json()
        if self.load_merges and not self.merges:
            self._from_merges_txt()

    def add_to(self, w) -> None:
        if self.merges:
            w.add_array("tokenizer.ggml.merges", self.merges)
        for typ, tid in self.special_token_ids.items():
            if typ in SPECIAL_ID_KEYS:
                w.add_uint32("tokenizer.ggml." + SPECIAL_ID_KEYS[typ], tid)
        for typ, value in self.add_special_token.items():
            if typ in ADD_TOKEN_KEYS:
                w.add_bool("tokenizer.ggml." + ADD_TOKEN_KEYS[typ], value)
        if self.chat_template is not None:
            w.add_chat_template(self.chat_template)
        if self.normalizer_lowercase is not None:
            w.add_bool("tokenizer.ggml.normalizer.lowercase", self.normalizer_lowercase)
        if self.normalizer_strip_accents is not None:
            w.add_bool("tokenizer.ggml.normalizer.strip_accents", self.normalizer_strip_accents)

    def _set_special_token(self, typ: str, tid) -> None:
        if not isinstance(tid, int) or isinstance(tid, bool):
            return
        if tid < 0:
            raise ValueError(f"invalid value for special token type {typ}: {tid}")
        if self.n_vocab is None or tid < self.n_vocab:
            self.special_token_ids.setdefault(typ, tid)

    def _from_merges_txt(self) -> None:
        path = self.ckpt.file("merges.txt")
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as fp:
            lines = fp.read().splitlines()
        if lines and lines[0].strip().startswith("#"):
            lines = lines[1:]
        merges = []
        for line in lines:
            parts = line.strip().split(None, 3)
            if len(parts) == 2:
                merges.append(f"{parts[0]} {parts[1]}")
        self.merges = merges

    def _parse_normalizer(self, normalizer: dict) -> None:
        kind = normalizer.get("type")
        if kind == "Lowercase":
            self.normalizer_lowercase = True
        elif kind == "StripAccents":
            self.normalizer_strip_accents = True
        elif kind == "BertNormalizer":
            if "lowercase" in normalizer:
                self.normalizer_lowercase = normalizer["lowercase"]
            if "strip_accents" in normalizer:
                self.normalizer_strip_accents = normalizer["strip_accents"]
        elif kind == "Sequence":
            for n in normalizer.get("normalizers", []):
                self._parse_normalizer(n)

    def _from_tokenizer_json(self) -> None:
        tokenizer = self.ckpt.json("tokenizer.json")
        added_tokens = []
        if tokenizer is not None:
            if self.load_merges:
                merges = tokenizer.get("model", {}).get("merges")
                if isinstance(merges, list) and merges:
                    if isinstance(merges[0], str):
                        self.merges = merges
                    elif isinstance(merges[0], list) and len(merges[0]) == 2 and isinstance(merges[0][0], str):
                        # [a, b] pairs (transformers >= 4.45): spaces inside a part are written as U+0120
                        # (chr(ord(" ") + 256)), so that the space can separate the pair
                        self.merges = [a.replace(" ", "\u0120") + " " + b.replace(" ", "\u0120") for a, b in merges]
                    else:
                        raise ValueError(f"{self.ckpt.dir}/tokenizer.json: unknown merges format")
            if normalizer := tokenizer.get("normalizer"):
                self._parse_normalizer(normalizer)
            added_tokens = tokenizer.get("added_tokens", {})
        config = self.ckpt.json("tokenizer_config.json")
        if config is not None:
            config = dict(config)             # the post-processor reading fills in missing special tokens
        if tokenizer:
            self._post_processor(tokenizer, config)
        if not config:
            return
        jinja = self.ckpt.file("chat_template.jinja")
        alt = None
        if jinja.is_file():
            alt = jinja.read_text(encoding="utf-8")
            extra = sorted((self.ckpt.dir / "additional_chat_templates").glob("*.jinja"))
            if extra:
                alt = [{"name": "default", "template": alt}]
                alt += [{"name": p.stem, "template": p.read_text(encoding="utf-8")} for p in extra]
        elif (j := self.ckpt.json("chat_template.json")) is not None:
            alt = j.get("chat_template")
        template = config.get("chat_template", alt)
        if template is None or isinstance(template, (str, list)):
            self.chat_template = template
        for typ in self.special_token_types:
            add_entry = config.get(f"add_{typ}_token")
            if isinstance(add_entry, bool) and typ not in self.add_special_token:
                self.add_special_token[typ] = add_entry
            entry = config.get(f"{typ}_token")
            if isinstance(entry, str):
                content = entry
            elif isinstance(entry, dict) and isinstance(entry.get("content"), str):
                content = entry["content"]
            else:
                continue
            self._set_special_token(typ, next((a.get("id") for a in added_tokens if a.get("content") == content),
                                              None))

    def _post_processor(self, tokenizer: dict, config: dict | None) -> None:
        """The crude TemplateProcessing / ByteLevel / RobertaProcessing reading of SpecialVocab."""
        cfg = config or {}
        bos, cls, eos, sep = cfg.get("bos_token"), cfg.get("cls_token"), cfg.get("eos_token"), cfg.get("sep_token")
        if not bos and cls and config:
            config["bos_token"] = bos = cls
        if not eos and sep and config:
            config["eos_token"] = eos = sep
        post = tokenizer.get("post_processor")
        if not post:
            return
        for proc in post.get("processors", [post]):
            kind = proc.get("type")
            if kind == "ByteLevel":
                self.add_special_token.setdefault("bos", False)
                self.add_special_token.setdefault("eos", False)
            elif kind == "RobertaProcessing":
                self.add_special_token.update(bos=True, eos=True, sep=True)
                if not cls and config:
                    config["cls_token"] = cls = proc.get("cls", [bos])[0]
                if not sep and config:
                    config["sep_token"] = sep = proc.get("sep", [eos])[0]
            elif kind == "TemplateProcessing":
                single, pair = proc.get("single", []), proc.get("pair", [])
                first = last = None
                if len(single) > 1:
                    if first := single[0].get("SpecialToken", {}).get("id"):
                        if not config:
                            bos = first
                        elif first not in (bos, cls):
                            if not bos:
                                config["bos_token"] = bos = first
                            if not cls:
                                config["cls_token"] = cls = first
                        self.add_special_token["bos"] = first in (bos, cls)
                    if last := single[-1].get("SpecialToken", {}).get("id"):
                        if not config:
                            eos = last
                        elif last != eos:
                            if "eot" not in self.special_token_types:
                                self.special_token_types = tuple(self.special_token_types) + ("eot",)
                                config["eot_token"] = eos
                            elif "eom" not in self.special_token_types:
                                self.special_token_types = tuple(self.special_token_types) + ("eom",)
                                config["eom_token"] = eos
                            config["eos_token"] = eos = last
                        self.add_special_token["eos"] = last == eos
                if pair:
                    start = 1 if first and pair[0].get("SpecialToken", {}).get("id") == first else 0
                    stop = -1 if last and pair[-1].get("SpecialToken", {}).get("id") == last else None
                    if pair := pair[slice(start, stop)]:
                        a = pair[0].get("Sequence", {}).get("id")
                        b = pair[-1].get("Sequence", {}).get("id")
                        if a == "A" and b == "B" and (pair := pair[1:-1]):
                            add_sep = False
                            if entry := pair[0].get("SpecialToken", {}).get("id"):
                                if entry in (sep, eos) and not last:
                                    add_sep = True
                            if len(pair) == 2:
                                if entry := pair[1].get("SpecialToken", {}).get("id"):
                                    if entry in (sep, eos):
                                        add_sep = True
                            self.add_special_token["sep"] = add_sep
                            if add_sep and not sep and config:
                                config["sep_token"] = eos

    def _from_config_json(self) -> None:
        config = self.ckpt.json("config.json")
        if config is None:
            return
        for typ in self.special_token_types:
            tid = config.get(f"{typ}_token_id")
            if tid is None and "text_config" in config:
                tid = config["text_config"].get(f"{typ}_token_id")
            self._set_special_token(typ, tid)
