"""llama.cpp's chat-template rendering: the built-in renderer (llama_chat_apply_template) and the Jinja path.

  chat_template/builtin.json   llama_chat_apply_template (ctypes on the scalar libllama) for every built-in
                               template name (llama_chat_builtin_templates) and for every template text of
                               templates.json (recognised by substring, or -1), over CONVERSATIONS x
                               add_ass in {false, true}: {"names": [...], "cases": {key: {"tmpl": name or
                               "text:<template id>", "conv": i, "add_ass": b, "result": text or null (-1)}}}
  chat_template/jinja.json     common_chat_templates_apply with use_jinja = true (llama.cpp's own Jinja engine,
                               the path of llama-cli/llama-server) through a tiny C++ harness linked against the
                               pinned release's libllama-common (tools/chat_harness/, built here, never
                               committed), for every template of templates.json: {"time": the epoch seconds
                               the harness's wall clock reads (FIXED_EPOCH, through the LD_PRELOAD shim
                               tools/chat_harness/fixed_time.c; templates that print the date use it, in
                               UTC), "cases": {key:
                               {"template": id, "conv": i, "add_generation_prompt": b, "prompt": text} or
                               {..., "error": message}}}
  chat_template/templates.json the templates (inputs): id -> {"source": text or null (= the vocab's own template,
                               or llama.cpp's ChatML fallback when it has none), "vocab": a ggml-vocab-*.gguf name
                               of vendor/llama.cpp/models or null (no model: empty BOS/EOS, add_bos false),
                               "origin": where the text comes from}; plus "conversations": CONVERSATIONS

Templates: every vocab GGUF of vendor/llama.cpp/models (its tokenizer.chat_template, or the ChatML fallback), and
well-known templates taken from llama.cpp's own test templates (vendor/llama.cpp/models/templates/*.jinja):
ChatML (Qwen2.5), Llama 3.1/3.2, Gemma 2, Phi-3.5, and more families listed in TEMPLATE_FILES.  The harness runs
with TZ=UTC and its wall clock fixed at FIXED_EPOCH (2026-01-01 00:00:00 UTC), so every run gives the same bytes.
"""
from __future__ import annotations

import ctypes as C
import os
import shutil
import subprocess
from pathlib import Path

DESCRIPTION = ("llama.cpp's chat-template rendering: llama_chat_apply_template (built-in templates, via ctypes) and "
               "common_chat_templates_apply --jinja (through a C++ harness on libllama-common), for GGUF vocab "
               "templates and well-known ones, over several conversations")

