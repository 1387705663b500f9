"""Servers started from the dashboard: `tunelab serve MODEL --job ID` as background jobs (workspace/servers/<id>).

The job folder holds status.json (model, host, port, url, `ready` once the server listens) and the
API key in a file of its own (mode 0600: never on a command line, where `ps` would show it, and never
in status.json). A server runs until it is stopped; `jobs.stop` sends SIGTERM and the process records
`stopped` itself. Everything here reads the folder, so a browser refresh or a second tab re-attaches.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from tunelab import jobs
from tunelab.errors import TuneLabError

JOB_KIND = "servers"
HOST = "127.0.0.1"  # the dashboard serves on this machine only; `tunelab serve --host` widens it by hand
DEFAULT_PORT = 8000
KEY_FILE = "api_key"
BACKENDS = {"auto": "auto", "transformers": "local", "llama.cpp": "llamacpp"}  # Playground engine -> --backend


def new_api_key() -> str:
    """A fresh random API key (tl- and 32 URL-safe characters)."""
    return "tl-" + secrets.token_urlsafe(24)


def mask(key: str) -> str:
    """A key as it may be shown on screen: its first 3 and last 4 characters."""
    return key[:3] + "•" * 8 + key[-4:] if len(key) > 10 else "•" * len(key)


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """`preferred` when nothing listens there and no server of ours claimed it, else a port the system picks."""
    claimed = {s.get("port") for s in list_servers()}
    if preferred not in claimed and port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(model: str, port: int | None = None, api_key: str | None = None, engine: str = "auto") -> str:
    """Launch `tunelab serve MODEL` on 127.0.0.1 as a background job; returns its id.

    Args:
        model: a MODEL (registry name, path, .gguf, run id).
        port: the port (default: 8000 when free, else any free one).
        api_key: the key clients must send (default: a new random one).
        engine: a Playground engine ("auto", "transformers", "llama.cpp").
    """
    from tunelab.models.registry import resolve

    model = (model or "").strip()
    if not model:
        raise TuneLabError("no model given")
    resolve(model)  # an unknown model fails here, in one sentence, before a process starts
    if engine not in BACKENDS:
        raise TuneLabError(f"unknown engine {engine!r}: expected one of {', '.join(BACKENDS)}")
    port = free_port() if port is None else int(port)
    if not 1024 <= port <= 65535:
        raise TuneLabError(f"port must be between 1024 and 65535, got {port}")
    if any(s.get("port") == port for s in list_servers()) or not port_free(port):
        raise TuneLabError(f"port {port} is already in use: pick another one")
    api_key = (api_key or "").strip() or new_api_key()
    job_id = jobs.new_id("serve")
    d = jobs.job_dir(JOB_KIND, job_id)
    d.mkdir(parents=True)
    key_path = d / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(api_key + "\n")
    url = f"http://{HOST}:{port}/v1"
    jobs.write_status(d, id=job_id, status="queued", created=time.time(), model=model, host=HOST, port=port,
                      url=url, engine=engine, ready=False, progress="")
    jobs.launch(JOB_KIND, job_id, ["serve", model, "--host", HOST, "--port", str(port), "--api-key-file",
                                   str(key_path), "--backend", BACKENDS[engine], "--job", job_id])
    return job_id


def api_key(job_id: str) -> str:
    """The API key of a server started here."""
    try:
        return (jobs.job_dir(JOB_KIND, job_id) / KEY_FILE).read_text().strip()
    except OSError:
        raise TuneLabError(f"server {job_id} has no API key file") from None


def list_servers(active_only: bool = True) -> list[dict]:
    """Servers started here, newest first, read from disk (a dead process reads as interrupted).

    Returns:
        status.json of each: id, status, model, host, port, url, ready, pid, created, error.
    """
    return [s for s in jobs.list_jobs(JOB_KIND) if not active_only or s.get("status") in jobs.ACTIVE]


def server(job_id: str) -> dict:
    st = jobs.read_status(jobs.job_dir(JOB_KIND, job_id))
    if st is None:
        raise TuneLabError(f"unknown server {job_id!r}")
    return st


def stop_server(job_id: str) -> dict:
    """Ask a server to stop (SIGTERM); it records `stopped` itself once its requests are cut."""
    return jobs.stop(JOB_KIND, job_id)


def wait_stopped(job_id: str, timeout: float = 30) -> dict:
    """Wait until a stopped server's process is gone; returns its final status."""
    deadline = time.time() + timeout
    while True:
        st = server(job_id)
        if st.get("status") not in jobs.ACTIVE and not jobs.job_alive(st):
            return st
        if time.time() > deadline:
            raise TuneLabError(f"server {job_id} did not stop within {timeout:.0f} s")
        time.sleep(0.2)


def snippet(url: str, model: str) -> str:
    """Python that calls the server with the `openai` client; the key comes from the environment."""
    return (
        "import os\n"
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}", api_key=os.environ["TUNELAB_API_KEY"])\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        '    messages=[{"role": "user", "content": "Hello!"}],\n'
        ")\n"
        "print(reply.choices[0].message.content)\n"
    )
