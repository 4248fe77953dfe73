"""Quantize a whole model as llama-quantize does, byte for byte (``llama_model_quantize``, src/llama-quant.cpp).

    from refimpl import quantize_model
    quantize_model("model-F16.gguf", "model-Q4_K_M.gguf", "Q4_K_M")
    quantize_model("model-F16.gguf", "model-IQ2_XS.gguf", "IQ2_XS", imatrix="imatrix.gguf", nthread=8)

CLI: ``python -m refimpl.quantize [options] IN.gguf [OUT.gguf] FTYPE [NTHREADS]`` (see ``__main__``).

Reading order: ``quantize_model`` (the driver: plan, then write) -> ``plan_model`` (llama_model_quantize_impl up
to its main loop: metadata, tensor order, per-tensor type from ``mix.MixState``, the checks) -> ``_write`` (the
main loop: copy or convert each tensor, stream it out) -> ``_convert_rows`` (dequantize to float32 if needed,
then ``refimpl.quant.quantize`` with the tensor's imatrix slice, as llama_tensor_quantize_impl).
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .._atomic import atomic_output
from .ftypes import Ftype, resolve_ftype, parse_ggml_type, LLAMA_FTYPE_GUESSED, GUESS_FROM_TENSOR_TYPE
from . import mix

__all__ = ["quantize_model", "plan_model", "QuantizeResult", "TensorPlan", "parse_override_kv",
           "default_output_path", "resolve_ftype"]

GGML_QNT_VERSION = 2               # ggml.h
GGUF_DEFAULT_ALIGNMENT = 32        # llama-quant.cpp writes with this alignment whatever the input's
KEY_IMATRIX_FILE = "quantize.imatrix.file"
KEY_IMATRIX_DATASET = "quantize.imatrix.dataset"
KEY_IMATRIX_N_ENTRIES = "quantize.imatrix.entries_count"
KEY_IMATRIX_N_CHUNKS = "quantize.imatrix.chunks_count"
TASK_ELEMENTS = 1 << 20            # rows per parallel task: about this many weights (whole rows, one expert)
POOL_MIN_ELEMENTS = 1 << 22        # below this many weights to convert, forking workers costs more than it saves


# ---------------------------------------------------------------------------------------------------- options

@dataclass
class KVOverride:
    """llama_model_kv_override: a key and a tagged value (tag "int", "float", "bool" or "str")."""
    key: str
    tag: str
    value: object


def parse_override_kv(spec: str) -> KVOverride:
    """string_parse_kv_override (common/common.cpp): ``KEY=TYPE:VALUE`` with TYPE int, float, bool or str."""
    sep = spec.find("=")
    if sep < 0 or len(spec[:sep].encode()) >= 128:
        raise ValueError(f"malformed KV override {spec!r}: expected KEY=TYPE:VALUE (TYPE int, float, bool, str)")
    key, rest = spec[:sep], spec[sep + 1:]
    if rest.startswith("int:"):
        return KVOverride(key, "int", _atol(rest[4:]))
    if rest.startswith("float:"):
        return KVOverride(key, "float", _atof(rest[6:]))
    if rest.startswith("bool:"):
        if rest[5:] not in ("true", "false"):
            raise ValueError(f"invalid boolean value for KV override {spec!r}: expected true or false")
        return KVOverride(key, "bool", rest[5:] == "true")
    if rest.startswith("str:"):
        if len(rest[4:].encode()) > 127:
            raise ValueError(f"malformed KV override {spec!r}, value cannot exceed 127 chars")
        return KVOverride(key, "str", rest[4:])
    raise ValueError(f"invalid type for KV override {spec!r}: expected int:, float:, bool: or str:")


def _atol(s: str) -> int:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", s)
    return int(m.group(1)) if m else 0


def _atof(s: str) -> float:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?(?:inf(?:inity)?|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))",
                 s, re.IGNORECASE)
    return float(m.group(1)) if m else 0.0


def _as_override(o) -> KVOverride:
    if isinstance(o, KVOverride):
        return o
    if isinstance(o, str):
        return parse_override_kv(o)
    key, tag, value = o
    return KVOverride(key, tag, value)


def default_output_path(src: str, ftype_name: str) -> str:
    """llama-quantize's output name when none is given: ``[input dir]/ggml-model-<FTYPE>.gguf``."""
    src = os.fspath(src)
    pos = max(src.rfind("/"), src.rfind("\\"))
    return (src[:pos + 1] if pos >= 0 else "") + f"ggml-model-{ftype_name}.gguf"


