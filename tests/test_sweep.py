"""Sweeps (train/sweep.py): trials are ordinary runs, tagged, pruned from eval losses; show, promote."""

from __future__ import annotations

import json
import os

import pytest

import tiny_model as builder
from cli_run import tunelab


@pytest.mark.slow
def test_sweep_runs_trials_prunes_shows_and_promotes(workspace, tiny_model):
    from tunelab.train import manage, runs, sweep

    builder.dataset()
    sid = sweep.create(tiny_model, "tiny", 3, ["learning_rate=1e-5:1e-2:log", "lora_r=4,8"],
                       {"max_steps": 6, "eval_steps": 2, "eval_split": 0.25, "cutoff_len": 64})
    assert sweep.work(sid, log=lambda s: None) == 3
    doc = sweep.show(sid)
    assert len(doc["trials"]) == 3 and set(doc["trials"][0]) >= {"number", "run", "params", "status", "value"}
    for t in doc["trials"]:
        assert runs.status(t["run"])["status"] == t["status"] in ("completed", "pruned")
        assert sid in manage.meta(t["run"])["tags"] and runs.metrics(t["run"])  # an ordinary run, with its curve
        assert runs.config(t["run"]).training.learning_rate == pytest.approx(t["params"]["learning_rate"])
    assert doc["best"]["value"] == min(t["value"] for t in doc["trials"] if t["status"] == "completed")
    assert sweep.work(sid, log=lambda s: None) == 0  # finished: nothing runs again
    sweep.promote(sid, "sweep-best")
    proc = tunelab(workspace, "models", "list", "--json")
    assert proc.returncode == 0 and "sweep-best" in proc.stdout


@pytest.mark.slow
def test_kill_9_then_resume_finishes_without_rerunning(workspace, tiny_model):
    import os
    import signal
    import time

    from tunelab import jobs
    from tunelab.train import runs, sweep

    builder.dataset()
    sid = sweep.create(tiny_model, "tiny", 3, ["learning_rate=1e-4:1e-2:log"],
                       {"max_steps": 6, "eval_steps": 2, "eval_split": 0.25, "cutoff_len": 64}, prune="none")
    pid = sweep.launch(sid)
    deadline = time.time() + 120
    while not any(t["status"] == "completed" for t in sweep.show(sid)["trials"]):
        assert time.time() < deadline
        time.sleep(0.3)
    first = [t for t in sweep.show(sid)["trials"] if t["status"] == "completed"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    assert jobs.read_status(sweep.sweep_dir(sid))["status"] == "interrupted"
    sweep.resume(sid)
    while jobs.read_status(sweep.sweep_dir(sid))["status"] in jobs.ACTIVE:
        assert time.time() < deadline + 120
        time.sleep(0.5)
    doc = sweep.show(sid)
    assert len(doc["trials"]) == 3 and all(t["status"] == "completed" for t in doc["trials"])
    assert [t for t in doc["trials"] if t["number"] in {f["number"] for f in first}] == first  # not re-run
    assert len({t["run"] for t in doc["trials"]}) == 3 and len(runs.list_runs()) == 3  # no run made twice


@pytest.mark.slow
def test_two_workers_finish_exactly_n_trials(workspace, tiny_model):
    import subprocess
    import sys

    from tunelab.train import runs, sweep

    builder.dataset()
    sid = sweep.create(tiny_model, "tiny", 4, ["learning_rate=1e-4:1e-2:log"],
                       {"max_steps": 4, "eval_steps": 2, "eval_split": 0.25, "cutoff_len": 64}, prune="none")
    env = dict(os.environ, TUNELAB_HOME=str(workspace))
    procs = [subprocess.Popen([sys.executable, "-m", "tunelab", "sweep", "work", sid, "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    ran = [json.loads(p.communicate(timeout=240)[0])["trials_run"] for p in procs]
    assert sum(ran) == 4 and all(n >= 1 for n in ran)  # both worked, 4 between them
    doc = sweep.show(sid)
    assert len(doc["trials"]) == 4 and all(t["status"] == "completed" for t in doc["trials"])
    assert len({t["run"] for t in doc["trials"]}) == 4 and len(runs.list_runs()) == 4  # no trial run twice


def _three_queued(tiny_model: str) -> list[str]:
    """Three runs created and waiting (nothing launches them), oldest first."""
    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    builder.dataset()
    ids = []
    for _ in range(3):
        cfg = TrainConfig.for_method("lora")
        cfg.set({"model": tiny_model, "data": "tiny", "max_steps": 2, "cutoff_len": 64})
        ids.append(runs.create(cfg))
    return ids


def test_queued_runs_carry_their_position(workspace, tiny_model):
    from tunelab.train import runs

    ids = _three_queued(tiny_model)
    rows = {r["run"]: r for r in runs.list_runs()}
    assert [rows[i].get("position") for i in ids] == [1, 2, 3]


def test_cancel_and_front_reorder_the_queue(workspace, tiny_model):
    from tunelab.train import runs

    ids = _three_queued(tiny_model)
    assert tunelab(workspace, "runs", "cancel", ids[1], "--json").returncode == 0
    assert tunelab(workspace, "runs", "front", ids[2], "--json").returncode == 0
    rows = {r["run"]: r for r in runs.list_runs()}
    assert rows[ids[1]]["status"] == "stopped" and "position" not in rows[ids[1]]
    assert rows[ids[2]]["position"] == 1 and rows[ids[0]]["position"] == 2
