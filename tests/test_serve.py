"""`tunelab serve` as a real subprocess on 127.0.0.1, driven with the official openai client and raw HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from servers import serve

KEY = "test-secret-key"


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """`tunelab serve <tiny model> --api-key KEY` on a free port; yields its base URL."""
    with serve(tiny_model, tmp_path_factory.mktemp("serve"), api_key=KEY) as (base, log):
        yield base
    assert KEY not in log.read_text()  # the key is never logged


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0)


def test_models_list(client, tiny_model):
    ids = [m.id for m in client.models.list()]
    assert ids == [tiny_model]


def test_chat_non_stream(client, tiny_model):
    r = client.chat.completions.create(model=tiny_model, messages=[{"role": "user", "content": "Hello"}],
                                       max_tokens=8, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream(client, tiny_model):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]
    full = client.chat.completions.create(model=tiny_model, messages=msgs, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model=tiny_model, messages=msgs, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces) == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_completions(client, tiny_model):
    r = client.completions.create(model=tiny_model, prompt=["Once upon a time", "The sky is"], max_tokens=5, temperature=0)
    assert [c.index for c in r.choices] == [0, 1] and all(c.text for c in r.choices)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=tiny_model, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_unauthorized(server, headers):
    for method, path in (("GET", "/models"), ("POST", "/chat/completions")):
        r = httpx.request(method, server + path, headers=headers, json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]


def test_openai_client_wrong_key(server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server, api_key="nope", max_retries=0).models.list()


@pytest.mark.parametrize("body, status", [
    (b"{not json", 400),
    (b'{"messages": []}', 422),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', 422),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 422),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}', 422),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', 422),
    (b'[1, 2]', 422),
])
def test_bad_bodies(server, body, status):
    r = httpx.post(server + "/chat/completions", content=body,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_bad_completion_stream(server):
    r = httpx.post(server + "/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"prompt": ["a", "b"], "stream": True})
    assert r.status_code == 400 and "single prompt" in r.json()["error"]["message"]


def test_fifty_concurrent_requests(client, tiny_model):
    def ask(i):
        kwargs = dict(model=tiny_model, messages=[{"role": "user", "content": f"Count to {i}"}], max_tokens=4, temperature=0)
        if i % 2:
            return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs) if c.choices)
        return client.chat.completions.create(**kwargs).choices[0].message.content

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, range(50)))  # any 4xx/5xx raises from the client
    assert all(answers)
    # Each answer equals the same request made alone: concurrent requests did not corrupt each other.
    for i in (3, 10):
        assert answers[i] == ask(i)


def test_openai_backend_against_server(server, monkeypatch, workspace):
    """TuneLab's own OpenAI-compatible backend (used by Generate/Compare) talking to `tunelab serve`."""
    from tunelab.errors import TuneLabError
    from tunelab.models import generation
    from tunelab.models.generation import GenerationSettings

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    generation.clear_cache()
    b = generation.get_backend(f"openai:{server}")
    s = GenerationSettings(max_new_tokens=6)
    convs = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "Tell me more"}]]
    gens = b.chat(convs, s, batch_size=2)
    assert all(g.text and g.completion_tokens > 0 and g.prompt_tokens > 0 for g in gens)
    stream = b.stream_chat(convs[0], s)
    assert "".join(stream) == gens[0].text and stream.generation.completion_tokens == gens[0].completion_tokens
    assert b.complete(["Once upon a time"], s)[0].text
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    generation.clear_cache()
    with pytest.raises(TuneLabError, match="401"):
        generation.get_backend(f"openai:{server}#x").chat(convs[:1], s)
