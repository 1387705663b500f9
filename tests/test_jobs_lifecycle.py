"""One job lifecycle (issue 12): `jobs.launch` records the pid, `jobs.running` in the job's process
owns every state change, a dead process reads as interrupted, and status.json carries a schema
version with append-only named migrations."""

from __future__ import annotations

import functools
import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import tiny_model as builder
from polling import wait_for

from tunelab import jobs, migrations
from tunelab.data import schema, store
from tunelab.errors import TuneLabError

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "samples" / "seeds.jsonl"


_wait = functools.partial(wait_for, timeout=120, every=0.1)


def _tunelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def _settled(d: Path):
    """The job's status once it is no longer queued or running."""
    return _wait(lambda: (s := jobs.read_status(d)) and s.get("status") not in jobs.ACTIVE and s)


@pytest.fixture
def silent_endpoint():
    """An OpenAI-style URL whose server takes the connection and never answers (a hung endpoint)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


def _hung_batch(endpoint: str) -> tuple[Path, dict]:
    """A background generation batch, running and stuck waiting for the endpoint."""
    out = _tunelab("generate", "--seeds", str(SEEDS), "--n", "3", "--no-accept", "--backend", f"openai:{endpoint}",
                   "--detach", "--json")
    assert out.returncode == 0, out.stderr
    d = jobs.job_dir("generations", json.loads(out.stdout)["batch"])
    st = _wait(lambda: (s := jobs.read_status(d)) and s.get("status") == "running"
               and "loading" in (s.get("progress") or "") and s)
    return d, st


# ------------------------------------------------------------------ failed


def test_child_that_raises_is_failed_with_one_line(workspace):
    d = jobs.job_dir("reports", "report-bug")
    jobs.write_status(d, status="queued", created=time.time())
    script = """
        from tunelab import jobs
        with jobs.running("reports", "report-bug") as job:
            job.update(step=1)
            raise ValueError("bad value\\nand a second line of detail")
    """
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                           timeout=120, check=False)
    assert child.returncode == 1 and "Traceback" in child.stderr  # the whole traceback is the log's
    st = jobs.read_status(d)
    assert st["status"] == "failed" and st["error"] == "ValueError: bad value" and st["step"] == 1
    assert st["finished"] >= st["started"] and st["schema"] == migrations.version("status")

    # A user error is recorded as its own sentence, and goes on to the caller (the CLI prints it).
    d2 = jobs.job_dir("reports", "report-user")
    with pytest.raises(TuneLabError), jobs.running("reports", "report-user"):
        raise TuneLabError("dataset 'x' has no records")
    st = jobs.read_status(d2)
    assert (st["status"], st["error"]) == ("failed", "dataset 'x' has no records") and st["finished"]


def test_report_whose_model_vanished_fails_in_one_line_with_finish_time(workspace, tiny_model, tmp_path):
    from tunelab.evals import evaluate

    model = tmp_path / "gone-model"
    shutil.copytree(tiny_model, model)
    store.commit("qa", schema.to_table([{"id": "r0", "instruction": "Hi?", "output": "Hello."}]), "import")
    rid = evaluate.create_report(evaluate.EvalConfig(models=[str(model)], data="qa", max_new_tokens=4))
    shutil.rmtree(model)
    out = _tunelab("reports", "run", rid)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    st = jobs.read_status(jobs.job_dir("reports", rid))
    assert st["status"] == "failed" and st["error"] == out.stderr.strip().removeprefix("error: ")
    assert st["finished"] >= st["started"]


# ------------------------------------------------------------------ stopped


def test_sigterm_stops_a_generation_batch(workspace, silent_endpoint):
    d, st = _hung_batch(silent_endpoint)
    jobs.stop("generations", d.name)  # SIGTERM to the batch's process group
    st = _settled(d)
    # Before: SIGTERM killed the batch outright, and it read as `interrupted`.
    assert st["status"] == "stopped" and st["error"] is None and st["finished"] >= st["started"]
    _wait(lambda: not jobs.pid_alive(st["pid"]))
    assert f"error: generation batch {d.name} was stopped" in (d / "job.log").read_text()
    assert jobs.read_status(d)["status"] == "stopped"  # not re-read as interrupted once the pid is gone


def test_job_stopped_while_queued_never_starts_running(workspace):
    d = jobs.job_dir("export-jobs", "export-early")
    # What `stop` leaves for a launched job still queued: `stopped`, with the job's own pid.
    jobs.write_status(d, status="stopped", pid=os.getpid(), stop_requested=True, created=time.time())
    with pytest.raises(TuneLabError, match="^export export-early was stopped before it started$"), \
            jobs.running("export-jobs", "export-early"):
        raise AssertionError("the body must not run")
    assert jobs.read_status(d)["status"] == "stopped"
    # Run again by hand (another process), a stopped job starts normally.
    jobs.write_status(d, pid=1)
    with jobs.running("export-jobs", "export-early") as job:
        assert jobs.read_status(d)["status"] == "running"
    assert job.status == "completed" and jobs.read_status(d)["pid"] == os.getpid()


# ------------------------------------------------------------------ interrupted


def test_kill9_of_a_running_batch_reads_as_interrupted(workspace, silent_endpoint):
    d, st = _hung_batch(silent_endpoint)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    st = _settled(d)
    assert st["status"] == "interrupted" and st["error"] == "the process stopped without finishing (killed or crashed)"


def test_kill9_of_a_run_waiting_its_turn_reads_as_interrupted(workspace, tiny_model):
    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    builder.dataset()
    # Another run holds the queue: this test's process stands in for its live worker.
    jobs.write_status(jobs.job_dir("runs", "run-busy"), status="running", pid=os.getpid(), created=time.time())
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny", "max_steps": 2, "batch_size": 2, "cutoff_len": 64})
    run_id = runs.create(cfg)
    pid = runs.start(run_id)
    try:
        assert runs.status(run_id)["pid"] == pid  # recorded at launch
        time.sleep(3)  # the worker is up and waiting in the queue
        assert runs.status(run_id)["status"] == "queued"
    finally:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    st = _wait(lambda: (s := runs.status(run_id))["status"] != "queued" and s)
    # Before: a queued job whose process died stayed `queued` for ever.
    assert st["status"] == "interrupted" and st["error"] == "the process stopped before it started (killed or crashed)"
    assert [r["status"] for r in runs.list_runs() if r["run"] == run_id] == ["interrupted"]


# ------------------------------------------------------------------ schema and migrations


def test_old_status_without_schema_reads_through_migrations(workspace):
    d = jobs.job_dir("runs", "run-old")
    d.mkdir(parents=True)
    old = {"status": "failed", "step": 3, "max_steps": 10, "pid": 999999, "created": 1.0,
           "error": "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"}
    (d / "status.json").write_text(json.dumps(old))
    st = jobs.read_status(d)
    assert st["schema"] == migrations.version("status") >= 1
    assert st["error"] == "ValueError: boom"  # one line, as every job writes it now
    assert {k: st[k] for k in ("status", "step", "max_steps", "pid", "created")} == {
        "status": "failed", "step": 3, "max_steps": 10, "pid": 999999, "created": 1.0}
    assert jobs.list_jobs("runs")[0]["id"] == "run-old"
    jobs.write_status(d, note="x")  # the next write stores the current shape
    assert json.loads((d / "status.json").read_text())["schema"] == migrations.version("status")


def test_migrations_are_named_append_only_and_generic():
    assert migrations.names("status")[0] == "one-line-error"
    kind = "test-kind-lifecycle"
    migrations.migration(kind, "add-a")(lambda doc: dict(doc, a=1))
    migrations.migration(kind, "a-to-b")(lambda doc: dict({k: v for k, v in doc.items() if k != "a"}, b=doc["a"] + 1))
    with pytest.raises(ValueError):
        migrations.migration(kind, "add-a")(lambda doc: doc)
    assert migrations.migrate(kind, {"x": 0}) == {"x": 0, "b": 2, "schema": 2}
    assert migrations.migrate(kind, {"x": 0, "a": 5, "schema": 1}) == {"x": 0, "b": 6, "schema": 2}
    newer = {"x": 0, "schema": 7}  # written by a later TuneLab: read as it is
    assert migrations.migrate(kind, newer) is newer
    assert migrations.migrate("no-migrations-yet", {"x": 0}) == {"x": 0, "schema": 0}


# ------------------------------------------------------------------ one place for each step


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def test_status_changes_and_launches_live_in_jobs_only():
    """Outside jobs.py a job is only ever created `queued`; pages and ui/ never start a job's process."""
    changes, launches = [], []
    for path in sorted((ROOT / "src/tunelab").rglob("*.py")):
        if path.name == "jobs.py":
            continue
        where = path.relative_to(ROOT).as_posix()
        for call in _calls(path):
            if call.func.attr == "write_status":
                status = [kw.value for kw in call.keywords if kw.arg == "status"]
                if status and not (isinstance(status[0], ast.Constant) and status[0].value == "queued"):
                    changes.append(f"{where}:{call.lineno}")
            if call.func.attr == "launch" and isinstance(call.func.value, ast.Name) and call.func.value.id == "jobs":
                launches.append(where)
    assert changes == []
    assert sorted(set(launches)) == ["src/tunelab/evals/evaluate.py", "src/tunelab/evals/regress/__init__.py",
                                     "src/tunelab/models/download.py",
                                     "src/tunelab/serve/manage.py",
                                     "src/tunelab/synth/generate.py", "src/tunelab/train/export.py",
                                     "src/tunelab/train/runs.py", "src/tunelab/train/sweep.py"]
    # The Generate page used to write `generate --job ID --no-accept --json` itself.
    for path in [*(ROOT / "pages").glob("*.py"), *(ROOT / "src/tunelab/ui").glob("*.py")]:
        strings = {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Constant)}
        assert not {"--job", "--worker"} & strings, path


def test_run_output_and_report_config_read_through_migrations(workspace):
    """output.json and a report's config.json carry a schema and old files are migrated on read."""
    from tunelab import migrations
    from tunelab.models import run_output

    run = workspace / "runs" / "old-run"
    run.mkdir(parents=True)
    (run / "output.json").write_text('{"base": "smollm2-135m-instruct", "method": "lora"}')  # schema 0
    doc = run_output.read(run)
    assert doc["adapter_dir"] == "adapter" and doc["step"] == 0
    assert doc["schema"] == migrations.version("output") >= 1
    assert migrations.names("report") and migrations.migrate("report", {"models": ["a"]})["meta"] == {}
    fresh = run_output.write(run, "smollm2-135m-instruct", "lora", 3)
    assert fresh["schema"] == migrations.version("output")