# ------------------------------------------------------------------------------------------------------- plan

@dataclass
class TensorPlan:
    """One output tensor: its (possibly renamed) name, source tensor, new type and sizes."""
    name: str
    source: object              # refimpl.gguf TensorInfo
    ne: tuple
    src_type: str
    new_type: str
    src_size: int
    new_size: int
    imatrix: np.ndarray | None = None      # float32 (ne0 * ne2,) when converting with an importance matrix

    @property
    def convert(self) -> bool:
        return self.src_type != self.new_type


@dataclass
class QuantizeResult:
    """What quantize_model did: the output path (None for a dry run), the per-tensor plan, sizes and timing."""
    path: str | None
    ftype: Ftype
    tensors: list
    size_before: int
    size_after: int
    n_elements: int
    seconds: float = 0.0
    n_fallback: int = 0
    warnings: list = field(default_factory=list)

    @property
    def tensor_types(self) -> dict:
        return {t.name: t.new_type for t in self.tensors}

    def summary(self) -> str:
        """llama_model_quantize_impl's closing lines: model size and quant size in MiB and bits per weight."""
        n = max(self.n_elements, 1)
        return (f"model size  = {self.size_before / 1024 / 1024:8.2f} MiB ({self.size_before * 8.0 / n:.2f} BPW)\n"
                f"quant size  = {self.size_after / 1024 / 1024:8.2f} MiB ({self.size_after * 8.0 / n:.2f} BPW)")


@dataclass
class _Plan:
    src: object
    ftype: Ftype
    metadata: dict
    tensors: list
    n_elements: int
    n_tensors_in: int
    state: mix.MixState
    will_require_imatrix: bool = False


def _kv_int(f, key: str, overrides: dict, default=None, required=False):
    """A scalar or the first element of an array, the KV override winning (llama_model_loader::get_key_or_arr)."""
    if key in overrides:
        return int(overrides[key].value)
    v = f.metadata.get(key)
    if v is None:
        if required:
            raise ValueError(f"{f.path}: key not found in model: {key}")
        return default
    val = v.value
    if isinstance(val, np.ndarray):
        return int(val[0]) if val.size else default
    if isinstance(val, (bool, str)) or not isinstance(val, (int, np.integer)):
        raise ValueError(f"{f.path}: {key} has type {v.type_name}, expected an integer")
    return int(val)


def _hparams(f, overrides: dict) -> mix.Hparams:
    """The facts llama_model::load_hparams gives the mix rules."""
    arch_v = f.metadata.get("general.architecture")
    if arch_v is None or not isinstance(arch_v.value, str):
        raise ValueError(f"{f.path}: general.architecture is missing; llama.cpp cannot load the model")
    arch = arch_v.value
    n_layer = _kv_int(f, f"{arch}.block_count", overrides, required=True)
    if not 0 < n_layer <= 512:      # LLAMA_MAX_LAYERS
        raise ValueError(f"{f.path}: {arch}.block_count = {n_layer}, expected 1..512")
    n_expert = _kv_int(f, f"{arch}.expert_count", overrides, default=0)
    n_head = _kv_int(f, f"{arch}.attention.head_count", overrides, default=0)
    n_head_kv = _kv_int(f, f"{arch}.attention.head_count_kv", overrides, default=n_head)
    nextn = _kv_int(f, f"{arch}.nextn_predict_layers", overrides, default=0)
    n_layer_main = n_layer - nextn      # hparams.n_layer(): the model type switch uses it
    # the model types the mix reads: LLM_TYPE_70B (src/models/{llama,qwen2,olmo,deci,jais2}.cpp)
    is_70b = ((arch == "llama" and n_expert != 8 and n_layer_main == 80 and n_head != n_head_kv)
              or (arch in ("qwen2", "olmo", "deci") and n_layer_main == 80)
              or (arch == "jais2" and n_layer_main == 68))
    return mix.Hparams(arch, n_layer, n_expert, n_head, n_head_kv, is_70b)