ROOT = Path(__file__).resolve().parents[2]
HARNESS_SRC = ROOT / "tools" / "chat_harness" / "chat_harness.cpp"
CLOCK_SHIM_SRC = ROOT / "tools" / "chat_harness" / "fixed_time.c"
FIXED_EPOCH = 1767225600        # 2026-01-01T00:00:00Z: what the harness's time()/clock_gettime(REALTIME) return

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi there!"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
    [{"role": "user", "content": "  naïve café — 日本語 🦙\n"}, {"role": "assistant", "content": " Ja, ça va. "},
     {"role": "user", "content": "Ünïcödé\tand\nnewlines?"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
]

#: llama.cpp's test templates used here (vendor/llama.cpp/models/templates/), by family
TEMPLATE_FILES = [
    "Qwen-Qwen2.5-7B-Instruct.jinja",             # ChatML
    "meta-llama-Llama-3.1-8B-Instruct.jinja",     # Llama 3 (date, tools branches)
    "meta-llama-Llama-3.2-3B-Instruct.jinja",     # Llama 3 with strftime_now
    "google-gemma-2-2b-it.jinja",                 # Gemma: no system role -> merged into the first user turn
    "microsoft-Phi-3.5-mini-instruct.jinja",      # Phi-3
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "Qwen-Qwen3-0.6B.jinja",
    "HuggingFaceTB-SmolLM3-3B.jinja",
    "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "llama-cpp-rwkv-world.jinja",
    "moonshotai-Kimi-K2.jinja",
    "LFM2.5-Instruct.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",   # typed content, [SYSTEM_PROMPT]
    "openai-gpt-oss-120b.jinja",                  # gpt-oss: last <|return|> -> <|end|>
    "StepFun3.5-Flash.jinja",                     # contents trimmed before rendering
    "fireworks-ai-llama-3-firefunction-v2.jinja", # string + undefined
    "Qwen3.5-4B.jinja",                           # reasoning_content undefined
    "poolside-Laguna-XS-2.1.jinja",               # {% generation %} blocks
    "google-gemma-4-31B-it.jinja",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
    "deepseek-ai-DeepSeek-V3.1.jinja",
    "ibm-granite-granite-4.0.jinja",
]
#: text templates also rendered with a vocabulary (BOS/EOS texts, and the BOS cut when the vocab adds BOS itself)
TEMPLATE_VOCAB = {"meta-llama-Llama-3.1-8B-Instruct.jinja": "ggml-vocab-llama-bpe.gguf",
                  "microsoft-Phi-3.5-mini-instruct.jinja": "ggml-vocab-phi-3.gguf",
                  "google-gemma-2-2b-it.jinja": "ggml-vocab-llama-spm.gguf"}

US, RS = b"\x1f", b"\x1e"


def vendor_models() -> Path:
    """The pinned llama.cpp's models/ (vocab GGUFs and test templates): the generator needs ./vendor."""
    models = ROOT / "vendor" / "models"
    if not (models / "templates").is_dir():
        raise RuntimeError("the chat_template goldens need the pinned llama.cpp source as ./vendor (see README)")
    return models


def vocab_files() -> list[str]:
    return sorted(p.name for p in vendor_models().glob("ggml-vocab-*.gguf"))


def templates() -> dict[str, dict]:
    """template id -> {"source", "vocab", "origin"}"""
    models = vendor_models()
    out: dict[str, dict] = {}
    for name in vocab_files():
        out[f"vocab:{name}"] = {"source": None, "vocab": name,
                                "origin": f"tokenizer.chat_template of models/{name} (ChatML fallback if none)"}
    for fname in TEMPLATE_FILES:
        text = (models / "templates" / fname).read_text(encoding="utf-8")
        out[f"file:{fname}"] = {"source": text, "vocab": None, "origin": f"models/templates/{fname}"}
        if fname in TEMPLATE_VOCAB:
            out[f"file:{fname}+{TEMPLATE_VOCAB[fname]}"] = {
                "source": text, "vocab": TEMPLATE_VOCAB[fname],
                "origin": f"models/templates/{fname} with the vocab models/{TEMPLATE_VOCAB[fname]}"}
    return out


# ---------------------------------------------------------------------------------------------------------------
# llama_chat_apply_template through ctypes


class _Msg(C.Structure):
    _fields_ = [("role", C.c_char_p), ("content", C.c_char_p)]


def _declare(lib) -> None:
    lib.llama_chat_apply_template.argtypes = [C.c_char_p, C.POINTER(_Msg), C.c_size_t, C.c_bool, C.c_char_p,
                                              C.c_int32]
    lib.llama_chat_apply_template.restype = C.c_int32
    lib.llama_chat_builtin_templates.argtypes = [C.POINTER(C.c_char_p), C.c_size_t]
    lib.llama_chat_builtin_templates.restype = C.c_int32


def builtin_names(lib) -> list[str]:
    n = lib.llama_chat_builtin_templates(None, 0)
    arr = (C.c_char_p * n)()
    lib.llama_chat_builtin_templates(arr, n)
    return [arr[i].decode() for i in range(n)]


def apply_template(lib, tmpl: str | None, conv, add_ass: bool) -> str | None:
    msgs = (_Msg * len(conv))(*[_Msg(m["role"].encode(), m["content"].encode()) for m in conv])
    t = None if tmpl is None else tmpl.encode()
    res = lib.llama_chat_apply_template(t, msgs, len(conv), add_ass, None, 0)
    if res < 0:
        return None
    buf = C.create_string_buffer(res + 1)
    res2 = lib.llama_chat_apply_template(t, msgs, len(conv), add_ass, buf, res + 1)
    assert res2 == res
    return buf.raw[:res].decode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# the Jinja path through the C++ harness


def build_harness(libdir: Path) -> tuple[Path, Path]:
    """Compile tools/chat_harness/chat_harness.cpp against the pinned release's headers (vendor/llama.cpp) and the
    scalar build's libllama-common / libllama (``libdir``), and the fixed-clock shim fixed_time.c.  One g++ and one
    gcc call, a few seconds; the binaries go to a cache directory, never into the repository."""
    vendor = ROOT / "vendor"
    if not (vendor / "common" / "chat.h").exists():
        raise RuntimeError("the jinja goldens need the pinned llama.cpp source as ./vendor (see README)")
    if not (libdir / "libllama-common.so").exists():
        raise RuntimeError(f"{libdir}/libllama-common.so not found: build the pinned release with "
                           "tools/build_llama_tools.py (the llama-common target comes with the tools)")
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++) to build the chat-template harness")
    out_dir = Path(os.environ.get("REFIMPL_CACHE", Path.home() / ".cache" / "refimpl")) / "chat_harness"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / "chat_harness"
    cmd = [cxx, "-std=c++17", "-O1", f"-I{vendor / 'common'}", f"-I{vendor / 'include'}",
           f"-I{vendor / 'ggml' / 'include'}", f"-I{vendor / 'vendor'}", str(HARNESS_SRC), "-o", str(exe),
           f"-L{libdir}", "-lllama-common", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{libdir}"]
    subprocess.run(cmd, check=True)
    shim = out_dir / "fixed_time.so"
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", str(CLOCK_SHIM_SRC), "-o", str(shim), "-ldl"], check=True)
    return exe, shim


def run_harness(exe: Path, shim: Path, vocab: str | None, source: str | None, convs, tmpdir: Path):
    """-> (epoch seconds, [("OK", prompt) | ("ERR", message)] per (conv, add_generation_prompt)), or raises with
    the init error."""
    tfile = "-"
    if source is not None:
        tpath = tmpdir / "template.jinja"
        tpath.write_bytes(source.encode("utf-8"))
        tfile = str(tpath)
    vfile = str(vendor_models() / vocab) if vocab else "-"
    stdin = b""
    for conv in convs:
        for add in (False, True):
            fields = [b"1" if add else b"0"]
            for m in conv:
                fields += [m["role"].encode(), m["content"].encode()]
            stdin += US.join(fields) + RS
    env = dict(os.environ, TZ="UTC", LD_PRELOAD=str(shim), CHAT_HARNESS_EPOCH=str(FIXED_EPOCH))
    out = subprocess.run([str(exe), vfile, tfile], input=stdin, capture_output=True, check=True, env=env).stdout
    recs = [r for r in out.split(RS) if r]
    kind, t = recs[0].split(US, 1)
    assert kind == b"TIME"
    results = []
    for r in recs[1:]:
        kind, text = r.split(US, 1)
        if kind == b"INITERR":
            raise RuntimeError(text.decode())
        results.append((kind.decode(), text.decode("utf-8")))
    return int(t), results


# ---------------------------------------------------------------------------------------------------------------


def generate(oracle, w) -> None:
    import tempfile

    lib = oracle.llama
    _declare(lib)
    tmpls = templates()
    w.json("templates.json", {"templates": tmpls, "conversations": CONVERSATIONS},
           "the chat templates (inputs) and conversations of the chat_template goldens")

    names = builtin_names(lib)
    cases = {}
    for name in names:
        for ci, conv in enumerate(CONVERSATIONS):
            for add in (False, True):
                cases[f"name:{name}/{ci}/{int(add)}"] = {"tmpl": name, "conv": ci, "add_ass": add,
                                                         "result": apply_template(lib, name, conv, add)}
    for ci, conv in enumerate(CONVERSATIONS):          # NULL template = "chatml"
        for add in (False, True):
            cases[f"null/{ci}/{int(add)}"] = {"tmpl": None, "conv": ci, "add_ass": add,
                                              "result": apply_template(lib, None, conv, add)}
    from refimpl import gguf as gguf_mod

    for tid, t in tmpls.items():
        src = t["source"]
        if src is None:
            v = gguf_mod.read(vendor_models() / t["vocab"]).get("tokenizer.chat_template")
            if v is None:
                continue
            src = v.decode() if isinstance(v, bytes) else v
        for ci, conv in enumerate(CONVERSATIONS):
            for add in (False, True):
                cases[f"{tid}/{ci}/{int(add)}"] = {"tmpl": "text:" + tid, "conv": ci, "add_ass": add,
                                                   "result": apply_template(lib, src, conv, add)}
    w.json("builtin.json", {"names": names, "cases": cases},
           "llama_chat_apply_template over every built-in name and template text, per conversation and add_ass")

    exe, shim = build_harness(Path(oracle.libdir))
    jcases = {}
    with tempfile.TemporaryDirectory() as td:
        for tid, t in tmpls.items():
            when, results = run_harness(exe, shim, t["vocab"], t["source"], CONVERSATIONS, Path(td))
            if when != FIXED_EPOCH:
                raise RuntimeError(f"the harness's clock reads {when}, not {FIXED_EPOCH}: the LD_PRELOAD shim "
                                   "did not take")
            k = 0
            for ci in range(len(CONVERSATIONS)):
                for add in (False, True):
                    kind, text = results[k]
                    k += 1
                    case = {"template": tid, "conv": ci, "add_generation_prompt": add}
                    case["prompt" if kind == "OK" else "error"] = text
                    jcases[f"{tid}/{ci}/{int(add)}"] = case
    w.json("jinja.json", {"time": FIXED_EPOCH, "cases": jcases},
           "common_chat_templates_apply (use_jinja) per template, conversation and add_generation_prompt, "
           "via tools/chat_harness on libllama-common")
