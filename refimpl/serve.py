"""``python -m refimpl.serve``: an OpenAI-compatible HTTP server over refimpl.generate, as ``llama-server``.

    python -m refimpl.serve -m MODEL.gguf [--host 127.0.0.1] [--port 8080] [-c N] [--api-key KEY]
                            [--chat-template TEXT | --chat-template-file FILE] [sampling defaults as the CLI]

Endpoints (field names from the OpenAI API reference; llama-server's choices where OpenAI is silent):

* ``POST /v1/chat/completions`` -- ``messages`` rendered by the chat template (refimpl.chat_template, as
  llama-server's --jinja), then generated; ``stream: true`` sends ``chat.completion.chunk`` server-sent events
  (the first delta carries the role, the last the finish_reason, then a usage chunk when
  ``stream_options.include_usage``) and ends with ``data: [DONE]``.
* ``POST /v1/completions`` -- a raw ``prompt`` (a string, a one-string list, or token ids), ``text_completion``
  objects, streaming the same way.
* ``GET /v1/models`` (the one model), ``GET /health`` (``{"status": "ok"}``, never behind the API key).

Request fields: ``max_tokens`` (``max_completion_tokens``), ``temperature``, ``top_p``, ``seed``, ``stop`` (a string
or up to 4), ``presence_penalty``, ``frequency_penalty``, ``n`` (1 only), ``stream``, ``stream_options``; and
llama-server's ``top_k``, ``min_p``, ``typical_p``, ``repeat_penalty``, ``repeat_last_n``, ``ignore_eos``.  An absent
field takes the server's default (its command line, as llama-server); ``max_tokens`` defaults to 16 for completions
(OpenAI) and to the rest of the context for chat (llama-server's n_predict = -1).  Other fields are ignored.
``usage`` counts prompt and completion tokens.

The model is not thread-safe, so requests wait in one FIFO queue and a single worker thread runs them one at a
time (``--queue-size`` bounds the waiting; beyond it a request gets 503).  The worker keeps the KV cache between
requests: a prompt that starts like the previous one evaluates only the rest (llama-server's cache_prompt).  A
client that disconnects mid-stream is noticed between two tokens and its request is stopped, freeing the worker.

Errors are OpenAI error objects ``{"error": {"message", "type", "param", "code"}}``: 400 ``invalid_request_error``
for malformed JSON, a field of the wrong type, an unusable chat template, or a prompt that does not fit the context
(code ``context_length_exceeded``); 401 ``authentication_error`` without the right ``Authorization: Bearer`` key
when ``--api-key`` is set; 404 / 405 for unknown routes.  The server keeps running after every bad request.

Needs the ``serve`` extra (``pip install 'refimpl[serve]'``: starlette + uvicorn, a well-kept ASGI stack whose SSE
streaming and disconnect detection are what a hand-written http.server would have to reimplement).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .generate import DEFAULT_MODEL, Generator

# ---------------------------------------------------------------------------------------------------------------
# request validation: OpenAI field -> (GenerationParams name, accepted JSON types)

_NUMBER = (int, float)
FIELDS = {
    "max_tokens": ("max_tokens", (int,)),
    "max_completion_tokens": ("max_tokens", (int,)),
    "temperature": ("temp", _NUMBER),
    "top_p": ("top_p", _NUMBER),
    "top_k": ("top_k", (int,)),
    "min_p": ("min_p", _NUMBER),
    "typical_p": ("typical_p", _NUMBER),
    "repeat_penalty": ("repeat_penalty", _NUMBER),
    "repeat_last_n": ("repeat_last_n", (int,)),
    "presence_penalty": ("presence_penalty", _NUMBER),
    "frequency_penalty": ("frequency_penalty", _NUMBER),
    "seed": ("seed", (int,)),
    "ignore_eos": ("ignore_eos", (bool,)),
}


class RequestError(Exception):
    """-> an OpenAI error object with this HTTP status."""

    def __init__(self, message, param=None, status=400, type_="invalid_request_error", code=None):
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = message, param, status, type_, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _typed(body, name, types, what):
    v = body[name]
    # JSON true/false are Python bools, which are ints too: a bool is never a number here
    if v is None or (isinstance(v, bool) and bool not in types) or not isinstance(v, types):
        raise RequestError(f"'{name}' must be {what}, got {json.dumps(v)}", param=name)
    return v


def parse_params(body: dict, default_max_tokens: int | None, n_ctx: int) -> dict:
    """The GenerationParams overrides a request sets (absent or null fields keep the server's defaults)."""
    out = {}
    for name, (target, types) in FIELDS.items():
        if body.get(name) is None:
            continue
        what = {(int,): "an integer", _NUMBER: "a number", (bool,): "a boolean"}[types]
        v = _typed(body, name, types, what)
        if target == "max_tokens" and v < 0:
            raise RequestError(f"'{name}' must be >= 0, got {v}", param=name)
        out[target] = v
    if "max_tokens" not in out:
        out["max_tokens"] = default_max_tokens if default_max_tokens is not None else n_ctx
    if "seed" in out:
        out["seed"] = out["seed"] & 0xFFFFFFFF
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise RequestError("'stop' must be a string or a list of at most 4 strings", param="stop")
        out["stop"] = stop
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise RequestError("only 'n' = 1 is supported", param="n")
    for flag in ("stream",):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise RequestError(f"'{flag}' must be a boolean", param=flag)
    so = body.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise RequestError("'stream_options' must be an object with a boolean 'include_usage'",
                           param="stream_options")
    return out


def parse_messages(body: dict) -> list[dict]:
    """OpenAI messages -> [{"role", "content"}] with string content (text parts joined by newlines, as
    common_chat_msgs_parse_oaicompat + the template's string-content normalisation)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RequestError("'messages' must be a non-empty array of messages", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]")
        content = m.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise RequestError(f"messages[{i}].content: only text parts are supported",
                                       param=f"messages[{i}].content")
                texts.append(part["text"])
            content = "\n".join(texts)
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string, an array of text parts or null",
                               param=f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    return out


def parse_prompt(body: dict):
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if isinstance(p, str):
        return p
    if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        return [int(t) for t in p]
    raise RequestError("'prompt' must be a string, an array of one string, or an array of token ids",
                       param="prompt")


# ---------------------------------------------------------------------------------------------------------------
# the worker: one thread owns the Generator


@dataclass
class Job:
    """One request for the worker.  ``prompt`` is text or token ids, or None with ``messages`` (a chat, rendered
    by the worker).  The worker calls ``started(error or None)`` once the prompt is checked, then ``emit(piece)``
    per piece; ``cancel`` is set by the HTTP side when the client has gone."""

    prompt: object
    params: dict
    messages: list | None = None
    emit: object = None
    started: object = None
    cancel: threading.Event = field(default_factory=threading.Event)
    tokens: list = field(default_factory=list)
    error: RequestError | None = None
    seconds_generating: float = 0.0     # inside Generator.stream: the generation itself (bench_serve.py) ...
    cpu_generating: float = 0.0         # ... and the worker thread's CPU time there


class Worker:
    """The one thread that owns the Generator: every request is a single hop to it (render, tokenize, check,
    generate), so a request costs one thread switch each way, however it is answered."""

    def __init__(self, gen: Generator, queue_size: int):
        self.gen = gen
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refimpl-worker")
        self.slots = threading.BoundedSemaphore(queue_size)

    def prepare(self, job: Job) -> None:
        """Render the chat, tokenize and check the prompt (raises RequestError)."""
        gen = self.gen
        if job.messages is not None:
            try:
                job.prompt = gen.apply_chat_template(job.messages, add_generation_prompt=True)
            except ValueError as e:                     # ChatTemplateError: the template refused these messages
                raise RequestError(str(e), param="messages") from None
        job.tokens = gen.tokenize(job.prompt) if isinstance(job.prompt, str) else list(job.prompt)
        if any(t < 0 or t >= gen.model.n_vocab for t in job.tokens):
            raise RequestError(f"token ids must be in [0, {gen.model.n_vocab})", param="prompt")
        try:
            gen.check_prompt(job.tokens)
        except ValueError as e:
            raise RequestError(str(e), param="messages" if job.messages is not None else "prompt",
                               code="context_length_exceeded") from None

    def execute(self, job: Job):
        """prepare, then generate: emit(piece) per piece; returns the GenerationStats (None after an error, which
        is in job.error).  Stops early when job.cancel is set."""
        try:
            self.prepare(job)
        except RequestError as e:
            job.error = e
        if job.started is not None:
            job.started(job.error)
        if job.error is not None:
            return None
        t0, c0 = time.perf_counter(), time.thread_time()
        stream = self.gen.stream(job.tokens, **job.params)
        try:
            for piece in stream:
                if job.cancel.is_set():
                    break
                job.emit(piece)
        finally:
            stream.close()
            job.seconds_generating = time.perf_counter() - t0
            job.cpu_generating = time.thread_time() - c0
        return self.gen.last

    async def submit(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, fn, *args)


# ---------------------------------------------------------------------------------------------------------------
# the ASGI app


def _chunk_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def build_app(gen: Generator, model_id: str, api_key: str | None = None, queue_size: int = 64,
              default_seed: int | None = None):
    """The starlette app serving ``gen``.  ``default_seed`` None = a random seed per request (llama-server's
    default, seed -1), else that seed when a request has none."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    worker = Worker(gen, queue_size)
    created = int(time.time())

    def error_response(e: RequestError):
        return JSONResponse(e.body(), status_code=e.status)

    def check_key(request: Request):
        if api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), api_key):
            raise RequestError("Invalid API Key", status=401, type_="authentication_error", code="invalid_api_key")

    async def read_body(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"malformed JSON in the request body: {e}") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def models(request: Request):
        try:
            check_key(request)
        except RequestError as e:
            return error_response(e)
        return JSONResponse({"object": "list", "data": [
            {"id": model_id, "object": "model", "created": created, "owned_by": "refimpl",
             "meta": {"n_ctx": gen.n_ctx, "n_vocab": gen.model.n_vocab}}]})

    async def completions(request: Request):
        return await _serve(request, chat=False)

    async def chat_completions(request: Request):
        return await _serve(request, chat=True)

    async def _serve(request: Request, chat: bool):
        try:
            check_key(request)
            body = await read_body(request)
            params = parse_params(body, None if chat else 16, gen.n_ctx)
            if "seed" not in params:
                params["seed"] = default_seed if default_seed is not None else secrets.randbits(32)
            job = Job(None, params, messages=parse_messages(body)) if chat else Job(parse_prompt(body), params)
            if not worker.slots.acquire(blocking=False):
                raise RequestError("the server is busy: too many queued requests", status=503,
                                   type_="server_error")
        except RequestError as e:
            return error_response(e)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": _chunk_id("chatcmpl" if chat else "cmpl"), "created": int(time.time()), "model": model_id,
                "system_fingerprint": "refimpl"}

        def usage(st):
            return {"prompt_tokens": st.n_prompt, "completion_tokens": st.n_generated,
                    "total_tokens": st.n_prompt + st.n_generated}

        if not stream:
            pieces = []
            job.emit = pieces.append
            try:
                st = await worker.submit(worker.execute, job)
            finally:
                worker.slots.release()
            if job.error is not None:
                return error_response(job.error)
            text = "".join(pieces)
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                          "finish_reason": st.finish_reason}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": st.finish_reason}
                obj = "text_completion"
            return JSONResponse({**base, "object": obj, "choices": [choice], "usage": usage(st)})

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        started: asyncio.Future = loop.create_future()
        DONE = object()
        job.emit = lambda piece: loop.call_soon_threadsafe(queue.put_nowait, piece)
        job.started = lambda err: loop.call_soon_threadsafe(started.set_result, err)

        async def run_job():
            try:
                return await worker.submit(worker.execute, job)
            finally:
                worker.slots.release()
                loop.call_soon_threadsafe(queue.put_nowait, DONE)

        task = asyncio.ensure_future(run_job())
        err = await started                              # the prompt is checked before any byte is sent
        if err is not None:
            await task
            return error_response(err)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choice=None, usage_=None, empty_choices=False) -> str:
            d = {**base, "object": obj, "choices": [] if empty_choices else [choice]}
            if include_usage:
                d["usage"] = usage_
            return f"data: {json.dumps(d, ensure_ascii=False)}\n\n"

        def piece_choice(text=None, finish=None, first=False):
            if chat:
                delta = {}
                if first:
                    delta["role"] = "assistant"
                if text is not None:
                    delta["content"] = text
                return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

        # a piece's event is a constant frame around the JSON string of its text: built once per request
        frame = event(piece_choice("\x00")).split(json.dumps("\x00"))

        def piece_event(text: str) -> str:
            return frame[0] + json.dumps(text, ensure_ascii=False) + frame[1]

        async def events():
            try:
                if chat:
                    yield event(piece_choice("", first=True))
                done = False
                while not done:
                    batch = [await queue.get()]
                    while not queue.empty():               # pieces that arrived meanwhile: one write
                        batch.append(queue.get_nowait())
                    if batch[-1] is DONE:
                        batch.pop()
                        done = True
                    if batch:
                        yield "".join(piece_event(p) for p in batch)
                st = await task
                yield event(piece_choice(None if chat else "", finish=st.finish_reason))
                if include_usage:
                    yield event(usage_=usage(st), empty_choices=True)
                yield "data: [DONE]\n\n"
            finally:
                # the client went away (or the response ended): stop the generation between two tokens
                job.cancel.set()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def http_error(request: Request, exc: HTTPException):
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        return JSONResponse({"error": {"message": str(exc.detail), "type": kind, "param": None, "code": None}},
                            status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception):
        return JSONResponse({"error": {"message": f"internal error: {type(exc).__name__}: {exc}",
                                       "type": "server_error", "param": None, "code": None}}, status_code=500)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.worker = worker
    return app


