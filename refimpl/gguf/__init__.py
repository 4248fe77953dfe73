"""The GGUF container: read and write llama.cpp's model files, check for check and byte for byte like gguf.cpp.

    f = refimpl.gguf.read("model.gguf")
    f.metadata["tokenizer.ggml.tokens"].value[5]      # str, decoded lazily
    f.get("general.architecture")                    # plain value
    f.tensors["token_embd.weight"].data              # zero-copy numpy view over a read-only mmap
    f.save("copy.gguf")                              # == llama.cpp's gguf_write_to_file

See spec/gguf.md for the format as implemented.
"""
from .reader import GGUFError, GGUFFile, TensorInfo, TensorTable, read, read_bytes
from .types import EXPERIMENTAL_TYPE_BASE, GGML_TYPES, GGMLType, GGUFValueType, ggml_type
from .values import GGUFValue, StringArray
from .writer import Tensor, meta_bytes, write

__all__ = [
    "read", "read_bytes", "write", "meta_bytes", "GGUFFile", "GGUFError", "GGUFValue", "GGUFValueType",
    "StringArray", "TensorInfo", "TensorTable", "Tensor", "GGML_TYPES", "GGMLType", "ggml_type",
    "EXPERIMENTAL_TYPE_BASE",
]
