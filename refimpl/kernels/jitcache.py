"""Compiled closures that numba's on-disk cache can find again in the next process.

The fast layer builds some compiled functions as closures over other compiled functions: a row driver over a
format's ``vec_dot``, a float fold over a format's per-block step.  numba caches a closure under a key that holds
a pickle of the closure's cell contents (numba.core.caching._CacheImpl._index_key), and a pickled dispatcher
carries the dispatcher's ``_uuid`` — a random ``uuid4`` drawn once per process.  So every process computed a new
key: the closure missed the cache, was compiled again (a parallel row driver: seconds), and its index gained one
more ``.nbc`` entry per run, without bound.

``cached_closure`` compiles a closure with ``cache=True`` after giving it, and every dispatcher reachable through
its cells, a uuid derived from what they are (module, qualified name, first line, and the same for their cells),
so the key is the same in every process.  A module-level dispatcher pickles by reference (its module and name)
plus that uuid, so nothing else in the key changes between processes.
"""
from __future__ import annotations

import hashlib
import uuid

from types import CodeType, FunctionType

import numpy as np

from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

from .._jit import JIT_DISABLED, njit

# numba pickles a function by value (code, the globals it names, its cells), so a pickled closure carries the
# uuids of every dispatcher and intrinsic reachable through its cells and those functions' global names
_COMPILED = (Dispatcher, _Intrinsic)


def _python_function(compiled):
    return compiled.py_func if isinstance(compiled, Dispatcher) else compiled._defn


def _code_digest(code: CodeType) -> str:
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update((_code_digest(const) if isinstance(const, CodeType) else repr(const)).encode())
    return h.hexdigest()[:16]


def _function_key(func) -> str:
    """What ``func`` is, the same string in every process: where it is defined, its bytecode (so that an edited
    kernel gets a new uuid, and the closures over it a new cache key), and what its cells hold."""
    code = func.__code__
    key = f"{func.__module__}.{func.__qualname__}@{code.co_filename}:{code.co_firstlineno}:{_code_digest(code)}"
    if func.__closure__:
        key += "[" + ",".join(_identity(cell.cell_contents) for cell in func.__closure__) + "]"
    return key


def _identity(obj) -> str:
    if isinstance(obj, _COMPILED):
        return "compiled:" + stable_uuid(obj)
    if isinstance(obj, FunctionType):
        return "function:" + _function_key(obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, tuple, list)):
        return "value:" + repr(obj)
    if isinstance(obj, np.dtype):
        return f"dtype:{obj.descr!r}"
    if isinstance(obj, np.ndarray):
        return f"array:{obj.dtype.str}{obj.shape}:{hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}"
    # anything else: no stable name known, so no stable key (a cache miss each process, never a wrong hit)
    return f"unknown:{uuid.uuid4()}"


def _global_names(code: CodeType):
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _global_names(const)


def _stabilize_reachable(func, seen: set) -> None:
    """Give every dispatcher/intrinsic that pickling ``func`` reaches (cells, named globals) its stable uuid."""
    if id(func) in seen:
        return
    seen.add(id(func))
    reachable = [cell.cell_contents for cell in func.__closure__ or ()]
    reachable += [func.__globals__[n] for n in set(_global_names(func.__code__)) if n in func.__globals__]
    for obj in reachable:
        if isinstance(obj, _COMPILED):
            stable_uuid(obj)
            _stabilize_reachable(_python_function(obj), seen)
        elif isinstance(obj, FunctionType):
            _stabilize_reachable(obj, seen)


def stable_uuid(compiled) -> str:
    """Set (once) and return a uuid for a dispatcher or intrinsic that is the same in every process."""
    attr = "_MemoMixin__uuid" if isinstance(compiled, Dispatcher) else "_Intrinsic__uuid"
    current = getattr(compiled, attr, None)
    if current is not None:
        return current
    digest = hashlib.sha256(_function_key(_python_function(compiled)).encode()).digest()
    u = str(uuid.UUID(bytes=digest[:16]))
    compiled._set_uuid(u)
    return u


def cached_closure(func=None, **options):
    """``njit(cache=True, **options)`` for a closure over compiled functions (see the module docstring).  Usable
    as ``@cached_closure`` or ``@cached_closure(parallel=True)``."""
    def wrap(f):
        d = njit(cache=True, **options)(f)
        if not JIT_DISABLED:
            stable_uuid(d)
            _stabilize_reachable(f, set())
        return d
    return wrap if func is None else wrap(func)
