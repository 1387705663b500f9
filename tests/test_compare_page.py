"""The Compare page through AppTest: launch a real background comparison, then read its results."""

from __future__ import annotations

import os
import time

import pytest
from pagetest import open_page, texts
from test_eval import RECORDS, _tiny_model

from tunelab import jobs
from tunelab.data import schema, store
from tunelab.evals import evaluate
from tunelab.jsonio import append_jsonl, read_jsonl
from tunelab.models.generation import get_backend
from tunelab.models import registry

PAGE = "pages/compare.py"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny-page")
    return [_tiny_model(base / f"m{i}", seed=i) for i in (3, 4)]


@pytest.fixture
def setup(workspace, tiny_dirs):
    """Two registered tiny models, a training set and a -test split (the page's default choice)."""
    for name, path in zip(("tiny-a", "tiny-b"), tiny_dirs):
        registry.add_model(name, path)
    store.commit("qa", schema.to_table(RECORDS), "import")
    store.commit("qa-test", schema.to_table(RECORDS), "import")
    return ["tiny-a", "tiny-b"]


def frame(at, column: str, last: bool = False):
    """The first (or last) dataframe showing column (AppTest does not expose keys of display-only dataframes)."""
    found = [df.value for df in at.dataframe if column in df.value.columns]
    assert found, f"no dataframe with a {column!r} column"
    return found[-1] if last else found[0]


def _wait(report_id: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = evaluate.load_report(report_id)
        if doc["status"] not in jobs.ACTIVE:
            return doc
        time.sleep(0.5)
    raise AssertionError((jobs.job_dir("reports", report_id) / "job.log").read_text())


def test_run_button_launches_a_background_comparison(setup):
    at = open_page(PAGE)
    assert at.selectbox(key="compare.data").value == "qa-test"
    at.multiselect(key="compare.models").set_value(setup)
    at.number_input(key="compare.limit").set_value(3)
    at.number_input(key="compare.max_new_tokens").set_value(4)
    at.button(key="compare.run").click().run()
    assert not at.exception, at.exception
    reports = evaluate.list_reports()
    assert len(reports) == 1 and reports[0]["models"] == setup and reports[0]["data"] == "qa-test"
    assert at.session_state["compare.report"] == reports[0]["id"]
    doc = _wait(reports[0]["id"])
    assert doc["status"] == "completed" and len(doc["examples"]) == 3
    # A fresh session (a browser refresh) finds the report on disk and shows its results.
    at = open_page(PAGE)
    assert at.session_state["compare.report"] == doc["report"]
    table = frame(at, "ROUGE-L")
    assert list(table["name"]) == setup
    assert len(frame(at, "spread")) == 3


def test_results_table_examples_and_winner(setup):
    rid = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=4, max_new_tokens=6))
    doc = evaluate.run_report(rid)
    at = open_page(PAGE)
    table = frame(at, "ROUGE-L")
    assert list(table["name"]) == setup
    assert table["ROUGE-L"].tolist() == pytest.approx([m["rouge_l"] for m in doc["models"]])
    assert list(frame(at, "tune lora")["model"]) == ["smollm2-135m-instruct", "gemma3-270m"]  # candidates
    cost = frame(at, "tune lora", last=True)  # the report's models
    assert list(cost["model"]) == setup and cost["params"].iloc[0].endswith("M")
    examples = frame(at, "spread")
    spreads = examples["spread"].tolist()
    assert spreads == sorted(spreads, reverse=True)  # default order: most disagreement first
    at.selectbox(key="compare.sort").set_value("dataset order").run()
    assert frame(at, "spread")["#"].tolist() == [0, 1, 2, 3]
    at.selectbox(key="compare.example").set_value(2).run()
    assert RECORDS[2]["output"] in texts(at) or RECORDS[2]["output"] in [t.value for t in at.text]
    at.selectbox(key="compare.pick").set_value("tiny-b")
    at.button(key="compare.use").click().run()
    assert not at.exception, at.exception
    assert at.session_state["compare.winner"] == "tiny-b" and at.session_state["train.model"] == "tiny-b"
    assert "Base model for training: tiny-b" in texts(at)


def test_running_report_shows_progress_and_partial_rows(setup):
    """Mid-run (one model done, one to go) the page polls status.json and shows the rows so far."""
    cfg = evaluate.EvalConfig(models=setup, data="qa-test", limit=2, max_new_tokens=4)
    rid = evaluate.create_report(cfg)
    d = jobs.job_dir("reports", rid)
    jobs.write_status(d, status="running", pid=os.getpid(), done=2, total=4, model="tiny-b")
    evaluate.evaluate_batches(get_backend("tiny-a"), read_jsonl(d / "inputs.jsonl"), evaluate.settings_for(cfg), 2,
                              lambda rows: [append_jsonl(d / "examples.jsonl", dict(r, model="tiny-a")) for r in rows])
    at = open_page(PAGE)
    assert "tiny-b — 2/4 answers" in at.get("progress")[0].proto.text
    assert frame(at, "examples")["examples"].tolist() == [2, 0]


def test_no_data_no_reports(workspace):
    at = open_page(PAGE)
    assert "No datasets yet" in texts(at) and "No comparisons yet" in texts(at)
    assert at.button(key="compare.run").disabled


def _fake_run(run_id: str, base: str, base_dir: str) -> None:
    """A finished LoRA run folder as the trainer leaves it: output.json + a (random) adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    d = jobs.job_dir("runs", run_id)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(d / "adapter")
    (d / "output.json").write_text('{"base": "%s", "method": "lora", "adapter_dir": "adapter", "model_dir": null}' % base)
    jobs.write_status(d, status="completed", created=time.time())


def test_tuned_run_is_shown_next_to_its_base(setup, tiny_dirs):
    _fake_run("run-1", "tiny-a", tiny_dirs[0])
    assert "run-1" in [c["name"] for c in evaluate.candidate_models()]
    before = evaluate.run_report(evaluate.create_report(evaluate.EvalConfig(models=["tiny-a"], data="qa-test", limit=2, max_new_tokens=4)))
    after = evaluate.run_report(evaluate.create_report(evaluate.EvalConfig(models=["run-1", "tiny-b"], data="qa-test", limit=2, max_new_tokens=4)))
    pairs = evaluate.before_after(after)
    assert [(p["run"], p["base"], p["base_report"]) for p in pairs] == [("run-1", "tiny-a", before["report"])]
    assert pairs[0]["before"] == before["models"][0]
    at = open_page(PAGE)
    assert at.session_state["compare.report"] == after["report"]
    table = frame(at, "report")
    assert list(table["model"]) == ["before: tiny-a", "after: run-1"]
    assert list(table["report"]) == [before["report"], after["report"]]
