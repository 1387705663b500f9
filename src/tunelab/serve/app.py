"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (SSE or not), POST /v1/completions.

One model per server. Generation is serialised by the backend's lock, so concurrent requests queue
instead of sharing a forward pass; the official `openai` client works against it unchanged.

Every request is bounded before any work is done on it: its body size, its text in characters
(checked before tokenising), its message count and max_tokens. Generation runs in a worker thread
with a cancel event that a client leaving or a shutdown sets, so neither waits for a long answer.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated, AsyncIterator, Callable, Iterator, Literal

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation, GenerationSettings, get_backend

# When a request names no limit: enough for a chat answer, short enough to keep the queue moving.
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_MESSAGES = 512
# A model whose context cannot be read (an openai:URL endpoint) is bounded as if it had this one.
FALLBACK_CONTEXT = 4096
# Default bound on a request's text: its context times this. Real text averages 1-4 characters a
# token, so this never refuses a prompt that fits, and it bounds the work done before tokenising.
CHARS_PER_TOKEN = 8
MIN_BODY_BYTES = 16 * 1024 * 1024

log = logging.getLogger("uvicorn.error")


def _valid_unicode(text: str) -> str:
    """Refuse lone surrogates ("\\ud800" in JSON): tokenizers and UTF-8 cannot take them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"holds a lone surrogate ({text[exc.start]!r} at character {exc.start}), which is not text") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


class ContentPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = ""

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])

    def as_dict(self) -> dict:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, logit_bias...)

    model: Text = ""
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stop: Text | Annotated[list[Text], Field(max_length=16)] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, description="a 64-bit integer")
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def settings(self, max_new_tokens: int) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                  seed=self.seed, stop=self.stops())


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: Text | Annotated[list[Text], Field(min_length=1)]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; every excess is a 400 that names the limit."""

    max_tokens: int
    max_prompt_chars: int
    max_messages: int

    def tokens(self, field: str, asked: int | None) -> int:
        if asked is None:
            return min(DEFAULT_MAX_TOKENS, self.max_tokens)
        if asked > self.max_tokens:
            raise TuneLabError(f"{field} is {asked}, over this server's limit of {self.max_tokens} tokens "
                               "(the model's context, or `tunelab serve --max-tokens-limit`)")
        return asked

    def text(self, texts: list[str], stop: list[str]) -> None:
        n = sum(map(len, texts)) + sum(map(len, stop))
        if n > self.max_prompt_chars:
            raise TuneLabError(f"the request's text is {n} characters, over this server's limit of "
                               f"{self.max_prompt_chars} (`tunelab serve --max-prompt-chars`)")

    def messages(self, n: int) -> None:
        if n > self.max_messages:
            raise TuneLabError(f"the request has {n} messages, over this server's limit of {self.max_messages} "
                               "(`tunelab serve --max-messages`)")

    def prompts(self, n: int) -> None:
        if n > self.max_messages:
            raise TuneLabError(f"the request has {n} prompts, over this server's limit of {self.max_messages} "
                               "(`tunelab serve --max-messages`)")


