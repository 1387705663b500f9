"""ASGI wrappers around the app: a body size limit and one JSON error for anything unexpected."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException

from tunelab.serve.streaming import _error

log = logging.getLogger("uvicorn.error")


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
