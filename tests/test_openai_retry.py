"""The OpenAI-compatible backend over a real HTTP server on 127.0.0.1: retries and timeouts.

An overloaded endpoint (503 twice) still answers through the retries; an endpoint that accepts and
never answers ends in one TuneLabError line within the configured wait, not after the default 300 s.
"""

from __future__ import annotations

import time

import pytest

from chat_server import answers, hanging, serve
from tunelab.errors import TuneLabError
from tunelab.models.generation import GenerationSettings
from tunelab.models.openai_backend import OpenAIBackend
from tunelab.models.registry import resolve

SETTINGS = GenerationSettings(max_new_tokens=8)
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def test_two_503s_then_the_answer(monkeypatch):
    monkeypatch.delenv("TUNELAB_OPENAI_RETRIES", raising=False)  # the default: 2 retries
    with serve(answers, fail_first=2) as (url, asked):
        t = time.perf_counter()
        gen = OpenAIBackend(resolve(f"openai:{url}#short-bot")).chat([ASK], SETTINGS)[0]
        elapsed = time.perf_counter() - t
    assert gen.text == "France."
    assert asked == [("short-bot", "What is the capital of France?")]  # the third request got through
    assert elapsed >= 0.5 * 0.75 + 1.0 * 0.75  # it backed off (0.5 s then 1 s, less up to 25 % jitter)


def test_a_503_beyond_the_retries_is_one_line(monkeypatch):
    monkeypatch.setenv("TUNELAB_OPENAI_RETRIES", "1")
    with serve(answers, fail_first=5) as (url, asked):
        with pytest.raises(TuneLabError) as err:
            OpenAIBackend(resolve(f"openai:{url}#short-bot")).chat([ASK], SETTINGS)
    assert str(err.value) == f"{url} answered 503: overloaded, try again"
    assert asked == []


@pytest.mark.parametrize("retries", [0, 1])
def test_a_server_that_never_answers_ends_within_the_timeout(monkeypatch, retries):
    timeout = 1.0
    monkeypatch.setenv("TUNELAB_OPENAI_TIMEOUT", str(timeout))
    monkeypatch.setenv("TUNELAB_OPENAI_RETRIES", str(retries))
    with hanging() as (url, accepted):
        backend = OpenAIBackend(resolve(f"openai:{url}#bot"))
        t = time.perf_counter()
        with pytest.raises(TuneLabError) as err:
            backend.chat([ASK], SETTINGS)
        elapsed = time.perf_counter() - t
        tries = len(accepted)
    # Each try waits `timeout`; between tries the SDK backs off 0.5 s, 1 s, ... (at most 1 s here).
    assert elapsed < (retries + 1) * timeout + retries * 1.0 + 2.0, elapsed
    assert elapsed >= (retries + 1) * timeout * 0.9
    assert tries == retries + 1
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"no answer from {url} within 1 s"), line


def test_a_stream_that_stalls_ends_within_the_timeout(monkeypatch):
    monkeypatch.setenv("TUNELAB_OPENAI_TIMEOUT", "1")
    monkeypatch.setenv("TUNELAB_OPENAI_RETRIES", "0")
    with hanging() as (url, _):
        stream = OpenAIBackend(resolve(f"openai:{url}#bot")).stream_chat(ASK, SETTINGS)
        t = time.perf_counter()
        with pytest.raises(TuneLabError, match="^no answer from "):
            "".join(stream)
        assert time.perf_counter() - t < 3.0


def test_a_bad_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("TUNELAB_OPENAI_TIMEOUT", "soon")
    with pytest.raises(TuneLabError, match="^TUNELAB_OPENAI_TIMEOUT must be a number, not 'soon'$"):
        OpenAIBackend(resolve("openai:http://127.0.0.1:9/v1#bot"))
