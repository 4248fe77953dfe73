"""Copy convert_hf_to_gguf.py's BPE pre-tokenizer table (``get_vocab_base_pre``: chkhsh -> tokenizer.ggml.pre,
generated upstream by convert_hf_to_gguf_update.py) and its check text into refimpl/convert/bpe_pre_hashes.py.
Data, not code: a hash and a name per known tokenizer.

    python tools/extract_bpe_pre_hashes.py [vendor/conversion/base.py]
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "refimpl" / "convert" / "bpe_pre_hashes.py"


def extract(source: str) -> tuple[str, list[tuple[str, str]]]:
    body = source[source.index("# Marker: Start get_vocab_base_pre"):source.index("# Marker: End get_vocab_base_pre")]
    chktxt = ast.literal_eval(re.search(r"chktxt = ('.*')\n", body).group(1))
    pairs = re.findall(r'if chkhsh == "([0-9a-f]{64})":\n(?:\s*#[^\n]*\n)*\s*res = "([^"]+)"', body)
    return chktxt, pairs


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else ROOT / "vendor" / "conversion" / "base.py"
    chktxt, pairs = extract(src.read_text(encoding="utf-8"))
    lines = ['"""convert_hf_to_gguf.py\'s BPE pre-tokenizer table (``get_vocab_base_pre`` of the pinned release),',
             "copied by tools/extract_bpe_pre_hashes.py: the sha256 of ``str(token ids)`` of ``CHKTXT`` encoded by the",
             'model\'s tokenizer (special tokens added) -> the ``tokenizer.ggml.pre`` name llama.cpp knows."""',
             "", f"CHKTXT = {chktxt!r}", "", "#: in the script's order; a later duplicate wins there too (each is an `if`)",
             "HASHES = ("]
    lines += [f"    ({h!r}, {n!r})," for h, n in pairs]
    lines += [")", ""]
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print(f"{len(pairs)} hashes -> {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
