"""A job's pid is trusted only with the start time recorded next to it (issue 21, item 6).

After a reboot (or a long time) the pid in a status.json can belong to an unrelated process: such
a job reads as interrupted, and `runs stop` must not signal that process. Real processes here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from tunelab import jobs
from tunelab.cli import main as cli
from tunelab.train.config import TrainConfig


@pytest.fixture
def stranger():
    """An unrelated live process (its own session, as a job's would be)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _run_folder(workspace, pid: int, created: float | None) -> str:
    run_id = "r-stale"
    d = jobs.job_dir("runs", run_id)
    d.mkdir(parents=True)
    TrainConfig.for_method("lora").to_yaml(d / "config.yaml")
    jobs.write_status(d, id=run_id, status="running", created=time.time(), pid=pid, pid_created=created)
    return run_id


def test_a_reused_pid_reads_as_interrupted_and_is_not_signalled(workspace, stranger, capsys):
    real = psutil.Process(stranger.pid).create_time()
    run_id = _run_folder(workspace, stranger.pid, real - 3600.0)  # the job's process started an hour earlier
    assert cli(["runs", "show", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "interrupted"
    assert cli(["runs", "stop", run_id]) == 1  # not running any more: one line, and no signal
    assert "is not running (status: interrupted)" in capsys.readouterr().err
    time.sleep(0.3)
    assert stranger.poll() is None, "runs stop signalled a process that only shares the job's pid"


def test_the_jobs_own_process_is_running_and_stop_reaches_it(workspace, stranger, capsys):
    run_id = _run_folder(workspace, stranger.pid, psutil.Process(stranger.pid).create_time())
    assert jobs.read_status(jobs.job_dir("runs", run_id))["status"] == "running"
    assert cli(["runs", "stop", run_id]) == 0
    assert stranger.wait(timeout=10) == -15  # SIGTERM


def test_launch_and_start_record_the_process_start_time(workspace):
    proc = jobs.launch("reports", "rep-pid", ["--help"])
    st = json.loads((jobs.job_dir("reports", "rep-pid") / "status.json").read_text())
    assert st["pid"] == proc.pid
    assert st["pid_created"] == pytest.approx(psutil.Process(proc.pid).create_time(), abs=0.05)
    proc.wait(timeout=60)
    d = jobs.job_dir("runs", "r-self")
    d.mkdir(parents=True)
    jobs.write_status(d, id="r-self", status="queued", created=time.time())
    assert jobs.Job("runs", "r-self").start()
    st = jobs.read_status(d)
    assert st["pid_created"] == pytest.approx(psutil.Process().create_time(), abs=0.05)
