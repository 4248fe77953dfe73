"""refimpl.serve against the official ``openai`` Python client on 127.0.0.1, with the embedded tiny-kjv model
(which has no chat template: the tests supply one).  Needs the ``serve`` extra and the openai client (both
installed by .ci/run); skipped with that reason otherwise."""
from __future__ import annotations

import gc
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai", reason="the openai client is needed (pip install 'refimpl[test,serve]')")
pytest.importorskip("starlette", reason="the 'serve' extra is needed (pip install 'refimpl[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra is needed (pip install 'refimpl[serve]')")

from refimpl.chat_template import ChatTemplate  # noqa: E402
from refimpl.generate import DEFAULT_MODEL, Generator  # noqa: E402
from refimpl.generate import main as generate_main  # noqa: E402
from refimpl.serve import build_app  # noqa: E402

API_KEY = "sk-refimpl-test"
N_CTX = 256
QUEUE = 64
# a ChatML-like template written for the test (tiny-kjv has none), with a system-message branch
TEMPLATE = ("{% for m in messages %}{% if m.role == 'system' %}[{{ m.content }}]\n{% else %}"
            "{{ m.role | upper }}: {{ m.content }}\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    gen = Generator(DEFAULT_MODEL, n_ctx=N_CTX, chat_template=TEMPLATE)
    app = build_app(gen, "tiny-kjv", api_key=API_KEY, queue_size=QUEUE)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "server did not start"
    base = f"http://127.0.0.1:{port}"
    yield {"base": base, "app": app, "gen": gen,
           "client": openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)}
    srv.should_exit = True
    th.join(timeout=10)


def _raw(base, path, body=None, key=API_KEY, method=None, data=None):
    """(status, parsed JSON body) of a request made without the client (for malformed bodies)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if data is None and body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_models(server):
    assert _raw(server["base"], "/health", key=None) == (200, {"status": "ok"})
    models = server["client"].models.list()
    assert [m.id for m in models.data] == ["tiny-kjv"]


def test_completion_is_the_cli_text(server, capsys):
    """Same model, prompt, seed and sampler settings: the server's completion is the CLI's continuation."""
    prompt = "And God said"
    r = server["client"].completions.create(model="tiny-kjv", prompt=prompt, max_tokens=20, seed=7,
                                            temperature=0.8, top_p=0.95, extra_body={"top_k": 40, "min_p": 0.05})
    assert r.object == "text_completion" and r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens == len(server["gen"].tokenize(prompt))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert generate_main(["-m", str(DEFAULT_MODEL), "-p", prompt, "-n", "20", "-s", "7", "-c", str(N_CTX)]) == 0
    assert capsys.readouterr().out == prompt + r.choices[0].text + "\n"


def test_chat_uses_the_supplied_template(server):
    c = server["client"]
    msgs = [{"role": "system", "content": "The Bible"}, {"role": "user", "content": "Who made the heaven?"}]
    r = c.chat.completions.create(model="tiny-kjv", messages=msgs, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    text = r.choices[0].message.content
    assert text
    rendered = ChatTemplate(TEMPLATE).apply(msgs)
    assert rendered == "[The Bible]\nUSER: Who made the heaven?\nASSISTANT:"
    raw = c.completions.create(model="tiny-kjv", prompt=rendered, max_tokens=12, temperature=0)
    assert raw.choices[0].text == text
    assert r.usage.prompt_tokens == raw.usage.prompt_tokens == len(server["gen"].tokenize(rendered))


def test_streaming_matches_non_streaming(server):
    c = server["client"]
    msgs = [{"role": "user", "content": "In the beginning"}]
    full = c.chat.completions.create(model="tiny-kjv", messages=msgs, max_tokens=10, seed=3)
    chunks = list(c.chat.completions.create(model="tiny-kjv", messages=msgs, max_tokens=10, seed=3, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    comp = c.completions.create(model="tiny-kjv", prompt="The LORD", max_tokens=10, seed=4)
    parts = list(c.completions.create(model="tiny-kjv", prompt="The LORD", max_tokens=10, seed=4, stream=True))
    assert "".join(p.choices[0].text for p in parts) == comp.choices[0].text


def test_sse_ends_with_done(server):
    req = urllib.request.Request(server["base"] + "/v1/completions", data=json.dumps(
        {"prompt": "Jesus", "max_tokens": 3, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [ln for ln in r.read().decode().split("\n\n") if ln]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_stop_strings(server):
    c = server["client"]
    base = c.completions.create(model="tiny-kjv", prompt="And the LORD", max_tokens=24, temperature=0).choices[0].text
    words = base.split()
    stop = words[len(words) // 2]
    want = base[:base.index(stop)]
    r = c.completions.create(model="tiny-kjv", prompt="And the LORD", max_tokens=24, temperature=0, stop=[stop, "@@"])
    assert r.choices[0].text == want and r.choices[0].finish_reason == "stop"
    parts = c.completions.create(model="tiny-kjv", prompt="And the LORD", max_tokens=24, temperature=0, stop=stop,
                                 stream=True)
    assert "".join(p.choices[0].text for p in parts) == want


def _rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def test_load_16_clients_x_4_requests(server):
    """16 concurrent clients x 4 requests (chat and completions, streaming and not): every response complete and
    equal to the same request made alone; none lost; memory bounded; the worker's queue drained."""
    base = server["base"]
    prompts = ["In the beginning", "And God said", "The LORD is", "Blessed are"]

    def request(client, i, j):
        prompt, seed = prompts[(i + j) % 4], (i * 4 + j) % 5
        kind = (i + j) % 4
        if kind == 0:
            r = client.completions.create(model="m", prompt=prompt, max_tokens=4, seed=seed)
            return ("c", prompt, seed), r.choices[0].text, r.usage.completion_tokens
        if kind == 1:
            s = client.completions.create(model="m", prompt=prompt, max_tokens=4, seed=seed, stream=True)
            return ("c", prompt, seed), "".join(p.choices[0].text for p in s), None
        msgs = [{"role": "user", "content": prompt}]
        if kind == 2:
            r = client.chat.completions.create(model="m", messages=msgs, max_tokens=4, seed=seed)
            return ("chat", prompt, seed), r.choices[0].message.content, r.usage.completion_tokens
        s = client.chat.completions.create(model="m", messages=msgs, max_tokens=4, seed=seed, stream=True)
        return ("chat", prompt, seed), "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices), None

    solo = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    expected = {}
    for p in prompts:                                  # each distinct request once, alone
        for seed in range(5):
            expected[("c", p, seed)] = solo.completions.create(model="m", prompt=p, max_tokens=4,
                                                               seed=seed).choices[0].text
            expected[("chat", p, seed)] = solo.chat.completions.create(
                model="m", messages=[{"role": "user", "content": p}], max_tokens=4, seed=seed).choices[0].message.content
    solo.close()
    gc.collect()
    rss0 = _rss_mb()

    def client_run(i):
        with openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=600) as client:
            return [request(client, i, j) for j in range(4)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        results = [r for rs in ex.map(client_run, range(16)) for r in rs]
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = _rss_mb()
    assert len(results) == 64
    for key, text, n in results:
        assert text == expected[key], key
        assert n is None or 0 <= n <= 4
    print(f"\nload: 64 requests from 16 clients in {elapsed:.1f} s ({64 / elapsed:.1f} req/s)"
          + (f", RSS {rss0:.0f} -> {rss1:.0f} MB" if rss0 else ""))
    if rss0 is not None:
        assert rss1 - rss0 < 32, f"RSS grew {rss1 - rss0:.0f} MB over 64 requests"
    assert server["app"].state.worker.slots._value == QUEUE


def test_disconnect_mid_stream_frees_the_worker(server):
    import http.client

    host, port = server["base"][len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "In", "max_tokens": 200, "stream": True}),
                 headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.fp.readline()                                 # the first event has arrived: generation is running
    conn.sock.close()                                  # the client goes away mid-stream
    conn.close()
    worker = server["app"].state.worker
    for _ in range(400):
        if worker.slots._value == QUEUE:
            break
        time.sleep(0.05)
    assert worker.slots._value == QUEUE, "the abandoned request still holds its slot"
    st = server["gen"].last
    assert st.n_generated < 200, "the abandoned request ran to its end"
    r = server["client"].completions.create(model="m", prompt="In", max_tokens=2, temperature=0)
    assert r.choices[0].text


