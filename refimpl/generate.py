"""``python -m refimpl.generate``: text generation from a GGUF model, llama.cpp's ``llama-cli``/``llama-simple`` style.

    python -m refimpl.generate -m MODEL.gguf -p "Once upon a time" -n 64 --temp 0
    python -m refimpl.generate -m MODEL.gguf --chat --system "You are terse."      (alias -cnv)

Streams the continuation to stdout and ends with llama.cpp-style timings on stderr.  Without ``-m`` it runs the
small model embedded in refimpl (refimpl/data/tiny-kjv-q8_0.gguf) if it is installed.

``--chat`` is a conversation, as ``llama-cli -cnv``: each turn is rendered with the model's chat template
(``tokenizer.chat_template``, or ``--chat-template``/``--chat-template-file``; refimpl.chat_template), and only the
tokens after the part already in the KV cache are evaluated.  Ctrl-C stops a reply, not the conversation;
``/exit`` (or end of input, or Ctrl-C at the prompt) ends it.  When stdin is not a terminal every line is one turn.

The Python API is :class:`Generator`; the CLI is built on it::

    >>> from refimpl.generate import Generator
    >>> g = Generator("model.gguf", temp=0, max_tokens=32)
    >>> g.generate("In the beginning")
    >>> for piece in g.stream("In the beginning", stop=["."]): print(piece, end="")
    >>> g.chat([{"role": "user", "content": "Hello"}])
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "tiny-kjv-q8_0.gguf"


def default_prompt() -> str:
    """The embedded model's default prompt (refimpl/data/tiny-kjv.json, shared with its golden)."""
    import json

    info = json.loads((DEFAULT_MODEL.parent / "tiny-kjv.json").read_text(encoding="utf-8"))
    return info["prompt"]


# ---------------------------------------------------------------------------------------------------------------
# the Python API


@dataclass
class GenerationParams:
    """What one request may set: the sampler chain's parameters (refimpl.sampling, llama.cpp's defaults), the
    token budget, stop strings and ``ignore_eos``."""

    max_tokens: int = 64
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 0
    stop: list = field(default_factory=list)
    ignore_eos: bool = False

    def sampler(self):
        from .sampling import Sampler, SamplerParams

        return Sampler(SamplerParams(temp=self.temp, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
                                     typical_p=self.typical_p, repeat_penalty=self.repeat_penalty,
                                     penalty_last_n=self.repeat_last_n, presence_penalty=self.presence_penalty,
                                     frequency_penalty=self.frequency_penalty, seed=self.seed))


PARAM_NAMES = frozenset(f.name for f in dataclasses.fields(GenerationParams))


@dataclass
class GenerationStats:
    """What the last request did (``Generator.last``): for usage counts and timings."""

    n_prompt: int = 0            # prompt tokens
    n_prompt_evaluated: int = 0  # of them, evaluated (the rest came from the KV cache)
    n_generated: int = 0         # tokens sampled and kept (an end-of-generation token is not counted)
    finish_reason: str = ""      # "stop" (end of generation or a stop string), "length" (budget or context)
    t_prompt: float = 0.0        # seconds evaluating the prompt
    t_gen: float = 0.0           # seconds evaluating generated tokens
    n_eval: int = 0              # generated tokens evaluated (one fewer than sampled when the budget ends it)
    text: str = ""


