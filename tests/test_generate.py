"""refimpl.generate: the Generator API (streaming, stop strings, budgets, seeds, KV-cache reuse) and the CLI's
conversation mode, driven through stdin as a pipe, on the embedded tiny-kjv model."""
from __future__ import annotations

import io
import sys

import pytest

from refimpl.generate import DEFAULT_MODEL, Generator, _StopMatcher, main

TEMPLATE = ("{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


@pytest.fixture(scope="module")
def gen():
    return Generator(DEFAULT_MODEL, n_ctx=256, chat_template=TEMPLATE, max_tokens=12)


def test_stream_is_generate_and_seeded(gen):
    a = gen.generate("In the beginning", seed=11)
    pieces = list(gen.stream("In the beginning", seed=11))
    assert "".join(pieces) == a and all(isinstance(p, str) and p for p in pieces)
    assert gen.last.n_generated == 12 and gen.last.finish_reason == "length" and gen.last.text == a
    assert gen.generate("In the beginning", seed=11, temp=0.8) == a          # same seed, same text
    greedy = gen.generate("In the beginning", temp=0, max_tokens=5)
    assert gen.last.n_generated == 5 and gen.generate("In the beginning", temp=0, max_tokens=5, seed=99) == greedy


def test_kv_cache_reuse_gives_the_same_text(gen):
    fresh = Generator(gen.model, temp=0, max_tokens=8)
    fresh.model.new_context(256)                         # an empty cache: nothing to reuse
    long_prompt = "And God said, Let there be light"
    want = fresh.generate(long_prompt)
    assert fresh.last.n_prompt_evaluated == fresh.last.n_prompt
    fresh.generate("And God said")                       # a shorter prompt sharing the prefix
    got = fresh.generate(long_prompt)                    # only the tokens after the cached prefix evaluated
    assert fresh.last.n_prompt_evaluated < fresh.last.n_prompt
    assert got == want


def test_stop_strings(gen):
    base = gen.generate("And the LORD", temp=0, max_tokens=20)
    word = base.split()[3]
    got = gen.generate("And the LORD", temp=0, max_tokens=20, stop=[word])
    assert got == base[:base.index(word)] and gen.last.finish_reason == "stop"
    streamed = "".join(gen.stream("And the LORD", temp=0, max_tokens=20, stop=word))
    assert streamed == got


def test_stop_matcher_holds_back_partial_matches():
    m = _StopMatcher(["</s>"])
    assert m.feed("abc<") == ("abc", False)
    assert m.feed("/x") == ("</x", False)
    assert m.feed("y</") == ("y", False)
    assert m.feed("s>z") == ("", True)


def test_chat_and_errors(gen):
    msgs = [{"role": "user", "content": "Who made the heaven?"}]
    assert gen.apply_chat_template(msgs) == "USER: Who made the heaven?\nASSISTANT:"
    assert gen.chat(msgs, temp=0) == gen.generate("USER: Who made the heaven?\nASSISTANT:", temp=0)
    with pytest.raises(ValueError, match="does not fit the context"):
        gen.generate("light " * 300)
    with pytest.raises(TypeError, match="unknown generation parameter"):
        gen.generate("x", temperature=0.5)


def _run_cli(monkeypatch, capsys, argv, stdin_text):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_conversation_from_a_pipe(monkeypatch, capsys, tmp_path, gen):
    """One turn per line; /exit ends it; each reply is what the API gives for the whole conversation so far."""
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text(TEMPLATE)
    argv = ["-m", str(DEFAULT_MODEL), "-c", "256", "--chat", "--chat-template-file", str(tmpl), "-n", "6",
            "--temp", "0", "--system", "Thou art the Bible."]
    rc, out, err = _run_cli(monkeypatch, capsys, argv, "In the beginning\nAnd the LORD said\n/exit\nignored\n")
    assert rc == 0, err
    replies = out.split("\n")[:2]
    msgs = [{"role": "system", "content": "Thou art the Bible."}, {"role": "user", "content": "In the beginning"}]
    want1 = gen.chat(msgs, temp=0, max_tokens=6)
    msgs += [{"role": "assistant", "content": want1}, {"role": "user", "content": "And the LORD said"}]
    want2 = gen.chat(msgs, temp=0, max_tokens=6)
    assert replies == [want1, want2]
    assert "prompt eval time" in err


def test_cli_prompt_file_and_bad_template(monkeypatch, capsys, tmp_path):
    pf = tmp_path / "prompt.txt"
    pf.write_text("In the beginning")
    rc, out, _ = _run_cli(monkeypatch, capsys, ["-m", str(DEFAULT_MODEL), "-f", str(pf), "-n", "3", "--temp", "0"],
                          "")
    assert rc == 0 and out.startswith("In the beginning")
    rc, _, err = _run_cli(monkeypatch, capsys, ["-m", str(DEFAULT_MODEL), "--chat", "--chat-template",
                                                "{% for %}"], "hi\n")
    assert rc == 1 and "syntax error" in err
    rc, _, err = _run_cli(monkeypatch, capsys, ["-m", str(DEFAULT_MODEL), "-f", str(tmp_path / "missing")], "")
    assert rc == 1 and "cannot read the prompt file" in err
