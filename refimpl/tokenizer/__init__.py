"""Tokenizers from GGUF, token for token what llama.cpp produces (src/llama-vocab.cpp, src/unicode.cpp).

    from refimpl.tokenizer import Tokenizer
    tok = Tokenizer.from_gguf("ggml-vocab-llama-bpe.gguf")
    ids = tok.encode("Hello world", add_special=True, parse_special=False)
    text = tok.decode(ids)

See spec/tokenizer.md for the algorithms and llama.cpp's surprises.
"""
from ._tokenizer import (ATTR_BYTE, ATTR_CONTROL, ATTR_LSTRIP, ATTR_NORMAL, ATTR_RSTRIP, ATTR_UNKNOWN,
                         ATTR_UNUSED, ATTR_USER_DEFINED, NULL, Tokenizer)

__all__ = ["Tokenizer", "NULL", "ATTR_UNKNOWN", "ATTR_UNUSED", "ATTR_NORMAL", "ATTR_CONTROL", "ATTR_USER_DEFINED",
           "ATTR_BYTE", "ATTR_LSTRIP", "ATTR_RSTRIP"]
