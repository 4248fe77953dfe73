"""Which ggml type each tensor gets, and the conversion into it, as convert_hf_to_gguf.py's
``ModelBase.prepare_tensors`` and gguf-py's ``gguf.quants.quantize`` do them.

Type rules, in the script's order:
1. tensors of at most one dimension, and every ``*_norm.weight``, are F32;
2. so are position embeddings (and a list of other tensor kinds refimpl's architectures do not have), and every
   tensor whose name does not end in ``.weight`` (biases);
3. with a ternary outtype (TQ1_0 / TQ2_0) the token embedding and the output matrix are F16;
4. everything else takes the outtype: F32, F16, BF16, Q8_0, TQ1_0 or TQ2_0;
5. a row length that is not a multiple of the quantized type's block size falls back to F16 (gguf-py raises
   ``QuantError``, the script logs a warning and uses F16).

Conversions: F32 and F16 are numpy's ``astype`` (round to nearest even, as the script); BF16 rounds to nearest
even with NaNs made quiet (``ggml_compute_fp32_to_bf16``, gguf-py's BF16 class); Q8_0, TQ1_0 and TQ2_0 are
ggml's reference quantizers (``refimpl.quant.quantize``), which gguf-py's numpy classes reproduce bit for bit.
"""
from __future__ import annotations

import numpy as np

from .. import quant

#: --outtype -> (LlamaFileType value written as general.file_type, ggml type of the quantizable tensors)
FILE_TYPES = {"f32": (0, "F32"), "f16": (1, "F16"), "bf16": (32, "BF16"), "q8_0": (7, "Q8_0"),
              "tq1_0": (36, "TQ1_0"), "tq2_0": (37, "TQ2_0")}
OUTTYPES = (*FILE_TYPES, "auto")
GGML_TYPE_IDS = {"F32": 0, "F16": 1, "Q8_0": 8, "BF16": 30, "TQ1_0": 34, "TQ2_0": 35}
BLOCK_SIZE = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "TQ1_0": 256, "TQ2_0": 256}


def tensor_type(gguf_name: str, shape: tuple[int, ...], outtype: str, *, always_f32: bool = False,
                is_embedding_or_output: bool = False) -> str:
    """The ggml type name of one output tensor (rules 1-5 above).  ``always_f32``: the tensor kind is on the
    script's always-F32 list (position embeddings here); ``is_embedding_or_output``: token_embd / output."""
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight"):
        return "F32"
    if always_f32 or gguf_name[-7:] not in (".weight", ".lora_a", ".lora_b"):
        return "F32"
    qtype = FILE_TYPES[outtype][1]
    if is_embedding_or_output and qtype in ("TQ1_0", "TQ2_0"):
        qtype = "F16"
    if shape[-1] % BLOCK_SIZE[qtype] != 0:
        qtype = "F16"      # gguf.QuantError -> "falling back to F16"
    return qtype


def fp32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> BF16 bits (uint16): round to nearest even; NaN -> quiet NaN with the sign and top payload kept."""
    n = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    n = np.where((n & 0x7FFFFFFF) > 0x7F800000, (n & np.uint32(0xFFFF0000)) | np.uint32(64 << 16), n)
    return ((n.astype(np.uint64) + (0x7FFF + ((n >> 16) & 1))) >> 16).astype(np.uint16)


def convert_data(data: np.ndarray, qtype: str) -> np.ndarray:
    """The tensor's bytes in ``qtype``: typed arrays for F32/F16 (shape kept), uint16 bits for BF16, uint8 blocks
    (..., row_bytes) for the block types."""
    if qtype == "F32":
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == "F16":
        return np.ascontiguousarray(data).astype(np.float16)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == "BF16":
        return fp32_to_bf16(data)
    return quant.quantize(data.reshape(-1, data.shape[-1]), qtype).reshape(*data.shape[:-1], -1)


def nbytes(shape: tuple[int, ...], qtype: str) -> int:
    n = int(np.prod(shape))
    if qtype == "F32":
        return 4 * n
    if qtype in ("F16", "BF16"):
        return 2 * n
    return n // BLOCK_SIZE[qtype] * quant.get_type(qtype).type_size