@pytest.mark.parametrize("path, body, data, param", [
    ("/v1/chat/completions", None, b'{"messages": [', None),                            # malformed JSON
    ("/v1/chat/completions", None, b'[1, 2]', None),                                    # not an object
    ("/v1/chat/completions", {"messages": "hi"}, None, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, None, "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, None,
     "max_tokens"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, None, "temperature"),
    ("/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, None, "stop"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, None, "stream"),
    ("/v1/completions", {"prompt": 42}, None, "prompt"),
    ("/v1/completions", {"prompt": "x", "n": 2}, None, "n"),
    ("/v1/completions", {"prompt": " ".join(["And the LORD said unto Moses"] * 60)}, None, "prompt"),  # > n_ctx
])
def test_bad_requests_get_400_and_the_server_lives(server, path, body, data, param):
    status, err = _raw(server["base"], path, body=body, data=data)
    assert status == 400, err
    assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
    assert err["error"]["param"] == param
    if param == "prompt" and isinstance(body["prompt"], str) and len(body["prompt"]) > 100:
        assert err["error"]["code"] == "context_length_exceeded"
    assert _raw(server["base"], "/health", key=None)[0] == 200


def test_api_key(server):
    for key in (None, "wrong"):
        status, err = _raw(server["base"], "/v1/completions", {"prompt": "x", "max_tokens": 1}, key=key)
        assert status == 401 and err["error"]["type"] == "authentication_error"
    bad = openai.OpenAI(base_url=server["base"] + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.BadRequestError):
        server["client"].completions.create(model="m", prompt="x", max_tokens=-1)
    assert _raw(server["base"], "/nowhere")[0] == 404
    assert server["client"].completions.create(model="m", prompt="x", max_tokens=1).choices[0].text is not None
