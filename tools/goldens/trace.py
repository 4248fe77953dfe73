"""Per-op traces: every named intermediate tensor of llama.cpp's forward pass, as its eval callback sees it.

For the tiny golden models of golden/model/ (each architecture in F32 and Q8_0), one llama_decode of a short
prompt with llama.cpp's scheduler eval callback (``cb_eval`` in llama_context_params) set: the callback answers
"yes" when asked about each graph node, so ggml computes the graph one node at a time and hands every node's
result to the callback, which copies it out (the tensors live on the CPU backend, so ``t->data`` is readable).

  trace/<model>.npz   one array per traced tensor, keyed ``<order>`` (zero-padded graph position, "0000" ...):
                      float32, numpy shape = ggml's ne reversed, trailing ne of 1 dropped (ggml_n_dims)
  trace/index.json    per model: prompt tokens, llama.cpp settings, and the list of traced tensors in graph order
                      (key, ggml name, occurrence of that name, op, ne, type)

Which nodes are kept: every F32 node whose name llama.cpp's graph code gave it (``cb(cur, "name", il)`` in
llama-graph.cpp / src/models/*.cpp gives "name-il"), views of those names ("Qcur-0 (reshaped)") excluded when
they only re-describe data already traced.  Dropped: ggml's positional fallback names (``node_12``, ``leaf_3``),
views/permutes/reshapes the graph names automatically ("... (view)", "... (permuted)", "... (reshaped)",
"... (transposed)", "... (copy of ...)"), the KV cache itself and non-F32 tensors (the F16 cache cells).
A name can repeat: ``cb`` names the matmul output "Qcur-0" and again its reshape and its RoPE; each is a
separate node, recorded with its occurrence number (0, 1, 2 ...) in graph order.

llama.cpp settings: tools/goldens/model.py SETTINGS (flash attention off, F16 KV cache, one thread, n_ctx 256,
logits for every position); llama.cpp runs in a forked child.
"""
from __future__ import annotations

import ctypes as C
import multiprocessing
from pathlib import Path

import numpy as np

DESCRIPTION = ("llama.cpp's per-op intermediates (eval callback) for the tiny golden models of each architecture, "
               "F32 and Q8_0, one decode of a 6-token prompt")

MODELS = [f"{arch}-{t}" for arch in ("llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2") for t in ("F32", "Q8_0")]
N_PROMPT = 6

GGML_TYPE_F32 = 0
# the names ggml itself gives views, reshapes, permutes and copies of a named tensor
_AUTO_SUFFIXES = (" (view)", " (permuted)", " (reshaped)", " (transposed)", " (cont)", " (copy)")


class GGMLTensor(C.Structure):
    """struct ggml_tensor (ggml/include/ggml.h), GGML_MAX_DIMS 4, GGML_MAX_SRC 10, GGML_MAX_NAME 64,
    GGML_MAX_OP_PARAMS 64."""
    _fields_ = [
        ("type", C.c_int),
        ("buffer", C.c_void_p),
        ("ne", C.c_int64 * 4),
        ("nb", C.c_size_t * 4),
        ("op", C.c_int),
        ("op_params", C.c_int32 * 16),
        ("flags", C.c_int32),
        ("src", C.c_void_p * 10),
        ("view_src", C.c_void_p),
        ("view_offs", C.c_size_t),
        ("data", C.c_void_p),
        ("name", C.c_char * 64),
        ("extra", C.c_void_p),
        ("padding", C.c_char * 8),
    ]


EVAL_CALLBACK = C.CFUNCTYPE(C.c_bool, C.POINTER(GGMLTensor), C.c_bool, C.c_void_p)


def wanted(name: str, type_id: int) -> bool:
    if type_id != GGML_TYPE_F32 or not name:
        return False
    if name.startswith(("node_", "leaf_", "cache_")):
        return False
    return not any(s in name for s in _AUTO_SUFFIXES) and "(copy of" not in name


def tensor_array(t: GGMLTensor) -> np.ndarray:
    """The tensor's elements (following nb, so views and permutes read correctly) as numpy (ne3, ne2, ne1, ne0)."""
    ne = [int(t.ne[i]) for i in range(4)]
    nb = [int(t.nb[i]) for i in range(4)]
    span = sum((n - 1) * s for n, s in zip(ne, nb)) + 4
    buf = (C.c_char * span).from_address(t.data)
    flat = np.frombuffer(buf, dtype=np.uint8)
    a = np.lib.stride_tricks.as_strided(flat.view(np.float32) if nb[0] == 4 and span % 4 == 0 else flat,
                                        shape=ne[::-1], strides=nb[::-1])
    a = np.array(a, dtype=np.float32, copy=True)
    n_dims = max([1] + [i + 1 for i in range(4) if ne[i] != 1])      # ggml_n_dims
    return a.reshape(ne[:n_dims][::-1])