def _remap_layers(names: list[str], prune: list[int]):
    """remap_layer: drop the pruned blocks' tensors and renumber the blocks after them.  Returns (kept
    (old, new) names, mapped {old block: new block string}, the new block count)."""
    if not prune:
        return [(n, n) for n in names], {}, None
    pattern = re.compile(r"blk\.(\d+)\.", re.ASCII)
    mapped: dict[int, str] = {}
    next_id = 0
    out = []
    for name in names:
        m = pattern.search(name)
        if not m:
            out.append((name, name))
            continue
        blk = int(m.group(1))
        if blk in mapped:
            pass
        elif blk in prune:
            mapped[blk] = ""
        elif blk < prune[0]:
            mapped[blk] = str(blk)
            next_id = blk + 1
        else:
            mapped[blk] = str(next_id)
            next_id += 1
        if mapped[blk]:
            out.append((name, name[:m.start(1)] + mapped[blk] + name[m.end(1):]))
    return out, mapped, next_id


def _remap_imatrix(name: str, mapped: dict) -> str:
    """remap_imatrix: the imatrix was computed on the unpruned model, so look the tensor up by its old block."""
    if not mapped:
        return name
    m = re.search(r"blk\.(\d+)\.", name, re.ASCII)
    if not m:
        return name
    for old, new in sorted(mapped.items()):
        if new == m.group(1):
            return name[:m.start(1)] + str(old) + name[m.end(1):]
    raise ValueError(f"imatrix mapping error for {name}")


def _load_imatrix(imatrix, include, exclude):
    """load_imatrix + prepare_imatrix (tools/quantize/quantize.cpp): name -> per-column weights, the datasets,
    the chunk count, and the file name llama-quantize records."""
    from ..imatrix_file import Imatrix, imatrix_for_quantize, read_imatrix

    if imatrix is None:
        return {}, [], -1, None
    path = None
    if isinstance(imatrix, (str, os.PathLike)):
        path = os.fspath(imatrix)
        imatrix = read_imatrix(path)
    if isinstance(imatrix, Imatrix):
        if not imatrix.is_legacy and not imatrix.has_metadata:
            raise ValueError(f"missing imatrix metadata in file {imatrix.path or path} (a GGUF imatrix needs "
                             f"imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size)")
        data = imatrix_for_quantize(imatrix)
        datasets, chunks = list(imatrix.datasets), int(imatrix.chunk_count)
        path = path or imatrix.path or ""
    else:       # a mapping name -> per-column weights, as imatrix_for_quantize returns
        data = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in dict(imatrix).items()}
        datasets, chunks, path = [], -1, ""
    if exclude:
        data = {k: v for k, v in data.items() if not any(x in k for x in exclude)}
    if include:
        data = {k: v for k, v in data.items() if any(x in k for x in include)}
    return data, datasets, chunks, path


