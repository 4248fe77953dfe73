"""A Hugging Face checkpoint directory: its config (with transformers' defaults filled in, as the script's
``AutoConfig.from_pretrained(dir).to_dict()`` sees it) and its safetensors tensors, memory-mapped.

Tensors are found as ``ModelBase.index_tensors`` finds them: the parts named by ``model.safetensors.index.json``
(sorted, deduplicated), else every ``model*.safetensors`` file (sorted); within a part, tensors sorted by name
(``gguf.utility.SafetensorsLocal``, which mirrors the safetensors library's order).  The header is parsed here
rather than through ``safetensors.safe_open`` because the converter needs BF16 tensors, which numpy has no dtype
for, as raw bits, and a zero-copy view of every tensor (peak memory stays near one tensor, not one shard).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: safetensors dtype -> numpy dtype of the stored element (BF16 stays uint16 bits until converted)
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
                      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}

#: transformers 4.57.6's config defaults for the keys convert_hf_to_gguf.py reads, per ``model_type``
#: (``AutoConfig.for_model(t).to_dict()``; a fact of the library the pinned script requires, see
#: requirements-convert_hf_to_gguf.txt).  A key present in config.json always wins.
CONFIG_DEFAULTS: dict[str, dict] = {
    "llama": {"max_position_embeddings": 2048, "hidden_size": 4096, "intermediate_size": 11008,
              "num_attention_heads": 32, "num_key_value_heads": None, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
              "head_dim": None, "rope_scaling": None, "tie_word_embeddings": False, "vocab_size": 32000,
              "num_hidden_layers": 32, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None},
    "mistral": {"max_position_embeddings": 131072, "hidden_size": 4096, "intermediate_size": 14336,
                "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
                "head_dim": None, "tie_word_embeddings": False, "sliding_window": 4096, "vocab_size": 32000,
                "num_hidden_layers": 32, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None},
    "qwen2": {"max_position_embeddings": 32768, "hidden_size": 4096, "intermediate_size": 22016,
              "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
              "rope_scaling": None, "tie_word_embeddings": False, "sliding_window": None, "vocab_size": 151936,
              "num_hidden_layers": 32, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
              "use_sliding_window": False},
    "qwen3": {"max_position_embeddings": 32768, "hidden_size": 4096, "intermediate_size": 22016,
              "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
              "head_dim": 128, "rope_scaling": None, "tie_word_embeddings": False, "sliding_window": None,
              "vocab_size": 151936, "num_hidden_layers": 32, "bos_token_id": None, "eos_token_id": None,
              "pad_token_id": None, "use_sliding_window": False},
    "gemma3_text": {"max_position_embeddings": 131072, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_attention_heads": 8, "num_key_value_heads": 4, "rope_theta": 1000000.0,
                    "rms_norm_eps": 1e-06, "head_dim": 256, "rope_scaling": None, "tie_word_embeddings": True,
                    "sliding_window": 4096, "final_logit_softcapping": None, "attn_logit_softcapping": None,
                    "_sliding_window_pattern": 6, "rope_local_base_freq": 10000.0, "vocab_size": 262208,
                    "num_hidden_layers": 26, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
                    "query_pre_attn_scalar": 256},
    "phi3": {"max_position_embeddings": 4096, "hidden_size": 3072, "intermediate_size": 8192,
             "num_attention_heads": 32, "num_key_value_heads": None, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
             "rope_scaling": None, "tie_word_embeddings": False, "sliding_window": None,
             "original_max_position_embeddings": 4096, "partial_rotary_factor": 1.0, "vocab_size": 32064,
             "num_hidden_layers": 32, "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000},
    "gpt2": {"n_positions": 1024, "n_embd": 768, "n_inner": None, "n_head": 12, "layer_norm_epsilon": 1e-05,
             "tie_word_embeddings": True, "vocab_size": 50257, "n_layer": 12, "bos_token_id": 50256,
             "eos_token_id": 50256, "pad_token_id": None},
}
#: PretrainedConfig's own defaults that the script's look-ups can reach (``max_length`` is a context fallback)
GENERIC_DEFAULTS = {"max_length": 20, "tie_word_embeddings": True}


def load_hparams(config: dict) -> dict:
    """config.json as ``AutoConfig.from_pretrained(dir).to_dict()`` of transformers 4.57.6 returns it for the
    architectures refimpl converts: class defaults under the file's keys, plus the derivations the config classes
    make in ``__init__`` (KV heads default to the heads, head_dim to hidden/heads, Qwen's sliding window only when
    enabled, rope_scaling's legacy ``type`` copied to ``rope_type``)."""
    model_type = config.get("model_type")
    hp = {**GENERIC_DEFAULTS, **CONFIG_DEFAULTS.get(model_type, {}), **config}
    if model_type in ("llama", "mistral", "qwen2", "qwen3", "phi3") and hp.get("num_key_value_heads") is None:
        hp["num_key_value_heads"] = hp["num_attention_heads"]
    if model_type == "llama" and hp.get("head_dim") is None:
        hp["head_dim"] = hp["hidden_size"] // hp["num_attention_heads"]
    if model_type in ("qwen2", "qwen3") and not hp.get("use_sliding_window"):
        hp["sliding_window"] = None
    rope = hp.get("rope_scaling")
    if isinstance(rope, dict) and "type" in rope and "rope_type" not in rope:
        hp["rope_scaling"] = {**rope, "rope_type": rope["type"]}
    return hp


class TensorRef(NamedTuple):
    """One stored tensor: where its bytes are and how to read them."""
    file: Path
    dtype: str          # safetensors dtype name
    shape: tuple[int, ...]
    start: int          # absolute byte offset in the file
    nbytes: int


def read_safetensors_header(path: Path) -> dict[str, TensorRef]:
    """The tensors of one .safetensors file, sorted by name; ValueError for a malformed or truncated file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise ValueError(f"{path}: truncated safetensors file: header of {n} bytes, file has {size}")
        try:
            meta = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: safetensors header is not valid JSON: {e}") from None
    refs = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}; supported: "
                             f"{', '.join(SAFETENSORS_DTYPES)}")
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        itemsize = np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if end - begin != int(np.prod(shape)) * itemsize:
            raise ValueError(f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} should take "
                             f"{int(np.prod(shape)) * itemsize} bytes, its offsets give {end - begin}")
        if 8 + n + end > size:
            raise ValueError(f"{path}: truncated safetensors file: tensor {name!r} needs bytes up to "
                             f"{8 + n + end}, the file has {size}")
        refs[name] = TensorRef(path, dtype, shape, 8 + n + begin, end - begin)
    return dict(sorted(refs.items()))


def load_tensor(ref: TensorRef) -> np.ndarray:
    """The tensor as the script's ``prepare_tensors`` hands it on: F16 and F32 as stored, every other dtype
    converted to float32 (BF16 by shifting its bits into the high half of a float32, which is exact)."""
    raw = np.memmap(ref.file, dtype=SAFETENSORS_DTYPES[ref.dtype], mode="r", offset=ref.start,
                    shape=ref.shape if ref.shape else (1,))
    raw = raw.reshape(ref.shape)
    if ref.dtype in ("F16", "F32"):
        return raw
    if ref.dtype == "BF16":
        # in slices of 1M elements: no full-size uint32 temporaries next to the float32 result
        out = np.empty(ref.shape, dtype=np.float32)
        src, dst = raw.reshape(-1), out.reshape(-1).view(np.uint32)
        for s in range(0, src.size, 1 << 20):
            np.left_shift(src[s:s + (1 << 20)], 16, out=dst[s:s + (1 << 20)], dtype=np.uint32)
        return out
    return raw.astype(np.float32)


class Checkpoint:
    """A Hugging Face model directory."""

    def __init__(self, path):
        self.dir = Path(path)
        self._json: dict[str, object] = {}
        if not self.dir.is_dir():
            raise ValueError(f"{self.dir} is not a directory (expected a Hugging Face checkpoint folder)")
        config_path = self.dir / "config.json"
        if not config_path.is_file():
            raise ValueError(f"{self.dir}: no config.json; not a Hugging Face checkpoint")
        with open(config_path, encoding="utf-8") as f:
            self.config = json.load(f)
        self.hparams = load_hparams(self.config)
        self.tensors = self._index_tensors()

    def file(self, name: str) -> Path:
        return self.dir / name

    def json(self, name: str) -> dict | None:
        """A JSON file of the checkpoint, parsed once (tokenizer.json is read by several steps); None if absent.
        Callers must not modify the result."""
        if name not in self._json:
            p = self.dir / name
            if not p.is_file():
                self._json[name] = None
            else:
                try:
                    with open(p, encoding="utf-8") as f:
                        self._json[name] = json.load(f)
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise ValueError(f"{p}: not valid JSON ({e})") from None
        return self._json[name]

    def _index_tensors(self) -> dict[str, TensorRef]:
        parts = sorted(f for f in os.listdir(self.dir) if f.startswith("model") and f.endswith(".safetensors"))
        index = self.json("model.safetensors.index.json")
        names_in_index: set[str] = set()
        weight_map = {}
        if index is not None:
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{self.dir}: can't load 'weight_map' from 'model.safetensors.index.json'")
            names_in_index = set(weight_map)
            parts = sorted(dict.fromkeys(weight_map.values()))
        if not parts:
            if any(f.startswith("pytorch_model") and f.endswith(".bin") for f in os.listdir(self.dir)):
                raise ValueError(f"{self.dir}: only PyTorch .bin weights; refimpl reads safetensors only "
                                 f"(convert them with transformers' save_pretrained(safe_serialization=True))")
            raise ValueError(f"{self.dir}: no model*.safetensors files")
        tensors: dict[str, TensorRef] = {}
        for part in parts:
            p = self.dir / part
            if not p.is_file():
                missing = sorted(n for n, f in weight_map.items() if f == part)
                raise ValueError(f"{self.dir}: missing or incomplete model files: ['{part}']\n"
                                 f"Missing tensors: {missing}")
            tensors.update(read_safetensors_header(p))
        if names_in_index and set(tensors) != names_in_index:
            missing = sorted(names_in_index - set(tensors))
            extra = sorted(set(tensors) - names_in_index)
            raise ValueError(f"{self.dir}: mismatch between weight map and model parts for tensor names:\n"
                             f"Missing tensors: {missing}\nExtra tensors: {extra}")
        return tensors
