"""A tiny OpenAI-compatible chat server on 127.0.0.1 whose replies a test writes as a function.

Real HTTP through TuneLab's real openai backend: for answer models with known answers and for judges
with known habits (one that always answers "A"), so judge and vote logic meet a real endpoint.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator


@contextlib.contextmanager
def serve(reply: Callable[[str, str], str], auth: list[str] | None = None,
          fail_first: int = 0) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Serve reply(model, last user message) -> text; yields (base URL ending in /v1, [(model, prompt)] asked).

    auth, when given, receives every request's Authorization header ("" when none was sent).
    fail_first: answer the first that many POSTs with 503 (an overloaded server); they are not in `asked`.
    """
    asked: list[tuple[str, str]] = []
    failed: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # keep the test output clean
            pass

        def do_GET(self):
            self._record()
            self._send({"data": [{"id": "bot"}]})

        def do_POST(self):
            self._record()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if len(failed) < fail_first:
                failed.append(1)
                return self._send({"error": {"message": "overloaded, try again"}}, 503)
            prompt = body["messages"][-1]["content"]
            asked.append((body.get("model", ""), prompt))
            text = reply(body.get("model", ""), prompt)
            self._send({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}})

        def _record(self):
            if auth is not None:
                auth.append(self.headers.get("Authorization") or "")

        def _send(self, obj, status=200):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", asked
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def hanging() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts every connection and never answers; yields (base URL, accepted sockets)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept():
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def answers(model: str, prompt: str) -> str:
    """Two answer 'models': short-bot answers in a word, long-bot at length (the same gist)."""
    gist = prompt.strip().rstrip("?.").split()[-1]
    if model == "long-bot":
        return f"Here is a careful, complete answer about {gist}, with every detail you may need."
    return f"{gist}."


def make_report(n: int = 6, name: str = "qa") -> str:
    """A finished comparison of short-bot and long-bot on n questions, through real HTTP; returns its id.

    Call inside a workspace (TUNELAB_HOME set) and keep no server running afterwards: the answers are in.
    """
    from tunelab.data import schema, store
    from tunelab.evals import evaluate
    from tunelab.models import registry

    store.commit(name, schema.to_table([{"instruction": f"What is item {i} called, number {i}?", "input": "",
                                         "output": f"number {i}"} for i in range(n)]), "import")
    with serve(answers) as (url, _):
        for bot in ("short-bot", "long-bot"):
            registry.add_model(bot, url)
        rid = evaluate.create_report(evaluate.EvalConfig(models=["short-bot", "long-bot"], data=name))
        evaluate.run_report(rid)
    from tunelab.models.generation import clear_cache

    clear_cache()  # backends are cached by name; the next report's short-bot lives at another port
    return rid
