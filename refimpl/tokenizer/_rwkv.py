"""RWKV "world" tokenizer: greedy longest match over unescaped token bytes (llm_tokenizer_rwkv, llama-vocab.cpp)."""
from __future__ import annotations


def unescape_rwkv_token(escaped: bytes) -> bytes:
    """llama_unescape_rwkv_token: \\t \\n \\r \\xHH and \\<c> escapes (hex digits taken as c-'a'+10 / c-'0')."""
    out = bytearray()
    escaping = False
    hex_remaining = 0
    hex_acc = 0
    for c in escaped:
        if hex_remaining:
            value = (c - 0x61 + 10) if c >= 0x61 else (c - 0x30)
            hex_acc = ((hex_acc << 4) + value) & 0xFF
            hex_remaining -= 1
            if hex_remaining == 0:
                out.append(hex_acc)
                hex_acc = 0
            continue
        if escaping:
            if c == 0x74:
                out.append(0x09)
            elif c == 0x6E:
                out.append(0x0A)
            elif c == 0x72:
                out.append(0x0D)
            elif c == 0x78:
                hex_remaining = 2
            else:
                out.append(c)
            escaping = False
            continue
        if c == 0x5C:
            escaping = True
            continue
        out.append(c)
    return bytes(out)


class RwkvModel:
    def __init__(self, tok):
        self.tok = tok
        self.matcher = {}
        self.prefixes = set()
        for i, text in enumerate(tok._texts):
            t = unescape_rwkv_token(text)
            self.matcher[t] = i  # naive_trie::insert: a later token with the same bytes wins
            for k in range(1, len(t) + 1):
                self.prefixes.add(t[:k])

    def tokenize(self, text: bytes, output: list) -> None:
        # mirrors llm_tokenizer_rwkv_session::tokenize, including its position bookkeeping
        n = len(text)
        position = 0
        while position < n:
            if text[position:position + 1] not in self.prefixes:
                output.append(self.tok.special["unk"])
                position += 1
                continue
            start = position
            token_id = 0
            token_length = 0
            while True:  # node != NULL
                node_text = text[start:position + 1]
                if node_text in self.matcher:
                    token_id = self.matcher[node_text]
                    token_length = position + 1
                if position + 1 >= n:
                    break
                position += 1
                if text[start:position + 1] not in self.prefixes:
                    break
            output.append(token_id)
            position = token_length
