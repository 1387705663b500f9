"""Background jobs (training runs, evaluations, generation batches, exports) as separate processes.

A job is a folder <workspace>/<kind>/<id>/ holding status.json, pid, job.log and whatever the job
writes (metrics.jsonl, results...). Everything the UI knows about a job comes from that folder, so
a browser refresh or a second tab re-attaches.

One lifecycle for every kind:
- the core writes the folder with status `queued`, then `launch(kind, id, argv)` starts
  `python -m tunelab ...` and records its pid and start time (the only place a job's process is started);
- in that process, `with running(kind, id) as job:` owns every later state change: `running` on
  entry, `job.update(step=...)` for progress, and on exit `completed`, `failed` (with the error in
  one line), or `stopped` (SIGTERM from `stop`), always with a finish time;
- a reader (`read_status`) marks a queued or running job whose process is gone `interrupted`.
status.json carries a schema number; older files are brought up to date on read (tunelab.migrations).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypedDict

from tunelab import migrations, workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, read_json_tolerant, write_json

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "stopped", "interrupted", "pruned")  # pruned: a sweep trial cut short
KINDS = ("runs", "reports", "generations", "export-jobs", "servers", "regressions", "downloads", "sweeps")
KIND_LABELS = {"runs": "run", "reports": "report", "generations": "generation", "export-jobs": "export",
               "servers": "server", "regressions": "regression suite", "downloads": "download", "sweeps": "sweep"}
SCHEMA_KIND = "status"  # status.json's migrations in tunelab.migrations
ERROR_CHARS = 300  # an unexpected exception's line in status.json is cut here (the log has it all)


class JobStatus(TypedDict, total=False):
    """A job's status.json. Every kind writes these keys; each kind adds its own (a run's model,
    data and method; a report's models and done/total; an export's run, format, out and files;
    a batch's template and counts), which ride along untyped."""

    schema: int  # migrations applied (tunelab.migrations, kind "status")
    id: str
    status: Literal["queued", "running", "completed", "failed", "stopped", "interrupted", "pruned"]
    pid: int | None  # the job's process, recorded at launch and again when it starts running
    pid_created: float | None  # that process's start time (psutil): a reused pid is not the job's
    created: float  # when the folder was made
    launched: float  # when launch() started its process
    started: float  # when it began running
    finished: float | None  # when it reached a final status
    updated: float  # last write
    error: str | None  # one line, for failed and interrupted jobs
    stop_requested: bool
    step: int
    max_steps: int | None
    progress: str  # "3/10", shown next to the status
    done: int
    total: int


class Stopped(BaseException):
    """Raised in a job's process when it is asked to stop (SIGTERM from `stop`).

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """


