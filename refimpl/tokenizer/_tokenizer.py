"""Tokenizer: llama.cpp's llama_vocab (src/llama-vocab.cpp) from a GGUF file's ``tokenizer.*`` metadata."""
from __future__ import annotations

import heapq

import numpy as np

from . import _unicode as U
from ._split import regex_split_offsets
from ._tables import (EOG_TEXTS, EOM_TEXTS, EOT_TEXTS, FIM_MID_TEXTS, FIM_PAD_TEXTS, FIM_PRE_TEXTS, FIM_REP_TEXTS,
                      FIM_SEP_TEXTS, FIM_SUF_TEXTS, PRE_NAMES, PRE_TYPE_REGEXES)

NULL = -1  # LLAMA_TOKEN_NULL

# llama_token_attr
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_NORMALIZED = 1 << 6
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8
ATTR_SINGLE_WORD = 1 << 9

# llama_token_type (the GGUF token_type array) -> attribute
_TYPE_TO_ATTR = {0: ATTR_UNDEFINED, 1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED,
                 5: ATTR_UNUSED, 6: ATTR_BYTE}

ESCAPED_SPACE = "\u2581".encode()  # U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space
_C_SPACE = frozenset(b" \t\n\v\f\r")  # isspace() in the C locale

SPM, BPE, WPM, UGM, RWKV = "SPM", "BPE", "WPM", "UGM", "RWKV"

_SPECIAL_KEYS = (
    ("bos", "tokenizer.ggml.bos_token_id"), ("eos", "tokenizer.ggml.eos_token_id"),
    ("eot", "tokenizer.ggml.eot_token_id"), ("eom", "tokenizer.ggml.eom_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"), ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"), ("mask", "tokenizer.ggml.mask_token_id"),
    ("fim_pre", "tokenizer.ggml.fim_pre_token_id"), ("fim_suf", "tokenizer.ggml.fim_suf_token_id"),
    ("fim_mid", "tokenizer.ggml.fim_mid_token_id"), ("fim_pad", "tokenizer.ggml.fim_pad_token_id"),
    ("fim_rep", "tokenizer.ggml.fim_rep_token_id"), ("fim_sep", "tokenizer.ggml.fim_sep_token_id"),
    # deprecated spellings, read after the new ones (they win when both are present, as in llama.cpp)
    ("fim_pre", "tokenizer.ggml.prefix_token_id"), ("fim_suf", "tokenizer.ggml.suffix_token_id"),
    ("fim_mid", "tokenizer.ggml.middle_token_id"),
)


def _read_gguf(source):
    if hasattr(source, "metadata"):
        return source
    from .. import gguf
    return gguf.read(source)


def _raw_strings(value) -> list[bytes]:
    """The raw bytes of every element of a GGUF string array."""
    if hasattr(value, "raw_list"):
        return value.raw_list()
    if hasattr(value, "raw"):
        return [value.raw(i) for i in range(len(value))]
    return [s if isinstance(s, bytes) else str(s).encode("utf-8", "surrogateescape") for s in value]


def _to_str(b: bytes):
    """A token text as a Python str (lone surrogates kept), or None if it is not decodable UTF-8."""
    try:
        return b.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


