"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (SSE or not), POST /v1/completions.

One model per server. Generation is serialised by the backend's lock, so concurrent requests queue
instead of sharing a forward pass; the official `openai` client works against it unchanged.

Every request is bounded before any work is done on it: its body size, its text in characters
(checked before tokenising), its message count and max_tokens. Generation runs in a worker thread
with a cancel event that a client leaving or a shutdown sets, so neither waits for a long answer.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation, get_backend
from tunelab.serve.middleware import _BodyLimit, _CatchAll
from tunelab.serve.schemas import MIN_BODY_BYTES, ChatRequest, CompletionRequest, make_limits
from tunelab.serve.streaming import (
    _chat_chunks, _completion_chunks, _document_start, _error, _guarded, _in_thread, _InFlight,
    _takes_cancel, _usage, _validation_message)


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
