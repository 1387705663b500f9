"""Background jobs (training runs, evaluations, generation batches) as separate processes.

A job is a folder <workspace>/<kind>/<id>/ holding status.json, pid, job.log and whatever the job
writes (metrics.jsonl, results...). Everything the UI knows about a job comes from that folder, so
a browser refresh or a second tab re-attaches, and a job whose process died is noticed and marked
`interrupted`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json, write_json

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "stopped", "interrupted")
KINDS = ("runs", "reports", "generations", "export-jobs")
KIND_LABELS = {"runs": "run", "reports": "report", "generations": "generation", "export-jobs": "export"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def job_dir(kind: str, job_id: str) -> Path:
    return workspace.subdir(kind) / workspace.validate_name(job_id, "job id")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _dead(st: dict) -> bool:
    """Whether an active job's process is gone: running, or queued and already launched (a pid)."""
    launched = st.get("status") == "running" or (st.get("status") == "queued" and st.get("pid"))
    return bool(launched) and not pid_alive(st.get("pid"))


def read_status(d: Path) -> dict | None:
    """status.json of a job folder, with a dead process noticed and marked interrupted.

    A queued job without a pid is still being launched and is left alone.
    """
    st = read_json(d / "status.json")
    if st is None:
        return None
    if _dead(st):
        # Re-read: the process may have written its final status just now.
        st = read_json(d / "status.json") or st
        if _dead(st):
            st["error"] = st.get("error") or (
                "the process stopped without finishing (killed or crashed)" if st["status"] == "running"
                else "the process stopped before it started (killed or crashed)")
            st["status"] = "interrupted"
            write_json(d / "status.json", st)
    return st


def write_status(d: Path, **fields) -> dict:
    st = read_json(d / "status.json") or {}
    st.update(fields)
    st["updated"] = time.time()
    write_json(d / "status.json", st)
    return st


def launch(kind: str, job_id: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    """Start `python -m tunelab <argv>` detached, logging into the job folder's job.log.

    The pid goes into status.json (when the job has one) as soon as the process exists, so a job
    that dies while still `queued` is noticed; a thread waits on the process so that, once it ends,
    it does not linger as a `<defunct>` child of a long-lived parent such as the dashboard.
    """
    d = job_dir(kind, job_id)
    d.mkdir(parents=True, exist_ok=True)
    has_status = (d / "status.json").exists()
    if has_status:  # a pid left from an earlier launch (a resumed run) would read as dead
        write_status(d, pid=None)
    full_env = os.environ.copy()
    full_env.setdefault("HF_HUB_OFFLINE", "1")
    full_env["TUNELAB_HOME"] = str(workspace.home())
    if env:
        full_env.update(env)
    with open(d / "job.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunelab", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,  # survives the Streamlit script rerun / server restart
        )
    (d / "pid").write_text(str(proc.pid))
    if has_status:
        write_status(d, pid=proc.pid)
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    return proc


def stop(kind: str, job_id: str) -> dict:
    """Ask a job to stop (SIGTERM to its process group); it records `stopped` itself."""
    d = job_dir(kind, job_id)
    st = read_status(d)
    if st is None:
        raise TuneLabError(f"unknown job {job_id!r}")
    if st.get("status") not in ACTIVE:
        raise TuneLabError(f"{job_id} is not running (status: {st.get('status')})")
    pid = st.get("pid")
    if st.get("status") == "queued" or not pid_alive(pid):
        return write_status(d, status="stopped")
    # Marked before the signal: written after it, this read-modify-write could land on top of the
    # job's own final `stopped` and put back `running` (then read as interrupted once the pid is gone).
    write_status(d, stop_requested=True)
    try:
        os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
    except ProcessLookupError:
        pass
    return st


def list_jobs(kind: str) -> list[dict]:
    """Every job of a kind with its status, newest first."""
    out = []
    for d in workspace.subdir(kind).iterdir():
        st = read_status(d) if d.is_dir() else None
        if st:
            st.setdefault("id", d.name)
            out.append(st)
    return sorted(out, key=lambda s: s.get("created", 0), reverse=True)


def running() -> list[dict]:
    """Active jobs of every kind, for the sidebar."""
    return [dict(j, kind=k) for k in KINDS for j in list_jobs(k) if j.get("status") in ACTIVE]
