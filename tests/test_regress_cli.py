"""`tunelab reports regress` end to end: a tiny random model, a 2-step LoRA run from the CLI, real lm-eval numbers.

Oracles: each task's stderr is lm-eval's own (its mean_stderr over the logged per-item scores); the
paired difference, its McNemar p-value and bootstrap interval are recomputed with scipy from the
items logged side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import regress_parity

ROOT = Path(__file__).resolve().parents[1]


def _tunelab(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tunelab", *args], env=env, capture_output=True, text=True,
                          timeout=900, cwd=str(ROOT))
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    import tiny_model

    tmp = tmp_path_factory.mktemp("regress")
    e = dict(os.environ, TUNELAB_HOME=str(tmp / "ws"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    e.pop("HF_DATASETS_OFFLINE", None)
    model = tiny_model.build(tmp / "tiny", width=64, tied=False, max_positions=1024, init_range=0.5)
    subprocess.run([sys.executable, "-c", "import tiny_model; tiny_model.dataset()"], env=e, check=True, timeout=300)
    # A high learning rate moves the random model's greedy answers, so base and tuned differ on some items.
    out = _tunelab(e, "train", "--model", str(model), "--data", "tiny", "--method", "lora", "--max-steps", "2",
                   "--recipe", "manual", "--learning-rate", "0.05", "--no-auto-report", "--json")
    e["RUN"] = json.loads(out.stdout)["run"]
    return e


@pytest.fixture
def parity_tasks(tmp_path) -> Path:
    return regress_parity.write(tmp_path / "parity")


@pytest.mark.slow
def test_regress_on_a_task_folder_matches_lm_eval_and_scipy(env, parity_tasks):
    from lm_eval.api.metrics import mean_stderr
    from scipy import stats

    proc = _tunelab(env, "reports", "regress", env["RUN"], "--tasks-dir", str(parity_tasks), "--json")
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"run", "base", "tasks", "summary", "provenance"} and doc["run"] == env["RUN"]
    (task,) = doc["tasks"]
    assert set(task) >= {"task", "base", "tuned", "stderr", "diff", "ci", "p", "p_adjusted", "verdict"}
    assert (task["task"], task["metric"], task["n"], task["test"]) == ("parity", "even", 24, "mcnemar_exact")
    run_dir = Path(env["TUNELAB_HOME"]) / "runs" / env["RUN"]
    assert json.loads((run_dir / "regress.json").read_text()) == doc  # the run's page reads this file
    items = [json.loads(x) for x in (run_dir / "regress-samples.jsonl").read_text().splitlines()]
    assert [x["doc_id"] for x in items] == list(range(24))
    base = np.array([x["base_score"] for x in items])
    tuned = np.array([x["tuned_score"] for x in items])
    assert [x["base_score"] for x in items] == [float(len(x["base"]) % 2 == 0) for x in items]
    # the scores and stderrs are lm-eval's own
    assert task["base"] == pytest.approx(base.mean()) and task["tuned"] == pytest.approx(tuned.mean())
    assert task["stderr"]["base"] == pytest.approx(mean_stderr(list(base)))
    assert task["stderr"]["tuned"] == pytest.approx(mean_stderr(list(tuned)))
    assert task["stderr"]["base"] > 0
    # the paired difference, against scipy on the logged items
    a_only, b_only = int(((base == 1) & (tuned == 0)).sum()), int(((base == 0) & (tuned == 1)).sum())
    assert a_only + b_only > 0, "the run should change some answers"
    assert (task["a_only"], task["b_only"]) == (a_only, b_only)
    assert task["diff"] == pytest.approx(tuned.mean() - base.mean())
    assert task["p"] == pytest.approx(stats.binomtest(b_only, a_only + b_only, 0.5).pvalue)
    ci = stats.bootstrap((base, tuned), lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True,
                         n_resamples=2000, method="percentile", random_state=np.random.default_rng(1234))
    assert task["ci"] == pytest.approx([ci.confidence_interval.low, ci.confidence_interval.high])
    prov = doc["provenance"]
    assert prov["bootstrap_iters"] > 0 and prov["versions"]["lm_eval"] and prov["run"]["method"] == "lora"
    assert prov["tasks"]["parity"]["data_sha256"]["parity.jsonl"]


@pytest.mark.slow
def test_regress_runs_the_shipped_suite_by_default(env):
    proc = _tunelab(env, "reports", "regress", env["RUN"], "--limit", "2", "--json")
    doc = json.loads(proc.stdout)
    assert [t["task"] for t in doc["tasks"]] == ["regress_bullets", "regress_chinese", "regress_json",
                                                  "regress_keyword", "regress_short"]
    for t in doc["tasks"]:
        assert t["n"] == 2 and 0 <= t["base"] <= 1 and 0 <= t["tuned"] <= 1
        assert isinstance(t["stderr"]["base"], float) and t["verdict"] in ("kept", "lost", "gained")
    assert sum(doc["summary"].values()) == 5
    human = _tunelab(env, "reports", "regress", env["RUN"], "--limit", "1")
    assert "regress_json" in human.stdout and "kept" in human.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["no-such-run"], "unknown run"),
    (["{run}", "--tasks-dir", "/nonexistent/tasks"], "task folder /nonexistent/tasks not found"),
    (["{run}", "--limit", "0"], "--limit must be at least 1"),
    (["{run}", "--task", "no_such_task_xyz"], "unknown lm-eval task 'no_such_task_xyz'"),
    (["{run}", "--task", "arc_easy"], "the Hub is off (HF_HUB_OFFLINE=1)"),  # a real task, its data not here
])
def test_user_errors_are_one_line(env, args, message):
    proc = _tunelab(env, "reports", "regress", *[a.format(run=env["RUN"]) for a in args], "--json", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"] and message in proc.stderr


@pytest.mark.slow
def test_detach_runs_it_as_a_background_job_that_stores_the_result(env, parity_tasks, monkeypatch):
    import time

    proc = _tunelab(env, "reports", "regress", env["RUN"], "--tasks-dir", str(parity_tasks), "--limit", "6",
                    "--detach", "--json")
    assert json.loads(proc.stdout) == {"run": env["RUN"], "status": "queued"}
    job = Path(env["TUNELAB_HOME"]) / "regressions" / env["RUN"]
    end = time.time() + 600
    while time.time() < end:
        st = json.loads((job / "status.json").read_text())
        if st["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert st["status"] == "completed", (job / "job.log").read_text()[-3000:]
    doc = json.loads((Path(env["TUNELAB_HOME"]) / "runs" / env["RUN"] / "regress.json").read_text())
    assert st["summary"] == doc["summary"] and doc["tasks"][0]["n"] == 6
    again = _tunelab(env, "reports", "regress", env["RUN"], "--detach", check=False)  # one at a time per run
    assert again.returncode == 0 and "started the regression suite" in again.stdout
    refused = _tunelab(env, "reports", "regress", env["RUN"], "--detach", check=False)
    if refused.returncode:  # the first may have finished already on a fast machine
        assert "is already" in refused.stderr
    from tunelab import jobs

    monkeypatch.setenv("TUNELAB_HOME", env["TUNELAB_HOME"])  # jobs.stop finds the job under the test's home
    if jobs.read_status(job)["status"] in jobs.ACTIVE:  # a queued job is marked stopped, a running one signalled
        jobs.stop("regressions", env["RUN"])
    for _ in range(120):
        if json.loads((job / "status.json").read_text())["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert json.loads((job / "status.json").read_text())["status"] in ("stopped", "completed")
    assert json.loads((Path(env["TUNELAB_HOME"]) / "runs" / env["RUN"] / "regress.json").read_text()) == doc