class Generator:
    """Text generation over one model and its KV cache: ``generate``/``stream`` a raw prompt, ``chat``/
    ``chat_stream`` a conversation through the model's chat template.

    ``model`` is a GGUF path or a loaded ``refimpl.model`` Model.  Keyword arguments are the defaults of every
    request (``GenerationParams``: ``max_tokens``, ``temp``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``,
    ``repeat_penalty``, ``repeat_last_n``, ``presence_penalty``, ``frequency_penalty``, ``seed``, ``stop``,
    ``ignore_eos``); each call may override them.  Construction-only: ``n_ctx``, ``type_k``, ``type_v``,
    ``chat_template`` (template text or built-in name; default: the model's), ``use_jinja`` (default True, as
    llama-cli/llama-server).

    Each request starts a fresh sampler chain seeded with ``seed`` that has seen the prompt's tokens (the penalty
    window), so a request's text depends only on its prompt and parameters.  The KV cache is kept between
    requests: a prompt that begins like the previous request's tokens evaluates only the rest (llama-server's
    prompt cache; the logits are the same bits either way, each row being computed on its own).  Not
    thread-safe: one request at a time."""

    def __init__(self, model=None, *, n_ctx: int | None = None, type_k: str = "f16", type_v: str = "f16",
                 chat_template: str | None = None, use_jinja: bool = True, **sampling):
        from . import model as model_mod
        from .tokenizer import Tokenizer

        unknown = set(sampling) - PARAM_NAMES
        if unknown:
            raise TypeError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
        self.defaults = GenerationParams(**sampling)
        if model is None:
            model = DEFAULT_MODEL
        if isinstance(model, (str, Path)):
            model = model_mod.load(model, n_ctx=n_ctx, type_k=type_k, type_v=type_v)
        elif n_ctx and (model.cache is None or model.cache.size != n_ctx):
            model.new_context(n_ctx, type_k, type_v)
        self.model = model
        self.tokenizer = Tokenizer.from_gguf(model.file.gguf)
        self._template_source = chat_template
        self._use_jinja = use_jinja
        self._template = None
        self.last = GenerationStats()

    @property
    def cached(self) -> list[int]:
        """The tokens whose K/V are in the model's cache, in order.  Kept on the model, so that Generators sharing
        a model agree; never more than the model says it holds (new_context empties it)."""
        toks = getattr(self.model, "_cached_tokens", [])
        return toks[:self.model.n_past]

    @cached.setter
    def cached(self, tokens) -> None:
        self.model._cached_tokens = list(tokens)

    # ------------------------------------------------------------------------------------------------ basics
    @property
    def n_ctx(self) -> int:
        return self.model.cache.size

    @property
    def chat_template(self):
        """The refimpl.chat_template.ChatTemplate (built on first use; a bad template raises ChatTemplateError)."""
        if self._template is None:
            from .chat_template import ChatTemplate

            self._template = ChatTemplate.from_gguf(self.model.file.gguf, override=self._template_source,
                                                    use_jinja=self._use_jinja)
        return self._template

    def params(self, **overrides) -> GenerationParams:
        unknown = set(overrides) - PARAM_NAMES
        if unknown:
            raise TypeError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
        p = dataclasses.replace(self.defaults, **overrides)
        if isinstance(p.stop, str):
            p.stop = [p.stop]
        p.stop = [s for s in p.stop if s]
        return p

    def tokenize(self, text: str) -> list[int]:
        """As llama-cli and llama-server tokenize a prompt: BOS added if the vocabulary wants it, special-token
        texts parsed."""
        return self.tokenizer.encode(text, add_special=True, parse_special=True)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        return self.chat_template.apply(messages, add_generation_prompt=add_generation_prompt)

    # ------------------------------------------------------------------------------------------------ requests
    def generate(self, prompt, **overrides) -> str:
        """The continuation of ``prompt`` (text, or token ids) as one string."""
        return "".join(self.stream(prompt, **overrides))

    def stream(self, prompt, **overrides) -> Iterator[str]:
        """Yield the continuation of ``prompt`` (text, or token ids) in pieces of whole UTF-8 characters, as they
        are decoded.  Stops at an end-of-generation token (unless ``ignore_eos``), at a stop string (not
        included; text that might begin one is held back until it cannot), after ``max_tokens`` tokens, or when
        the context is full.  ``self.last`` describes the request once the iterator is exhausted or closed."""
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        return self._stream_tokens(tokens, self.params(**overrides))

    def chat(self, messages, **overrides) -> str:
        """The assistant's reply to ``messages`` (OpenAI-style dicts with "role" and "content")."""
        return "".join(self.chat_stream(messages, **overrides))

    def chat_stream(self, messages, **overrides) -> Iterator[str]:
        """``stream`` over the conversation rendered by the chat template with the assistant's turn opened."""
        return self.stream(self.apply_chat_template(messages, add_generation_prompt=True), **overrides)

    # ------------------------------------------------------------------------------------------------ the loop
    def check_prompt(self, tokens) -> None:
        if not tokens:
            raise ValueError("the prompt is empty after tokenization")
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"the prompt ({len(tokens)} tokens) does not fit the context of {self.n_ctx} tokens "
                             f"(-c)")

    def _eval_prompt(self, tokens) -> "object":
        """Evaluate what the cache lacks of ``tokens`` and return the last position's logits.  At least the last
        token is evaluated, for its logits (llama-server does the same)."""
        common = 0
        cached = self.cached
        limit = min(len(cached), len(tokens) - 1)
        while common < limit and cached[common] == tokens[common]:
            common += 1
        self.cached = cached[:common]             # what stays valid, whatever happens next
        logits = self.model.eval(tokens[common:], n_past=common, logits="last")[-1]
        self.cached = list(tokens)
        self.last.n_prompt_evaluated = len(tokens) - common
        return logits

    def _stream_tokens(self, tokens: list[int], p: GenerationParams) -> Iterator[str]:
        self.check_prompt(tokens)
        tok = self.tokenizer
        stats = self.last = GenerationStats(n_prompt=len(tokens))
        sampler = p.sampler()
        for t in tokens:
            sampler.accept(t)
        t0 = time.perf_counter()
        logits = self._eval_prompt(tokens)
        stats.t_prompt = time.perf_counter() - t0

        stop = _StopMatcher(p.stop)
        pending = b""
        text_parts: list[str] = []
        finish = "length"
        try:
            for _ in range(p.max_tokens):
                nxt = sampler.sample(logits)
                sampler.accept(nxt)
                if tok.is_eog(nxt) and not p.ignore_eos:
                    finish = "stop"
                    break
                pending += tok.token_to_piece(nxt, special=False)
                piece = None
                try:                                   # whole UTF-8 characters only
                    piece = pending.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError:
                    if len(pending) > 8:
                        piece = pending.decode("utf-8", errors="replace")
                        pending = b""
                stats.n_generated += 1
                if piece:
                    out, hit = stop.feed(piece)
                    if out:
                        text_parts.append(out)
                        yield out
                    if hit:
                        finish = "stop"
                        break
                if stats.n_generated == p.max_tokens:
                    break
                if len(self.cached) >= self.n_ctx:    # context full: llama-server ends the reply here too
                    break
                t1 = time.perf_counter()
                n_past = len(self.cached)
                logits = self.model.eval([nxt], n_past=n_past, logits="last")[-1]
                self.cached = self.cached[:n_past] + [nxt]
                stats.t_gen += time.perf_counter() - t1
                stats.n_eval += 1
            else:
                finish = "length"
            if finish != "stop" or not stop.hit:
                tail = stop.flush() + (pending.decode("utf-8", errors="replace") if pending else "")
                if tail:
                    text_parts.append(tail)
                    yield tail
        finally:
            stats.finish_reason = finish
            stats.text = "".join(text_parts)


