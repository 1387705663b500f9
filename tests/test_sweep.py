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
    # Kill the worker the moment the second trial's run folder appears: between writing it and launching it.
    # CI once caught it there by chance and the resumed sweep made a fourth run.
    runs_dir = workspace / "runs"
    while len([d for d in runs_dir.glob("run-*") if (d / "config.yaml").exists()]) < 2:
        assert time.time() < deadline
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    first = [t for t in sweep.show(sid)["trials"] if t["status"] == "completed"]
    assert len(first) == 1
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
    assert sorted(d.name for d in runs_dir.glob("run-*")) == sorted(t["run"] for t in doc["trials"])  # no orphan


@pytest.mark.slow
@pytest.mark.parametrize("left", ["never launched", "its process killed", "half written"])
def test_resume_finishes_the_dead_workers_own_run(workspace, tiny_model, left):
    """A worker killed while its trial's run was being made: resume uses that run, makes no second one."""
    import socket
    import subprocess
    import sys

    from tunelab import jobs
    from tunelab.train import runs, sweep

    builder.dataset()
    sid = sweep.create(tiny_model, "tiny", 2, ["learning_rate=1e-4:1e-2:log"],
                       {"max_steps": 4, "eval_steps": 2, "eval_split": 0.25, "cutoff_len": 64}, prune="none")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = sweep.load_study(sid)
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    run_id = jobs.new_id("run")
    trial.set_user_attr("run", run_id)
    spec = json.loads((sweep.sweep_dir(sid) / "spec.json").read_text())
    if left == "half written":
        (workspace / "runs" / run_id).mkdir(parents=True)
        (workspace / "runs" / run_id / "config.yaml").write_text("model: x\n")
    else:
        from tunelab.train import recipe
        from tunelab.train.config import TrainConfig

        given = dict(spec["settings"], model=spec["model"], data=spec["data"], **sweep.suggest(trial, spec["params"]))
        cfg = TrainConfig.for_method("lora")
        cfg.set(given)
        recipe.apply(cfg, set(given))
        runs.create(cfg, run_id=run_id)
        if left == "its process killed":
            jobs.write_status(runs.run_dir(run_id), pid=dead.pid)
    # trial 0's run is adopted and one more runs; a half-written folder is dropped and trial 0 retried
    assert sweep.work(sid, log=lambda s: None) == (2 if left == "half written" else 1)
    doc = sweep.show(sid)
    counted = [t for t in doc["trials"] if t["status"] == "completed"]
    assert len(counted) == 2
    folders = sorted(d.name for d in (workspace / "runs").glob("run-*"))
    assert folders == sorted(t["run"] for t in counted)  # every folder is a counted trial's run, none twice
    assert (run_id in folders) == (left != "half written")  # a folder runs.create never finished is not kept


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


def _trial(number: int, run: str, value: float, status: str = "completed") -> dict:
    return {"number": number, "run": run, "params": {}, "status": status, "value": value, "duration_s": 1.0,
            "error": None}


def _rows(*evals: tuple[float, float]) -> list[dict]:
    """A run's metrics rows: training rows without an evaluation, then (eval_loss, eval_loss_se) ones."""
    return [{"step": 1, "loss": 3.0, "eval_loss": None}] + [
        {"step": i + 2, "loss": 2.0, "eval_loss": loss, "eval_loss_se": se} for i, (loss, se) in enumerate(evals)]


def _oracle(loss_b: float, se_b: float, loss_s: float, se_s: float) -> tuple[float, float]:
    """(z, two-sided p) written out with scipy's cdf, independently of sweep_stats."""
    from scipy import stats

    z = (loss_s - loss_b) / (se_b ** 2 + se_s ** 2) ** 0.5
    return z, 2 * (1 - stats.norm.cdf(abs(z)))


def test_best_vs_second_identical_runs_are_not_significant():
    from tunelab.train import sweep_stats

    metrics = {"run-a": _rows((2.5, 0.1), (2.31, 0.08)), "run-b": _rows((2.6, 0.1), (2.31, 0.08))}
    trials = [_trial(0, "run-a", 2.31), _trial(1, "run-b", 2.31), _trial(2, "run-c", 1.0, "pruned")]
    doc = sweep_stats.best_vs_second(trials, metrics.__getitem__)
    assert doc["diff"] == 0 and doc["z"] == 0 and doc["p"] == pytest.approx(1.0)
    assert doc["se"] == pytest.approx((2 * 0.08 ** 2) ** 0.5) and doc["significant"] is False
    assert doc["sentence"].startswith(f"Trial {doc['best']} is not significantly better than trial {doc['second']}")
    assert "p = 1" in doc["sentence"]


def test_best_vs_second_planted_better_run_is_significant_and_matches_scipy():
    from tunelab.train import sweep_stats

    metrics = {"good": _rows((1.9, 0.05), (1.50, 0.03)), "near": _rows((2.0, 0.05), (1.56, 0.04)),
               "bad": _rows((2.1, 0.05), (2.20, 0.04))}
    trials = [_trial(0, "bad", 2.20), _trial(1, "good", 1.50), _trial(2, "near", 1.56)]
    doc = sweep_stats.best_vs_second(trials, metrics.__getitem__)
    assert (doc["best"], doc["second"]) == (1, 2)  # the two lowest, whatever their order in the study
    z, p = _oracle(1.50, 0.03, 1.56, 0.04)
    assert doc["z"] == pytest.approx(z) and doc["p"] == pytest.approx(p)
    assert doc["significant"] is False and p >= 0.05  # 0.06 apart with SE 0.05: noise, said so
    assert "not significantly better than trial 2 (diff 0.0600 ± 0.0500" in doc["sentence"]

    metrics["near"] = _rows((2.0, 0.05), (1.90, 0.02))  # planted: clearly worse than 1.50 ± 0.03
    trials[2]["value"] = 1.90
    doc = sweep_stats.best_vs_second(trials, metrics.__getitem__)
    z, p = _oracle(1.50, 0.03, 1.90, 0.02)
    assert doc["z"] == pytest.approx(z) and doc["p"] == pytest.approx(p, abs=1e-12) and p < 1e-6
    assert doc["significant"] is True and doc["sentence"].startswith("Trial 1 is significantly better than trial 2")


def test_best_vs_second_needs_two_completed_trials_and_standard_errors():
    from tunelab.train import sweep_stats

    metrics = {"a": _rows((1.5, 0.03)), "b": [{"step": 2, "loss": 2.0, "eval_loss": 1.7}]}  # b: an old run, no SE
    assert sweep_stats.best_vs_second([_trial(0, "a", 1.5), _trial(1, "b", 1.7, "pruned")], metrics.__getitem__) is None
    doc = sweep_stats.best_vs_second([_trial(0, "a", 1.5), _trial(1, "b", 1.7)], metrics.__getitem__)
    assert doc["se"] is None and doc["p"] is None and doc["significant"] is False
    assert "no test possible" in doc["sentence"]
