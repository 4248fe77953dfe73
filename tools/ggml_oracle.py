#!/usr/bin/env python3
"""ctypes bindings to the real llama.cpp: the oracle every refimpl golden file comes from.

The oracle is the ggml/llama library inside the installed ``llama_cpp`` package (llama-cpp-python), which
vendors a pinned llama.cpp.  Goldens pin ggml's *scalar reference path*, so the oracle must be built with every
SIMD extension off:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_AVX512=OFF -DGGML_FMA=OFF \\
                -DGGML_F16C=OFF -DGGML_SSE42=OFF -DGGML_BMI2=OFF -DGGML_AVX_VNNI=OFF" \\
        pip install --no-binary llama-cpp-python --no-cache-dir llama-cpp-python==0.3.36

(about 6 minutes on 2 cores).  ``Oracle(require_scalar=True)`` refuses any other build.  A SIMD build can still
be opened with ``require_scalar=False`` to *measure* how far it lands from the scalar path, never to write goldens.

Set ``REFIMPL_ORACLE_LIB`` to a directory holding libggml-base.so / libggml-cpu.so / libllama.so to use a build
other than the installed package's (e.g. a second, SIMD, build for comparisons).

Run ``python tools/ggml_oracle.py`` to print what the oracle library reports about itself.
"""
from __future__ import annotations

import ctypes as C
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

PINNED_VERSION = "0.3.36"

SCALAR_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_AVX512=OFF -DGGML_FMA=OFF "
    "-DGGML_F16C=OFF -DGGML_SSE42=OFF -DGGML_BMI2=OFF -DGGML_AVX_VNNI=OFF"
)
INSTALL_HINT = (
    f'CMAKE_ARGS="{SCALAR_CMAKE_ARGS}" '
    f"pip install --no-binary llama-cpp-python --no-cache-dir 'llama-cpp-python=={PINNED_VERSION}'"
)

#: Every ggml_cpu_has_* probe that reports a SIMD extension on x86 or ARM.  All must be 0 for goldens.
SIMD_PROBES = (
    "sse3", "ssse3", "avx", "avx_vnni", "avx2", "bmi2", "f16c", "fma", "avx512", "avx512_vbmi",
    "avx512_vnni", "avx512_bf16", "amx_int8", "neon", "arm_fma", "fp16_va", "dotprod", "matmul_int8",
    "sve", "sme", "riscv_v", "vsx", "vxe", "wasm_simd",
)
#: Reported for provenance but not refused: llamafile's sgemm only has AVX/NEON kernels and returns "not handled"
#: on a build without them, so mul_mat falls back to ggml's own vec_dot path.
OTHER_PROBES = ("llamafile",)

GGUF_TYPE_NAMES = (
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
    "UINT64", "INT64", "FLOAT64",
)
GGML_MAX_DIMS = 4


# ggml's GGML_ASSERT otherwise attaches gdb to print a backtrace, which takes seconds per abort
os.environ.setdefault("GGML_NO_BACKTRACE", "1")


class OracleError(RuntimeError):
    pass


class TypeTraits(C.Structure):
    _fields_ = [
        ("type_name", C.c_char_p),
        ("blck_size", C.c_int64),
        ("blck_size_interleave", C.c_int64),
        ("type_size", C.c_size_t),
        ("is_quantized", C.c_bool),
        ("to_float", C.c_void_p),
        ("from_float_ref", C.c_void_p),
    ]


class TypeTraitsCPU(C.Structure):
    _fields_ = [
        ("from_float", C.c_void_p),
        ("vec_dot", C.c_void_p),
        ("vec_dot_type", C.c_int),
        ("nrows", C.c_int64),
    ]


class GGMLInitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


class GGUFInitParams(C.Structure):
    _fields_ = [("no_alloc", C.c_bool), ("ctx", C.c_void_p)]


TO_FLOAT = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p, C.c_int64)
FROM_FLOAT = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p, C.c_int64)
VEC_DOT = C.CFUNCTYPE(None, C.c_int, C.c_void_p, C.c_size_t, C.c_void_p, C.c_size_t, C.c_void_p, C.c_size_t, C.c_int)


