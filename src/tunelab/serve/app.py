"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (SSE or not), POST /v1/completions.

One model per server. Generation is serialised by the backend's lock, so concurrent requests queue
instead of sharing a forward pass; the official `openai` client works against it unchanged.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Iterator, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation, GenerationSettings, get_backend

# When a request names no limit: enough for a chat answer, short enough to keep the queue moving.
DEFAULT_MAX_TOKENS = 256


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = ""

    def as_dict(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, logit_bias...)

    model: str = ""
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def settings(self, max_tokens: int | None = None) -> GenerationSettings:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return GenerationSettings(max_new_tokens=max_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
                                  temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=stop)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(min_length=1)


def _error(status: int, message: str, code: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": code, "param": None, "code": None}})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, 422 for wrong fields; one readable sentence either way."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON"
    parts = []
    for e in errors[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {e.get('msg')}")
    return 422, "; ".join(parts)


def _usage(g: Generation) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def create_app(model_spec: str, api_key: str | None = None, model_id: str | None = None) -> FastAPI:
    """Build the API around one model (loaded now, so the first request does not wait for it).

    Args:
        model_spec: any spec get_backend accepts (MODEL, local:MODEL, llamacpp:MODEL, openai:URL).
        api_key: when set, every request needs `Authorization: Bearer <api_key>`.
        model_id: the id /v1/models reports (default: the model's name).
    Returns:
        The FastAPI application.
    """
    backend = get_backend(model_spec)
    served = model_id or backend.name
    created = int(time.time())
    app = FastAPI(title="TuneLab OpenAI-compatible API", docs_url=None, redoc_url=None)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise _Unauthorized()

    @app.exception_handler(_Unauthorized)
    async def _on_unauthorized(request: Request, exc: _Unauthorized):
        return _error(401, "invalid or missing API key (send Authorization: Bearer <key>)", "invalid_api_key")

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError):
        return _error(*_validation_message(exc))

    @app.exception_handler(TuneLabError)
    async def _on_user_error(request: Request, exc: TuneLabError):
        return _error(400, str(exc))

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models():
        return {"object": "list", "data": [{"id": served, "object": "model", "created": created, "owned_by": "tunelab"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    def chat_completions(req: ChatRequest):
        settings = req.settings(req.max_completion_tokens)
        messages = [m.as_dict() for m in req.messages]
        rid = f"chatcmpl-{secrets.token_hex(12)}"
        if req.stream:
            stream = backend.stream_chat(messages, settings)  # validates now, so a bad request is a 4xx, not a broken stream
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_chat_chunks(stream, rid, served, usage), media_type="text/event-stream")
        g = backend.chat([messages], settings, batch_size=1)[0]
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                             "logprobs": None, "finish_reason": g.finish_reason}],
                "usage": _usage(g)}

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    def completions(req: CompletionRequest):
        settings = req.settings()
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        rid = f"cmpl-{secrets.token_hex(12)}"
        if req.stream:
            if len(prompts) != 1 or not hasattr(backend, "stream_complete"):
                raise TuneLabError("streaming completions take a single prompt on a local model")
            usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = backend.stream_complete(prompts[0], settings)
            return StreamingResponse(_completion_chunks(stream, rid, served, usage), media_type="text/event-stream")
        gens = backend.complete(prompts, settings, batch_size=8)
        total = Generation("", sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens), 0, 0, "")
        return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": served,
                "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                            for i, g in enumerate(gens)],
                "usage": _usage(total)}

    return app


class _Unauthorized(Exception):
    pass


def _chat_chunks(stream, rid: str, model: str, include_usage: bool) -> Iterator[str]:
    """SSE chunks in OpenAI's chat.completion.chunk shape, closed with `data: [DONE]`."""
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    try:
        yield _sse(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for piece in stream:
            yield _sse(dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        g = stream.generation
        yield _sse(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": g.finish_reason}]))
        if include_usage:
            yield _sse(dict(base, choices=[], usage=_usage(g)))
        yield "data: [DONE]\n\n"
    finally:
        stream.close()  # the client may have gone: stop generating for it


def _completion_chunks(stream, rid: str, model: str, include_usage: bool) -> Iterator[str]:
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model}
    try:
        for piece in stream:
            yield _sse(dict(base, choices=[{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]))
        g = stream.generation
        yield _sse(dict(base, choices=[{"index": 0, "text": "", "logprobs": None, "finish_reason": g.finish_reason}]))
        if include_usage:
            yield _sse(dict(base, choices=[], usage=_usage(g)))
        yield "data: [DONE]\n\n"
    finally:
        stream.close()