def new_id(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def job_dir(kind: str, job_id: str) -> Path:
    return workspace.subdir(kind) / workspace.validate_name(job_id, "job id")


def process_created(pid: int) -> float | None:
    """When process pid started (psutil's create_time), or None when there is no such process."""
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def pid_alive(pid: int | None, created: float | None = None) -> bool:
    """Whether process pid runs (a zombie does not); with created, only if it is the process started then.

    After a reboot or a long time a pid is reused by an unrelated process: the start time recorded
    with the pid (`pid_created` in status.json) tells them apart. A status.json written before that
    key existed is judged by the pid alone.
    """
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if created is not None and abs(proc.create_time() - float(created)) > 0.05:  # stable to the clock tick
            return False
        return proc.status() != psutil.STATUS_ZOMBIE  # a zombie child of ours is dead for our purposes
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:  # it exists but cannot be read: only a pid without a start time is trusted
        return created is None


def job_alive(st: dict) -> bool:
    """Whether the process status.json names (pid and, when recorded, its start time) is this job's and runs."""
    return pid_alive(st.get("pid"), st.get("pid_created"))


def _lock(d: Path):
    # status.json is replaced by rename, so the lock lives in a file of its own. It makes each
    # read-modify-write whole: a stop request and the job's own final write cannot undo each other.
    # Never nest: a second flock on the same file from this process would wait for ever.
    return locked(d / ".status.lock")


def _read(d: Path) -> JobStatus | None:
    st = read_json_tolerant(d / "status.json")  # an empty or garbage file: one warning, read as missing
    if st is not None and not isinstance(st, dict):
        from tunelab.jsonio import warn_damaged

        warn_damaged(d / "status.json", "not a JSON object")
        return None
    return None if st is None else migrations.migrate(SCHEMA_KIND, st)


def _write(d: Path, st: dict) -> None:
    st["updated"] = time.time()
    write_json(d / "status.json", migrations.stamp(SCHEMA_KIND, st))


def _dead(st: dict) -> bool:
    """Whether an active job's process is gone: running, or queued and already launched (a pid)."""
    launched = st.get("status") == "running" or (st.get("status") == "queued" and st.get("pid"))
    return bool(launched) and not job_alive(st)


def read_status(d: Path) -> JobStatus | None:
    """status.json of a job folder, with a dead process noticed and marked interrupted.

    A queued job without a pid is still being launched and is left alone.
    """
    st = _read(d)
    if st is None:
        return None
    if _dead(st):
        with _lock(d):  # re-read: the process may have written its final status just now
            st = _read(d) or st
            if _dead(st):
                st["error"] = st.get("error") or (
                    "the process stopped without finishing (killed or crashed)" if st["status"] == "running"
                    else "the process stopped before it started (killed or crashed)")
                st["status"] = "interrupted"
                _write(d, st)
    return st


def mark_pruned(d: Path) -> JobStatus:
    """A sweep's verdict on a run it stopped: `pruned` (its curve and checkpoints stay)."""
    return write_status(d, status="pruned")


def write_status(d: Path, **fields) -> JobStatus:
    """Merge fields into status.json (created if missing). Status changes belong to `running`."""
    with _lock(d):
        st = _read(d) or {}
        st.update(fields)
        _write(d, st)
    return st


def launch(kind: str, job_id: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    """Start `python -m tunelab <argv>` detached, logging into the job folder's job.log.

    The only place a job's process is started. The pid and start time go into status.json (a
    queued one is written if the folder has none) as soon as the process exists, so a job that
    dies while still `queued` is noticed; a thread waits on the process so that, once it ends, it
    does not linger as a `<defunct>` child of a long-lived parent such as the dashboard.
    """
    d = job_dir(kind, job_id)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "status.json").exists():  # a pid left from an earlier launch (a resumed run) would read as dead
        write_status(d, pid=None, pid_created=None)
    else:
        write_status(d, id=job_id, status="queued", created=time.time(), pid=None, pid_created=None)
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
    write_status(d, pid=proc.pid, pid_created=process_created(proc.pid), launched=time.time())
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    return proc


def error_line(exc: BaseException) -> str:
    """What status.json says about a failure: a TuneLabError's sentence, else a short repr."""
    text = str(exc).strip()
    if not isinstance(exc, TuneLabError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line if isinstance(exc, TuneLabError) else line[:ERROR_CHARS]


class Job:
    """A job seen from its own process: the one writer of its status changes.

    Usually made by `running`; the accelerate wrapper of a run uses one directly.
    """

    def __init__(self, kind: str, job_id: str, owner: bool = True, redact: Callable[[str], str] | None = None):
        self.kind, self.id = kind, job_id
        self.dir = job_dir(kind, job_id)
        self.owner = owner  # False in the other ranks of a distributed run: they write nothing
        self.status: str | None = None  # the final status, once recorded
        self.outcome: str | None = None  # what a normal end records ("completed" when left None)
        self._redact = redact or (lambda s: s)
        self._term = False
        self._closing = False

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (SIGTERM)."""
        return self._term

    def start(self) -> bool:
        """queued -> running with this process's pid; False when it was stopped while queued."""
        if not self.owner:
            return True
        with _lock(self.dir):
            st = _read(self.dir) or {}
            # `stop` marks a launched, still queued job stopped and leaves its pid: ours. A stopped
            # job run again by hand (another pid) starts normally.
            if st.get("status") == "stopped" and st.get("pid") == os.getpid():
                self.status = "stopped"
                return False
            st.update(status="running", pid=os.getpid(), pid_created=process_created(os.getpid()), started=time.time(),
                      finished=None, error=None, stop_requested=False)
            _write(self.dir, st)
        return True

    def update(self, **fields) -> None:
        """Record progress (step, done, total, progress...); the status itself changes on start and end."""
        if "status" in fields:
            raise ValueError("a job's status changes only through its lifecycle (start, finish)")
        if self.owner:
            write_status(self.dir, **fields)

    def finish(self, status: str, error: str | None = None, **fields) -> None:
        """Record a final status now, with the finish time (and error, one line)."""
        self.status = status
        if self.owner:
            write_status(self.dir, status=status, finished=time.time(),
                         error=self._redact(error) if error else None, **fields)


class running:  # lower case: read as `with jobs.running(kind, id) as job:`
    """The context a job's process runs in; it owns every state change of the job.

    On entry the job is `running` (unless start=False: a queued run starts itself once its turn
    comes, with job.start()). SIGTERM either raises Stopped in the body (on_term="raise": an
    evaluation, a batch, an export) or only sets job.stopping (on_term="flag": training finishes
    its step and checkpoints). On exit: `completed` (or job.outcome), `stopped` for Stopped, which
    is swallowed (the caller reads job.status) and for Ctrl-C, which goes on, and `failed` with the
    error in one line for any other exception, which goes on too. Every final status gets `finished`.

    Args:
        kind, job_id: the job folder.
        start: mark the job running on entry.
        on_term: "raise" or "flag", what SIGTERM does (in the main thread only).
        owner: False in a distributed run's other ranks: they write nothing.
        redact: applied to a recorded error (an endpoint key must not land in status.json).
        on_stop: called when SIGTERM arrives (a log line).
    """

    def __init__(self, kind: str, job_id: str, *, start: bool = True, on_term: str = "raise",
                 owner: bool = True, redact: Callable[[str], str] | None = None,
                 on_stop: Callable[[], None] | None = None):
        if on_term not in ("raise", "flag"):
            raise ValueError(f"on_term must be 'raise' or 'flag', not {on_term!r}")
        self.job = Job(kind, job_id, owner=owner, redact=redact)
        self._start, self._on_term, self._on_stop = start, on_term, on_stop
        self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        self.job._term = True
        if self._on_stop:
            self._on_stop()
        if self._on_term == "raise" and not self.job._closing:
            raise Stopped()

    def __enter__(self) -> Job:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        if self._start and not self.job.start():
            self._restore()
            label, job_id = KIND_LABELS.get(self.job.kind, "job"), self.job.id
            raise TuneLabError(f"{label} {job_id} was stopped before it started")
        return self.job

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def __exit__(self, et, exc, tb) -> bool:
        job = self.job
        job._closing = True  # from here a SIGTERM only sets the flag: the final write must land
        try:
            if et is None:
                if job.status is None:
                    job.finish(job.outcome or "completed")
                return False
            if issubclass(et, (Stopped, KeyboardInterrupt)):
                job.finish("stopped")
                return issubclass(et, Stopped)
            job.finish("failed", error=error_line(exc))
            return False
        finally:
            self._restore()


def stop(kind: str, job_id: str) -> JobStatus:
    """Ask a job to stop (SIGTERM to its process group); a running job records `stopped` itself.

    A queued job is marked stopped here, and its process, if launched, gets the signal too.
    """
    d = job_dir(kind, job_id)
    st = read_status(d)
    if st is None:
        raise TuneLabError(f"unknown job {job_id!r}")
    if st.get("status") not in ACTIVE:
        raise TuneLabError(f"{job_id} is not running (status: {st.get('status')})")
    with _lock(d):
        st = _read(d) or st
        if st.get("status") == "queued" or not job_alive(st):
            st.update(status="stopped", stop_requested=True, finished=time.time())
        else:
            st["stop_requested"] = True  # marked before the signal, under the lock the job's own writes take
        _write(d, st)
    pid = st.get("pid")
    if job_alive(st):  # never a process that only shares the pid
        try:
            os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
        except ProcessLookupError:
            pass
    return st


def list_jobs(kind: str) -> list[JobStatus]:
    """Every job of a kind with its status, newest first."""
    out = []
    for d in workspace.subdir(kind).iterdir():
        st = read_status(d) if d.is_dir() else None
        if st:
            st.setdefault("id", d.name)
            out.append(st)
    return sorted(out, key=lambda s: s.get("created", 0), reverse=True)


def active_jobs() -> list[JobStatus]:
    """Active jobs of every kind, for the sidebar."""
    return [dict(j, kind=k) for k in KINDS for j in list_jobs(k) if j.get("status") in ACTIVE]
