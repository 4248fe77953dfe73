"""Server overhead per request: refimpl.serve vs llama-cpp-python's OpenAI server, over the generation itself.

Both servers run in this process (uvicorn in a thread) on the embedded tiny-kjv model, so the generation time of
every request can be measured inside the server and subtracted from the latency a client sees:

    overhead = client latency (request sent -> whole response read) - time inside the model's generate call

For refimpl that call is ``Generator.stream`` run by the worker (prompt evaluation, decoding, sampling); what is
left is HTTP, JSON, validation, chat-template rendering, tokenization, the queue hop to the worker thread and SSE
framing.  For llama.cpp it is ``Llama.create_completion`` / ``create_chat_completion`` inside llama-cpp-python's
FastAPI server (llama_cpp.server, the scalar build in ``/work/build/scalar/bin`` or $LLAMA_CPP_LIB_PATH; omitted with
``--no-llama`` or when llama_cpp.server's extras are missing).  llama-server (C++) is not built by the pinned
tooling; llama-cpp-python's server is the Python OpenAI server over the same library.

Requests: a keep-alive http.client connection (no client library in the figure), temperature 0, ``--tokens``
tokens, each request alone (median over ``--n`` requests after warm-up).  The target is < 5 ms for refimpl.

    python tools/bench_serve.py [--n 40] [--tokens 8] [--no-llama]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf"
TEMPLATE = ("{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(app):
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.02)
    return srv, port, th.ident


def thread_cpu_clock(ident):
    """A function returning the CPU seconds of thread ``ident`` so far (Linux/BSD pthread CPU clocks)."""
    clock = time.pthread_getcpuclockid(ident)
    return lambda: time.clock_gettime(clock)


def request(conn, path, body, cpu=time.process_time) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds by ``cpu``, body) of one request"""
    data = json.dumps(body).encode()
    t0, c0 = time.perf_counter(), cpu()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    dt, dc = time.perf_counter() - t0, cpu() - c0
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}: {payload[:200]!r}")
    return dt, dc, payload


CASES = [
    ("completion", "/v1/completions", {"prompt": "In the beginning God", "stream": False}),
    ("completion, stream", "/v1/completions", {"prompt": "In the beginning God", "stream": True}),
    ("chat", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Who made the heaven?"}],
                                      "stream": False}),
    ("chat, stream", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Who made the heaven?"}],
                                              "stream": True}),
]


