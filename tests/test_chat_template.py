"""Chat templates against llama.cpp (golden/chat_template, tools/goldens/chat_template.py): the built-in renderer
(llama_chat_apply_template) and the Jinja path (common_chat_templates_apply --jinja), string for string."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from refimpl.chat_template import (BUILTIN_TEMPLATES, ChatTemplate, ChatTemplateError, detect_builtin,
                                   llama_chat_apply_template)
from sdist import vocab_dir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "chat_template"


def _load(name):
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


TEMPLATES = _load("templates.json")
CONVS = TEMPLATES["conversations"]


def _vocab_template(vocab: str) -> str | None:
    from refimpl import gguf

    v = gguf.read(vocab_dir() / vocab).get("tokenizer.chat_template")
    return v.decode() if isinstance(v, bytes) else v


def test_builtin_names_are_llama_cpps():
    assert sorted(BUILTIN_TEMPLATES) == _load("builtin.json")["names"]


def test_builtin_renderer_matches_llama_chat_apply_template():
    cases = _load("builtin.json")["cases"]
    sources = {}
    mismatches = []
    for key, case in cases.items():
        tmpl = case["tmpl"]
        if tmpl is not None and tmpl.startswith("text:"):
            tid = tmpl[5:]
            if tid not in sources:
                t = TEMPLATES["templates"][tid]
                sources[tid] = t["source"] if t["source"] is not None else _vocab_template(t["vocab"])
            tmpl = sources[tid]
        try:
            got = llama_chat_apply_template(tmpl, CONVS[case["conv"]], case["add_ass"])
        except ChatTemplateError:
            got = None
        if got != case["result"]:
            mismatches.append(key)
    assert not mismatches, f"{len(mismatches)}/{len(cases)} differ, e.g. {mismatches[:5]}"
    assert len(cases) >= 600


def test_jinja_renderer_matches_common_chat_templates_apply():
    golden = _load("jinja.json")
    when = golden["time"]                                 # the harness's fixed wall clock
    rendered = {}
    mismatches = []
    for key, case in golden["cases"].items():
        tid = case["template"]
        if tid not in rendered:
            t = TEMPLATES["templates"][tid]
            if t["vocab"]:
                ct = ChatTemplate.from_gguf(vocab_dir() / t["vocab"], override=t["source"])
            else:
                ct = ChatTemplate(t["source"])
            ct.clock = lambda: time.gmtime(when)              # the harness ran with TZ=UTC
            rendered[tid] = ct
        ct = rendered[tid]
        try:
            got = {"prompt": ct.apply(CONVS[case["conv"]], case["add_generation_prompt"])}
        except ChatTemplateError as e:
            got = {"error": str(e)}
        want = {k: case[k] for k in ("prompt", "error") if k in case}
        if "error" in want and "error" in got:
            continue                                  # both refuse; the messages are the engines' own
        if got != want:
            mismatches.append(key)
    assert not mismatches, f"{len(mismatches)}/{len(golden['cases'])} differ, e.g. {mismatches[:5]}"
    assert len(rendered) >= 30


def test_no_template_falls_back_to_chatml():
    conv = CONVS[1]
    chatml = llama_chat_apply_template("chatml", conv, True)
    assert ChatTemplate(None).apply(conv) == chatml
    assert ChatTemplate("chatml", use_jinja=False).apply(conv) == chatml
    assert llama_chat_apply_template(None, conv, True) == chatml


def test_errors_are_clear():
    with pytest.raises(ChatTemplateError, match="not supported by the built-in renderer"):
        ChatTemplate("{{ messages[0].content }}", use_jinja=False)
    with pytest.raises(ChatTemplateError, match="syntax error"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(ChatTemplateError, match="Jinja Exception: no"):
        ChatTemplate("{{ raise_exception('no') }}").apply(CONVS[0])
    with pytest.raises(ValueError, match="must be strings"):
        ChatTemplate(None).apply([{"role": "user", "content": 3}])
    assert detect_builtin("{{ something unknown }}") is None