def _run(path: str, tokens: list[int], conn, keep_all: bool = False, overrides: dict | None = None) -> None:
    try:
        import llama_cpp

        from .model import SETTINGS

        records = []
        seen: dict[str, int] = {}

        def cb(tp, ask, _user):
            t = tp.contents
            name = t.name.decode("utf-8", "replace")
            if not (keep_all or wanted(name, t.type)):
                return not ask          # ask: "not this one"; otherwise: carry on computing
            if ask:
                return True
            occ = seen.get(name, 0)
            seen[name] = occ + 1
            records.append((name, occ, int(t.op), [int(t.ne[i]) for i in range(4)],
                            tensor_array(t) if t.type == GGML_TYPE_F32 else None))
            return True

        callback = EVAL_CALLBACK(cb)
        orig = llama_cpp.llama_context_default_params

        def params_with_callback():
            p = orig()
            p.cb_eval = C.cast(callback, type(p.cb_eval))
            p.cb_eval_user_data = None
            return p

        llama_cpp.llama_context_default_params = params_with_callback
        llama_cpp.llama.llama_cpp.llama_context_default_params = params_with_callback
        llm = llama_cpp.Llama(model_path=path, **{**SETTINGS, **(overrides or {})})
        llm.eval(tokens)
        conn.send(("ok", records))
    except BaseException as e:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def run_llama(path: str, tokens, keep_all: bool = False, overrides: dict | None = None) -> list:
    """[(name, occurrence, op, ne, float32 array)] of one llama_decode of ``tokens``, in graph order;
    ``overrides``: llama_cpp.Llama arguments replacing tools/goldens/model.py SETTINGS (n_ctx, type_k ...)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_run, args=(path, [int(t) for t in tokens], child, keep_all, overrides))
    p.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        p.join()
        raise RuntimeError(f"llama.cpp died on {path} (exit code {p.exitcode})")
    p.join()
    if status != "ok":
        raise RuntimeError(f"llama.cpp failed on {path}: {payload}")
    return payload


def prompt_tokens(arch: str) -> np.ndarray:
    from .model import prompt_tokens as model_prompt, CONFIGS

    return model_prompt(7200 + list(CONFIGS).index(arch))[:N_PROMPT]


def deflated_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """goldens._io.npz_bytes, DEFLATE-compressed (level 9): the kq tensors span all 256 cache cells and are mostly
    masked zeros.  Still deterministic (fixed timestamps, sorted members); any NPY/ZIP reader opens it."""
    import io
    import zipfile

    from ._io import npy_bytes

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, npy_bytes(arrays[key]), compresslevel=9)
    return buf.getvalue()


def generate(oracle, w) -> None:
    from .model import SETTINGS

    root = Path(__file__).resolve().parents[2] / "golden" / "model"
    index = {"settings": dict(SETTINGS), "n_prompt": N_PROMPT, "models": {}}
    for name in MODELS:
        arch = name.split("-")[0]
        tokens = prompt_tokens(arch)
        records = run_llama(str(root / f"{name}.gguf"), tokens)
        arrays, entries = {}, []
        for i, (tname, occ, op, ne, a) in enumerate(records):
            key = f"{i:04d}"
            arrays[key] = a
            entries.append({"key": key, "name": tname, "occurrence": occ, "op": op, "ne": ne, "type": "f32"})
        w.raw(f"{name}.npz", deflated_npz(arrays), f"llama.cpp eval-callback intermediates of model/{name}.gguf, prompt of "
                                     f"{N_PROMPT} tokens (graph order; names in trace/index.json)")
        index["models"][name] = {"gguf": f"model/{name}.gguf", "tokens": [int(t) for t in tokens],
                                 "tensors": entries}
        print(f"  {name}: {len(records)} tensors, {sum(a.nbytes for a in arrays.values()):,} bytes", flush=True)
    w.json("index.json", index, "per model: prompt, settings and the traced tensors (key, ggml name, occurrence, "
                                "op, ne) in graph order")


if __name__ == "__main__":          # a quick look at what the callback sees: python -m goldens.trace MODEL.gguf
    import sys

    recs = run_llama(sys.argv[1], prompt_tokens(Path(sys.argv[1]).stem.split("-")[0]), keep_all=True)
    for i, (n, occ, op, ne, a) in enumerate(recs):
        print(i, n, occ, op, ne)
