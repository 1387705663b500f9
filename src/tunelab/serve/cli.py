"""`tunelab serve MODEL`: the OpenAI-compatible API on host:port."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys
import threading
import time
from pathlib import Path

from tunelab.errors import TuneLabError

BACKENDS = ("auto", "local", "llamacpp")
KEY_ENV = "TUNELAB_API_KEY"
# After SIGTERM, running generations stop at their next token; a request still open after this is cut.
SHUTDOWN_GRACE_S = 3


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model with an OpenAI-compatible API")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help=f"require `Authorization: Bearer KEY` on every request (visible in `ps`: prefer --api-key-file or ${KEY_ENV})")
    p.add_argument("--api-key-file", default=None, metavar="FILE", help="read the API key from the first line of FILE")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: llama.cpp for GGUF models when installed, else transformers")
    p.add_argument("--max-tokens-limit", type=_positive, default=None, metavar="N",
                   help="the most max_tokens a request may ask for (default and ceiling: the model's context)")
    p.add_argument("--max-prompt-chars", type=_positive, default=None, metavar="N",
                   help="the most characters of text in one request (default: the model's context x 8)")
    p.add_argument("--max-messages", type=_positive, default=None, metavar="N",
                   help="the most messages (or completion prompts) in one request (default 512)")
    p.add_argument("--insecure-no-key", action="store_true",
                   help="serve on a --host other than loopback without an API key (refused otherwise)")
    p.add_argument("--job", help=argparse.SUPPRESS)  # internal: the dashboard's server job to report into
    p.set_defaults(func=cmd_serve)


def _check_port(host: str, port: int) -> None:
    """Fail with one sentence before loading a model when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise TuneLabError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None, insecure_no_key: bool = False) -> None:
    """Refuse, in one line, a server other machines can reach that answers anyone (no API key)."""
    if not api_key and not insecure_no_key and not is_loopback(host):
        raise TuneLabError(f"--host {host} lets other machines reach the server, and it has no API key: give one "
                           f"(--api-key-file FILE or ${KEY_ENV}), or pass --insecure-no-key to serve anyone")


def resolve_api_key(args: argparse.Namespace) -> tuple[str | None, str]:
    """The API key and where it came from: --api-key, else --api-key-file, else $TUNELAB_API_KEY, else none."""
    if args.api_key:
        return args.api_key, "--api-key"
    if args.api_key_file:
        path = Path(args.api_key_file)
        try:
            with open(path, "rb") as f:
                head = f.read(4096)  # a key is one short line: never read a whole (or endless) file
            lines = head.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TuneLabError(f"cannot read the API key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise TuneLabError(f"the API key file {path} is empty")
        return key, f"the file {path}"
    key = os.environ.get(KEY_ENV, "").strip()
    return (key, f"${KEY_ENV}") if key else (None, "")


def cmd_serve(args: argparse.Namespace) -> None:
    if not getattr(args, "job", None):
        return _serve(args)
    from tunelab import jobs
    from tunelab.serve.manage import JOB_KIND

    # The job owns the status: running while loading and serving, stopped after SIGTERM (uvicorn
    # captures it while serving and raises it again once it has shut down), failed with one line.
    with jobs.running(JOB_KIND, args.job) as job:
        url = f"http://{args.host}:{args.port}/v1"
        _serve(args, on_ready=lambda: job.update(ready=True, progress=url))


def _serve(args: argparse.Namespace, on_ready=None) -> None:
    import uvicorn

    from tunelab.serve.app import create_app

    api_key, key_source = resolve_api_key(args)
    check_exposure(args.host, api_key, getattr(args, "insecure_no_key", False))
    _check_port(args.host, args.port)
    spec = args.model if args.backend == "auto" else f"{args.backend}:{args.model}"
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    app = create_app(spec, api_key=api_key, model_id=args.model, max_tokens_limit=args.max_tokens_limit,
                     max_prompt_chars=args.max_prompt_chars, max_messages=args.max_messages)
    auth = f"an API key from {key_source}" if api_key else "no API key"
    lim = app.state.limits
    print(f"serving {args.model} at http://{args.host}:{args.port}/v1 ({auth}; at most {lim.max_tokens} new tokens, "
          f"{lim.max_prompt_chars} characters and {lim.max_messages} messages a request)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    server = _server(config, app.state.stop_generation)
    if on_ready:
        threading.Thread(target=_announce, args=(server, on_ready), name="ready", daemon=True).start()
    server.run()


def _announce(server, on_ready) -> None:
    """Call on_ready once uvicorn listens (its `started` flag), unless it is shutting down first."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    on_ready()


def _server(config, stop_generation):
    """uvicorn's server, whose exit signal also stops every running generation at its next token.

    uvicorn alone waits for open requests to finish, and a long generation holds one for minutes.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            try:  # a signal handler must not take locks the interrupted loop may hold: run it on the loop
                asyncio.get_running_loop().call_soon_threadsafe(stop_generation)
            except RuntimeError:
                stop_generation()

    return Server(config)
