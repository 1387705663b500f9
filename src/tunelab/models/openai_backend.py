"""OpenAI-compatible HTTP backend: any /v1/chat/completions endpoint (OpenAI, vLLM, llama.cpp server, `tunelab serve`)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from tunelab.errors import TuneLabError
from tunelab.models.generation import (BackendEntry, GenerationSettings, Generation, Stream, check_conversation,
                                       make_generation, register_backend)
from tunelab.models.registry import ModelRef, api_key

# The openai SDK does the HTTP: retries with exponential backoff (0.5 s, 1 s, 2 s ... capped at 8 s,
# or the server's Retry-After) on dropped connections, timeouts, 408/409/429 and 5xx; timeouts per
# phase. Each of these is one environment variable (a number), read when a backend is created.
TIMEOUT_S = 300  # TUNELAB_OPENAI_TIMEOUT: seconds to wait for the answer (or the next streamed piece), per try
CONNECT_TIMEOUT_S = 10  # TUNELAB_OPENAI_CONNECT_TIMEOUT: seconds to open the connection, per try
MAX_RETRIES = 2  # TUNELAB_OPENAI_RETRIES: tries after the first


def _setting(env: str, default: float) -> float:
    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise TuneLabError(f"{env} must be a number, not {raw!r}") from None
    if value < 0:
        raise TuneLabError(f"{env} must be 0 or more, not {raw!r}")
    return value


class OpenAIBackend:
    """Chat and completions over HTTP; the key comes from the environment and is sent only as a header."""

    def __init__(self, ref: ModelRef):
        import httpx2
        import openai

        self.ref = ref
        self.name = ref.name
        self.fallback_template = False
        key = api_key(ref)
        self._key = key or ""
        self.timeout = _setting("TUNELAB_OPENAI_TIMEOUT", TIMEOUT_S)
        connect = min(self.timeout, _setting("TUNELAB_OPENAI_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S))
        self.retries = int(_setting("TUNELAB_OPENAI_RETRIES", MAX_RETRIES))
        # Without a key (a local server) no Authorization header at all (omitted per request); the
        # key is always passed, so the SDK never falls back to OPENAI_API_KEY for a ref naming another.
        self._headers = {} if key else {"Authorization": openai.omit}
        self.client = openai.OpenAI(base_url=ref.base_url, api_key=key or "none", timeout=httpx2.Timeout(self.timeout, connect=connect),
                                    max_retries=self.retries)
        self.model = ref.remote_model if ref.remote_model and ref.remote_model != "default" else self._first_model()

    def _first_model(self) -> str:
        """The endpoint's first model when none was named (a single-model server such as `tunelab serve`)."""
        try:
            data = self._call(lambda c: c.with_options(max_retries=0).models.list(extra_headers=self._headers).to_dict()).get("data") or []
        except _Hung:
            raise
        except TuneLabError:
            return "default"
        return data[0]["id"] if data else "default"

    def _call(self, fn):
        """fn(client) with the SDK's errors as one TuneLabError line (the key scrubbed from any echo)."""
        import httpx2
        import openai

        try:
            return fn(self.client)
        except openai.APIStatusError as exc:
            raise self._status_error(exc.status_code, exc.response.text) from None
        except (openai.APITimeoutError, httpx2.TimeoutException):  # the latter between streamed pieces
            raise _Hung(f"no answer from {self.ref.base_url} within {self.timeout:g} s "
                        f"({self.retries + 1} tries; TUNELAB_OPENAI_TIMEOUT sets the wait)") from None
        except (openai.APIConnectionError, httpx2.HTTPError) as exc:
            cause = exc.__cause__ or exc if isinstance(exc, openai.APIConnectionError) else exc
            raise TuneLabError(f"cannot reach {self.ref.base_url}: {type(cause).__name__}") from None
        except openai.APIError as exc:  # e.g. an error event inside a stream
            raise TuneLabError(f"{self.ref.base_url} failed: {self._scrub(str(exc.message))[:200]}") from None

    def _status_error(self, status: int, raw: str) -> TuneLabError:
        return TuneLabError(f"{self.ref.base_url} answered {status}: {_error_text(self._scrub(raw))}")

    def _scrub(self, text: str) -> str:
        """A response body without our key (a server may echo the request's headers back); before truncating."""
        return text.replace(self._key, "***") if self._key else text

    def _body(self, s: GenerationSettings) -> dict:
        body = {"model": self.model, "max_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = s.stop
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def _post(self, kind: str, body: dict) -> Generation:
        t0 = time.perf_counter()
        out = self._call(lambda c: (c.chat.completions if kind == "chat" else c.completions).create(
            **body, extra_headers=self._headers).to_dict())
        latency = time.perf_counter() - t0
        choice = out["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice.get("text", "")
        usage = out.get("usage") or {}
        return make_generation(text or "", usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), latency,
                               choice.get("finish_reason") or "stop")

    def _parallel(self, kind: str, bodies: list[dict], batch_size: int) -> list[Generation]:
        # An endpoint batches on its side; we keep batch_size requests in flight.
        with ThreadPoolExecutor(max_workers=max(1, min(batch_size, len(bodies) or 1))) as pool:
            return list(pool.map(lambda b: self._post(kind, b), bodies))

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        for c in conversations:
            check_conversation(c)
        return self._parallel("chat", [dict(self._body(settings), messages=c) for c in conversations], batch_size)

    def complete(self, prompts: list[str], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        return self._parallel("completions", [dict(self._body(settings), prompt=p) for p in prompts], batch_size)

    def stream_chat(self, conversation: list[dict], settings: GenerationSettings) -> Stream:
        """Stream the answer over SSE; the Stream's `.generation` has the totals once it is exhausted."""
        check_conversation(conversation)
        body = dict(self._body(settings), messages=conversation, stream=True, stream_options={"include_usage": True})
        return Stream(lambda stream: self._sse(body, stream))

    def _sse(self, body: dict, stream: Stream) -> Iterator[str]:
        t0 = time.perf_counter()
        text, n, reason, usage = "", 0, "stop", {}
        chunks = self._call(lambda c: c.chat.completions.create(**body, extra_headers=self._headers))
        with chunks:
            pieces = iter(chunks)
            while True:
                chunk = self._call(lambda _: next(pieces, None))  # a timeout between pieces is one line too
                if chunk is None:
                    break
                chunk = chunk.to_dict()
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    reason = choice.get("finish_reason") or reason
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        n += 1
                        text += piece
                        yield piece
        stream.generation = make_generation(text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", n),
                                            time.perf_counter() - t0, reason)


class _Hung(TuneLabError):
    """The endpoint accepted the request but sent nothing back in time (after every retry)."""


def _error_text(raw: str) -> str:
    """The endpoint's error message, short (OpenAI shape {"error": {"message"}} or FastAPI {"detail"})."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", err))[:200]
    return str(data.get("detail", data) if isinstance(data, dict) else data)[:200]


# An endpoint (a registry entry or "openai:BASE_URL[#model]") always generates over HTTP.
register_backend(BackendEntry("openai", OpenAIBackend, kinds=("openai",)))