def context_length(backend) -> int | None:
    """The most tokens the backend's model can attend to, when it says (None for a remote endpoint)."""
    config = getattr(getattr(backend, "model", None), "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
    n_ctx = getattr(getattr(backend, "llm", None), "n_ctx", None)
    return int(n_ctx()) if callable(n_ctx) else None


def make_limits(backend, max_tokens_limit: int | None = None, max_prompt_chars: int | None = None,
                max_messages: int | None = None) -> Limits:
    """The server's limits: each given one, else derived from the model's context."""
    context = context_length(backend) or FALLBACK_CONTEXT
    return Limits(max_tokens=min(max_tokens_limit or context, context),
                  max_prompt_chars=max_prompt_chars or context * CHARS_PER_TOKEN,
                  max_messages=max_messages or DEFAULT_MAX_MESSAGES)


def _error(status: int, message: str, code: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": code, "param": None, "code": None}})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, 422 for wrong fields; one readable sentence either way."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON"
    # A union field reports each member's failure; our own checks (value_error) say what is wrong.
    errors = [e for e in errors if e.get("type") == "value_error"] or errors
    parts = []
    for e in errors:
        # Drop the body prefix and pydantic's union member tags ("function-after[...]", "list[str]").
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body" and not (isinstance(x, str) and "[" in x))
        part = f"{where or 'body'}: {str(e.get('msg')).removeprefix('Value error, ')}"
        if part not in parts:
            parts.append(part)
    return 422, "; ".join(parts[:3])


def _usage(g: Generation) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _error_event(message: str, code: str = "server_error") -> str:
    return _sse({"error": {"message": message, "type": code, "param": None, "code": None}})


def _takes_cancel(method) -> bool:
    """Whether a backend method accepts `cancel=` (transformers does; llama.cpp and remote endpoints do not)."""
    try:
        return "cancel" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _document_start(backend) -> str:
    """What an empty completion prompt continues from: like OpenAI, the start of a new document."""
    tok = getattr(backend, "tok", None)
    return (tok.bos_token or tok.eos_token or "") if tok is not None else ""


class _InFlight:
    """The cancel events of the generations running now, so a shutdown stops each at its next token.

    Touched only on the event loop's thread; `stop_all` is scheduled there from the signal handler.
    """

    def __init__(self) -> None:
        self.closing = False
        self._events: set[threading.Event] = set()

    def start(self) -> threading.Event:
        if self.closing:
            raise HTTPException(503, "the server is shutting down")
        event = threading.Event()
        self._events.add(event)
        return event

    def end(self, event: threading.Event) -> None:
        event.set()
        self._events.discard(event)

    def stop_all(self) -> None:
        self.closing = True
        for event in list(self._events):
            event.set()


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set cancel once the client hangs up (the body is read already, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


async def _in_thread(request: Request, cancel: threading.Event, fn: Callable):
    """Run fn (generation) in a worker thread while watching for the client leaving."""
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, cancel))
    try:
        return await anyio.to_thread.run_sync(fn)
    finally:
        watcher.cancel()


async def _guarded(request: Request, cancel: threading.Event, chunks: Iterator[str], inflight: _InFlight) -> AsyncIterator[str]:
    """Send SSE chunks pulled in a worker thread; stop generating when the client leaves or the server stops.

    An error after the headers went out ends the stream with an error event (what OpenAI sends), so the
    client sees why and the connection stays usable, instead of a cut-off chunked body.
    """
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, cancel))
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            if inflight.closing:
                yield _error_event("the server is shutting down")
                return
            yield chunk
    except Exception as exc:
        log.error("error while streaming: %s: %s", type(exc).__name__, exc)
        yield _error_event(str(exc) if isinstance(exc, TuneLabError) else f"internal error ({type(exc).__name__})")
    finally:
        watcher.cancel()
        cancel.set()
        with anyio.CancelScope(shield=True):  # even when cancelled: wait for the generation thread to end
            await anyio.to_thread.run_sync(chunks.close)
        inflight.end(cancel)