class _StopMatcher:
    """Stop strings over streamed text, as llama-server: the text before the first stop string is sent, and text
    at the end that could still become a stop string is held back until it cannot (find_partial_stop_string)."""

    def __init__(self, stops):
        self.stops = list(stops)
        self.held = ""
        self.hit = False

    def feed(self, piece: str) -> tuple[str, bool]:
        if not self.stops:
            return piece, False
        text = self.held + piece
        first = None
        for s in self.stops:
            i = text.find(s)
            if i >= 0 and (first is None or i < first):
                first = i
        if first is not None:
            self.held = ""
            self.hit = True
            return text[:first], True
        keep = 0                                       # longest suffix of text that is a prefix of a stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


# ---------------------------------------------------------------------------------------------------------------
# the CLI


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m refimpl.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help=f"GGUF model file (default: the embedded {DEFAULT_MODEL.name})")
    ap.add_argument("-p", "--prompt", default=None,
                    help="prompt text (default: empty; with the embedded model, its default prompt); with --chat, "
                         "the first user turn")
    ap.add_argument("-f", "--file", default=None, metavar="FILE", help="read the prompt from FILE")
    ap.add_argument("-n", "--n-predict", type=int, default=64,
                    help="tokens to generate (default 64, per reply with --chat; -1 = until the context is full)")
    ap.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default 0.8)")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-p", type=float, default=0.05)
    ap.add_argument("--typical", type=float, default=1.0, help="typical-p (1.0 = off)")
    ap.add_argument("--repeat-penalty", type=float, default=1.0)
    ap.add_argument("--repeat-last-n", type=int, default=64)
    ap.add_argument("--presence-penalty", type=float, default=0.0)
    ap.add_argument("--frequency-penalty", type=float, default=0.0)
    ap.add_argument("-s", "--seed", type=int, default=0)
    ap.add_argument("-t", "--threads", type=int, default=None, help="threads (default: numba's default)")
    ap.add_argument("--kernels", choices=["reference", "fast"], default=None,
                    help="kernel layer: the readable reference loops or the fast kernels, same bits "
                         "(default: $REFIMPL_KERNELS, else fast)")
    ap.add_argument("-c", "--ctx-size", type=int, default=0, help="context size (default: min(training, 4096))")
    ap.add_argument("-ctk", "--cache-type-k", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("-ctv", "--cache-type-v", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("--ignore-eos", action="store_true", help="keep generating after an end-of-generation token")
    ap.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                    help="load a quant-type plugin (a file or module name; repeatable), see spec/plugins.md")
    chat = ap.add_argument_group("conversation (llama-cli -cnv)")
    chat.add_argument("-cnv", "--chat", "--conversation", dest="chat", action="store_true",
                      help="chat with the model through its chat template")
    chat.add_argument("-sys", "--system", "--system-prompt", dest="system", default=None,
                      help="system message of the conversation")
    chat.add_argument("--chat-template", default=None, metavar="JINJA_TEMPLATE",
                      help="chat template text or built-in name (default: the model's tokenizer.chat_template, "
                           "else chatml)")
    chat.add_argument("--chat-template-file", default=None, metavar="FILE", help="read the chat template from FILE")
    chat.add_argument("--jinja", dest="jinja", action="store_true", default=True,
                      help="render the template with Jinja, as llama.cpp's --jinja (default)")
    chat.add_argument("--no-jinja", dest="jinja", action="store_false",
                      help="use llama.cpp's built-in templates only (llama_chat_apply_template)")
    return ap


def _perf(label, secs, n, unit) -> str:
    per = secs * 1e3 / n if n else 0.0
    tps = n / secs if secs > 0 else 0.0
    return (f"refimpl_perf: {label:>16s} = {secs * 1e3:10.2f} ms / {n:5d} {unit} "
            f"({per:8.2f} ms per token, {tps:8.2f} tokens per second)")


def _error(msg) -> int:
    print(f"refimpl.generate: error: {msg}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.file is not None:
        try:
            args.prompt = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return _error(f"cannot read the prompt file: {e}")
    template = args.chat_template
    if args.chat_template_file is not None:
        try:
            template = Path(args.chat_template_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return _error(f"cannot read the chat template file: {e}")
    path = args.model
    if path is None:
        if not DEFAULT_MODEL.exists():
            print(f"refimpl.generate: no model given (-m MODEL.gguf) and the embedded default model "
                  f"{DEFAULT_MODEL} is not installed.")
            return 0
        path = str(DEFAULT_MODEL)
        if args.prompt is None and not args.chat:
            args.prompt = default_prompt()
    if args.prompt is None and not args.chat:
        args.prompt = ""

    from . import model as model_mod
    from .quant import load_plugins, set_num_threads

    if args.threads:
        set_num_threads(args.threads)
    if args.kernels:
        from .quant import set_kernels
        set_kernels(args.kernels)
    t_load0 = time.perf_counter()
    try:
        load_plugins(args.plugin)
        m = model_mod.load(path, n_ctx=args.ctx_size or None, type_k=args.cache_type_k, type_v=args.cache_type_v)
        gen = Generator(m, chat_template=template, use_jinja=args.jinja, max_tokens=args.n_predict, temp=args.temp,
                        top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, typical_p=args.typical,
                        repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
                        presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                        seed=args.seed, ignore_eos=args.ignore_eos)
        if args.chat:
            gen.chat_template                           # a bad template fails here, before any turn
    except (ValueError, OSError) as e:                  # ChatTemplateError is a ValueError
        return _error(e)
    t_load = time.perf_counter() - t_load0
    if args.chat:
        return _conversation(gen, args, t_load)

    prompt = gen.tokenize(args.prompt)
    if not prompt:
        return _error("the prompt is empty after tokenization")
    if len(prompt) + args.n_predict > m.cache.size:
        return _error(f"prompt ({len(prompt)} tokens) + {args.n_predict} do not fit the context of {m.cache.size}")
    if args.n_predict < 0:                              # llama.cpp's -n -1: until the context is full
        gen.defaults.max_tokens = m.cache.size - len(prompt)

    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    for piece in gen.stream(prompt):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    st = gen.last
    print(f"refimpl_perf: {'load time':>16s} = {t_load * 1e3:10.2f} ms", file=sys.stderr)
    print(_perf("prompt eval time", st.t_prompt, st.n_prompt_evaluated, "tokens"), file=sys.stderr)
    print(_perf("eval time", st.t_gen, st.n_eval, "runs  "), file=sys.stderr)
    return 0


def _conversation(gen: Generator, args, t_load: float) -> int:
    """llama-cli -cnv: read a turn, render the whole conversation, evaluate what the cache lacks, stream the
    reply.  On a terminal the user is prompted with "> "; otherwise each input line is a turn."""
    import signal

    interactive = sys.stdin.isatty()
    out = sys.stdout
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    max_tokens = args.n_predict if args.n_predict >= 0 else gen.n_ctx
    first = args.prompt

    def read_turn():
        nonlocal first
        if first is not None:
            text, first = first, None
            if interactive:
                out.write(f"> {text}\n")
            return text
        if interactive:
            try:
                return input("> ")
            except (EOFError, KeyboardInterrupt):
                out.write("\n")
                return None
        line = sys.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    # Ctrl-C while a reply streams stops that reply (KeyboardInterrupt caught below); the conversation goes on
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:                                  # not the main thread: Ctrl-C is not ours to handle
        previous = None
    try:
        return _turns(gen, t_load, read_turn, interactive, messages, max_tokens)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _turns(gen: Generator, t_load: float, read_turn, interactive: bool, messages: list, max_tokens: int) -> int:
    """The conversation loop: one user turn, one streamed reply, until /exit or the end of input."""
    out = sys.stdout
    t_prompt = t_gen = 0.0
    n_prompt = n_eval = 0
    while True:
        user = read_turn()
        if user is None or user.strip() == "/exit":
            break
        if not user.strip():
            continue
        messages.append({"role": "user", "content": user})
        try:
            prompt = gen.tokenize(gen.apply_chat_template(messages, add_generation_prompt=True))
            gen.check_prompt(prompt)
        except ValueError as e:                      # template error, or the conversation outgrew the context
            messages.pop()
            print(f"refimpl.generate: error: {e}", file=sys.stderr)
            if not interactive:
                return 1
            continue
        reply = []
        stream = gen.stream(prompt, max_tokens=max_tokens)
        try:
            for piece in stream:
                reply.append(piece)
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:
            stream.close()
            out.write(" [interrupted]")
        out.write("\n")
        out.flush()
        st = gen.last
        t_prompt += st.t_prompt
        t_gen += st.t_gen
        n_prompt += st.n_prompt_evaluated
        n_eval += st.n_eval
        messages.append({"role": "assistant", "content": "".join(reply)})
    print(f"refimpl_perf: {'load time':>16s} = {t_load * 1e3:10.2f} ms", file=sys.stderr)
    print(_perf("prompt eval time", t_prompt, n_prompt, "tokens"), file=sys.stderr)
    print(_perf("eval time", t_gen, n_eval, "runs  "), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
