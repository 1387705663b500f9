"""The Train page: the form drives the command, and a refresh re-attaches to a run without touching it."""

from __future__ import annotations

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

    from tunelab.train import export, sft

    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny, "data": "tiny", "max_steps": 2, "cutoff_len": 128})
    run_id = runs.create(cfg)
    assert sft.main(runs.run_dir(run_id)) == 0
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