def measure(port, timings: list, n: int, tokens: int, cases, cpu=time.process_time) -> dict:
    """per case, medians in ms: latency, generation, wall overhead, CPU overhead.  ``timings`` receives
    (wall, CPU) seconds of the generation call of each request.  CPU overhead = the whole process's CPU time for
    the request (server and this client) minus the generating thread's: what the server costs in work, whatever
    the machine's load does to the wall clock.  ``cpu``: the CPU clock to read (default: the whole process)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    out = {}
    for name, path, body in cases:
        body = dict(body, max_tokens=tokens, temperature=0, seed=1)
        for _ in range(3):                             # warm up (compilation, caches)
            request(conn, path, body)
        lat, gen, over, cpus = [], [], [], []
        for _ in range(n):
            timings.clear()
            dt, dc, _ = request(conn, path, body, cpu)
            g = sum(t[0] for t in timings)
            gc = sum(t[1] for t in timings)
            lat.append(dt * 1e3)
            gen.append(g * 1e3)
            over.append((dt - g) * 1e3)
            cpus.append((dc - gc) * 1e3)
        out[name] = tuple(statistics.median(v) for v in (lat, gen, over, cpus)) + (min(over), min(cpus))
    conn.close()
    return out


def bench_refimpl(n, tokens) -> dict:
    from refimpl.generate import Generator
    from refimpl.serve import Worker, build_app

    from refimpl.quant import set_num_threads

    set_num_threads(1)                                 # the generation on the worker thread alone (CPU figure)
    gen = Generator(MODEL, n_ctx=256, chat_template=TEMPLATE)
    timings: list = []
    execute = Worker.execute

    def timed_execute(self, job):                      # the generation itself: the Generator.stream loop
        try:
            return execute(self, job)
        finally:
            timings.append((job.seconds_generating, job.cpu_generating))

    Worker.execute = timed_execute
    app = build_app(gen, "tiny-kjv")
    srv, port, server_thread = start(app)
    # refimpl's matmuls may run in numba/BLAS threads, so the process clock would count the generation's helpers:
    # count the threads that serve instead (event loop, worker, this client), minus the worker's generation
    worker_thread = app.state.worker.pool.submit(threading.get_ident).result()
    clocks = [thread_cpu_clock(server_thread), thread_cpu_clock(worker_thread), time.thread_time]
    try:
        return measure(port, timings, n, tokens, CASES, cpu=lambda: sum(c() for c in clocks))
    finally:
        srv.should_exit = True
        Worker.execute = execute


def bench_llama(n, tokens) -> dict | None:
    os.environ.setdefault("LLAMA_CPP_LIB_PATH", "/work/build/scalar/bin")
    try:
        import llama_cpp
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except Exception as e:                             # the server extras are optional here
        print(f"(llama-cpp-python's server unavailable: {type(e).__name__}: {e})")
        return None
    timings: list = []
    orig = {}
    for name in ("create_completion",):             # create_chat_completion renders, then calls it
        fn = getattr(llama_cpp.Llama, name)
        orig[name] = fn

        def wrap(self, *a, _fn=fn, **kw):
            if kw.get("stream"):
                def gen_timed():
                    # the generator runs in the server's threadpool, one next() per item: time each step
                    wall = cpu = 0.0
                    it = _fn(self, *a, **kw)
                    while True:
                        t, c = time.perf_counter(), time.thread_time()
                        try:
                            x = next(it)
                        except StopIteration:
                            break
                        finally:
                            wall += time.perf_counter() - t
                            cpu += time.thread_time() - c
                        yield x
                    timings.append((wall, cpu))
                return gen_timed()
            t0, c0 = time.perf_counter(), time.thread_time()
            res = _fn(self, *a, **kw)
            timings.append((time.perf_counter() - t0, time.thread_time() - c0))
            return res
        setattr(llama_cpp.Llama, name, wrap)
    app = create_app(server_settings=ServerSettings(), model_settings=[ModelSettings(
        model=str(MODEL), n_ctx=256, n_threads=1, verbose=False, chat_format="chatml")])
    srv, port, _ = start(app)
    try:                                               # llama.cpp with n_threads=1 computes in the calling thread
        return measure(port, timings, n, tokens, CASES)
    finally:
        srv.should_exit = True
        for name, fn in orig.items():
            setattr(llama_cpp.Llama, name, fn)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="requests per case (median)")
    ap.add_argument("--tokens", type=int, default=8, help="max_tokens per request")
    ap.add_argument("--no-llama", action="store_true", help="skip llama-cpp-python's server")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    ours = bench_refimpl(args.n, args.tokens)
    theirs = None if args.no_llama else bench_llama(args.n, args.tokens)
    print(f"tiny-kjv, {args.tokens} tokens per request, temperature 0, median of {args.n} requests, one at a time")
    print("| request | refimpl latency | generation | overhead wall (min) | overhead CPU (min) | "
          "llama-cpp-python server: overhead wall (min) | overhead CPU (min) | ratio (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (lat, gen, over, cpu, over_min, cpu_min) in ours.items():
        if theirs:
            tw, tc, twm, tcm = theirs[name][2], theirs[name][3], theirs[name][4], theirs[name][5]
            cmp_ = f"{tw:.2f} ({twm:.2f}) | {tc:.2f} ({tcm:.2f}) | {cpu / tc:.2f}"
        else:
            cmp_ = "- | - | -"
        print(f"| {name} | {lat:.2f} | {gen:.2f} | {over:.2f} ({over_min:.2f}) | {cpu:.2f} ({cpu_min:.2f}) | {cmp_} |")
    print("(ms: medians, minimum in parentheses; CPU overhead counts this client's CPU too)")
    worst = max(max(o, c) for _, _, o, c, _, _ in ours.values())
    print(f"refimpl worst median overhead: {worst:.2f} ms (target < 5 ms): {'OK' if worst < 5 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
