"""Shared helpers of the converter tests: the committed checkpoints (tests/data/convert/checkpoints.tar.xz, made
by tools/make_hf_checkpoints.py with transformers) and a description of a GGUF file in the format of
golden/convert/*.json (tools/goldens/convert.py), to name the first difference when bytes differ."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "convert"
CHECKPOINTS = DATA / "checkpoints.tar.xz"
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "convert"
LONG = 16
#: the --metadata override file of the golden case "f16+metadata" (written to a temporary file by the generator and
#: by the test; its path does not enter the output)
METADATA_OVERRIDE = {"general.author": "refimpl tests", "general.version": "v0.1", "general.license": "mit",
                     "general.tags": ["test", "tiny"], "general.languages": ["en"], "general.sampling.temp": 0.7,
                     "general.base_models": [{"name": "Base", "organization": "Org",
                                              "repo_url": "https://example.invalid/base"}]}


def extract_checkpoints(dest: Path) -> Path:
    with tarfile.open(CHECKPOINTS, "r:xz") as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:                  # Python without extraction filters (< 3.10.12 / 3.11.4)
            tar.extractall(dest)
    return dest


def golden_cases():
    """(checkpoint, case name, golden entry) for every conversion the pinned script made."""
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        for case, entry in json.loads(path.read_text()).items():
            out.append((path.stem, case, entry))
    return out


def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def describe(path: Path) -> dict:
    """Same fields as tools/goldens/convert.py's description, read with refimpl.gguf."""
    from refimpl import gguf
    data = path.read_bytes()
    g = gguf.read(path)
    kvs = []
    for key, v in g.metadata.items():
        tname = v.type.name
        if tname == "ARRAY":
            values = _plain(list(v.value))
            entry = {"key": key, "type": "ARRAY", "element_type": v.element_type.name, "length": len(values)}
            if len(values) > LONG:
                entry["sha256"] = hashlib.sha256(json.dumps(values, ensure_ascii=False,
                                                            separators=(",", ":")).encode()).hexdigest()
            else:
                entry["value"] = values
        else:
            entry = {"key": key, "type": tname, "value": _plain(v.value)}
        kvs.append(entry)
    tensors = []
    for t in g.tensors.values():
        start = g.data_offset + t.offset
        raw = data[start:start + t.nbytes]
        tensors.append({"name": t.name, "type": t.ggml_type.name if hasattr(t.ggml_type, "name") else str(t.ggml_type),
                        "shape": [int(n) for n in reversed(t.shape)],      # ggml order, as gguf-py reports
                        "sha256": hashlib.sha256(raw).hexdigest()})
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "metadata": kvs, "tensors": tensors}


def first_difference(expected: dict, got: dict) -> str:
    """The first metadata key or tensor where two descriptions differ, in file order."""
    for i, (a, b) in enumerate(zip(expected["metadata"], got["metadata"])):
        if a != b:
            return f"metadata #{i}: expected {json.dumps(a)[:300]}, got {json.dumps(b)[:300]}"
    if len(expected["metadata"]) != len(got["metadata"]):
        ka = [e["key"] for e in expected["metadata"]]
        kb = [e["key"] for e in got["metadata"]]
        return f"metadata keys differ: missing {sorted(set(ka) - set(kb))}, extra {sorted(set(kb) - set(ka))}"
    for i, (a, b) in enumerate(zip(expected["tensors"], got["tensors"])):
        for field in ("name", "type", "shape", "sha256"):
            if a[field] != b[field]:
                return f"tensor #{i} {a['name']!r}: {field} expected {a[field]}, got {b[field]}"
    if len(expected["tensors"]) != len(got["tensors"]):
        return f"{len(expected['tensors'])} tensors expected, got {len(got['tensors'])}"
    return f"descriptions agree but the files differ ({expected['bytes']} vs {got['bytes']} bytes): padding/offsets"


# ---------------------------------------------------------------------------------------------------------------
# Vocab-only checkpoints with real pre-tokenizers: tokenizer.json rebuilt, deterministically, from llama.cpp's
# models/ggml-vocab-<name>.gguf (tokens, merges, special tokens) with the Hugging Face pre-tokenizer, normalizer and
# post-processor of the model family, so that the pre-tokenizer hash is the one llama.cpp's table knows.  Too large
# to commit (128k/152k tokens), they are rebuilt by the golden generator and by the tests from the same function.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
VOCAB_CHECKPOINTS = {
    # name: (ggml vocab, config.json, split regex, normalizer, BOS added by the post-processor, tokenizer_config)
    "vocab-llama3-bpe": ("llama-bpe", {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                       "vocab_size": 128256, "bos_token_id": 128000, "eos_token_id": 128001,
                                       "rope_theta": 500000.0},
                         _LLAMA3_SPLIT, None, "<|begin_of_text|>",
                         {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                          "eos_token": "<|end_of_text|>", "clean_up_tokenization_spaces": True,
                          "model_max_length": 131072}),
    "vocab-qwen2-bpe": ("qwen2", {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
                                  "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": True},
                        _QWEN2_SPLIT, {"type": "NFC"}, None,
                        {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                         "pad_token": "<|endoftext|>", "errors": "replace", "split_special_tokens": False,
                         "clean_up_tokenization_spaces": False, "model_max_length": 131072}),
}


def build_vocab_checkpoint(dest: Path, name: str, vocab_dir: Path) -> Path:
    """Write checkpoint ``name`` of VOCAB_CHECKPOINTS into ``dest/name`` and return its path."""
    from refimpl import gguf
    from safetensors.numpy import save_file
    vocab_name, config, split, normalizer, bos, tok_config = VOCAB_CHECKPOINTS[name]
    g = gguf.read(vocab_dir / f"ggml-vocab-{vocab_name}.gguf")
    tokens = list(g.get("tokenizer.ggml.tokens"))
    types = [int(t) for t in g.get("tokenizer.ggml.token_type")]
    merges = list(g.get("tokenizer.ggml.merges"))
    vocab, added = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 1:
            vocab[t] = i
        elif ty == 3:
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    if bos is None:
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    else:
        bos_id = vocab.get(bos, next(a["id"] for a in added if a["content"] == bos))
        post = {"type": "Sequence", "processors": [
            byte_level,
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}]}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": vocab_name == "llama-bpe", "vocab": vocab, "merges": merges},
    }
    out = dest / name
    out.mkdir(parents=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    tc = dict(tok_config)
    tc["added_tokens_decoder"] = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                    "single_word", "special")} for a in added}
    (out / "tokenizer_config.json").write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")
    cfg = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
           "num_key_value_heads": 4, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, **config}
    (out / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    save_file({"model.norm.weight": np.ones(64, dtype=np.float32)}, str(out / "model.safetensors"))
    return out