def _c_str127(s: str) -> str:
    """strncpy(val_str, s, 127): at most 127 bytes (a multi-byte character may be cut, as in C)."""
    return s.encode("utf-8", "surrogateescape")[:127].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def plan_model(src, ftype, *, imatrix=None, allow_requantize=False, leave_output_tensor=False, pure=False,
               include_weights=None, exclude_weights=None, output_tensor_type=None, token_embedding_type=None,
               tensor_types=None, override_kv=None, prune_layers=None, dry_run=False, _file=None) -> _Plan:
    """Everything llama_model_quantize_impl decides before it writes a byte: the output metadata, the tensors in
    order with their new types, and every check that can fail (so that a failure leaves no file)."""
    from .. import gguf, quant
    from ..gguf import GGUFValue, GGUFValueType as VT
    from .patterns import compile_tensor_pattern

    ft = resolve_ftype(ftype) if not isinstance(ftype, Ftype) else ftype
    if include_weights and exclude_weights:
        raise ValueError("--include-weights and --exclude-weights cannot be used together")
    imat_data, imat_datasets, imat_chunks, imat_path = _load_imatrix(imatrix, include_weights or [],
                                                                     exclude_weights or [])

    # kv overrides: the user's, then the imatrix keys quantize.cpp appends
    overrides = [_as_override(o) for o in (override_kv or [])]
    if imat_data:
        overrides.append(KVOverride(KEY_IMATRIX_FILE, "str", _c_str127(imat_path or "")))
        if imat_datasets:
            overrides.append(KVOverride(KEY_IMATRIX_DATASET, "str", _c_str127(imat_datasets[0])))
        overrides.append(KVOverride(KEY_IMATRIX_N_ENTRIES, "int", len(imat_data)))
        if imat_chunks > 0:
            overrides.append(KVOverride(KEY_IMATRIX_N_CHUNKS, "int", imat_chunks))
    override_by_key = {o.key: o for o in overrides}

    f = _file if _file is not None else gguf.read(src)
    try:
        return _plan(f, ft, imat_data, overrides, override_by_key, allow_requantize, leave_output_tensor, pure,
                     output_tensor_type, token_embedding_type, tensor_types, prune_layers, dry_run,
                     compile_tensor_pattern, quant, GGUFValue, VT)
    except BaseException:
        if _file is None:
            f.close()
        raise


def _plan(f, ft, imat_data, overrides, override_by_key, allow_requantize, leave_output_tensor, pure,
          output_tensor_type, token_embedding_type, tensor_types, prune_layers, dry_run,
          compile_tensor_pattern, quant, GGUFValue, VT) -> _Plan:
    hp = _hparams(f, override_by_key)
    infos = {t.name: t for t in f.tensors.list()}
    if len(infos) != len(f.tensors):
        raise ValueError(f"{f.path}: duplicate tensor names")
    for t in infos.values():
        # llama_model_loader: "tensor data is not within the file bounds"
        if f.data_offset + t.offset + t.nbytes > f.file_size:
            raise ValueError(f"{f.path}: tensor '{t.name}' data is not within the file bounds, model is "
                             f"corrupted or incomplete")

    prune = sorted(set(int(x) for x in (prune_layers or [])))
    if any(x < 0 for x in prune):
        raise ValueError(f"invalid layer id in prune list {prune_layers}")
    kept, mapped, new_block_count = _remap_layers(mix.tensor_order(infos), prune)

    # --- metadata: copy every KV, then set (remove + append) the quantization version and file type
    file_type = ft.ftype
    if ft.only_copy:
        file_type = _loader_ftype(f, override_by_key)
    meta = dict(f.metadata)

    def set_kv(key, value):
        meta.pop(key, None)
        meta[key] = value
    set_kv("general.quantization_version", GGUFValue(VT.UINT32, GGML_QNT_VERSION))
    set_kv("general.file_type", GGUFValue(VT.UINT32, file_type & 0xFFFFFFFF))
    for k in ("split.no", "split.count", "split.tensors.count"):
        meta.pop(k, None)
    for o in overrides:
        if o.tag == "float":
            set_kv(o.key, GGUFValue(VT.FLOAT32, float(np.float32(o.value))))
        elif o.tag == "int":
            # "Setting type to UINT32" (llama.cpp PR 14182): |value| as u32
            set_kv(o.key, GGUFValue(VT.UINT32, abs(int(o.value)) & 0xFFFFFFFF))
        elif o.tag == "bool":
            set_kv(o.key, GGUFValue(VT.BOOL, bool(o.value)))
        elif o.tag == "str":
            set_kv(o.key, GGUFValue(VT.STRING, str(o.value)))
        else:
            raise ValueError(f"unknown KV override type {o.tag!r} for key {o.key}")
    if prune:
        set_kv(f"{hp.arch}.block_count", GGUFValue(VT.UINT32, new_block_count))

    # --- the mix
    patterns = [(compile_tensor_pattern(p), parse_ggml_type(t)) for p, t in _tensor_type_pairs(tensor_types)]
    opts = mix.MixOptions(
        ftype=ft.ftype, default_type=ft.default_type,
        output_tensor_type=parse_ggml_type(output_tensor_type) if output_tensor_type else None,
        token_embedding_type=parse_ggml_type(token_embedding_type) if token_embedding_type else None,
        pure=pure or ft.plugin, only_copy=ft.only_copy, quantize_output_tensor=not leave_output_tensor,
        tensor_types=patterns)
    state = mix.MixState(hp, opts, has_imatrix=bool(imat_data))
    state.count([new for _, new in kept])

    plan = _Plan(f, ft, meta, [], sum(t.n_elements for t in infos.values()), len(infos), state)
    for old, new in kept:
        t = infos[old]
        ne = tuple(t.ne)
        allows = mix.tensor_allows_quantization(new, ne, hp.arch, only_copy=ft.only_copy,
                                                quantize_output_tensor=not leave_output_tensor)
        new_type = state.get_type(new, ne, t.ggml_type) if allows else t.ggml_type
        requires = mix.tensor_requires_imatrix(new, new_type, ft.ftype)
        if not imat_data and allows and requires:
            if dry_run:
                plan.will_require_imatrix = True
            else:
                raise ValueError(f"this quantization requires an importance matrix (--imatrix): tensor {new} "
                                 f"would be {new_type}")
        nrows = t.n_elements // ne[0] if ne[0] else 0
        new_size = nrows * quant.row_size(new_type, ne[0]) if new_type != t.ggml_type else t.nbytes
        plan.tensors.append(TensorPlan(new, t, ne, t.ggml_type, new_type, t.nbytes, new_size))
    if not dry_run:
        # the checks of the main loop, in its order, made before anything is written
        for tp in plan.tensors:
            if tp.convert:
                _main_loop_checks(tp, imat_data, mapped, state, ft, allow_requantize, quant)
    return plan


