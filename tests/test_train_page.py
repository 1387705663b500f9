"""The Train page: the form drives the command, and a refresh re-attaches to a run without touching it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import tiny_model
from tunelab.train import runs
from tunelab.train.config import TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _open(model: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if model:
        at.session_state["train.model"] = model
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_form_builds_the_command_and_preview(workspace, tiny):
    tiny_model.dataset()
    at = _open(tiny)
    assert at.selectbox(key="train.data").value == "tiny"
    at.selectbox(key="train.method").set_value("full").run()
    assert at.number_input(key="train.learning_rate").value == pytest.approx(2e-5)
    at.number_input(key="train.max_steps").set_value(7).run()
    cmd = next(c.value for c in at.code if c.value.startswith("tunelab train"))
    assert "--method full" in cmd and "--max-steps 7" in cmd and "--data tiny" in cmd
    assert any("Record 1" in m.value for m in at.markdown)  # the token preview rendered
    assert not list((workspace / "runs").glob("run-*"))  # looking at the form starts nothing


@pytest.mark.slow
def test_refresh_neither_starts_nor_stops_nor_loses_a_run(workspace, tiny):
    tiny_model.dataset(repeat=8)
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny, "data": "tiny", "max_steps": 400, "save_steps": 50, "cutoff_len": 128})
    run_id = runs.create(cfg)
    runs.start(run_id)
    try:
        end = time.time() + 240
        while not runs.metrics(run_id) and time.time() < end:
            time.sleep(0.5)
        pid = runs.status(run_id)["pid"]
        for _ in range(2):  # a refresh and a second tab are both fresh sessions
            at = _open(tiny)
            assert any(run_id in m.value and "`running`" in m.value for m in at.markdown)
            assert at.button(key="train.stop")  # the live panel re-attached with its Stop button
        st = runs.status(run_id)
        assert st["status"] == "running" and st["pid"] == pid and not st.get("stop_requested")
        assert [r["run"] for r in runs.list_runs()] == [run_id]
        seen = len(runs.metrics(run_id))
        end = time.time() + 120
        while len(runs.metrics(run_id)) <= seen and time.time() < end:
            time.sleep(0.5)
        assert len(runs.metrics(run_id)) > seen  # still training after the page came and went
    finally:
        runs.stop(run_id)
        end = time.time() + 120
        while runs.status(run_id)["status"] != "stopped" and time.time() < end:
            time.sleep(0.5)
    assert runs.status(run_id)["status"] == "stopped"


@pytest.mark.slow
def test_export_a_finished_run_from_the_page(workspace, tiny):
    import gguf

    from tunelab.train import export

    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny, "data": "tiny", "max_steps": 2, "cutoff_len": 128})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0
    at = _open(tiny)
    at.text_input(key="train.export_name").set_value("../escape").run()
    at.button(key="train.export").click().run()
    assert any("export name" in e.value for e in at.error) and not export.list_jobs(run_id)  # one line, no job
    at.selectbox(key="train.export_format").set_value("gguf-q8_0")
    at.text_input(key="train.export_name").set_value("tiny-q8").run()
    assert any("tunelab export " + run_id + " tiny-q8.gguf --gguf --gguf-type q8_0" in c.value for c in at.caption)
    at.button(key="train.export").click().run()
    assert not at.exception, at.exception
    end = time.time() + 180
    while export.list_jobs(run_id)[0]["status"] in ("queued", "running") and time.time() < end:
        time.sleep(0.5)
    job = export.list_jobs(run_id)[0]
    assert job["status"] == "completed", job
    out = workspace / "exports" / "tiny-q8.gguf"
    assert job["files"] == [str(out)]
    assert gguf.GGUFReader(str(out)).tensors  # a GGUF file llama.cpp can open
    at = _open(tiny)  # a fresh session (refresh) still lists the export, read from disk
    assert any("out" in df.value and str(out) in df.value["out"].tolist() for df in at.dataframe)
    # A download per export, with its size, and a way to try the run instead of a CLI command to copy.
    mb = round(out.stat().st_size / 2**20, 1)
    assert [b.proto.label for b in at.get("download_button") if b.proto.id and "tiny-q8" in b.proto.label] == [
        f"Download tiny-q8.gguf ({mb} MB)"]
    links = [p.proto for p in at.get("page_link") if p.proto.label == "Open in Playground"]
    assert links and all(link.query_string == f"model={run_id}" for link in links)
    assert links[0].page.endswith("playground")
    assert not any("tunelab chat" in m.value for m in at.success)
    # The live charts: a legend telling the loss lines apart, and a step axis under every panel.
    live = json.loads(next(c for c in at.get("plotly_chart") if f"train.chart.{run_id}" in c.proto.id).proto.spec)
    legend = [d["name"] for d in live["data"] if d.get("showlegend", True)]
    assert live["layout"]["showlegend"] is True and {"loss", "loss (smoothed)"} <= set(legend)
    assert "learning rate" not in legend  # one line per panel: named by the panel's title instead
    assert all(live["layout"][a]["title"]["text"] == "step" for a in live["layout"] if a.startswith("xaxis"))


def _refresh(at: AppTest) -> AppTest:
    """A browser refresh: a new session on the same URL (the page and its query string)."""
    fresh = AppTest.from_file(APP, default_timeout=120)
    fresh.query_params.update(at.query_params)
    fresh.switch_page("pages/train.py")
    fresh.run()
    assert not fresh.exception, fresh.exception
    return fresh


def test_friendly_labels_and_only_the_chosen_methods_fields(workspace, tiny):
    tiny_model.dataset()
    tiny_model.dataset("tiny-test")
    at = _open(tiny)
    labels = {w.label for kind in ("number_input", "selectbox", "checkbox", "text_input") for w in getattr(at, kind)}
    assert {"Max tokens per example", "LoRA rank (r)", "Max steps (0 = use epochs)", "Learning rate"} <= labels
    assert not {"cutoff len", "lora r", "max steps"} & labels  # no raw field names
    assert at.number_input(key="train.lora_r").help  # the beginner's explanation as a tooltip
    recipe = next(df.value for df in at.dataframe if "why" in df.value.columns)
    assert "Learning rate" in set(recipe["setting"]) and "learning rate" not in set(recipe["setting"])
    keys = {w.key for w in at.number_input}
    assert "train.num_virtual_tokens" not in keys and "train.encoder_hidden_size" not in keys  # P-tuning's, not LoRA's
    # Eval data and init adapter are pickers of what exists, not free-text boxes.
    assert at.selectbox(key="train.eval_data").options[1:] == ["tiny", "tiny-test"]
    assert "train.eval_data" not in {w.key for w in at.text_input}
    assert len(at.selectbox(key="train.init_adapter").options) == 1  # no run with an adapter yet: only "none"
    at.selectbox(key="train.method").set_value("ptuning").run()
    keys = {w.key for w in at.number_input}
    assert "train.num_virtual_tokens" in keys and "train.lora_r" not in keys
    at.selectbox(key="train.eval_data").set_value("tiny-test").run()
    cmd = next(c.value for c in at.code if c.value.startswith("tunelab train"))
    assert "--eval-data tiny-test" in cmd and "--lora-r" not in cmd


def test_the_form_survives_a_refresh_and_a_shared_link(workspace, tiny):
    tiny_model.dataset()
    tiny_model.dataset("other")
    at = _open(tiny)
    at.selectbox(key="train.method").set_value("full").run()
    at.selectbox(key="train.data").set_value("other").run()
    at.number_input(key="train.max_steps").set_value(7).run()
    at.number_input(key="train.cutoff_len").set_value(96).run()
    at.checkbox(key="train.packing").uncheck().run()
    assert at.query_params["max_steps"] == "7" and at.query_params["method"] == "full"
    again = _refresh(at)
    assert again.number_input(key="train.max_steps").value == 7  # not back to 0
    assert again.number_input(key="train.cutoff_len").value == 96
    assert again.selectbox(key="train.method").value == "full" and again.selectbox(key="train.data").value == "other"
    assert again.checkbox(key="train.packing").value is False
    assert again.number_input(key="train.learning_rate").value == pytest.approx(2e-5)
    cmd = next(c.value for c in again.code if c.value.startswith("tunelab train"))
    assert "--max-steps 7" in cmd and "--cutoff-len 96" in cmd and "--no-packing" in cmd
    # A value set back to its default leaves the URL; a bad value in a link is ignored with one warning.
    again.number_input(key="train.cutoff_len").set_value(512).run()
    assert "cutoff_len" not in again.query_params
    bad = dict(again.query_params, max_steps="lots")
    fresh = AppTest.from_file(APP, default_timeout=120)
    fresh.query_params.update(bad)
    fresh.switch_page("pages/train.py")
    fresh.run()
    assert not fresh.exception and any("max_steps" in w.value for w in fresh.warning)
    assert fresh.number_input(key="train.max_steps").value == 0


def test_run_picker_labels_follow_disk_and_manage_a_run(workspace, tiny):
    from tunelab import jobs
    from tunelab.train import manage

    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny, "data": "tiny", "max_steps": 3, "cutoff_len": 64})
    old, new = runs.create(cfg), runs.create(cfg)
    jobs.write_status(runs.run_dir(old), status="completed")
    jobs.write_status(runs.run_dir(new), status="running", pid=os.getpid())
    at = _open(tiny)
    picker = at.selectbox(key="train.run")
    assert any(new in o and "running" in o for o in picker.options)
    jobs.write_status(runs.run_dir(new), status="completed")  # finishes while the page is open
    at.run()
    labels = at.selectbox(key="train.run").options
    assert any(new in o and "completed" in o for o in labels) and not any("running" in o for o in labels)
    at.selectbox(key="train.run").set_value(old).run()
    assert at.query_params["run"] == old
    at.text_input(key=f"train.rename.{old}").set_value("baseline lr 2e-4")
    at.text_input(key=f"train.tags.{old}").set_value("demo, lora")
    at.text_area(key=f"train.notes.{old}").set_value("the one to show")
    next(b for b in at.button if b.label == "Save").click().run()
    assert manage.meta(old) == {"name": "baseline lr 2e-4", "notes": "the one to show", "tags": ["demo", "lora"]}
    assert any(o.startswith("baseline lr 2e-4 (" + old) for o in at.selectbox(key="train.run").options)
    assert _refresh(at).selectbox(key="train.run").value == old  # ?run= survives a refresh
    # The overlaid curves: a legend naming runs by their display names, and their CSV next to them.
    overlay = json.loads(next(c for c in at.get("plotly_chart") if "train.overlay_chart" in c.proto.id).proto.spec)
    assert overlay["layout"]["showlegend"] is True and "baseline lr 2e-4" in [d["name"] for d in overlay["data"]]
    assert "Download curves (CSV)" in [b.proto.label for b in at.get("download_button")]
    at.number_input(key="train.max_steps").set_value(11).run()
    at.button(key=f"train.clone.{old}").click().run()
    assert at.number_input(key="train.max_steps").value == 3  # the run's settings, back in the form
    at.button(key=f"train.delete.{old}").click().run()
    assert not at.exception and not (workspace / "runs" / old).exists()
    assert [r["run"] for r in runs.list_runs()] == [new]


@pytest.mark.slow
def test_use_as_base_model_is_offered_for_base_models_only(workspace, tiny):
    from pagetest import open_page
    from test_compare_page import _fake_run

    from tunelab.evals import evaluate
    from tunelab.models import registry

    tiny_model.dataset("qa-test")
    registry.add_model("tiny-b", tiny)
    _fake_run("run-1", "tiny-b", tiny)
    doc = evaluate.run_report(evaluate.create_report(evaluate.EvalConfig(models=["run-1", "tiny-b"], data="qa-test",
                                                                         limit=2, max_new_tokens=4)))
    assert [m["name"] for m in doc["models"] if m["examples"]] == ["run-1", "tiny-b"]  # both answered
    at = open_page("pages/compare.py")
    assert at.selectbox(key="compare.pick").options == ["tiny-b"]  # the run is compared, not offered as a base
    # A run left as the winner by an older session is not carried to the Train form as its base model.
    at.session_state["compare.winner"] = "run-1"
    at.session_state["train.model"] = None
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception and at.selectbox(key="train.model").value == registry.DEFAULT_MODEL


def test_a_link_read_after_the_first_run_still_fills_the_form(workspace, tiny):
    """The refresh race: a session's first run saw no query string yet; the URL's values arrive on a later run.

    They must fill the form (the old code marked the URL as read on the first run and ignored it after, then
    wrote the defaults back over it), and the user's own later change must not be undone by the URL.
    """
    tiny_model.dataset()
    at = _open(tiny)
    assert at.number_input(key="train.max_steps").value == 0
    at.query_params.update({"max_steps": "123", "cutoff_len": "96"})
    at.run()
    assert at.number_input(key="train.max_steps").value == 123
    assert at.number_input(key="train.cutoff_len").value == 96
    assert at.query_params["max_steps"] == "123"  # not wiped
    at.number_input(key="train.max_steps").set_value(7).run()
    at.run()
    assert at.number_input(key="train.max_steps").value == 7 and at.query_params["max_steps"] == "7"
