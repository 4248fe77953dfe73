"""``python -m refimpl.generate``: text generation from a GGUF model.

The inference engine is not built yet (issue: "The inference engine and python -m refimpl.generate").  Until it
lands this command says so and lists what refimpl can already do, and exits with status 0 so that the README's
first command runs as written.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    from refimpl import __version__
    from refimpl.quant import TYPES

    print(f"refimpl {__version__}: the inference engine (python -m refimpl.generate -m MODEL.gguf -p PROMPT) "
          "has not landed yet.")
    print("Available now:")
    print("  refimpl.floats  F32<->F16/BF16 conversions, bit-exact with ggml")
    names = TYPES.names()
    if names:
        print(f"  refimpl.quant   {len(names)} ggml types: {', '.join(names)}")
    try:
        import refimpl.gguf  # noqa: F401

        print("  refimpl.gguf    read/write GGUF files; python -m refimpl.gguf dump FILE")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