def _main_loop_checks(tp: TensorPlan, imat_data: dict, mapped: dict, state, ft, allow_requantize: bool,
                      quant) -> None:
    """What llama_model_quantize_impl's main loop checks before converting a tensor (and attaches its imatrix)."""
    name, ne = tp.name, tp.ne
    if imat_data:
        v = imat_data.get(_remap_imatrix(name, mapped))
        if v is None:
            state.warnings.append(f"did not find weights for {name}")
        elif v.size == ne[0] * ne[2]:
            tp.imatrix = v
        elif not mix.tensor_name_match_token_embd(name):
            raise ValueError(f"imatrix size {v.size} is different from tensor size {ne[0] * ne[2]} for {name}")
        else:
            state.warnings.append(f"imatrix size {v.size} is different from tensor size {ne[0] * ne[2]} for {name}")
    if tp.imatrix is None and mix.tensor_requires_imatrix(name, tp.new_type, ft.ftype):
        raise ValueError(f"Missing importance matrix for tensor {name} in a very low-bit quantization (the imatrix "
                         f"has no entry for it)")
    if mix.is_quantized(tp.src_type) and not allow_requantize:
        raise ValueError(f"requantizing from type {tp.src_type} is disabled (tensor {name}); pass "
                         f"--allow-requantize (allow_requantize=True) to requantize")
    if mix.is_quantized(tp.src_type):
        if quant.get_type(tp.src_type).dequantize is None:
            raise ValueError(f"type {tp.src_type} unsupported for integer quantization: no dequantization available")
    elif tp.src_type not in ("F32", "F16", "BF16"):
        raise ValueError(f"cannot dequantize/convert tensor type {tp.src_type} (tensor {name})")
    if quant.get_type(tp.new_type).quantize is None:
        raise ValueError(f"refimpl cannot quantize to {tp.new_type} (tensor {name})")


def _tensor_type_pairs(tensor_types):
    """--tensor-type values: "NAME=TYPE" strings or (name, type) pairs, in order."""
    out = []
    if isinstance(tensor_types, dict):
        tensor_types = list(tensor_types.items())
    for item in tensor_types or []:
        if isinstance(item, str):
            out.append(parse_tensor_type(item, lowercase=False))
        else:
            out.append((str(item[0]), str(item[1])))
    return out


