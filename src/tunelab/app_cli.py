"""`tunelab app`: start the dashboard."""

from __future__ import annotations

import os
import subprocess
import sys


def register(sub) -> None:
    p = sub.add_parser("app", help="start the dashboard (same as `make run`)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=run)


def run(args) -> int:
    cmd = [sys.executable, "-m", "tunelab.ui.launch", "--server.port", str(args.port),
           "--server.address", args.host, "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd, env=os.environ.copy())
