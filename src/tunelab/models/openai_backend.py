"""OpenAI-compatible HTTP backend: any /v1/chat/completions endpoint (OpenAI, vLLM, llama.cpp server, `tunelab serve`)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from tunelab.errors import TuneLabError
from tunelab.models.generation import (BackendEntry, GenerationSettings, Generation, Stream, check_conversation,
                                       make_generation, register_backend)
from tunelab.models.registry import ModelRef, api_key

TIMEOUT_S = 300


class OpenAIBackend:
    """Chat and completions over HTTP; the key comes from the environment and is sent only as a header."""

    def __init__(self, ref: ModelRef):
        import httpx

        self.ref = ref
        self.name = ref.name
        self.fallback_template = False
        key = api_key(ref)
        self._key = key or ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=ref.base_url, headers=headers, timeout=TIMEOUT_S)
        self.model = ref.remote_model if ref.remote_model and ref.remote_model != "default" else self._first_model()

    def _first_model(self) -> str:
        """The endpoint's first model when none was named (a single-model server such as `tunelab serve`)."""
        try:
            data = self._request("GET", "/models").get("data") or []
        except TuneLabError:
            return "default"
        return data[0]["id"] if data else "default"

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        try:
            r = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise TuneLabError(f"cannot reach {self.ref.base_url}: {type(exc).__name__}") from None
        if r.status_code >= 400:
            text = _error_text(self._scrub(r.text))
            raise TuneLabError(f"{self.ref.base_url} answered {r.status_code}: {text}")
        return r.json()

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

    def _post(self, path: str, body: dict) -> Generation:
        t0 = time.perf_counter()
        out = self._request("POST", path, body)
        latency = time.perf_counter() - t0
        choice = out["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice.get("text", "")
        usage = out.get("usage") or {}
        return make_generation(text or "", usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), latency,
                               choice.get("finish_reason") or "stop")

    def _parallel(self, path: str, bodies: list[dict], batch_size: int) -> list[Generation]:
        # An endpoint batches on its side; we keep batch_size requests in flight.
        with ThreadPoolExecutor(max_workers=max(1, min(batch_size, len(bodies) or 1))) as pool:
            return list(pool.map(lambda b: self._post(path, b), bodies))

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        for c in conversations:
            check_conversation(c)
        return self._parallel("/chat/completions", [dict(self._body(settings), messages=c) for c in conversations], batch_size)

    def complete(self, prompts: list[str], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        return self._parallel("/completions", [dict(self._body(settings), prompt=p) for p in prompts], batch_size)

    def stream_chat(self, conversation: list[dict], settings: GenerationSettings) -> Stream:
        """Stream the answer over SSE; the Stream's `.generation` has the totals once it is exhausted."""
        check_conversation(conversation)
        body = dict(self._body(settings), messages=conversation, stream=True, stream_options={"include_usage": True})
        return Stream(lambda stream: self._sse(body, stream))

    def _sse(self, body: dict, stream: Stream) -> Iterator[str]:
        import httpx

        t0 = time.perf_counter()
        text, n, reason, usage = "", 0, "stop", {}
        try:
            with self.client.stream("POST", "/chat/completions", json=body) as r:
                if r.status_code >= 400:
                    text = _error_text(self._scrub(r.read().decode("utf-8", "replace")))
                    raise TuneLabError(f"{self.ref.base_url} answered {r.status_code}: {text}")
                for line in r.iter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        reason = choice.get("finish_reason") or reason
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            n += 1
                            text += piece
                            yield piece
        except httpx.HTTPError as exc:
            raise TuneLabError(f"cannot reach {self.ref.base_url}: {type(exc).__name__}") from None
        stream.generation = make_generation(text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", n),
                                            time.perf_counter() - t0, reason)


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