def parse_tensor_type(spec: str, *, lowercase: bool = True) -> tuple[str, str]:
    """parse_tensor_type (tools/quantize/quantize.cpp): ``NAME=TYPE``; the CLI lowercases NAME (the pattern)."""
    sep = spec.find("=")
    if sep < 0:
        raise ValueError(f"malformed tensor type {spec!r}: expected NAME=TYPE")
    if sep == 0:
        raise ValueError(f"missing tensor name in {spec!r}")
    if sep == len(spec) - 1:
        raise ValueError(f"missing quantization type in {spec!r}")
    name = spec[:sep]
    if lowercase:
        name = "".join(c.lower() if c.isascii() else c for c in name)   # std::tolower, "C" locale
    return name, parse_ggml_type(spec[sep + 1:])


def _loader_ftype(f, override_by_key) -> int:
    """llama_model_loader's ftype (what COPY records): general.file_type if present, else a guess from the most
    common tensor type (first to reach the maximum count in the loader's tensor order), or-ed with GUESSED."""
    if "general.file_type" in override_by_key:
        return int(override_by_key["general.file_type"].value)
    v = f.metadata.get("general.file_type")
    if v is not None:
        return int(v.value)
    counts: dict[str, int] = {}
    best, best_n = "F32", 0
    for name in mix.tensor_order([t.name for t in f.tensors.list()]):
        ty = f.tensors[name].ggml_type
        counts[ty] = counts.get(ty, 0) + 1
        if best_n < counts[ty]:
            best, best_n = ty, counts[ty]
    return GUESS_FROM_TENSOR_TYPE.get(best, 0) | LLAMA_FTYPE_GUESSED


# ------------------------------------------------------------------------------------------------------ write

def quantize_model(src, dst=None, ftype="Q8_0", *, imatrix=None, nthread: int | None = None,
                   allow_requantize: bool = False, leave_output_tensor: bool = False, pure: bool = False,
                   include_weights=None, exclude_weights=None, output_tensor_type=None, token_embedding_type=None,
                   tensor_types=None, override_kv=None, prune_layers=None, dry_run: bool = False,
                   progress: bool = True, verbose: bool = False, log=None) -> QuantizeResult:
    """Quantize the GGUF model ``src`` to ``dst`` as ``llama_model_quantize`` would, byte for byte.

    ``ftype``: a llama-quantize type name ("Q4_K_M", "IQ2_XS", "COPY", aliases like "Q4_K"), a llama_ftype
    number, or a quant type registered with refimpl.quant (quantized with --pure semantics).  ``dst`` None:
    ``ggml-model-<FTYPE>.gguf`` beside ``src``.  ``imatrix``: a path (GGUF or legacy .dat), an
    ``refimpl.imatrix_file.Imatrix``, or a mapping name -> per-column weights.  ``tensor_types``: "NAME=TYPE"
    strings or (pattern, type) pairs, patterns searched as std::regex_search does.  ``override_kv``:
    "KEY=TYPE:VALUE" strings.  ``nthread``: worker processes (default: every CPU).  ``log``: a callable taking
    one line (default: stderr when ``verbose``).

    The output is written to a temporary file beside ``dst`` and renamed at the end: an error or Ctrl-C leaves
    nothing at ``dst``.
    """
    from .. import gguf

    t_start = time.perf_counter()
    ft = ftype if isinstance(ftype, Ftype) else resolve_ftype(ftype)
    src = os.fspath(src)
    if dst is None and not dry_run:
        dst = default_output_path(src, ft.name)
    if dst is not None and not dry_run:
        dst = os.fspath(dst)
        if os.path.exists(dst) and os.path.samefile(src, dst):
            raise ValueError(f"input and output files are the same: {src!r}")
    emit = log if log is not None else ((lambda line: print(line, file=sys.stderr)) if verbose else None)

    f = gguf.read(src)
    try:
        plan = plan_model(src, ft, imatrix=imatrix, allow_requantize=allow_requantize,
                          leave_output_tensor=leave_output_tensor, pure=pure, include_weights=include_weights,
                          exclude_weights=exclude_weights, output_tensor_type=output_tensor_type,
                          token_embedding_type=token_embedding_type, tensor_types=tensor_types,
                          override_kv=override_kv, prune_layers=prune_layers, dry_run=dry_run, _file=f)
        if emit:
            for w in plan.state.warnings:
                emit(f"warning: {w}")
        result = QuantizeResult(None if dry_run else dst, ft, plan.tensors,
                                sum(t.src_size for t in plan.tensors), sum(t.new_size for t in plan.tensors),
                                plan.n_elements, n_fallback=plan.state.n_fallback, warnings=plan.state.warnings)
        if dry_run:
            if emit:
                for i, tp in enumerate(plan.tensors):
                    emit(_tensor_line(i, plan.n_tensors_in, tp, dry_run=True))
                if plan.will_require_imatrix:
                    emit("WARNING: dry run completed successfully, but actually completing this quantization "
                         "will require an imatrix!")
        else:
            nthread = nthread if nthread and nthread > 0 else (os.cpu_count() or 1)
            _write(plan, dst, nthread, progress, emit)
        result.seconds = time.perf_counter() - t_start
        if emit:
            emit(result.summary())
            if plan.state.n_fallback:
                emit(f"WARNING: {plan.state.n_fallback} of {plan.n_tensors_in} tensor(s) required fallback "
                     f"quantization")
        return result
    finally:
        f.close()