class _BodyLimit:
    """Refuse a body over `limit` bytes before reading it (Content-Length) or as soon as it passes the limit."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await _error(413, self.message)(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, self.message)  # raised inside the body read: answered by the handlers
            return message

        await self.app(scope, limited_receive, send)

    @property
    def message(self) -> str:
        return f"the request body is over {self.limit} bytes"


class _CatchAll:
    """An unexpected error is a one-line 500 JSON answer, and the connection stays open for the next request.

    (Starlette's own handler re-raises after answering, and the server then drops the connection.)
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            log.exception("error on %s %s", scope.get("method"), scope.get("path"))
            await _error(500, f"internal error ({type(exc).__name__})", "server_error")(scope, receive, send)


def create_app(model_spec: str, api_key: str | None = None, model_id: str | None = None, *,
               max_tokens_limit: int | None = None, max_prompt_chars: int | None = None,
               max_messages: int | None = None) -> FastAPI:
    """Build the API around one model (loaded now, so the first request does not wait for it).

    Args:
        model_spec: any spec get_backend accepts (MODEL, local:MODEL, llamacpp:MODEL, openai:URL).
        api_key: when set, every request (the API docs too) needs `Authorization: Bearer <api_key>`.
        model_id: the id /v1/models reports (default: the model's name).
        max_tokens_limit: the most max_tokens a request may ask for (default and ceiling: the model's context).
        max_prompt_chars: the most characters of text in one request (default: context x 8).
        max_messages: the most messages (or completion prompts) in one request (default 512).
    Returns:
        The FastAPI application; `app.state.stop_generation()` stops every running generation (for shutdown).
    """
    backend = get_backend(model_spec)
    served = model_id or backend.name
    created = int(time.time())
    limits = make_limits(backend, max_tokens_limit, max_prompt_chars, max_messages)
    body_limit = max(MIN_BODY_BYTES, 8 * limits.max_prompt_chars)  # JSON escapes take up to 6 bytes a character
    inflight = _InFlight()
    app = FastAPI(title="TuneLab OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_CatchAll)
    app.add_middleware(_BodyLimit, limit=body_limit)
    app.state.limits = limits
    app.state.stop_generation = inflight.stop_all
    empty_prompt = _document_start(backend)

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

    @app.exception_handler(HTTPException)
    async def _on_http(request: Request, exc: HTTPException):
        response = _error(exc.status_code, str(exc.detail), "server_error" if exc.status_code >= 500 else "invalid_request_error")
        response.headers.update(exc.headers or {})
        return response

    # The schema and docs describe the API: behind the key like everything else.
    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(check_key)])
    def openapi():
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(check_key)])
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False, dependencies=[Depends(check_key)])
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models():
        return {"object": "list", "data": [{"id": served, "object": "model", "created": created, "owned_by": "tunelab"}]}

    async def respond(request: Request, make_stream: Callable, run: Callable, chunks: Callable, stream: bool):
        """Generate in a worker thread under a cancel event; a stream's first piece comes before the headers,
        so an error up to there is a plain 4xx/5xx rather than a broken stream."""
        cancel = inflight.start()
        streaming = False  # once the stream is handed to the response, its end ends the cancel event
        try:
            if not stream:
                result = await _in_thread(request, cancel, lambda: run(cancel))
                if inflight.closing:
                    raise HTTPException(503, "the server is shutting down")
                return result
            pieces = make_stream(cancel)
            try:
                first = await _in_thread(request, cancel, lambda: next(pieces, None))
            except BaseException:
                await anyio.to_thread.run_sync(pieces.close)
                raise
            response = StreamingResponse(_guarded(request, cancel, chunks(pieces, first), inflight),
                                         media_type="text/event-stream")
            streaming = True
            return response
        finally:
            if not streaming:
                inflight.end(cancel)

    def cancel_kw(method, cancel) -> dict:
        return {"cancel": cancel} if _takes_cancel(method) else {}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(req: ChatRequest, request: Request):
        limits.messages(len(req.messages))
        messages = [m.as_dict() for m in req.messages]
        limits.text([m["content"] for m in messages], req.stops())
        if req.max_completion_tokens is not None:
            settings = req.settings(limits.tokens("max_completion_tokens", req.max_completion_tokens))
        else:
            settings = req.settings(limits.tokens("max_tokens", req.max_tokens))
        rid = f"chatcmpl-{secrets.token_hex(12)}"
        usage = bool(req.stream_options and req.stream_options.include_usage)

        def run(cancel):
            g = backend.chat([messages], settings, batch_size=1, **cancel_kw(backend.chat, cancel))[0]
            return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                                 "logprobs": None, "finish_reason": g.finish_reason}],
                    "usage": _usage(g)}

        return await respond(
            request, lambda cancel: backend.stream_chat(messages, settings, **cancel_kw(backend.stream_chat, cancel)),
            run, lambda pieces, first: _chat_chunks(pieces, first, rid, served, usage), req.stream)

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    async def completions(req: CompletionRequest, request: Request):
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        limits.prompts(len(prompts))
        limits.text(prompts, req.stops())
        settings = req.settings(limits.tokens("max_tokens", req.max_tokens))
        prompts = [p or empty_prompt for p in prompts]
        rid = f"cmpl-{secrets.token_hex(12)}"
        usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream and (len(prompts) != 1 or not hasattr(backend, "stream_complete")):
            raise TuneLabError("streaming completions take a single prompt on a local model")

        def run(cancel):
            gens = backend.complete(prompts, settings, batch_size=8, **cancel_kw(backend.complete, cancel))
            total = Generation("", sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens), 0, 0, "")
            return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": served,
                    "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                                for i, g in enumerate(gens)],
                    "usage": _usage(total)}

        return await respond(
            request,
            lambda cancel: backend.stream_complete(prompts[0], settings, **cancel_kw(backend.stream_complete, cancel)),
            run, lambda pieces, first: _completion_chunks(pieces, first, rid, served, usage), req.stream)

    return app


class _Unauthorized(Exception):
    pass


def _chat_chunks(stream, first: str | None, rid: str, model: str, include_usage: bool) -> Iterator[str]:
    """SSE chunks in OpenAI's chat.completion.chunk shape, closed with `data: [DONE]`."""
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    try:
        yield _sse(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for piece in _chain(first, stream):
            yield _sse(dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        g = stream.generation
        yield _sse(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": g.finish_reason}]))
        if include_usage:
            yield _sse(dict(base, choices=[], usage=_usage(g)))
        yield "data: [DONE]\n\n"
    finally:
        stream.close()  # the client may have gone: stop generating for it


def _completion_chunks(stream, first: str | None, rid: str, model: str, include_usage: bool) -> Iterator[str]:
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model}
    try:
        for piece in _chain(first, stream):
            yield _sse(dict(base, choices=[{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]))
        g = stream.generation
        yield _sse(dict(base, choices=[{"index": 0, "text": "", "logprobs": None, "finish_reason": g.finish_reason}]))
        if include_usage:
            yield _sse(dict(base, choices=[], usage=_usage(g)))
        yield "data: [DONE]\n\n"
    finally:
        stream.close()


def _chain(first: str | None, stream) -> Iterator[str]:
    """The piece pulled before the headers went out, then the rest (None: the stream had ended)."""
    if first is None:
        return
    yield first
    yield from stream
