"""Errors, server-sent events and running generation in worker threads while watching the client."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from typing import AsyncIterator, Callable, Iterator

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunelab.errors import TuneLabError
from tunelab.models.generation import Generation

log = logging.getLogger("uvicorn.error")


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