def _shape_str(ne) -> str:
    """llama_format_tensor_shape: every one of the four dimensions, %5d each."""
    return ", ".join(f"{d:5d}" for d in ne)


def _tensor_line(i: int, n: int, tp: TensorPlan, dry_run: bool = False) -> str:
    head = f"[{i + 1:4d}/{n:4d}] {tp.name:<36s} - [{_shape_str(tp.ne)}], type = {tp.src_type:>6s}, "
    mib = 1024.0 * 1024.0
    if not tp.convert:
        return head + f"size = {tp.src_size / mib:8.3f} MiB"
    if dry_run:
        return head + f"size = {tp.src_size / mib:8.2f} MiB -> {tp.new_size / mib:8.2f} MiB ({tp.new_type})"
    return head + f"converting to {tp.new_type} .. size = {tp.src_size / mib:8.2f} MiB -> {tp.new_size / mib:8.2f} MiB"


def _write(plan: _Plan, dst: str, nthread: int, progress: bool, emit) -> None:
    """The main loop: header first (every size is known), then each tensor copied or converted, padded to 32."""
    from ..gguf import Tensor, meta_bytes

    header = meta_bytes(plan.metadata,
                        [(tp.name, Tensor(tp.new_type, tuple(reversed(tp.ne)), None)) for tp in plan.tensors],
                        alignment=GGUF_DEFAULT_ALIGNMENT)
    bar = _progress_bar(len(plan.tensors), progress)
    pool = None
    try:
        with atomic_output(dst) as out:
            out.write(header)
            tasks = _tasks(plan)
            n_convert = sum(tp.source.n_elements for tp in plan.tensors if tp.convert)
            if nthread > 1 and n_convert >= POOL_MIN_ELEMENTS and _can_fork():
                pool = _start_pool(plan, nthread)
                results = pool.imap(_run_task, range(len(tasks)), chunksize=1)
            else:
                _set_job(plan, tasks)
                results = (_run_task(i) for i in range(len(tasks)))
            task_iter = iter(zip(tasks, results))
            pending = next(task_iter, None)
            for i, tp in enumerate(plan.tensors):
                if not tp.convert:
                    raw = _raw(tp.source)
                    _check_input(tp, raw)
                    out.write(memoryview(raw))
                else:
                    while pending is not None and pending[0][0] == i:
                        out.write(pending[1])
                        pending = next(task_iter, None)
                out.write(b"\0" * (-tp.new_size % GGUF_DEFAULT_ALIGNMENT))
                if emit:
                    emit(_tensor_line(i, plan.n_tensors_in, tp))
                if bar is not None:
                    bar.update(1)
            if pool is not None:
                pool.close()
                pool.join()
                pool = None
    finally:
        if pool is not None:            # an error or Ctrl-C: stop the workers (the temp file is already gone)
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()


