"""`tunelab serve MODEL`: the OpenAI-compatible API on host:port."""

from __future__ import annotations

import argparse
import socket
import sys

from tunelab.errors import TuneLabError

BACKENDS = ("auto", "local", "llamacpp")


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model with an OpenAI-compatible API")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on every request")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: llama.cpp for GGUF models when installed, else transformers")
    p.set_defaults(func=cmd_serve)


def _check_port(host: str, port: int) -> None:
    """Fail with one sentence before loading a model when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise TuneLabError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from tunelab.serve.app import create_app

    _check_port(args.host, args.port)
    spec = args.model if args.backend == "auto" else f"{args.backend}:{args.model}"
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    app = create_app(spec, api_key=args.api_key, model_id=args.model)
    auth = "an API key" if args.api_key else "no API key"
    print(f"serving {args.model} at http://{args.host}:{args.port}/v1 ({auth})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
