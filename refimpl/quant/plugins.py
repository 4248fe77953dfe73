"""Quantization schemes written outside refimpl: one Python file, registered at run time.

    # my_q4.py, anywhere on disk
    from refimpl.quant import QuantFormat
    FORMATS = [QuantFormat(name="my-q4", type_id=None, block_size=32, block_dtype=BLOCK, vec_dot_type=None,
                           quantize=quantize, dequantize=dequantize)]

    refimpl.quant.load_plugin("my_q4.py")          # or: python -m refimpl.quantize --plugin my_q4.py ... my-q4

``register(fmt)`` checks the format (a probe round trip on a small random matrix), gives it an id from the
experimental range (``EXPERIMENTAL_TYPE_BASE`` = 0x1000 and up, far above ggml's enum) and makes it known to the
quantizer, the matmul, the model and the GGUF container.  From then on every call of its ``quantize`` is checked:
an output of the wrong shape or dtype, or a round trip that is not finite on finite input, raises ``PluginError``
naming the plugin and its file, so no file is ever written from it.  The contract (shapes, dtypes, imatrix) and a
worked example are on one page, spec/plugins.md.

Reading order: ``register`` (checks, id, wrappers), ``_checked_quantize`` / ``_checked_dequantize`` (the per-call
checks), ``load_plugin`` (what every command line's ``--plugin`` calls).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..gguf import types as gguf_types
from .registry import TYPES, QuantFormat

#: The first type id of refimpl's experimental range [0x1000, 0x2000) (see refimpl/gguf/types.py for why).
EXPERIMENTAL_TYPE_BASE = gguf_types.EXPERIMENTAL_TYPE_BASE
EXPERIMENTAL_TYPE_LIMIT = gguf_types.EXPERIMENTAL_TYPE_LIMIT

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}")

# upper-case name -> (the QuantFormat the user gave, the one registered, where it came from)
_PLUGINS: dict[str, tuple[QuantFormat, QuantFormat, str]] = {}
_LOADED: dict[str, list[QuantFormat]] = {}      # load_plugin cache: resolved file or module name -> its formats


class PluginError(ValueError):
    """A plugin format that breaks the contract of spec/plugins.md; the message names the plugin and its file."""


def _origin(fmt: QuantFormat) -> str:
    fn = getattr(fmt.quantize, "py_func", fmt.quantize)    # a numba dispatcher keeps the Python function
    code = getattr(fn, "__code__", None)
    return code.co_filename if code is not None else getattr(fn, "__module__", "?")


def _fail(name: str, origin: str, what: str) -> PluginError:
    return PluginError(f"plugin type {name!r} ({origin}): {what}")


def plugin_formats() -> list[QuantFormat]:
    """The registered plugin formats, by id."""
    return sorted((reg for _, reg, _ in _PLUGINS.values()), key=lambda f: f.type_id)


def is_plugin(qtype) -> bool:
    """True for a type registered through ``register`` (not one of ggml's)."""
    try:
        return gguf_types.is_experimental_id(TYPES.get(qtype).type_id)
    except ValueError:
        return False


def register(fmt: QuantFormat) -> QuantFormat:
    """Register a plugin format; returns the format as registered (its id assigned, its kernels checked).

    ``fmt.type_id`` may be None (the next free experimental id is taken) or an id in
    [EXPERIMENTAL_TYPE_BASE, EXPERIMENTAL_TYPE_LIMIT).  Registering the same object twice returns the first
    registration; another format of a registered name is an error.
    """
    if not isinstance(fmt, QuantFormat):
        raise TypeError(f"register() takes a refimpl.quant.QuantFormat, got {type(fmt).__name__}")
    name = fmt.name
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise PluginError(f"plugin type name {name!r} must be 1-63 characters of letters, digits and _ . + - "
                          f"(it is used on command lines and in GGUF metadata)")
    origin = _origin(fmt) if fmt.quantize is not None else "?"
    known = _PLUGINS.get(name.upper())
    if known is not None:
        if known[0] is fmt:
            return known[1]
        raise _fail(name, origin, f"a plugin type of this name is already registered (from {known[2]})")
    if name in TYPES:
        raise _fail(name, origin, "the name is one of ggml's types")

    if not isinstance(fmt.block_size, (int, np.integer)) or fmt.block_size <= 0:
        raise _fail(name, origin, f"block_size must be a positive int, got {fmt.block_size!r}")
    try:
        block_dtype = np.dtype(fmt.block_dtype)
    except TypeError as e:
        raise _fail(name, origin, f"block_dtype is not a numpy dtype: {e}") from None
    if block_dtype.itemsize == 0 or block_dtype.hasobject:
        raise _fail(name, origin, f"block_dtype {block_dtype} must be a fixed-size dtype of plain numbers")
    if not callable(fmt.quantize) or not callable(fmt.dequantize):
        raise _fail(name, origin, "quantize and dequantize are both required (callables)")
    if (fmt.vec_dot is None) != (fmt.vec_dot_type is None):
        raise _fail(name, origin, "vec_dot and vec_dot_type go together: give both, or neither (matmul then "
                                  "dequantizes the rows and multiplies in float32)")
    if fmt.vec_dot is not None:
        if not hasattr(fmt.vec_dot, "py_func"):
            raise _fail(name, origin, "vec_dot must be a numba @njit function (matmul calls it from compiled "
                                      "row drivers); leave it out to multiply through float32")
        if fmt.vec_dot_type not in TYPES:
            raise _fail(name, origin, f"vec_dot_type {fmt.vec_dot_type!r} is not a registered type")

    type_id = fmt.type_id
    used = {f.type_id for f in TYPES.values()}
    if type_id is None:
        type_id = next((i for i in range(EXPERIMENTAL_TYPE_BASE, EXPERIMENTAL_TYPE_LIMIT) if i not in used), None)
        if type_id is None:
            raise _fail(name, origin, "the experimental type range is full")
    elif not isinstance(type_id, (int, np.integer)) or not gguf_types.is_experimental_id(type_id):
        raise _fail(name, origin, f"type_id {type_id!r} must be None or in the experimental range "
                                  f"[{EXPERIMENTAL_TYPE_BASE:#x}, {EXPERIMENTAL_TYPE_LIMIT:#x})")
    elif type_id in used:
        raise _fail(name, origin, f"type_id {type_id} is taken by {TYPES.get(int(type_id)).name}")

    registered = dataclasses.replace(
        fmt, type_id=int(type_id), block_size=int(fmt.block_size), block_dtype=block_dtype, is_quantized=True,
        quantize=_checked_quantize(fmt, block_dtype, origin), dequantize=_checked_dequantize(fmt, origin),
        doc=fmt.doc or f"plugin type from {origin}")
    _probe(registered, origin)
    TYPES.register(registered)
    gguf_types.register_experimental_type(registered.type_id, name, registered.block_size, registered.type_size)
    _PLUGINS[name.upper()] = (fmt, registered, origin)
    return registered


def _checked_quantize(fmt: QuantFormat, block_dtype: np.dtype, origin: str):
    """The registry's quantize(x, imatrix, blocks) around the plugin's, with the contract checked on every call."""
    user_quantize, user_dequantize, name = fmt.quantize, fmt.dequantize, fmt.name

    def quantize(x, imatrix, blocks):
        result = user_quantize(x, imatrix, blocks)
        if result is not None:          # the plain-numpy style: the blocks returned rather than written
            result = np.asarray(result)
            if result.shape != blocks.shape or result.dtype != block_dtype:
                raise _fail(name, origin, f"quantize returned {result.dtype} {result.shape}, expected "
                                          f"{block_dtype} {blocks.shape} (rows x blocks per row of block_dtype)")
            blocks[...] = result
        # the round trip must be finite in every block whose input was: a corrupt scale never reaches a file
        y = np.empty(blocks.size * fmt.block_size, dtype=np.float32)
        _dequantize_into(user_dequantize, name, origin, blocks.reshape(-1), y)
        y = y.reshape(x.shape)
        finite_in = np.isfinite(x).reshape(blocks.shape + (fmt.block_size,)).all(axis=-1)
        bad = ~np.isfinite(y) & np.repeat(finite_in, fmt.block_size, axis=-1)
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise _fail(name, origin, f"the round trip quantize -> dequantize is not finite: element [{row}, {col}] "
                                      f"is {x[row, col]!r} in and {y[row, col]!r} out")

    return quantize


def _dequantize_into(user_dequantize, name, origin, blocks, y) -> None:
    result = user_dequantize(blocks, y)
    if result is not None:
        result = np.asarray(result)
        if result.dtype.kind != "f" or result.size != y.size:
            raise _fail(name, origin, f"dequantize returned {result.dtype} {result.shape}, expected float "
                                      f"({y.size},) ({blocks.shape[0]} blocks)")
        y[...] = result.reshape(y.shape)


def _checked_dequantize(fmt: QuantFormat, origin: str):
    user_dequantize, name = fmt.dequantize, fmt.name

    def dequantize(blocks, y):
        _dequantize_into(user_dequantize, name, origin, blocks, y)

    return dequantize


def _probe(fmt: QuantFormat, origin: str) -> None:
    """One small quantize + dequantize at registration, so a broken plugin fails now rather than mid-model."""
    n = fmt.block_size * max(1, -(-256 // fmt.block_size))
    x = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    imatrix = np.ones(n, dtype=np.float32) if fmt.requires_imatrix else np.zeros(0, dtype=np.float32)
    blocks = np.zeros((2, n // fmt.block_size), dtype=fmt.block_dtype)
    try:
        with np.errstate(all="ignore"):
            fmt.quantize(x, imatrix, blocks)
    except PluginError:
        raise
    except Exception as e:
        raise _fail(fmt.name, origin, f"quantize failed on a 2 x {n} float32 probe: {type(e).__name__}: {e}") from e


def load_plugin(path_or_module) -> list[QuantFormat]:
    """Import a plugin file (``path/to/plugin.py``) or module (``package.module``) and register its formats:
    the module's ``FORMATS`` list, plus any it registered itself on import.  Loading the same plugin again is a
    no-op.  Returns the formats as registered."""
    spec_text = os.fspath(path_or_module)
    is_file = spec_text.endswith(".py") or os.sep in spec_text or (os.altsep or os.sep) in spec_text
    key = str(Path(spec_text).resolve()) if is_file else spec_text
    if key in _LOADED:
        return list(_LOADED[key])
    before = set(_PLUGINS)
    if is_file:
        path = Path(key)
        if not path.is_file():
            raise ValueError(f"plugin file {spec_text} does not exist")
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        module_name = f"refimpl_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except PluginError:
            del sys.modules[module_name]
            raise
        except Exception as e:
            del sys.modules[module_name]
            raise ValueError(f"plugin {spec_text}: importing it failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(spec_text)
        except ModuleNotFoundError as e:
            raise ValueError(f"--plugin {spec_text}: no such file, and no importable module of that name ({e})") \
                from None
    for fmt in getattr(module, "FORMATS", ()):
        register(fmt)
    new = [n for n in _PLUGINS if n not in before]
    formats = [_PLUGINS[n][1] for n in new] or [
        _PLUGINS[f.name.upper()][1] for f in getattr(module, "FORMATS", ()) if f.name.upper() in _PLUGINS]
    if not formats:
        raise ValueError(f"plugin {spec_text} registered no quantization format: define FORMATS = "
                         f"[QuantFormat(...), ...] or call refimpl.quant.register(...) in it")
    _LOADED[key] = formats
    return list(formats)


def load_plugins(paths) -> list[QuantFormat]:
    """``load_plugin`` for each of a command line's ``--plugin`` values (None or empty: nothing)."""
    out: list[QuantFormat] = []
    for p in paths or ():
        out.extend(load_plugin(p))
    return out
