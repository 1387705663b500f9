"""`tunelab app`: start the dashboard."""

from __future__ import annotations

import os
import subprocess
import sys


def register(sub) -> None:
    p = sub.add_parser("app", help="start the dashboard (same as `make run`)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only). The dashboard has no "
                        "login: 0.0.0.0 lets anyone on the network read and change the workspace")
    p.set_defaults(func=run)


def run(args) -> int:
    # The launcher prints the warning for an address beyond this machine (`make run` goes through it too).
    cmd = [sys.executable, "-m", "tunelab.ui.launch", "--server.port", str(args.port),
           "--server.address", args.host, "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd, env=os.environ.copy())