class Tokenizer:
    """llama.cpp's tokenizer for one vocabulary.  Build it with :meth:`from_gguf`.

    Token ids are plain ints; LLAMA_TOKEN_NULL is -1.
    """

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_gguf(cls, source) -> "Tokenizer":
        """Read ``tokenizer.*`` (plus ``general.name``/``general.architecture``, which llama.cpp consults for
        per-model token attributes) from a GGUF path or an already read ``refimpl.gguf`` file."""
        f = _read_gguf(source)
        self = cls.__new__(cls)
        self._load(f)
        return self

    def _get(self, key, default=None):
        if key not in self._md:
            return default
        return self._md[key].value

    def _load(self, f):  # mirrors llama_vocab::impl::load (llama-vocab.cpp)
        self._md = f.metadata
        model = self._get("tokenizer.ggml.model")
        if model is None:
            raise ValueError("tokenizer.ggml.model is missing")
        pre = self._get("tokenizer.ggml.pre", "")
        self.tokenizer_model = model
        self.tokenizer_pre = pre
        self.pre_type = "DEFAULT"
        special = {name: NULL for name, _ in _SPECIAL_KEYS}
        special["nl"] = NULL
        flags = dict(add_space_prefix=False, add_bos=False, add_eos=False, add_sep=False, ignore_merges=False,
                     clean_spaces=False, remove_extra_whitespaces=False, escape_whitespaces=True,
                     treat_whitespace_as_suffix=False)
        self.normalizer_lowercase = True
        self.normalizer_strip_accents = True
        self._bpe_ranks = {}
        self.precompiled_charsmap = b""

        if model in ("no_vocab", "none"):
            raise ValueError(f"tokenizer model {model!r} has no vocabulary")
        if model == "llama":
            self.type = SPM
            special.update(bos=1, eos=2, unk=0)
        elif model == "bert":
            self.type = WPM
            special.update(bos=101, unk=100, sep=102, pad=0, mask=103)
            flags["add_sep"] = True
        elif model in ("gpt2", "hybriddna", "whitespace", "gemma4"):
            self.type = BPE
            key = "tokenizer.ggml.merges"
            if key in self._md:
                self._bpe_ranks = self._read_merges(self._md[key].value)
            elif not (model != "gemma4" and pre == "kimi-k2"):
                raise ValueError("cannot find tokenizer merges in model file")
            if model == "gemma4":
                pre = "gemma4"
            else:
                special.update(bos=11, eos=11)
        elif model == "t5":
            self.type = UGM
            special.update(eos=1, unk=2, pad=0)
            key = "tokenizer.ggml.precompiled_charsmap"
            if key in self._md:
                cm = np.asarray(self._md[key].value).astype(np.uint8).tobytes()
                if len(cm) < 4:
                    raise ValueError("precompiled_charsmap too small for xcda_blob_size header!")
                if int.from_bytes(cm[:4], "little") + 4 >= len(cm):
                    raise ValueError("Index out of array bounds in precompiled charsmap!")
                self.precompiled_charsmap = cm
        elif model == "rwkv":
            self.type = RWKV
        else:
            raise ValueError(f"unknown tokenizer: '{model}' (plamo2/test vocabularies are not implemented)")

        if self.type == BPE:
            flags.update(add_space_prefix=False, escape_whitespaces=False, clean_spaces=True)
            if pre == "":
                pre_type, overrides = "DEFAULT", {}
            elif pre in PRE_NAMES:
                pre_type, overrides = PRE_NAMES[pre]
            else:
                raise ValueError(f"unknown pre-tokenizer type: '{pre}'")
            self.pre_type = pre_type
            for name, value in overrides.items():
                if name == "bos_null":
                    special["bos"] = NULL
                elif name == "normalizer_lowercase":
                    self.normalizer_lowercase = value
                else:
                    flags[name] = value
        elif self.type == SPM:
            flags.update(add_space_prefix=True, clean_spaces=False, add_bos=True, add_eos=False)
        elif self.type == WPM:
            flags.update(add_space_prefix=False, clean_spaces=True, add_bos=True, add_eos=False, add_sep=True)
        elif self.type == UGM:
            flags.update(add_bos=False, add_eos=True)
        elif self.type == RWKV:
            flags.update(add_space_prefix=False, clean_spaces=False, add_bos=False, add_eos=False)
        flags["add_space_prefix"] = bool(self._get("tokenizer.ggml.add_space_prefix", flags["add_space_prefix"]))
        flags["remove_extra_whitespaces"] = bool(self._get("tokenizer.ggml.remove_extra_whitespaces",
                                                           flags["remove_extra_whitespaces"]))

        # --- the token list
        key = "tokenizer.ggml.tokens"
        if key not in self._md:
            raise ValueError("cannot find tokenizer vocab in model file")
        texts = _raw_strings(self._md[key].value)
        n = len(texts)
        for i, t in enumerate(texts):
            if not t:
                texts[i] = f"[EMPTY_{i}]".encode()
        self.n_tokens = n
        self._texts = texts
        self._bytes_to_id = dict(zip(texts, range(n)))
        if len(self._bytes_to_id) != n:
            raise ValueError("duplicate token texts (llama.cpp asserts id_to_token.size() == token_to_id.size())")
        self._str_to_id = {}
        for i, t in enumerate(texts):
            s = _to_str(t)
            if s is not None:
                self._str_to_id[s] = i
        self.max_token_len = max((len(t) for t in texts), default=0)

        scores = self._get("tokenizer.ggml.scores")
        if scores is not None:
            scores = np.asarray(scores)
            if scores.dtype not in (np.float32, np.int32) or scores.shape[0] < n:
                raise ValueError("invalid tokenizer.ggml.scores")
            self.scores = scores[:n].astype(np.float32)
        else:
            self.scores = np.zeros(n, dtype=np.float32)
        toktypes = self._get("tokenizer.ggml.token_type")
        attrs = np.full(n, ATTR_NORMAL, dtype=np.int64)
        if toktypes is not None:
            toktypes = np.asarray(toktypes)
            if toktypes.shape[0] < n:
                raise ValueError("invalid tokenizer.ggml.token_type")
            lut = np.full(max(int(toktypes.max(initial=0)) + 1, 7), ATTR_UNDEFINED, dtype=np.int64)
            for t, a in _TYPE_TO_ATTR.items():
                lut[t] = a
            tt = toktypes[:n].astype(np.int64)
            attrs = np.where(tt < 0, ATTR_UNDEFINED, lut[np.clip(tt, 0, None)])
        self._attrs = attrs.tolist()

        self.flags = flags
        self._init_model()

        # --- special token ids
        for name, key in _SPECIAL_KEYS:
            if special[name] >= 0 and special[name] >= n:
                special[name] = NULL
            value = self._get(key)
            if value is None:
                continue
            if 0 <= int(value) < n:
                special[name] = int(value)
        for key, name in (("tokenizer.ggml.add_bos_token", "add_bos"), ("tokenizer.ggml.add_eos_token", "add_eos"),
                          ("tokenizer.ggml.add_sep_token", "add_sep")):
            value = self._get(key)
            if value is not None:
                flags[name] = bool(value)
        if self.pre_type == "GEMMA4" and not flags["add_bos"]:
            flags["add_bos"] = True  # "workaround for Gemma 4"
        self.normalizer_lowercase = bool(self._get("tokenizer.ggml.normalizer.lowercase",
                                                   self.normalizer_lowercase))
        self.normalizer_strip_accents = self.normalizer_lowercase
        self.normalizer_strip_accents = bool(self._get("tokenizer.ggml.normalizer.strip_accents",
                                                       self.normalizer_strip_accents))
        self._auto_detect_special(special)
        self.special = special

        # --- special tokens cache: CONTROL | USER_DEFINED | UNKNOWN, longest text first
        ids = [i for i in range(n) if self._attrs[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)]
        self._special_cache = _libstdcxx_sort(ids, lambda a, b: len(texts[a]) > len(texts[b]))

        self._per_model_attrs()
        self._pieces = {}
        self._word_cache = {}

    def _read_merges(self, value) -> dict:
        ranks = {}
        for i, raw in enumerate(_raw_strings(value)):
            word = _to_str(raw)
            if word is None:
                continue  # cannot match any (valid UTF-8) symbol pair
            pos = word.find(" ", 1)
            key = (word[:pos], word[pos + 1:]) if pos >= 0 else ("", "")
            if key not in ranks:  # std::unordered_map::emplace keeps the first
                ranks[key] = i
        return ranks

    def _auto_detect_special(self, special):
        attrs = self._attrs
        ids_by_text = {}
        for i, t in enumerate(self._texts):
            s = _to_str(t)
            if s is not None:
                ids_by_text[s] = i
        # NB: llama.cpp scans its unordered_map, so when a vocabulary holds several candidates the winner depends
        # on hash order; refimpl takes the candidates in id order.
        order = sorted((i, s) for s, i in ids_by_text.items()
                       if s in EOG_TEXTS or s in FIM_PRE_TEXTS or s in FIM_SUF_TEXTS or s in FIM_MID_TEXTS
                       or s in FIM_PAD_TEXTS or s in FIM_REP_TEXTS or s in FIM_SEP_TEXTS or s in EOM_TEXTS)
        for name, texts in (("eot", EOT_TEXTS), ("eom", EOM_TEXTS), ("fim_pre", FIM_PRE_TEXTS),
                            ("fim_suf", FIM_SUF_TEXTS), ("fim_mid", FIM_MID_TEXTS), ("fim_pad", FIM_PAD_TEXTS),
                            ("fim_rep", FIM_REP_TEXTS), ("fim_sep", FIM_SEP_TEXTS)):
            if special[name] != NULL:
                continue
            for i, s in order:
                if s in texts:
                    special[name] = i
                    attrs[i] |= ATTR_CONTROL
                    break
        # control tokens whose text contains "unused"
        for i, t in enumerate(self._texts):
            if attrs[i] & ATTR_CONTROL and not attrs[i] & ATTR_UNUSED and b"unused" in t.split(b"\0")[0]:
                attrs[i] |= ATTR_UNUSED
        eog = set()
        for name in ("fim_pad", "fim_rep", "fim_sep"):
            if special[name] != NULL:
                eog.add(special[name])
        for i, s in order:
            if s in EOG_TEXTS:
                eog.add(i)
                attrs[i] |= ATTR_CONTROL
        for s in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):  # gpt-oss hack
            if s in ids_by_text:
                attrs[ids_by_text[s]] = ATTR_USER_DEFINED
        for name in ("eos", "eot", "eom"):
            if special[name] != NULL:
                eog.add(special[name])
        texts_of = {i: self._texts[i] for i in eog if 0 <= i < self.n_tokens}
        has_return = any(t == b"<|return|>" for t in texts_of.values())
        has_call = any(t in (b"<|call|>", b"<|calls|>") for t in texts_of.values())
        has_flush = any(t == b"<|flush|>" for t in texts_of.values())
        end_ids = [i for i, t in texts_of.items() if t == b"<|end|>"]
        if end_ids and ((has_return and has_call) or (has_call and has_flush)):
            eog.discard(end_ids[-1])
            attrs[end_ids[-1]] = ATTR_USER_DEFINED
        has_marker = any(t in (b"<|tool_response>", b"<|plamo:eos|>") for t in texts_of.values())
        s_ids = [i for i, t in texts_of.items() if t == b"</s>"]
        if has_marker and s_ids:
            eog.discard(s_ids[-1])
            attrs[s_ids[-1]] = ATTR_NORMAL
        self.eog_ids = frozenset(eog)

    def _per_model_attrs(self):
        """The per-model attribute overrides at the end of llama_vocab::impl::load (by name/pre/architecture)."""
        name = str(self._get("general.name", "")).lower()
        arch = str(self._get("general.architecture", ""))
        pre = str(self._get("tokenizer.ggml.pre", ""))
        attrs = self._attrs

        def set_attr(text: bytes, attr, value):
            if text not in self._bytes_to_id:
                raise ValueError(f"token {text!r} is required for this model (llama.cpp: token_to_id.at throws)")
            i = self._bytes_to_id[text]
            attrs[i] = (attrs[i] | attr) if value else (attrs[i] & ~attr)

        if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
                s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
            if b"<mask>" in self._bytes_to_id:
                set_attr(b"<mask>", ATTR_LSTRIP, True)
        elif "phi-3" in name or "phi3" in name:
            for i in self._special_cache:
                attrs[i] |= ATTR_RSTRIP
            set_attr(b"</s>", ATTR_RSTRIP, True)
            for t in (b"<unk>", b"<s>", b"<|endoftext|>"):
                set_attr(t, ATTR_RSTRIP, False)
        elif "modern-bert" in name:
            if b"[MASK]" in self._bytes_to_id:
                set_attr(b"[MASK]", ATTR_LSTRIP, True)

    def _init_model(self):
        if self.type == BPE:
            regexes, byte_encode = PRE_TYPE_REGEXES[self.pre_type]
            self._regexes = list(regexes)
            self._byte_encode = byte_encode
        elif self.type == SPM:
            # bytes that may directly precede U+2581 inside some token: SPM merges can never cross a "▁" whose
            # preceding byte is not one of them, so the text can be cut there (see _spm_tokenize)
            glue = set()
            for t in self._texts:
                start = t.find(ESCAPED_SPACE, 1)
                while start > 0:
                    glue.add(t[start - 1])
                    start = t.find(ESCAPED_SPACE, start + 1)
            self._spm_glue = glue
        elif self.type == UGM:
            from ._ugm import UgmModel
            self._ugm = UgmModel(self)
        elif self.type == RWKV:
            from ._rwkv import RwkvModel
            self._rwkv = RwkvModel(self)

    # ------------------------------------------------------------------------------------------------ properties

    def token_attr(self, token: int) -> int:
        return self._attrs[token]

    def token_text(self, token: int) -> bytes:
        return self._texts[token]

    def token_score(self, token: int) -> float:
        return float(self.scores[token])

    @property
    def special_tokens_cache(self) -> list[int]:
        return list(self._special_cache)

    def __getattr__(self, name):
        # bos_id, eos_id, eot_id, ... and the flags add_bos, add_eos, clean_spaces, ...
        if name.endswith("_id") and name[:-3] in self.__dict__.get("special", {}):
            return self.__dict__["special"][name[:-3]]
        if name in self.__dict__.get("flags", {}):
            return self.__dict__["flags"][name]
        raise AttributeError(name)

    def is_eog(self, token: int) -> bool:
        return token != NULL and token in self.eog_ids

    def byte_to_token(self, ch: int) -> int:
        """llama_vocab::byte_to_token."""
        if self.type in (SPM, UGM):
            t = self._bytes_to_id.get(f"<0x{ch:02X}>".encode())
            if t is not None:
                return t
            t = self._bytes_to_id.get(bytes((ch,)))
        else:
            t = self._bytes_to_id.get(chr(U.BYTE_TO_CPT[ch]).encode())
        if t is None:
            raise ValueError(f"no token for byte 0x{ch:02X} (llama.cpp: token_to_id.at throws)")
        return t

    def text_to_token(self, text: bytes) -> int:
        return self._bytes_to_id.get(text, NULL)

    # ------------------------------------------------------------------------------------------------ encode

    def encode(self, text, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """llama_tokenize: token ids of ``text`` (str or UTF-8 bytes; invalid UTF-8 is handled as llama.cpp does)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogatepass")
        text = bytes(text)
        fragments = self._partition(text, parse_special) if text else []
        out: list[int] = []
        flags = self.flags
        sp = self.special
        if self.type == SPM:
            is_prev_special = True
            if add_special and flags["add_bos"]:
                self._require(sp["bos"], "BOS")
                out.append(sp["bos"])
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    is_prev_special = True
                else:
                    raw = text[frag[0]:frag[0] + frag[1]]
                    if flags["add_space_prefix"] and is_prev_special:
                        raw = b" " + raw
                    self._spm_tokenize(raw.replace(b" ", ESCAPED_SPACE), out)
                    is_prev_special = False
            if add_special and flags["add_eos"]:
                self._require(sp["eos"], "EOS")
                out.append(sp["eos"])
        elif self.type == BPE:
            if add_special and flags["add_bos"]:
                self._require(sp["bos"], "BOS")
                out.append(sp["bos"])
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    raw = text[frag[0]:frag[0] + frag[1]]
                    if flags["escape_whitespaces"]:
                        raw = raw.replace(b" ", ESCAPED_SPACE)
                    self._bpe_session(raw, out)
            if add_special and flags["add_eos"]:
                self._require(sp["eos"], "EOS")
                out.append(sp["eos"])
        elif self.type == WPM:
            if add_special:
                self._require(sp["bos"], "BOS")
                out.append(sp["bos"])
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._wpm_tokenize(text[frag[0]:frag[0] + frag[1]], out)
            if add_special:
                self._require(sp["sep"], "SEP")
                out.append(sp["sep"])
        elif self.type == UGM:
            if add_special and flags["add_bos"]:
                self._require(sp["bos"], "BOS")
                out.append(sp["bos"])
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._ugm.tokenize(text[frag[0]:frag[0] + frag[1]], out)
            if add_special and flags["add_eos"]:
                self._require(sp["eos"], "EOS")
                out.append(sp["eos"])
        elif self.type == RWKV:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._rwkv.tokenize(text[frag[0]:frag[0] + frag[1]], out)
        return out

    tokenize = encode

    @staticmethod
    def _require(token, what):
        if token == NULL:
            raise ValueError(f"{what} token is required here but the vocabulary has none (GGML_ASSERT)")

    def _partition(self, text: bytes, parse_special: bool) -> list:
        """tokenizer_st_partition: cut out special tokens, longest first; fragments are (offset, length) or ids."""
        fragments: list = [(0, len(text))]
        texts = self._texts
        for special_id in self._special_cache:
            attr = self._attrs[special_id]
            if not parse_special and attr & (ATTR_CONTROL | ATTR_UNKNOWN):
                continue  # user-defined tokens are split out even without parse_special
            tok = texts[special_id]
            if tok not in text:
                continue
            lstrip = attr & ATTR_LSTRIP
            rstrip = attr & ATTR_RSTRIP
            new: list = []
            for frag in fragments:
                if isinstance(frag, int):
                    new.append(frag)
                    continue
                off, length = frag
                while True:
                    match = text.find(tok, off, off + length)
                    if match < 0:
                        if length > 0:
                            new.append((off, length))
                        break
                    if match > off:
                        left = match - off
                        if lstrip:
                            while left > 0 and text[off + left - 1] in _C_SPACE:
                                left -= 1
                        if left > 0:
                            new.append((off, left))
                    new.append(special_id)
                    if match + len(tok) < off + length:
                        r_off = match + len(tok)
                        r_len = length - ((match - off) + len(tok))
                        if rstrip:
                            while r_len > 0 and text[r_off] in _C_SPACE:
                                r_off += 1
                                r_len -= 1
                        off, length = r_off, r_len
                        continue
                    break
            fragments = new
        return fragments

    # --- SPM

    def _spm_tokenize(self, text: bytes, out: list) -> None:
        """llm_tokenizer_spm_session::tokenize on a whole fragment.

        The C++ runs one priority queue over the whole fragment.  For valid UTF-8 the fragment is cut before every
        "▁" that no token can reach across (the byte before it never precedes "▁" inside a token): merges never
        cross such a cut, and the queue order restricted to one piece is the order of the whole, so the pieces
        can be tokenized (and cached) independently with identical results.
        """
        try:
            text.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        if not valid:
            out += self._spm_piece(text)
            return
        cache = self._word_cache
        glue = self._spm_glue
        start = 0
        pos = text.find(ESCAPED_SPACE, 1)
        while pos > 0:
            if text[pos - 1] not in glue:
                piece = text[start:pos]
                ids = cache.get(piece)
                if ids is None:
                    ids = cache[piece] = self._spm_piece(piece)
                out += ids
                start = pos
            pos = text.find(ESCAPED_SPACE, pos + 1)
        piece = text[start:]
        ids = cache.get(piece)
        if ids is None:
            ids = cache[piece] = self._spm_piece(piece)
        out += ids

    def _spm_piece(self, text: bytes) -> list[int]:
        # mirrors llm_tokenizer_spm_session::tokenize (llama-vocab.cpp)
        syms: list[bytes] = []
        n = len(text)
        offs = 0
        while offs < n:
            ln = min(U.len_utf8(text[offs]), n - offs)
            syms.append(text[offs:offs + ln])
            offs += ln
        count = len(syms)
        prev = list(range(-1, count - 1))
        nxt = list(range(1, count + 1))
        if count:
            nxt[-1] = -1
        to_id = self._bytes_to_id
        scores = self.scores
        heap = []

        def try_add(left, right):
            if left == -1 or right == -1:
                return
            merged = syms[left] + syms[right]
            tok = to_id.get(merged)
            if tok is None:
                return
            # priority: highest score first, then the leftmost bigram
            heapq.heappush(heap, (-float(scores[tok]), left, right, len(merged)))

        for i in range(1, count):
            try_add(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            ls, rs = syms[left], syms[right]
            if not ls or not rs or len(ls) + len(rs) != size:
                continue
            syms[left] = ls + rs
            syms[right] = b""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            try_add(prev[left], left)
            try_add(left, nxt[left])
        out = []
        i = 0 if count else -1
        while i != -1:
            s = syms[i]
            tok = to_id.get(s)
            if tok is not None:
                out.append(tok)
            else:
                # resegment: a symbol that is not a token is always an original single character here (merged
                # symbols are tokens by construction), so rev_merge never applies: emit its bytes
                for b in s:
                    out.append(self.byte_to_token(b))
            i = nxt[i]
        return out

    # --- BPE

    def _bpe_session(self, text: bytes, out: list) -> None:
        if self.tokenizer_model == "whitespace":
            self._whitespace_session(text, out)
        elif self.tokenizer_model == "hybriddna":
            self._hybriddna_session(text, out)
        else:
            self._bpe_tokenize(text, out)

    def split_words(self, text: bytes) -> list[str]:
        """unicode_regex_split for this vocabulary's pre-tokenizer (byte-encoded words for byte-level BPE)."""
        cpts = U.cpts_from_utf8(text)
        ustr = U.cpts_to_str(cpts)
        offsets = regex_split_offsets(np.asarray(cpts, dtype=np.int64), self._regexes, ustr)
        words = []
        start = 0
        for off in offsets.tolist():
            words.append(ustr[start:start + off])
            start += off
        if self._byte_encode:
            table = U.BYTE_ENCODE_TABLE
            words = [w.encode("utf-8", "surrogatepass").decode("latin-1").translate(table) for w in words]
        return words

    def _bpe_tokenize(self, text: bytes, out: list) -> None:
        cache = self._word_cache
        for word in self.split_words(text):
            ids = cache.get(word)
            if ids is None:
                ids = cache[word] = self._bpe_word(word)
            out += ids

    def _bpe_word(self, word: str) -> list[int]:
        # mirrors the per-word body of llm_tokenizer_bpe_session::tokenize (llama-vocab.cpp)
        str_to_id = self._str_to_id
        if self.flags["ignore_merges"] and word in str_to_id:
            syms = [word]
        elif self.pre_type == "GEMMA4" and word.strip("\n") == "" and word in str_to_id:
            syms = [word]
        else:
            syms = list(word)
        count = len(syms)
        ranks = self._bpe_ranks
        if count > 1:
            prev = list(range(-1, count - 1))
            nxt = list(range(1, count + 1))
            nxt[-1] = -1
            heap = []
            for i in range(1, count):
                rank = ranks.get((syms[i - 1], syms[i]))
                if rank is not None:
                    heap.append((rank, i - 1, i, syms[i - 1] + syms[i]))
            heapq.heapify(heap)
            while heap:
                rank, left, right, merged = heapq.heappop(heap)
                ls, rs = syms[left], syms[right]
                if not ls or not rs or ls + rs != merged:
                    continue  # outdated bigram
                syms[left] = merged
                syms[right] = ""
                nxt[left] = nxt[right]
                if nxt[right] >= 0:
                    prev[nxt[right]] = left
                p = prev[left]
                if p != -1:
                    r = ranks.get((syms[p], merged))
                    if r is not None:
                        heapq.heappush(heap, (r, p, left, syms[p] + merged))
                q = nxt[left]
                if q != -1:
                    r = ranks.get((merged, syms[q]))
                    if r is not None:
                        heapq.heappush(heap, (r, left, q, merged + syms[q]))
        out = []
        for s in syms:
            if not s:
                continue
            tok = str_to_id.get(s)
            if tok is not None:
                out.append(tok)
                continue
            for b in s.encode("utf-8", "surrogatepass"):
                if self._byte_encode:
                    t = self._bytes_to_id.get(bytes((b,)))
                else:
                    t = self._bytes_to_id.get(f"<0x{b:02X}>".encode())
                if t is not None:  # bytes without a token are dropped silently
                    out.append(t)
        return out

    def _whitespace_session(self, text: bytes, out: list) -> None:
        # llm_tokenizer_whitespace_session: drop whitespace, BPE each run in between
        segment = []
        for cpt in U.cpts_from_utf8(text):
            if U.flags_of(cpt) & U.WHITESPACE:
                if segment:
                    self._bpe_tokenize(b"".join(segment), out)
                    segment = []
            else:
                segment.append(U.cpt_to_utf8(U.tolower(cpt) if self.normalizer_lowercase else cpt))
        if segment:
            self._bpe_tokenize(b"".join(segment), out)

    def _hybriddna_session(self, text: bytes, out: list) -> None:
        # llm_tokenizer_hybriddna_session: <dna>...</dna> spans become 6-mers
        open_tag, close_tag, marker = b"<dna>", b"</dna>", "\ue000".encode()
        begin_id = self.text_to_token(open_tag)
        end_id = self.text_to_token(close_tag)
        oov_id = self.text_to_token(b"<oov>")
        if NULL in (begin_id, end_id, oov_id):
            self._bpe_tokenize(text, out)
            return
        k = 6
        pos = 0
        while pos < len(text):
            start = text.find(open_tag, pos)
            if start < 0:
                self._bpe_tokenize(text[pos:], out)
                break
            if start > pos:
                self._bpe_tokenize(text[pos:start], out)
            out.append(begin_id)
            content_start = start + len(open_tag)
            end = text.find(close_tag, content_start)
            content_end = len(text) if end < 0 else end
            seq = bytes(c - 32 if 0x61 <= c <= 0x7A else c for c in text[content_start:content_end])
            i = 0
            while i + k <= len(seq):
                t = self.text_to_token(seq[i:i + k] + marker)
                out.append(t if t != NULL else oov_id)
                i += k
            if i < len(seq):
                kmer = seq[i:] + b"A" * (k - (len(seq) - i))
                t = self.text_to_token(kmer + marker)
                out.append(t if t != NULL else oov_id)
            if end < 0:
                break
            out.append(end_id)
            pos = end + len(close_tag)

    # --- WPM

    def _wpm_tokenize(self, text: bytes, out: list) -> None:
        # mirrors llm_tokenizer_wpm_session::tokenize
        to_id = self._bytes_to_id
        max_len = self.max_token_len
        for word in self._wpm_preprocess(text):
            if not word:
                continue
            word1 = ESCAPED_SPACE + word
            n = len(word1)
            current = len(out)
            i = 0
            while i < n:
                match = False
                for j in range(min(n, i + max_len + 1), i, -1):
                    tok = to_id.get(word1[i:j])
                    if tok is not None:
                        out.append(tok)
                        match = True
                        i = j - 1
                        break
                if not match:
                    del out[current:]
                    break
                i += 1
            if current == len(out):
                out.append(self.special["unk"])

    def _wpm_preprocess(self, text: bytes) -> list[bytes]:
        cpts = U.cpts_from_utf8(text)
        if self.normalizer_strip_accents:
            cpts = U.normalize_nfd(cpts)
        words = [b""]
        for cpt in cpts:
            flags = U.flags_of(cpt)
            if flags & U.WHITESPACE:
                if words[-1]:
                    words.append(b"")
                continue
            if cpt == 0 or cpt == 0xFFFD or flags & U.CONTROL:
                continue
            if self.normalizer_strip_accents and flags & U.ACCENT_MARK:
                continue
            s = U.cpt_to_utf8(U.tolower(cpt) if self.normalizer_lowercase else cpt)
            if flags & U.PUNCTUATION or (cpt < 0x7F and flags & U.SYMBOL) or _is_chinese_char(cpt):
                if words[-1]:
                    words.append(b"")
                words[-1] = s
                words.append(b"")
            else:
                words[-1] += s
        if not words[-1]:
            words.pop()
        return words

    # ------------------------------------------------------------------------------------------------ decode

    def token_to_piece(self, token: int, special: bool = True, lstrip: int = 0) -> bytes:
        """llama_token_to_piece: the bytes of one token (empty for control/unknown tokens unless ``special``)."""
        attr = self._attrs[token]
        if not special and attr & (ATTR_UNKNOWN | ATTR_CONTROL):
            return b""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece_for_cache(token)
        if lstrip:
            k = 0
            while k < lstrip and piece[k:k + 1] == b" ":
                k += 1
            piece = piece[k:]
        return piece

    def _piece_for_cache(self, token: int) -> bytes:
        # llama_vocab::impl::token_to_piece with special=true (the cache llama.cpp builds at load)
        attr = self._attrs[token]
        text = self._texts[token]
        if self.type in (SPM, UGM, WPM):
            if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
                return text
            if attr & ATTR_NORMAL:
                return text.replace(ESCAPED_SPACE, b" ")
            if attr & ATTR_BYTE:
                return bytes((self._token_to_byte(token),))
            return b""
        if self.type == BPE:
            if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
                return text
            if attr & ATTR_NORMAL:
                if self.flags["escape_whitespaces"]:
                    return text.replace(ESCAPED_SPACE, b" ")
                return _decode_byte_level(text)
            if attr & ATTR_BYTE:
                return bytes((self._token_to_byte(token),))
            return b""
        if self.type == RWKV:
            from ._rwkv import unescape_rwkv_token
            return unescape_rwkv_token(text)
        return b""

    def _token_to_byte(self, token: int) -> int:
        if self.type == WPM:
            raise ValueError("WPM vocabularies have no byte tokens (GGML_ABORT)")
        hexdigits = self._texts[token][3:5]
        # strtol(..., 16): leading hex digits, 0 if none
        value = 0
        for c in hexdigits:
            d = int(chr(c), 16) if chr(c) in "0123456789abcdefABCDEF" else None
            if d is None:
                break
            value = value * 16 + d
        return value & 0xFF

    def detokenize(self, tokens, remove_special: bool = False, unparse_special: bool = False) -> bytes:
        """llama_detokenize: the bytes of a token sequence, with clean_up_tokenization_spaces when enabled."""
        tokens = list(tokens)
        flags = self.flags
        remove_space = flags["add_space_prefix"]
        if remove_special and flags["add_bos"] and tokens and tokens[0] == self.special["bos"]:
            remove_space = False
            tokens = tokens[1:]
        if remove_special and flags["add_eos"] and tokens and tokens[-1] == self.special["eos"]:
            tokens = tokens[:-1]
        parts = []
        for t in tokens:
            parts.append(self.token_to_piece(t, unparse_special, 1 if remove_space else 0))
            remove_space = False
        text = b"".join(parts)
        if flags["clean_spaces"]:
            text = _clean_spaces(text)
        return text

    def decode(self, tokens, remove_special: bool = False, unparse_special: bool = False) -> str:
        """:meth:`detokenize` decoded as UTF-8 (invalid sequences become U+FFFD)."""
        return self.detokenize(tokens, remove_special, unparse_special).decode("utf-8", "replace")


def _is_chinese_char(cpt: int) -> bool:
    # llm_tokenizer_wpm_session::is_chinese_char (0x2B920, not 0x2B820, as in the HF rust code)
    return (0x4E00 <= cpt <= 0x9FFF or 0x3400 <= cpt <= 0x4DBF or 0x20000 <= cpt <= 0x2A6DF
            or 0x2A700 <= cpt <= 0x2B73F or 0x2B740 <= cpt <= 0x2B81F or 0x2B920 <= cpt <= 0x2CEAF
            or 0xF900 <= cpt <= 0xFAFF or 0x2F800 <= cpt <= 0x2FA1F)


def _decode_byte_level(text: bytes) -> bytes:
    """llama_decode_text: GPT-2 byte-level code points back to bytes; unmapped ones become an [UNK_BYTE_..] marker."""
    out = bytearray()
    for cpt in U.cpts_from_utf8(text):
        b = U.CPT_TO_BYTE.get(cpt)
        if b is not None:
            out.append(b)
        else:
            utf8 = U.cpt_to_utf8(cpt)
            out += b"[UNK_BYTE_0x" + utf8.hex().encode() + text + b"]"
    return bytes(out)


def _clean_spaces(text: bytes) -> bytes:
    """The three clean_spaces passes of llama_vocab::impl::detokenize, on bytes."""
    t = bytearray(text)
    # pass 1: " ?", " !", " .", " ," lose the space
    total1 = len(t)
    total = 1 if total1 else 0
    for i in range(1, total1):
        x = t[i]
        if t[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        t[total] = x
        total += 1
    # pass 2: " ' " -> "'"
    total2 = total
    total = 1 if total2 else 0
    i = 1
    while i < total2:
        x = t[i]
        if x == 0x27 and i + 1 < total2 and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    # pass 3: " 's", " 'm", " 're", " 've" lose the space
    total3 = total
    total = 1 if total3 else 0
    for i in range(1, total3):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < total3:
            x1 = t[i + 1]
            if x1 in b"td":
                pass
            elif x1 in b"sm":
                total -= 1
            elif i + 2 < total3:
                x2 = t[i + 2]
                if (x1 == 0x72 and x2 == 0x65) or (x1 == 0x76 and x2 == 0x65):
                    total -= 1
        t[total] = x
        total += 1
    return bytes(t[:total])


def _libstdcxx_sort(items: list, greater) -> list:
    """std::sort as libstdc++ implements it (introsort + final insertion sort), for a strict-weak-order ``greater``
    comparator ``comp(a, b)``.  The order of equal elements matters to llama.cpp (special tokens of equal length
    are cut out of the text in this order), and std::sort is not stable, so refimpl reproduces the algorithm."""
    a = list(items)
    n = len(a)
    if n < 2:
        return a
    comp = greater
    threshold = 16

    def move_median_to_first(result, x, y, z):
        if comp(a[x], a[y]):
            if comp(a[y], a[z]):
                a[result], a[y] = a[y], a[result]
            elif comp(a[x], a[z]):
                a[result], a[z] = a[z], a[result]
            else:
                a[result], a[x] = a[x], a[result]
        elif comp(a[x], a[z]):
            a[result], a[x] = a[x], a[result]
        elif comp(a[y], a[z]):
            a[result], a[z] = a[z], a[result]
        else:
            a[result], a[y] = a[y], a[result]

    def unguarded_partition(first, last, pivot):
        while True:
            while comp(a[first], a[pivot]):
                first += 1
            last -= 1
            while comp(a[pivot], a[last]):
                last -= 1
            if not first < last:
                return first
            a[first], a[last] = a[last], a[first]
            first += 1

    def heap_select_and_sort(first, last):
        # std::__partial_sort(first, last, last): make_heap + sort_heap with comp
        seg = a[first:last]
        seg = _libstdcxx_heapsort(seg, comp)
        a[first:last] = seg

    def introsort_loop(first, last, depth):
        while last - first > threshold:
            if depth == 0:
                heap_select_and_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def insertion_sort(first, last):
        for i in range(first + 1, last):
            val = a[i]
            if comp(val, a[first]):
                a[first + 1:i + 1] = a[first:i]
                a[first] = val
            else:
                j = i
                while comp(val, a[j - 1]):
                    a[j] = a[j - 1]
                    j -= 1
                a[j] = val

    def unguarded_insertion_sort(first, last):
        for i in range(first, last):
            val = a[i]
            j = i
            while comp(val, a[j - 1]):
                a[j] = a[j - 1]
                j -= 1
            a[j] = val

    introsort_loop(0, n, 2 * (n.bit_length() - 1))
    if n > threshold:
        insertion_sort(0, threshold)
        unguarded_insertion_sort(threshold, n)
    else:
        insertion_sort(0, n)
    return a


def _libstdcxx_heapsort(seg: list, comp) -> list:
    """std::make_heap followed by std::sort_heap (libstdc++ __adjust_heap / __push_heap)."""
    a = list(seg)
    n = len(a)

    def push_heap(hole, top, value):
        parent = (hole - 1) // 2
        while hole > top and comp(a[parent], value):
            a[hole] = a[parent]
            hole = parent
            parent = (hole - 1) // 2
        a[hole] = value

    def adjust_heap(hole, length, value):
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if comp(a[child], a[child - 1]):
                child -= 1
            a[hole] = a[child]
            hole = child
        if (length & 1) == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[hole] = a[child - 1]
            hole = child - 1
        push_heap(hole, top, value)

    if n >= 2:
        parent = (n - 2) // 2
        while True:
            adjust_heap(parent, n, a[parent])
            if parent == 0:
                break
            parent -= 1
    last = n
    while last > 1:
        last -= 1
        value = a[last]
        a[last] = a[0]
        adjust_heap(0, last, value)
    return a
