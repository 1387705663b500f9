"""One damaged file costs only itself (issue 22, item 6): one warning line naming it, the rest keeps working.

Each test damages one real workspace file the way a crash, a full disk or a hand edit does and drives the
real `tunelab` command (or the core function a new run calls) over the other, healthy ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_run import tunelab
from tunelab import jobs
from tunelab.data import store
from tunelab.data.schema import to_table
from tunelab.train import runs
from tunelab.train.config import TrainConfig

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _dataset(name: str = "toy") -> None:
    store.commit(name, to_table([{"id": f"r{i}", "instruction": f"Question {i}?", "output": f"Answer {i}."}
                                 for i in range(6)]), "import")


def _run(data: str = "toy", **status) -> str:
    cfg = TrainConfig.for_method("lora")
    cfg.data.data = data
    run_id = runs.create(cfg)
    if status:
        jobs.write_status(jobs.job_dir("runs", run_id), **status)
    return run_id


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def test_runs_list_and_a_new_run_survive_an_empty_or_garbage_status_json(workspace):
    _dataset()
    empty, garbage, good = _run(status="completed"), _run(status="completed"), _run(status="completed")
    (workspace / "runs" / empty / "status.json").write_text("")
    (workspace / "runs" / garbage / "status.json").write_bytes(b"\x00\xff{not json")
    proc = tunelab(workspace, "runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    listed = [r["run"] for r in json.loads(proc.stdout)["runs"]]
    assert good in listed
    warned = _warnings(proc.stderr)
    assert len(warned) == 2 and any(empty in w for w in warned) and any(garbage in w for w in warned)
    # A new run waits for its turn over every other run's status.json: it must start, not crash.
    new = _run()
    job = jobs.Job("runs", new)
    assert runs.wait_turn(job) is True
    assert runs.status(new)["status"] == "running"


def test_runs_delete_of_another_run_survives_a_bad_config_yaml(workspace):
    _dataset()
    keep, bad_bytes, bad_shape, bad_values = (_run(status="completed") for _ in range(4))
    (workspace / "runs" / bad_bytes / "config.yaml").write_bytes(b"model:\n  model: \xff\xfe\x00bad\n")
    (workspace / "runs" / bad_shape / "config.yaml").write_text("method: [1, 2]\ntraining: 5\n")
    (workspace / "runs" / bad_values / "config.yaml").write_text("training:\n  batch_size: 0\n")
    proc = tunelab(workspace, "runs", "delete", keep, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["deleted"] is True
    assert not (workspace / "runs" / keep).exists()
    assert "Traceback" not in proc.stderr
    warned = _warnings(proc.stderr)
    assert len(warned) == 3 and all("config.yaml" in w for w in warned)
    # The damaged runs are still there and listed.
    listed = json.loads(tunelab(workspace, "runs", "list", "--json").stdout)["runs"]
    assert {bad_bytes, bad_shape, bad_values} <= {r["run"] for r in listed}


def test_data_sql_works_for_every_other_dataset_with_one_truncated_parquet(workspace):
    _dataset("good")
    _dataset("broken")
    path = store.version_path("broken", 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut mid-file: no footer
    proc = tunelab(workspace, "data", "sql", "SELECT count(*) AS n FROM good", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == [[6]]
    warned = _warnings(proc.stderr)
    assert len(warned) == 1 and str(path) in warned[0]
    proc = tunelab(workspace, "data", "sql", "SELECT count(*) FROM broken")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: table broken is unavailable" in proc.stderr and "damaged" in proc.stderr


def test_bad_metrics_lines_do_not_break_runs_show_or_curves(workspace):
    _dataset()
    run_id = _run(status="completed", step=3, max_steps=3)
    (workspace / "runs" / run_id / "metrics.jsonl").write_bytes(
        b'{"step": 1, "loss": 2.5, "learning_rate": 0.001}\n'
        b'5\n'                                   # valid JSON, not a row
        b'["a list"]\n'
        b'{"step": "two", "loss": "bad"}\n'      # a row without a step number
        b'\xff\xfe garbage bytes\n'
        b'{"step": 2, "loss": "NaN-as-text", "grad_norm": {"x": 1}}\n'
        b'{"step": 3, "loss": NaN}\n')
    for args in (("runs", "show", run_id), ("runs", "show", run_id, "--json"), ("runs", "curves", run_id)):
        proc = tunelab(workspace, *args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        warned = _warnings(proc.stderr)
        assert len(warned) == 1 and "metrics.jsonl" in warned[0]
    doc = json.loads(tunelab(workspace, "runs", "show", run_id, "--json").stdout)
    assert [m["step"] for m in doc["metrics"]] == [1, 2, 3]
    assert doc["metrics"][0]["loss"] == 2.5
    assert doc["metrics"][1]["loss"] is None and doc["metrics"][1]["grad_norm"] is None
    assert doc["metrics"][2]["loss"] is None  # NaN written as null: the document is valid JSON
    curves = tunelab(workspace, "runs", "curves", run_id).stdout.splitlines()
    assert curves[0] == "run,step,metric,value" and f"{run_id},1,loss,2.5" in curves
