"""Experiment tracking: TensorBoard event files for every run, the optional trackers' one-line refusal, CSV curves."""

from __future__ import annotations

import csv
import io
import json

import pytest

import tiny_model
from cli_run import one_line_error, tunelab
from tunelab.cli import main as cli
from tunelab.errors import TuneLabError
from tunelab.train import curves, runs, sft, tracking
from tunelab.train.config import TrainConfig


@pytest.fixture
def tiny(tiny_model):  # conftest's session-wide tiny llama folder (the module of that name is imported above)
    return tiny_model


def _cfg(model, method="lora", **kw) -> TrainConfig:
    cfg = TrainConfig.for_method(method)
    cfg.set({"model": model, "data": "tiny", "max_steps": 4, "save_steps": 2, "batch_size": 2, "cutoff_len": 128,
             "recipe": "manual", "auto_report": False})
    cfg.set(kw)
    return cfg


def _train(cfg) -> str:
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


def _events(run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's TensorBoard folder, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(curves.tensorboard_dir(run_id)), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _pairs(n: int = 8) -> list[dict]:
    words = ["river", "lamp", "garden", "coffee", "window", "pencil", "ocean", "violin"][:n]
    return [{"id": f"p{i}", "instruction": f"Tell me about the {w}.", "input": "", "output": f"Here is the {w}.",
             "chosen": f"Here is the {w}.", "rejected": f"Go away, {w}."} for i, w in enumerate(words)]


@pytest.mark.slow
def test_every_run_writes_tensorboard_events_for_every_metric_and_step(workspace, tiny, capsys):
    tiny_model.dataset()
    run_id = _train(_cfg(tiny, eval_split=0.25, eval_steps=2))
    rows = runs.metrics(run_id)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    events = _events(run_id)
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch"):
        assert events[f"train/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows], key
    assert events["eval/loss"] == [(r["step"], pytest.approx(r["eval_loss"], rel=1e-6)) for r in rows
                                   if r["eval_loss"] is not None]
    assert [s for s, _ in events["eval/loss"]] == [2, 4]
    # `tensorboard --logdir <workspace>/runs` finds the run under its own id; `runs show --json` names the folder
    assert curves.tensorboard_dir(run_id) == workspace / "runs" / run_id / "tb"
    capsys.readouterr()
    assert cli(["runs", "show", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensorboard"] == str(workspace / "runs" / run_id / "tb")


@pytest.mark.slow
def test_preference_rewards_reach_tensorboard_and_two_runs_export_as_csv(workspace, tiny):
    from tunelab.data import store
    from tunelab.data.schema import to_table

    store.commit("tiny", to_table(_pairs()), op="test")
    dpo = _train(_cfg(tiny, "dpo", max_steps=2))
    sft_run = _train(_cfg(tiny, max_steps=2))
    events = _events(dpo)
    rows = runs.metrics(dpo)
    for key in ("loss", "reward_margin", "reward_accuracy"):
        assert events[f"train/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows], key

    text = curves.curves_csv([dpo, sft_run])
    got = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "run,step,metric,value"
    assert {(g["run"], g["metric"]) for g in got} >= {(dpo, "reward_margin"), (dpo, "loss"), (sft_run, "loss")}
    assert not any(g["run"] == sft_run and g["metric"] == "reward_margin" for g in got)
    by_key = {(g["run"], int(g["step"]), g["metric"]): float(g["value"]) for g in got}
    for run_id in (dpo, sft_run):
        for r in runs.metrics(run_id):
            assert by_key[(run_id, r["step"], "loss")] == pytest.approx(r["loss"])
            assert by_key[(run_id, r["step"], "learning_rate")] == pytest.approx(r["learning_rate"])

    assert cli(["runs", "curves", dpo, sft_run, "--csv", "curves.csv"]) == 0  # relative: the workspace's exports/
    assert (workspace / "exports" / "curves.csv").read_text() == text


@pytest.mark.slow
def test_a_crashed_then_resumed_run_has_one_curve_without_the_redone_steps(workspace, tiny):
    from tunelab.jsonio import read_jsonl

    tiny_model.dataset()
    run_id = runs.create(_cfg(tiny, max_steps=4, save_steps=2))
    d = runs.run_dir(run_id)

    def crash_after_step_3():  # checked after each step's row: the crash leaves step 3 logged but not saved
        if len(read_jsonl(d / "metrics.jsonl")) >= 3:
            raise RuntimeError("simulated crash")
        return False

    with pytest.raises(RuntimeError, match="simulated crash"):
        sft.train(d, crash_after_step_3)
    first = _events(run_id)["train/loss"]
    assert [s for s, _ in first] == [1, 2, 3]
    cfg = TrainConfig.from_yaml(d / "config.yaml")
    cfg.training.resume_from = "last"  # what `runs resume` sets: continue from checkpoints/step-2
    cfg.to_yaml(d / "config.yaml")
    assert sft.train(d, lambda: False) == "completed"
    rows = runs.metrics(run_id)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # the first attempt's step 3 is purged: TensorBoard shows the resumed run's values, once per step
    assert _events(run_id)["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows]


@pytest.mark.skipif(not tracking.installed("mlflow"), reason="mlflow is optional and not installed")
@pytest.mark.slow
def test_report_to_mlflow_logs_every_step_into_the_workspace_store(workspace, tiny, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tiny_model.dataset()
    run_id = _train(_cfg(tiny, max_steps=3, report_to="mlflow"))
    mlflow.set_tracking_uri(f"sqlite:///{workspace / tracking.MLFLOW_DB}")
    client = mlflow.MlflowClient()
    found = client.search_runs([client.get_experiment_by_name("tunelab").experiment_id],
                               filter_string=f"tags.`tunelab.run` = '{run_id}'")
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    history = client.get_metric_history(found[0].info.run_id, "train/loss")
    assert [(m.step, pytest.approx(m.value)) for m in history] == [(r["step"], r["loss"]) for r in runs.metrics(run_id)]


def test_report_to_a_missing_package_fails_in_one_line_before_any_run(workspace, tiny):
    missing = [name for name in tracking.OPTIONAL if not tracking.installed(name)]  # the refusal is for those
    if not missing:
        pytest.skip("mlflow and wandb are both installed here")
    tiny_model.dataset()
    for name in missing:
        with pytest.raises(TuneLabError, match=f"pip install {name}"):
            runs.create(_cfg(tiny, report_to=f"tensorboard,{name}"))
    proc = tunelab(workspace, "train", "--model", tiny, "--data", "tiny", "--report-to", missing[0], "--detach")
    assert f"pip install {missing[0]}" in one_line_error(proc)
    assert runs.list_runs() == []


def test_report_to_names_are_checked():
    assert tracking.parse("") == ["tensorboard"]
    assert tracking.parse("tensorboard") == ["tensorboard"]
    assert tracking.parse(" MLflow , wandb,mlflow") == ["tensorboard", "mlflow", "wandb"]
    with pytest.raises(TuneLabError, match="unknown tracker 'comet'"):
        tracking.parse("tensorboard,comet")
    assert tracking.scalars({"step": 3, "time": 1.0, "loss": 2.5, "eval_loss": None, "eval_reward_margin": 0.5,
                             "flag": True, "note": "x"}) == {"train/loss": 2.5, "eval/reward_margin": 0.5}


def test_curves_of_an_unknown_run_is_one_clear_error(workspace):
    with pytest.raises(TuneLabError, match="unknown run 'nope'"):
        curves.curves_csv(["nope"])
    with pytest.raises(TuneLabError, match="no run given"):
        curves.curves_csv([])
