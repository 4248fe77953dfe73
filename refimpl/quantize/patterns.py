"""``--tensor-type NAME=TYPE`` patterns: llama.cpp matches them with ``std::regex_search`` (ECMAScript grammar);
refimpl uses Python's ``re.search`` after checking and translating the pattern.

Where the two grammars differ, and what is done about it:

* ``\\d \\w \\s`` are ASCII classes in std::regex (``char``): compiled with ``re.ASCII``.
* POSIX bracket classes (``[[:alpha:]]``, ``[[:digit:]_]``...) exist in ECMAScript std::regex, not in Python
  (which would read ``[[:alpha:]`` as a set of characters): translated to ASCII ranges.
* Python-only syntax -- named groups ``(?P<n>..)``/``(?<n>..)``, lookbehind ``(?<=..)``/``(?<!..)``, inline
  flags ``(?i)``, comments ``(?#..)``, atomic groups ``(?>..)``, possessive quantifiers ``*+ ++ ?+ }+``,
  ``\\A \\Z \\z \\G`` -- makes std::regex throw ``regex_error``, which fails llama_model_quantize: refused here too.
* ``$`` and ``.``: Python's ``$`` also matches before a final newline and ``.`` matches ``\\r``; tensor names
  hold neither, so the difference never shows.
"""
from __future__ import annotations

import re

_POSIX_CLASSES = {
    "alpha": "A-Za-z", "digit": "0-9", "alnum": "A-Za-z0-9", "upper": "A-Z", "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "xdigit": "0-9A-Fa-f", "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "w": "A-Za-z0-9_", "d": "0-9", "s": " \\t\\n\\r\\f\\v", "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e",
}
_PYTHON_ONLY = re.compile(r"\(\?(P|<|#|>|[aiLmsux-])|(?<!\\)(?:\\\\)*\\[AZzG]|[*+?}]\+")


def compile_tensor_pattern(pattern: str) -> re.Pattern:
    """Compile a --tensor-type pattern so that ``.search(name)`` answers as ``std::regex_search`` would, or raise
    ValueError where std::regex would throw."""
    if _PYTHON_ONLY.search(pattern):
        raise ValueError(f"tensor type pattern {pattern!r} uses syntax std::regex (ECMAScript) does not accept "
                         f"(named groups, lookbehind, inline flags, atomic groups, possessive quantifiers, \\A \\Z)")
    translated = re.sub(r"\[:([a-z]+):\]", lambda m: _posix(m.group(1), pattern), pattern)
    try:
        return re.compile(translated, re.ASCII)
    except re.error as e:
        raise ValueError(f"invalid tensor type pattern {pattern!r}: {e}") from None


def _posix(name: str, pattern: str) -> str:
    try:
        return _POSIX_CLASSES[name]
    except KeyError:
        raise ValueError(f"tensor type pattern {pattern!r}: unknown character class [:{name}:]") from None