# ---------------------------------------------------------------------------------------------------------------
# the command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m refimpl.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", help=f"GGUF model file (default: the embedded {DEFAULT_MODEL.name})")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-c", "--ctx-size", type=int, default=0, help="context size (default: min(training, 4096))")
    ap.add_argument("--api-key", default=os.environ.get("LLAMA_API_KEY"),
                    help="require 'Authorization: Bearer KEY' (default: $LLAMA_API_KEY, else none)")
    ap.add_argument("--alias", default=None, help="model id reported by /v1/models (default: the file name)")
    ap.add_argument("--chat-template", default=None, metavar="JINJA_TEMPLATE",
                    help="chat template text or built-in name (default: the model's, else chatml)")
    ap.add_argument("--chat-template-file", default=None, metavar="FILE")
    ap.add_argument("--no-jinja", dest="jinja", action="store_false", default=True,
                    help="llama.cpp's built-in templates only (llama_chat_apply_template)")
    ap.add_argument("--queue-size", type=int, default=64, help="requests that may wait (default 64; then 503)")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-ctk", "--cache-type-k", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("-ctv", "--cache-type-v", default="f16", choices=["f16", "f32", "q8_0"])
    d = ap.add_argument_group("defaults of requests that do not set them (as llama-server)")
    d.add_argument("--temp", type=float, default=0.8)
    d.add_argument("--top-k", type=int, default=40)
    d.add_argument("--top-p", type=float, default=0.95)
    d.add_argument("--min-p", type=float, default=0.05)
    d.add_argument("--typical", type=float, default=1.0)
    d.add_argument("--repeat-penalty", type=float, default=1.0)
    d.add_argument("--repeat-last-n", type=int, default=64)
    d.add_argument("--presence-penalty", type=float, default=0.0)
    d.add_argument("--frequency-penalty", type=float, default=0.0)
    d.add_argument("-s", "--seed", type=int, default=-1, help="default seed (-1: random per request)")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        import starlette  # noqa: F401  (build_app imports it; fail here, before loading the model)
        import uvicorn
    except ImportError:
        print("refimpl.serve: needs the 'serve' extra: pip install 'refimpl[serve]' (starlette, uvicorn)",
              file=sys.stderr)
        return 1

    template = args.chat_template
    try:
        if args.chat_template_file:
            template = Path(args.chat_template_file).read_text(encoding="utf-8")
        path = args.model or str(DEFAULT_MODEL)
        if args.threads:
            from .quant import set_num_threads

            set_num_threads(args.threads)
        gen = Generator(path, n_ctx=args.ctx_size or None, type_k=args.cache_type_k, type_v=args.cache_type_v,
                        chat_template=template, use_jinja=args.jinja, temp=args.temp, top_k=args.top_k,
                        top_p=args.top_p, min_p=args.min_p, typical_p=args.typical,
                        repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
                        presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty)
        gen.chat_template                               # a bad template fails now, not at the first request
    except (ValueError, OSError) as e:
        print(f"refimpl.serve: error: {e}", file=sys.stderr)
        return 1
    model_id = args.alias or Path(path).name
    app = build_app(gen, model_id, api_key=args.api_key, queue_size=args.queue_size,
                    default_seed=None if args.seed < 0 else args.seed)
    print(f"refimpl.serve: {model_id} (n_ctx {gen.n_ctx}) on http://{args.host}:{args.port}", file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
