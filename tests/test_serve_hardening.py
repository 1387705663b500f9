"""`tunelab serve` under attack: every request is bounded, none is a 500, a client leaving or SIGTERM stops
generation, and the key guards the docs and stays off the command line. Real servers on 127.0.0.1, real HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from servers import free_port

KEY = "hardening-secret-key"
CONTEXT = 32768  # long enough that no machine finishes a full-length answer during a test
MESSAGES = [{"role": "user", "content": "Tell me a long story"}]


@pytest.fixture(scope="module")
def long_model(tmp_path_factory) -> str:
    """The tiny random llama of conftest's tiny_model, with a 32k context so an answer can run for minutes."""
    import tiny_model as builder

    path = tmp_path_factory.mktemp("tiny-long") / "tiny-llama"
    return str(builder.build(path, width=64, tied=False, max_positions=CONTEXT, init_range=0.5))


@contextlib.contextmanager
def running(model: str, workdir: Path, args: list[str] = (), env: dict | None = None,
            key: str | None = KEY) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`tunelab serve MODEL ARGS` on a free port; yields (process, base URL ending in /v1, log path)."""
    port = free_port()
    (workdir / "ws").mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, TUNELAB_HOME=str(workdir / "ws"), HF_HUB_OFFLINE="1", **(env or {}))
    log_path = workdir / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "serve", model, "--port", str(port), *args],
                                stdout=log, stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.time() + 180
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", headers=headers, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield proc, base, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(long_model, tmp_path_factory):
    """Defaults for every limit; the key comes from a file, so it is not on the command line."""
    workdir = tmp_path_factory.mktemp("serve-hard")
    key_file = workdir / "key.txt"
    key_file.write_text(KEY + "\n")
    with running(long_model, workdir, ["--api-key-file", str(key_file)]) as (proc, base, log):
        yield proc, base, log
    assert KEY not in log.read_text()


@pytest.fixture
def base(server) -> str:
    return server[1]


def post(base: str, path: str, body, timeout: float = 30, key: str = KEY) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base + path, content=content, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def error(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


def answers_quickly(base: str, within: float = 20) -> float:
    """Seconds a 2-token answer takes; fails if the server is still busy with an earlier request."""
    t0 = time.perf_counter()
    r = post(base, "/chat/completions", {"messages": MESSAGES, "max_tokens": 2, "temperature": 0}, timeout=within)
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


# --- the key ---------------------------------------------------------------------------------------

def test_key_from_a_file_is_required_and_not_on_the_command_line(server):
    proc, base, log = server
    assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
    assert httpx.get(base + "/models").status_code == 401
    assert httpx.get(base + "/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert "$TUNELAB_API_KEY" not in log.read_text() and "an API key from the file" in log.read_text()


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_api_schema_and_docs_need_the_key(base, path):
    root = base.removesuffix("/v1")
    assert httpx.get(root + path).status_code == 401
    assert httpx.get(root + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.get(root + path, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    if path == "/openapi.json":
        assert "/v1/chat/completions" in r.json()["paths"]


def test_key_file_errors_are_one_line(tmp_path, long_model):
    env = dict(os.environ, TUNELAB_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    (tmp_path / "empty").write_text("\n")
    for key_file, expected in ((tmp_path / "missing", "cannot read the API key file"), (tmp_path / "empty", "is empty")):
        r = subprocess.run([sys.executable, "-m", "tunelab", "serve", long_model, "--port", str(free_port()),
                            "--api-key-file", str(key_file)], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode != 0 and expected in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "loading" not in r.stderr  # refused before the model loads


# --- bounds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_beyond_the_context_is_400(base, field):
    for asked in (CONTEXT + 1, 10**12):
        r = post(base, "/chat/completions", {"messages": MESSAGES, field: asked}, timeout=10)
        assert r.status_code == 400 and f"{field} is {asked}" in error(r) and str(CONTEXT) in error(r), r.text
    r = post(base, "/completions", {"prompt": "Once", "max_tokens": CONTEXT + 1}, timeout=10)
    assert r.status_code == 400 and str(CONTEXT) in error(r)


def test_a_5mb_prompt_is_refused_before_tokenising(base):
    limit = CONTEXT * 8
    for path, body in (("/completions", {"prompt": "a " * 2_500_000, "max_tokens": 1}),
                       ("/completions", {"prompt": ["x", "b" * 5_000_000], "max_tokens": 1}),
                       ("/chat/completions", {"messages": [{"role": "user", "content": "c " * 2_500_000}], "max_tokens": 1}),
                       ("/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "d" * 5_000_000}]}],
                                              "stream": True, "max_tokens": 1})):
        t0 = time.perf_counter()
        r = post(base, path, body, timeout=10)
        assert r.status_code == 400 and f"limit of {limit}" in error(r) and "--max-prompt-chars" in error(r), r.text[:300]
        assert time.perf_counter() - t0 < 5
    answers_quickly(base)


def test_a_body_over_the_size_limit_is_413_without_reading_it(base):
    r = post(base, "/chat/completions", b" " * (17 * 1024 * 1024) + b"{", timeout=30)
    assert r.status_code == 413 and "bytes" in error(r)


def test_message_and_prompt_counts_are_bounded(base):
    r = post(base, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}] * 513, "max_tokens": 1})
    assert r.status_code == 400 and "513 messages" in error(r) and "limit of 512" in error(r)
    r = post(base, "/completions", {"prompt": ["hi"] * 513, "max_tokens": 1})
    assert r.status_code == 400 and "513 prompts" in error(r) and "limit of 512" in error(r)


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "seed": 18446744073709551617}',
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "seed": -18446744073709551617}',
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "seed": 1' + b"0" * 5000 + b"}",
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}',
    b'{"messages": [{"role": "user", "content": "ok \\udfff then"}], "max_tokens": 2, "stream": true}',
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}], "max_tokens": 2}',
], ids=["seed-2^64", "seed--2^64", "seed-5000-digits", "surrogate", "surrogate-stream", "surrogate-part"])
def test_seeds_out_of_range_and_lone_surrogates_are_4xx_not_500(base, body):
    r = post(base, "/chat/completions", body, timeout=20)
    assert r.status_code in (400, 422), r.text
    assert error(r)
    if b"seed" in body:  # every 64-bit seed still works
        for seed in (2**63 - 1, -(2**63), 0):
            r = post(base, "/chat/completions", {"messages": MESSAGES, "max_tokens": 2, "seed": seed, "temperature": 1})
            assert r.status_code == 200, r.text


def test_a_lone_surrogate_in_any_text_field_is_422(base):
    for path, body in (("/completions", b'{"max_tokens": 2, "prompt": "\\ud800"}'),
                       ("/completions", b'{"max_tokens": 2, "prompt": ["fine", "\\udc00"]}'),
                       ("/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stop": ["\\ud800"]}'),
                       ("/chat/completions", b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}')):
        r = post(base, path, body, timeout=20)
        assert r.status_code == 422 and "lone surrogate" in error(r), r.text


def test_an_empty_completion_prompt_streams_like_openai(base, long_model):
    """OpenAI continues an empty prompt from the start of a document; the stream used to break."""
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    chunks = list(client.completions.create(model=long_model, prompt=[""], max_tokens=4, temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.completions.create(model=long_model, prompt=[""], max_tokens=4, temperature=0)
    assert whole.choices[0].text == text and whole.usage.prompt_tokens >= 1
    assert client.completions.create(model=long_model, prompt="", max_tokens=4, temperature=0).choices[0].text == text


# --- one connection survives every error -----------------------------------------------------------

def test_the_same_connection_serves_the_next_request_after_any_error(base):
    url = httpx.URL(base)
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    good = json.dumps({"messages": MESSAGES, "max_tokens": 2}).encode()
    bad = [
        ("/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud800"}]}', KEY),
        ("/completions", b'{"prompt": "\\ud800", "stream": true}', KEY),
        ("/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "seed": 99999999999999999999999}', KEY),
        ("/chat/completions", good, "wrong key"),
        ("/chat/completions", b"{not json", KEY),
        ("/chat/completions", json.dumps({"messages": MESSAGES, "max_tokens": 10**9}).encode(), KEY),
        ("/completions", json.dumps({"prompt": ["a", "b"], "stream": True}).encode(), KEY),
        ("/nowhere", good, KEY),
    ]
    ports = set()
    for path, body, key in bad:
        for p, b, k, ok in ((path, body, key, False), ("/chat/completions", good, KEY, True)):
            conn.request("POST", url.path + p, body=b,
                         headers={"Authorization": f"Bearer {k}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert (resp.status == 200) == ok and resp.status < 500, (p, b[:80], resp.status, payload)
            assert ok or payload["error"]["message"]
            ports.add(conn.sock.getsockname()[1])
    assert len(ports) == 1  # never reconnected: the server kept the connection open through every error
    conn.close()


# --- cancellation ----------------------------------------------------------------------------------

def test_a_client_that_leaves_a_non_streamed_request_stops_its_generation(base):
    with pytest.raises(httpx.TimeoutException):
        post(base, "/chat/completions", {"messages": MESSAGES, "max_tokens": CONTEXT - 100, "temperature": 1}, timeout=1.5)
    # The backend runs one generation at a time: the next request only answers if the first one stopped.
    assert answers_quickly(base) < 20


def test_a_client_that_leaves_a_stream_stops_its_generation(base):
    body = {"messages": MESSAGES, "max_tokens": CONTEXT - 100, "temperature": 1, "stream": True}
    with httpx.Client(timeout=30) as c, c.stream("POST", base + "/chat/completions", json=body,
                                                  headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200
        lines = iter(r.iter_lines())
        assert [next(lines) for _ in range(6)]  # it is generating
    assert answers_quickly(base) < 20


def test_sigterm_stops_the_server_within_seconds_mid_generation(long_model, tmp_path):
    with running(long_model, tmp_path, env={"TUNELAB_API_KEY": KEY}) as (proc, base, log):
        assert "an API key from $TUNELAB_API_KEY" in log.read_text()
        assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        results: dict = {}

        def ask(name, stream):
            body = {"messages": MESSAGES, "max_tokens": CONTEXT - 100, "temperature": 1, "stream": stream}
            try:
                r = post(base, "/chat/completions", body, timeout=60)
                results[name] = (r.status_code, r.text)
            except httpx.HTTPError as exc:
                results[name] = (None, repr(exc))

        threads = [threading.Thread(target=ask, args=(name, name == "stream")) for name in ("whole", "stream")]
        for t in threads:
            t.start()
        time.sleep(3)  # both are in: one generating, one waiting for the model
        assert not results
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the server was still running 10 s after SIGTERM")
        assert time.perf_counter() - t0 < 8
        for t in threads:
            t.join(timeout=10)
        status, text = results["whole"]
        assert status in (None, 503), text  # told it was cut, never a silent half answer
        assert KEY not in log.read_text()


def test_limits_are_configurable(long_model, tmp_path):
    args = ["--max-tokens-limit", "16", "--max-prompt-chars", "100", "--max-messages", "2"]
    with running(long_model, tmp_path, args, env={"TUNELAB_API_KEY": KEY}) as (_, base, log):
        assert "at most 16 new tokens, 100 characters and 2 messages" in log.read_text()
        r = post(base, "/chat/completions", {"messages": MESSAGES, "max_tokens": 17})
        assert r.status_code == 400 and "limit of 16 tokens" in error(r) and "--max-tokens-limit" in error(r)
        r = post(base, "/completions", {"prompt": "a" * 101})
        assert r.status_code == 400 and "101 characters" in error(r) and "limit of 100" in error(r)
        r = post(base, "/completions", {"prompt": "a" * 60, "stop": ["b" * 41]})  # stop strings count too
        assert r.status_code == 400 and "limit of 100" in error(r)
        r = post(base, "/chat/completions", {"messages": MESSAGES * 3})
        assert r.status_code == 400 and "3 messages" in error(r) and "limit of 2" in error(r)
        r = post(base, "/chat/completions", {"messages": MESSAGES, "temperature": 1})  # no max_tokens: the limit, not 256
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 16
        r = post(base, "/completions", {"prompt": "a" * 100, "max_tokens": 16})
        assert r.status_code == 200, r.text
