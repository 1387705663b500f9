"""The Runs page's Sweeps section (AppTest) over a real tiny sweep: start it from the form, its trials table,
Optuna's charts, the best-vs-second sentence and Promote best."""

from __future__ import annotations

import json

import pytest
from cli_run import tunelab
from pagetest import open_page, texts
from polling import wait_for

import tiny_model as builder
from tunelab import i18n, jobs
from tunelab.models import registry
from tunelab.train import runs, sweep, sweep_stats

FIXED = "eval_split=0.25\neval_steps=1\ncutoff_len=64\nauto_report=false"


def _figures(at) -> dict[str, dict]:
    return {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


@pytest.mark.slow
def test_start_view_and_promote_a_real_tiny_sweep(workspace, tiny_model):
    builder.dataset()
    registry.add_model("tiny-base", tiny_model)
    at = open_page("pages/runs.py")
    assert "No sweeps yet." in texts(at)
    at.selectbox(key="sweeps.model").set_value("tiny-base")
    at.selectbox(key="sweeps.data").set_value("tiny")
    at.number_input(key="sweeps.trials").set_value(2)
    at.number_input(key="sweeps.max_steps").set_value(2)
    at.selectbox(key="sweeps.prune").set_value("none")
    at.text_area(key="sweeps.params").set_value("learning_rate=1e-4:3e-3:log\nlora_r=4,8")
    at.text_area(key="sweeps.settings").set_value(FIXED)
    at.button(key="sweeps.start").click().run()
    assert not at.exception, at.exception
    (row,) = sweep.list_sweeps()
    sid = row["sweep"]
    assert f"Sweep {sid} started." in texts(at) and at.selectbox(key="sweeps.selected").value == sid
    wait_for(lambda: (jobs.read_status(sweep.sweep_dir(sid)) or {}).get("status") not in jobs.ACTIVE,
             timeout=300, what="the sweep job to end")
    doc = sweep.show(sid)
    assert doc["status"] == "completed" and [t["status"] for t in doc["trials"]] == ["completed", "completed"]

    at.run()
    assert not at.exception, at.exception
    # The trials table: the oracle is show()'s document, itself read from the Optuna study and the runs.
    table = next(df.value for df in at.dataframe if "number" in df.value.columns)
    assert list(table["number"]) == [t["number"] for t in doc["trials"]]
    assert list(table["run"]) == [t["run"] for t in doc["trials"]]
    assert list(table["value"]) == pytest.approx([t["value"] for t in doc["trials"]])
    assert list(table["learning_rate"]) == pytest.approx([t["params"]["learning_rate"] for t in doc["trials"]])
    assert list(table["lora_r"]) == [t["params"]["lora_r"] for t in doc["trials"]]
    assert list(table["status"]) == ["completed", "completed"] and table["duration_s"].notna().all()
    for t in doc["trials"]:  # each trial's value is its run's final eval loss
        assert t["value"] == pytest.approx([r["eval_loss"] for r in runs.metrics(t["run"]) if r["eval_loss"]][-1])

    figs = _figures(at)
    history = next(f for f in figs.values() if f["layout"]["title"]["text"] == "Optimisation history")
    points = next(tr for tr in history["data"] if tr.get("mode") == "markers")
    assert points["x"] == [t["number"] for t in doc["trials"]]
    assert points["y"] == pytest.approx([t["value"] for t in doc["trials"]])
    titles = {f["layout"]["title"]["text"] for f in figs.values()}
    assert "Parallel coordinates" in titles
    lora_values = {t["params"]["lora_r"] for t in doc["trials"]}
    if len(lora_values) == 2:  # both parameters varied: Optuna's importances, one bar per parameter
        assert "Parameter importances" in titles
    else:  # the sampler drew the same lora_r twice: the page says why there is no importance chart
        assert "Parameter importances" not in titles
        assert "(so far: 2 completed, 1 varying)" in texts(at)

    bvs = doc["best_vs_second"]
    assert bvs["se"] is not None and bvs["best"] == doc["best"]["number"]  # the runs logged eval_loss_se
    assert bvs["sentence"] in texts(at)
    proc = tunelab(workspace, "sweep", "show", sid, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["best_vs_second"]["sentence"] == bvs["sentence"]

    at.text_input(key=f"sweeps.promote_name.{sid}").set_value("swept-best")
    at.button(key="sweeps.promote").click().run()
    assert not at.exception, at.exception
    assert f"Registered swept-best (run {doc['best']['run']})" in texts(at)
    proc = tunelab(workspace, "models", "list", "--json")
    assert proc.returncode == 0 and "swept-best" in proc.stdout

    before = set(i18n.missing("zh"))  # the same view in Chinese: every string it shows has an entry
    at.session_state["lang"] = "zh"
    at.run()
    assert not at.exception, at.exception
    assert sweep_stats.sentence(bvs, lambda s, **kw: i18n.translate(s, "zh", **kw)) in texts(at)
    assert [s for s in i18n.missing("zh") if s not in before] == []


def test_bad_parameter_line_is_one_error_and_no_sweep(workspace, tiny_model):
    builder.dataset()
    registry.add_model("tiny-base", tiny_model)
    at = open_page("pages/runs.py")
    at.selectbox(key="sweeps.model").set_value("tiny-base")
    at.text_area(key="sweeps.params").set_value("learning_rate=1e-3:1e-4:log")
    at.button(key="sweeps.start").click().run()
    assert not at.exception, at.exception
    assert "need LOW < HIGH" in texts(at) and sweep.list_sweeps() == []
