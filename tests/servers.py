"""Start real `tunelab` server processes on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model: str, workdir: Path, api_key: str | None = None, timeout: float = 180) -> Iterator[tuple[str, Path]]:
    """`tunelab serve MODEL` on a free port; yields (base URL ending in /v1, log file path)."""
    port = free_port()
    (workdir / "ws").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TUNELAB_HOME=str(workdir / "ws"), HF_HUB_OFFLINE="1")
    log_path = workdir / "serve.log"
    argv = [sys.executable, "-m", "tunelab", "serve", model, "--port", str(port)]
    if api_key:
        argv += ["--api-key", api_key]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.time() + timeout
    try:
        while True:
            try:
                if httpx.get(f"{base}/models", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