def _progress_bar(n: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=n, unit="tensor", desc="quantize", file=sys.stderr, dynamic_ncols=True)


def _raw(t) -> np.ndarray:
    """A tensor's bytes as a flat read-only uint8 view of the mapped input."""
    return t._file._raw_tensor_bytes(t)


def _check_input(tp: TensorPlan, raw: np.ndarray) -> None:
    """llama_model_loader::load_data_range with check_tensors: ggml_validate_row_data on what is read."""
    from .. import quant
    try:
        ok = quant.validate(raw, tp.src_type)
    except ValueError:
        ok = True       # a type refimpl has no validator for (I8..I64, F64): ggml accepts it too
    if not ok:
        raise ValueError(f"tensor '{tp.source.name}' has invalid data (ggml_validate_row_data: NaN/Inf or bad "
                         f"block values)")


# ------------------------------------------------------------------------------------------- parallel workers

# The job the workers run, set before the worker processes are forked (they inherit it, the input mmap included)
_JOB: dict = {}


def _tasks(plan: _Plan) -> list[tuple[int, int, int]]:
    """(tensor index, first row, end row) slabs of whole rows, never crossing an expert (each expert has its own
    imatrix slice, llama_tensor_quantize_impl) and about TASK_ELEMENTS weights each."""
    tasks = []
    for i, tp in enumerate(plan.tensors):
        if not tp.convert:
            continue
        ne0, ne1 = tp.ne[0], tp.ne[1]
        nrows = tp.source.n_elements // ne0
        step = max(1, TASK_ELEMENTS // max(ne0, 1))
        r = 0
        while r < nrows:
            end = min(nrows, r + step, (r // ne1 + 1) * ne1)
            tasks.append((i, r, end))
            r = end
    return tasks


def _set_job(plan: _Plan, tasks) -> None:
    _JOB.clear()
    _JOB.update(plan=plan, tasks=tasks)


def _can_fork() -> bool:
    import multiprocessing as mp
    return "fork" in mp.get_all_start_methods()


def _start_pool(plan: _Plan, nthread: int):
    import multiprocessing as mp
    _set_job(plan, _tasks(plan))
    # compile (or load from numba's cache) each kernel once here, so that the forked workers inherit it
    from .. import quant
    seen = set()
    for tp in plan.tensors:
        if tp.convert and (tp.src_type, tp.new_type, tp.imatrix is not None) not in seen:
            seen.add((tp.src_type, tp.new_type, tp.imatrix is not None))
            _convert_rows(tp, 0, 1)
    return mp.get_context("fork").Pool(nthread)


def _run_task(k: int) -> bytes:
    i, r0, r1 = _JOB["tasks"][k]
    return _convert_rows(_JOB["plan"].tensors[i], r0, r1)


def _convert_rows(tp: TensorPlan, r0: int, r1: int) -> bytes:
    """Rows [r0, r1) of one tensor, converted: llama_tensor_dequantize_impl to float32 when the source is not
    F32, then ggml_quantize_chunk (refimpl.quant.quantize) with the expert's imatrix slice, then
    ggml_validate_row_data of the result."""
    from .. import quant
    ne0, ne1 = tp.ne[0], tp.ne[1]
    src_row = tp.src_size // (tp.source.n_elements // ne0)
    raw = _raw(tp.source)[r0 * src_row:r1 * src_row].reshape(r1 - r0, src_row)
    _check_input(tp, raw)
    if tp.src_type == "F32":
        x = raw.view(np.float32)
    else:
        x = quant.dequantize(raw, tp.src_type)
    im = None
    if tp.imatrix is not None:
        e = r0 // ne1
        im = tp.imatrix[e * ne0:(e + 1) * ne0]
    y = quant.quantize(x, tp.new_type, im)
    if not quant.validate(y, tp.new_type):
        raise ValueError(f"quantized data validation failed (tensor {tp.name}, {tp.new_type})")
    return y.tobytes()
