"""UGM (T5 / XLM-R unigram) tokenizer: llm_tokenizer_ugm + llm_tokenizer_ugm_session (llama-vocab.cpp)."""
from __future__ import annotations

from . import _unicode as U

ESCAPED_SPACE = "\u2581".encode()
FLT_MAX = 3.4028234663852886e38
_ATTR_NORMAL, _ATTR_USER_DEFINED, _ATTR_UNUSED = 1 << 2, 1 << 4, 1 << 1


class UgmModel:
    def __init__(self, tok):
        self.tok = tok
        cm = tok.precompiled_charsmap
        self.xcda = None
        self.replacements = b""
        if cm:
            size = int.from_bytes(cm[:4], "little")
            import numpy as np
            self.xcda = np.frombuffer(cm[4:4 + size], dtype="<u4").astype(np.int64).tolist()
            self.replacements = cm[4 + size:]
        attrs = tok._attrs
        scores = tok.scores
        min_score, max_score = FLT_MAX, -FLT_MAX
        self.matcher = {}        # token_matcher: text -> id
        self.prefixes = set()    # every prefix of a matcher text (the trie's nodes)
        self.user_defined = set()
        self.user_prefixes = set()
        for i, text in enumerate(tok._texts):
            a = attrs[i]
            if a & _ATTR_NORMAL:
                s = float(scores[i])
                min_score = min(min_score, s)
                max_score = max(max_score, s)
            if a & (_ATTR_NORMAL | _ATTR_USER_DEFINED | _ATTR_UNUSED):
                self.matcher[text] = i
                for k in range(1, len(text) + 1):
                    self.prefixes.add(text[:k])
            if a & _ATTR_USER_DEFINED:
                self.user_defined.add(text)
                for k in range(1, len(text) + 1):
                    self.user_prefixes.add(text[:k])
        self.min_score = min_score
        # computed in float: unknown_token_score = min_score - 10.0 (float arithmetic)
        import numpy as np
        self.unknown_score = float(np.float32(min_score) - np.float32(10.0))

    # --- normalization

    def _normalize_prefix(self, data: bytes, offset: int):
        """normalize_prefix: (replacement bytes, consumed input bytes)."""
        n = len(data)
        if offset == n:
            return b"", 0
        # longest user-defined token prefix (naive_trie::get_longest_prefix walks the trie as far as it goes)
        length = 0
        while offset + length < n and data[offset:offset + length + 1] in self.user_prefixes:
            length += 1
        if length > 0:
            return data[offset:offset + length], length
        longest_len = 0
        longest_off = 0
        xcda = self.xcda
        if xcda:
            def node(i):
                if i >= len(xcda):
                    raise ValueError("Index out of array bounds in XCDA array!")
                return xcda[i]

            def base(i):
                p = node(i)
                return (p >> 10) << ((p & (1 << 9)) >> 6)

            node_index = base(0)
            for prefix_offset in range(offset, n):
                c = data[prefix_offset]
                if c == 0:
                    break
                node_index ^= c
                if node(node_index) & ((1 << 31) | 0xFF) != c:  # lcheck
                    break
                is_leaf = (node(node_index) >> 8) & 1
                node_index ^= base(node_index)
                if is_leaf:
                    longest_len = prefix_offset - offset + 1
                    longest_off = node(node_index) & ((1 << 31) - 1)
        if longest_len > 0:
            repl = self.replacements
            if longest_off >= len(repl):
                raise ValueError("Index out of array bounds in precompiled charsmap!")
            end = repl.find(b"\0", longest_off)
            if end < 0:
                raise ValueError("Unterminated string in precompiled charsmap!")
            return repl[longest_off:end], longest_len
        cpt, nxt = U.cpt_from_utf8(data, offset)
        if nxt == offset + 1 and data[offset] >= 0x80:
            return "\ufffd".encode(), 1  # invalid UTF-8: one byte becomes U+FFFD
        return data[offset:nxt], nxt - offset

    def normalize(self, data: bytes) -> bytes:
        tok = self.tok
        space = ESCAPED_SPACE if tok.flags["escape_whitespaces"] else b" "
        suffix = tok.flags["treat_whitespace_as_suffix"]
        prepend = not suffix and tok.flags["add_space_prefix"]
        append = suffix and tok.flags["add_space_prefix"]
        merge = tok.flags["remove_extra_whitespaces"]
        out = bytearray()
        is_space_prepended = False
        processing_non_ws = False
        offset = 0
        while offset < len(data):
            repl, consumed = self._normalize_prefix(data, offset)
            for c in repl:
                if c != 0x20:
                    if not processing_non_ws:
                        processing_non_ws = True
                        if (prepend and not is_space_prepended) or merge:
                            out += space
                            is_space_prepended = True
                    out.append(c)
                else:
                    processing_non_ws = False
                    if not merge:
                        out += space
            offset += consumed
        if append:
            out += space
        return bytes(out)

    # --- Viterbi

    def tokenize(self, text: bytes, output: list) -> None:
        tok = self.tok
        unk = tok.special["unk"]
        normalized = self.normalize(text)
        n = len(normalized)
        if n == 0:
            return
        NEG = -1.7976931348623157e308  # -DBL_MAX
        best_id = [unk] * (n + 1)
        best_off = [0] * (n + 1)
        best_score = [NEG] * (n + 1)
        best_score[0] = 0.0
        matcher, prefixes, attrs, scores = self.matcher, self.prefixes, tok._attrs, tok.scores
        off = 0
        while off < n:
            n_units = min(U.len_utf8(normalized[off]), n - off)
            found_single = False
            current = best_score[off]
            end = off + 1
            while end <= n and normalized[off:end] in prefixes:
                piece = normalized[off:end]
                tid = matcher.get(piece)
                if tid is not None:
                    if end - off == n_units:
                        found_single = True
                    score = 0.0 if attrs[tid] & _ATTR_USER_DEFINED else float(scores[tid])
                    challenger = current + score
                    if challenger > best_score[end]:
                        best_id[end], best_off[end], best_score[end] = tid, off, challenger
                end += 1
            if not found_single:
                challenger = current + self.unknown_score
                end = off + n_units
                if challenger > best_score[end]:
                    best_id[end], best_off[end], best_score[end] = unk, off, challenger
            off += n_units
        result = []
        is_prev_unknown = False
        pos = n
        while True:
            tid = best_id[pos]
            is_unknown = tid == unk
            if not (is_prev_unknown and is_unknown):
                result.append(tid)
            if best_off[pos] == 0:
                break
            is_prev_unknown = is_unknown
            pos = best_off[pos]
        output += result[::-1]