def package_lib_dir() -> Path:
    env = os.environ.get("REFIMPL_ORACLE_LIB")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise OracleError(
            "the llama.cpp oracle is not installed.  Install the scalar reference build with:\n  " + INSTALL_HINT
        )
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:  # pragma: no cover - metadata missing only in broken installs
        return "unknown"


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


class Oracle:
    """The ggml/gguf C API, typed.  One instance per process is enough (see ``get()``)."""

    def __init__(self, require_scalar: bool = True):
        libdir = package_lib_dir()
        self.libdir = libdir
        libs = {}
        mode = C.RTLD_GLOBAL
        for name in ("libggml-base.so", "libggml-cpu.so", "libggml.so", "libllama.so"):
            path = libdir / name
            if not path.exists():
                raise OracleError(f"{path} not found; is llama-cpp-python {PINNED_VERSION} installed?")
            libs[name] = C.CDLL(str(path), mode=mode)
        self.base = libs["libggml-base.so"]
        self.cpu = libs["libggml-cpu.so"]
        self.llama = libs["libllama.so"]
        self._declare()
        self.cpu.ggml_cpu_init()
        self.version = package_version()
        self.simd = self.simd_features()
        if require_scalar:
            self.require_scalar()

    # ----------------------------------------------------------------------------------------- build facts
    def simd_features(self) -> dict[str, int]:
        out = {}
        for probe in SIMD_PROBES:
            fn = getattr(self.cpu, f"ggml_cpu_has_{probe}", None)
            if fn is not None:
                fn.restype = C.c_int
                out[probe] = int(fn())
        return out

    def other_features(self) -> dict[str, int]:
        out = {}
        for probe in OTHER_PROBES:
            fn = getattr(self.cpu, f"ggml_cpu_has_{probe}", None)
            if fn is not None:
                fn.restype = C.c_int
                out[probe] = int(fn())
        return out

    def is_scalar(self) -> bool:
        return not any(self.simd.values())

    def require_scalar(self) -> None:
        on = [k for k, v in self.simd.items() if v]
        if on:
            raise OracleError(
                "refusing to use this llama.cpp build as the golden oracle: it was compiled with SIMD "
                f"extensions ({', '.join(on)}), and goldens pin ggml's scalar reference path.\n"
                "Reinstall the scalar build (about 6 minutes on 2 cores):\n  " + INSTALL_HINT
            )
        if self.version != PINNED_VERSION:
            raise OracleError(
                f"llama-cpp-python {self.version} is installed but goldens are pinned to {PINNED_VERSION}.\n"
                "Install the pinned scalar build:\n  " + INSTALL_HINT
            )

    def provenance(self) -> dict:
        return {
            "llama_cpp_python": self.version,
            "ggml_simd_features": {k: v for k, v in self.simd.items()},
            "ggml_other_features": self.other_features(),
            "scalar_build": self.is_scalar(),
        }

    # ----------------------------------------------------------------------------------------- declarations
    def _declare(self) -> None:
        b, cpu = self.base, self.cpu
        b.ggml_get_type_traits.restype = C.POINTER(TypeTraits)
        b.ggml_get_type_traits.argtypes = [C.c_int]
        cpu.ggml_get_type_traits_cpu.restype = C.POINTER(TypeTraitsCPU)
        cpu.ggml_get_type_traits_cpu.argtypes = [C.c_int]
        b.ggml_quantize_chunk.restype = C.c_size_t
        b.ggml_quantize_chunk.argtypes = [C.c_int, C.c_void_p, C.c_void_p, C.c_int64, C.c_int64, C.c_int64, C.c_void_p]
        b.ggml_quantize_requires_imatrix.restype = C.c_bool
        b.ggml_quantize_requires_imatrix.argtypes = [C.c_int]
        b.ggml_validate_row_data.restype = C.c_bool
        b.ggml_validate_row_data.argtypes = [C.c_int, C.c_void_p, C.c_size_t]
        b.ggml_quantize_init.restype = None
        b.ggml_quantize_init.argtypes = [C.c_int]
        b.ggml_row_size.restype = C.c_size_t
        b.ggml_row_size.argtypes = [C.c_int, C.c_int64]
        for fn in ("ggml_fp16_to_fp32_row", "ggml_fp32_to_fp16_row", "ggml_bf16_to_fp32_row",
                   "ggml_fp32_to_bf16_row_ref", "ggml_fp32_to_bf16_row"):
            getattr(b, fn).restype = None
            getattr(b, fn).argtypes = [C.c_void_p, C.c_void_p, C.c_int64]
        b.ggml_fp16_to_fp32.restype = C.c_float
        b.ggml_fp16_to_fp32.argtypes = [C.c_uint16]
        b.ggml_fp32_to_fp16.restype = C.c_uint16
        b.ggml_fp32_to_fp16.argtypes = [C.c_float]
        b.ggml_fp32_to_bf16.restype = C.c_uint16
        b.ggml_fp32_to_bf16.argtypes = [C.c_float]
        b.ggml_bf16_to_fp32.restype = C.c_float
        b.ggml_bf16_to_fp32.argtypes = [C.c_uint16]
        cpu.ggml_cpu_init.restype = None
        # a minimal graph API, enough for ggml_mul_mat exactly as llama.cpp runs it
        b.ggml_init.restype = C.c_void_p
        b.ggml_init.argtypes = [GGMLInitParams]
        b.ggml_free.restype = None
        b.ggml_free.argtypes = [C.c_void_p]
        b.ggml_new_tensor_2d.restype = C.c_void_p
        b.ggml_new_tensor_2d.argtypes = [C.c_void_p, C.c_int, C.c_int64, C.c_int64]
        b.ggml_get_data.restype = C.c_void_p
        b.ggml_get_data.argtypes = [C.c_void_p]
        b.ggml_nbytes.restype = C.c_size_t
        b.ggml_nbytes.argtypes = [C.c_void_p]
        b.ggml_mul_mat.restype = C.c_void_p
        b.ggml_mul_mat.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p]
        b.ggml_new_graph.restype = C.c_void_p
        b.ggml_new_graph.argtypes = [C.c_void_p]
        b.ggml_build_forward_expand.restype = None
        b.ggml_build_forward_expand.argtypes = [C.c_void_p, C.c_void_p]
        b.ggml_tensor_overhead.restype = C.c_size_t
        b.ggml_graph_overhead.restype = C.c_size_t
        cpu.ggml_graph_compute_with_ctx.restype = C.c_int
        cpu.ggml_graph_compute_with_ctx.argtypes = [C.c_void_p, C.c_void_p, C.c_int]
        # gguf
        b.gguf_init_from_file.restype = C.c_void_p
        b.gguf_init_from_file.argtypes = [C.c_char_p, GGUFInitParams]
        b.gguf_init_from_buffer.restype = C.c_void_p
        b.gguf_init_from_buffer.argtypes = [C.c_void_p, C.c_size_t, GGUFInitParams]
        b.gguf_init_empty.restype = C.c_void_p
        b.gguf_init_empty.argtypes = []
        b.gguf_free.restype = None
        b.gguf_free.argtypes = [C.c_void_p]
        sig = {
            "gguf_get_version": (C.c_uint32, []),
            "gguf_get_alignment": (C.c_size_t, []),
            "gguf_get_data_offset": (C.c_size_t, []),
            "gguf_get_n_kv": (C.c_int64, []),
            "gguf_find_key": (C.c_int64, [C.c_char_p]),
            "gguf_get_key": (C.c_char_p, [C.c_int64]),
            "gguf_get_kv_type": (C.c_int, [C.c_int64]),
            "gguf_get_arr_type": (C.c_int, [C.c_int64]),
            "gguf_get_val_u8": (C.c_uint8, [C.c_int64]),
            "gguf_get_val_i8": (C.c_int8, [C.c_int64]),
            "gguf_get_val_u16": (C.c_uint16, [C.c_int64]),
            "gguf_get_val_i16": (C.c_int16, [C.c_int64]),
            "gguf_get_val_u32": (C.c_uint32, [C.c_int64]),
            "gguf_get_val_i32": (C.c_int32, [C.c_int64]),
            "gguf_get_val_f32": (C.c_float, [C.c_int64]),
            "gguf_get_val_u64": (C.c_uint64, [C.c_int64]),
            "gguf_get_val_i64": (C.c_int64, [C.c_int64]),
            "gguf_get_val_f64": (C.c_double, [C.c_int64]),
            "gguf_get_val_bool": (C.c_bool, [C.c_int64]),
            "gguf_get_val_str": (C.c_void_p, [C.c_int64]),
            "gguf_get_val_data": (C.c_void_p, [C.c_int64]),
            "gguf_get_arr_n": (C.c_size_t, [C.c_int64]),
            "gguf_get_arr_data": (C.c_void_p, [C.c_int64]),
            "gguf_get_arr_str": (C.c_void_p, [C.c_int64, C.c_size_t]),
            "gguf_get_n_tensors": (C.c_int64, []),
            "gguf_find_tensor": (C.c_int64, [C.c_char_p]),
            "gguf_get_tensor_offset": (C.c_size_t, [C.c_int64]),
            "gguf_get_tensor_name": (C.c_char_p, [C.c_int64]),
            "gguf_get_tensor_ne": (C.POINTER(C.c_int64), [C.c_int64]),
            "gguf_get_tensor_type": (C.c_int, [C.c_int64]),
            "gguf_get_tensor_size": (C.c_size_t, [C.c_int64]),
            "gguf_get_meta_size": (C.c_size_t, []),
        }
        for name, (res, args) in sig.items():
            fn = getattr(b, name)
            fn.restype = res
            fn.argtypes = [C.c_void_p] + args
        b.gguf_write_to_file.restype = C.c_bool
        b.gguf_write_to_file.argtypes = [C.c_void_p, C.c_char_p, C.c_bool]
        b.gguf_get_meta_data.restype = None
        b.gguf_get_meta_data.argtypes = [C.c_void_p, C.c_void_p]
        setters = {
            "u8": C.c_uint8, "i8": C.c_int8, "u16": C.c_uint16, "i16": C.c_int16, "u32": C.c_uint32,
            "i32": C.c_int32, "f32": C.c_float, "u64": C.c_uint64, "i64": C.c_int64, "f64": C.c_double,
            "bool": C.c_bool, "str": C.c_char_p,
        }
        for suffix, ctype in setters.items():
            fn = getattr(b, f"gguf_set_val_{suffix}")
            fn.restype = None
            fn.argtypes = [C.c_void_p, C.c_char_p, ctype]
        b.gguf_set_arr_data.restype = None
        b.gguf_set_arr_data.argtypes = [C.c_void_p, C.c_char_p, C.c_int, C.c_void_p, C.c_size_t]
        b.gguf_set_arr_str.restype = None
        b.gguf_set_arr_str.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(C.c_char_p), C.c_size_t]
        b.gguf_type_name.restype = C.c_char_p
        b.gguf_type_name.argtypes = [C.c_int]

    # ----------------------------------------------------------------------------------------- type traits
    def type_traits(self, ggml_type: int) -> TypeTraits:
        return self.base.ggml_get_type_traits(ggml_type).contents

    def type_traits_cpu(self, ggml_type: int) -> TypeTraitsCPU:
        return self.cpu.ggml_get_type_traits_cpu(ggml_type).contents

    def type_name(self, ggml_type: int) -> str:
        return self.type_traits(ggml_type).type_name.decode()

    def row_size(self, ggml_type: int, n: int) -> int:
        return int(self.base.ggml_row_size(ggml_type, n))

    def quantize_init(self, ggml_type: int) -> None:
        """ggml_quantize_init: build the IQ grids' search tables (a no-op for other types)."""
        self.base.ggml_quantize_init(ggml_type)

    def requires_imatrix(self, ggml_type: int) -> bool:
        return bool(self.base.ggml_quantize_requires_imatrix(ggml_type))

    def validate_row_data(self, ggml_type: int, raw: np.ndarray) -> bool:
        raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
        return bool(self.base.ggml_validate_row_data(ggml_type, _ptr(raw), raw.nbytes))

    # ----------------------------------------------------------------------------------------- conversions
    def to_float(self, ggml_type: int, raw: np.ndarray, n: int) -> np.ndarray:
        """type_traits.to_float over one contiguous run of ``n`` elements."""
        fn = self.type_traits(ggml_type).to_float
        if not fn:
            raise OracleError(f"type {ggml_type} has no to_float")
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        if raw.nbytes != self.row_size(ggml_type, n):
            raise ValueError("raw size does not match n")
        out = np.empty(n, dtype=np.float32)
        TO_FLOAT(fn)(_ptr(raw), _ptr(out), n)
        return out

    def _from_float(self, fn_ptr, ggml_type: int, x: np.ndarray) -> np.ndarray:
        if not fn_ptr:
            raise OracleError(f"type {ggml_type} has no such from_float")
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        out = np.zeros(self.row_size(ggml_type, x.size), dtype=np.uint8)
        FROM_FLOAT(fn_ptr)(_ptr(x), _ptr(out), x.size)
        return out

    def from_float_ref(self, ggml_type: int, x: np.ndarray) -> np.ndarray:
        """type_traits.from_float_ref (quantize_row_*_ref)."""
        return self._from_float(self.type_traits(ggml_type).from_float_ref, ggml_type, x)

    def from_float_cpu(self, ggml_type: int, x: np.ndarray) -> np.ndarray:
        """type_traits_cpu.from_float: what mul_mat uses to quantize activations."""
        return self._from_float(self.type_traits_cpu(ggml_type).from_float, ggml_type, x)

    def vec_dot(self, ggml_type: int, n: int, x_raw: np.ndarray, y_raw: np.ndarray) -> np.float32:
        """type_traits_cpu.vec_dot for one row of ``ggml_type`` against one row of its vec_dot_type."""
        fn = self.type_traits_cpu(ggml_type).vec_dot
        if not fn:
            raise OracleError(f"type {ggml_type} has no vec_dot")
        x_raw = np.ascontiguousarray(x_raw).view(np.uint8)
        y_raw = np.ascontiguousarray(y_raw).view(np.uint8)
        s = np.zeros(1, dtype=np.float32)
        VEC_DOT(fn)(n, _ptr(s), 0, _ptr(x_raw), 0, _ptr(y_raw), 0, 1)
        return s[0]

    def symbol_from_float(self, symbol: str, ggml_type: int, x: np.ndarray) -> np.ndarray:
        """Call an exported row quantizer by name (e.g. quantize_row_q8_K_ref, which no type trait exposes)."""
        return self._from_float(C.cast(getattr(self.base, symbol), C.c_void_p).value, ggml_type, x)

    def symbol_to_float(self, symbol: str, ggml_type: int, raw: np.ndarray, n: int) -> np.ndarray:
        """Call an exported row dequantizer by name (e.g. dequantize_row_q8_K)."""
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        if raw.nbytes != self.row_size(ggml_type, n):
            raise ValueError("raw size does not match n")
        out = np.empty(n, dtype=np.float32)
        TO_FLOAT(C.cast(getattr(self.base, symbol), C.c_void_p).value)(_ptr(raw), _ptr(out), n)
        return out

    def quantize_chunk(self, ggml_type: int, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
        """ggml_quantize_chunk over all rows of a 2-D float32 array; returns (nrows, row_bytes) uint8."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        nrows, n_per_row = x.shape
        row_bytes = self.row_size(ggml_type, n_per_row)
        out = np.zeros((nrows, row_bytes), dtype=np.uint8)
        im = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
            if imatrix.size != n_per_row:
                raise ValueError("imatrix must have one weight per column")
            im = _ptr(imatrix)
        written = self.base.ggml_quantize_chunk(ggml_type, _ptr(x), _ptr(out), 0, nrows, n_per_row, im)
        if written != out.nbytes:
            raise OracleError(f"ggml_quantize_chunk wrote {written} bytes, expected {out.nbytes}")
        return out

    def mul_mat(self, ggml_type: int, w_raw: np.ndarray, n: int, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """A one-node ggml graph ``ggml_mul_mat(W, X)``: W is (n_rows, n) of ``ggml_type`` given as raw rows, X is
        float32 (n_tokens, n).  Returns float32 (n_tokens, n_rows), exactly what llama.cpp's CPU backend computes."""
        b = self.base
        w_raw = np.ascontiguousarray(w_raw, dtype=np.uint8)
        x = np.ascontiguousarray(x, dtype=np.float32)
        n_rows = w_raw.shape[0]
        n_tokens = x.shape[0]
        if w_raw.shape[1] != self.row_size(ggml_type, n) or x.shape[1] != n:
            raise ValueError("mul_mat: shapes do not match")
        # the tensors, plus the compute plan's work buffer (quantized activations; a SIMD build may also want room
        # for a repacked copy of the weights): sized generously, the memory is only reserved
        mem = (3 * b.ggml_tensor_overhead() + b.ggml_graph_overhead() + 2 * w_raw.nbytes + 2 * x.nbytes
               + 4 * n_rows * n_tokens + (4 << 20))
        ctx = b.ggml_init(GGMLInitParams(mem, None, False))
        try:
            tw = b.ggml_new_tensor_2d(ctx, ggml_type, n, n_rows)
            tx = b.ggml_new_tensor_2d(ctx, 0, n, n_tokens)
            C.memmove(b.ggml_get_data(tw), _ptr(w_raw), w_raw.nbytes)
            C.memmove(b.ggml_get_data(tx), _ptr(x), x.nbytes)
            out = b.ggml_mul_mat(ctx, tw, tx)
            graph = b.ggml_new_graph(ctx)
            b.ggml_build_forward_expand(graph, out)
            status = self.cpu.ggml_graph_compute_with_ctx(ctx, graph, n_threads)
            if status != 0:
                raise OracleError(f"ggml_graph_compute_with_ctx failed with status {status}")
            res = np.empty((n_tokens, n_rows), dtype=np.float32)
            C.memmove(_ptr(res), b.ggml_get_data(out), res.nbytes)
            return res
        finally:
            b.ggml_free(ctx)

    def fp32_to_fp16_row(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        out = np.empty(x.size, dtype=np.uint16)
        self.base.ggml_fp32_to_fp16_row(_ptr(x), _ptr(out), x.size)
        return out

    def fp16_to_fp32_row(self, h: np.ndarray) -> np.ndarray:
        h = np.ascontiguousarray(h, dtype=np.uint16).reshape(-1)
        out = np.empty(h.size, dtype=np.float32)
        self.base.ggml_fp16_to_fp32_row(_ptr(h), _ptr(out), h.size)
        return out

    def fp32_to_bf16_row(self, x: np.ndarray) -> np.ndarray:
        """ggml_fp32_to_bf16_row_ref: the reference conversion (F32->BF16 from_float_ref)."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        out = np.empty(x.size, dtype=np.uint16)
        self.base.ggml_fp32_to_bf16_row_ref(_ptr(x), _ptr(out), x.size)
        return out

    def bf16_to_fp32_row(self, h: np.ndarray) -> np.ndarray:
        h = np.ascontiguousarray(h, dtype=np.uint16).reshape(-1)
        out = np.empty(h.size, dtype=np.float32)
        self.base.ggml_bf16_to_fp32_row(_ptr(h), _ptr(out), h.size)
        return out

    # ----------------------------------------------------------------------------------------- gguf
    def gguf_open(self, path: str | os.PathLike) -> "GGUFContext | None":
        """gguf_init_from_file with no_alloc; None when llama.cpp rejects the file."""
        ctx = self.base.gguf_init_from_file(os.fsencode(path), GGUFInitParams(True, None))
        return GGUFContext(self, ctx) if ctx else None

    def gguf_open_buffer(self, data: bytes) -> "GGUFContext | None":
        buf = C.create_string_buffer(bytes(data), len(data))
        ctx = self.base.gguf_init_from_buffer(buf, len(data), GGUFInitParams(True, None))
        return GGUFContext(self, ctx) if ctx else None

    def gguf_empty(self) -> "GGUFContext":
        return GGUFContext(self, self.base.gguf_init_empty())


class GGUFContext:
    """A gguf_context owned from Python; freed on ``close()`` / garbage collection."""

    _ARR_DTYPES = {
        0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
        7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64,
    }
    _GETTERS = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
                10: "u64", 11: "i64", 12: "f64"}

    def __init__(self, oracle: Oracle, ctx: int):
        self.o = oracle
        self.b = oracle.base
        self.ctx = ctx

    def close(self) -> None:
        if self.ctx:
            self.b.gguf_free(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def version(self) -> int:
        return int(self.b.gguf_get_version(self.ctx))

    @property
    def alignment(self) -> int:
        return int(self.b.gguf_get_alignment(self.ctx))

    @property
    def data_offset(self) -> int:
        return int(self.b.gguf_get_data_offset(self.ctx))

    def keys(self) -> list[str]:
        return [self.b.gguf_get_key(self.ctx, i).decode("utf-8", "surrogateescape")
                for i in range(self.b.gguf_get_n_kv(self.ctx))]

    def _cstr(self, addr: int) -> bytes:
        return C.string_at(addr) if addr else b""

    def kv(self, i: int) -> tuple[str, int, object]:
        """(key, gguf type id, value); arrays come back as (elem type id, numpy array or list of bytes)."""
        b, ctx = self.b, self.ctx
        key = b.gguf_get_key(ctx, i).decode("utf-8", "surrogateescape")
        t = b.gguf_get_kv_type(ctx, i)
        if t == 8:
            # gguf strings are length-prefixed; read through the std::string the getter points into
            return key, t, self._cstr(b.gguf_get_val_str(ctx, i))
        if t == 9:
            at = b.gguf_get_arr_type(ctx, i)
            n = int(b.gguf_get_arr_n(ctx, i))
            if at == 8:
                return key, t, (at, [self._cstr(b.gguf_get_arr_str(ctx, i, j)) for j in range(n)])
            dt = np.dtype(self._ARR_DTYPES[at])
            addr = b.gguf_get_arr_data(ctx, i)
            arr = np.frombuffer(C.string_at(addr, n * dt.itemsize), dtype=dt) if n else np.zeros(0, dt)
            return key, t, (at, arr.copy())
        return key, t, getattr(b, f"gguf_get_val_{self._GETTERS[t]}")(ctx, i)

    def tensors(self) -> list[dict]:
        b, ctx = self.b, self.ctx
        out = []
        for i in range(b.gguf_get_n_tensors(ctx)):
            ne = b.gguf_get_tensor_ne(ctx, i)
            out.append({
                "name": b.gguf_get_tensor_name(ctx, i).decode("utf-8", "surrogateescape"),
                "type": int(b.gguf_get_tensor_type(ctx, i)),
                "ne": [int(ne[d]) for d in range(GGML_MAX_DIMS)],
                "offset": int(b.gguf_get_tensor_offset(ctx, i)),
                "size": int(b.gguf_get_tensor_size(ctx, i)),
            })
        return out

    def meta_bytes(self) -> bytes:
        """The header + KV + tensor-info section exactly as gguf_write_to_file would write it."""
        n = int(self.b.gguf_get_meta_size(self.ctx))
        buf = C.create_string_buffer(n)
        self.b.gguf_get_meta_data(self.ctx, buf)
        return buf.raw

    def write(self, path: str | os.PathLike, only_meta: bool = False) -> bool:
        return bool(self.b.gguf_write_to_file(self.ctx, os.fsencode(path), only_meta))


_ORACLE: Oracle | None = None


def get(require_scalar: bool = True) -> Oracle:
    """The process-wide oracle (the scalar build unless told otherwise)."""
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = Oracle(require_scalar=require_scalar)
    elif require_scalar:
        _ORACLE.require_scalar()
    return _ORACLE


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allow-simd", action="store_true", help="open a SIMD build too (for comparisons only)")
    args = ap.parse_args(argv)
    try:
        o = Oracle(require_scalar=not args.allow_simd)
    except OracleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = o.provenance()
    info["lib_dir"] = str(o.libdir)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
