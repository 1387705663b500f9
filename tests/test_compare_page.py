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
ROUGE = "ROUGE-L (%)"


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
    assert at.query_params.get("report") == doc["report"]  # the selection is in the URL too
    table = frame(at, ROUGE)
    assert list(table["name"]) == setup
    assert len(frame(at, "spread")) == 3


def test_results_table_examples_and_winner(setup):
    rid = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=4, max_new_tokens=6))
    doc = evaluate.run_report(rid)
    at = open_page(PAGE)
    table = frame(at, ROUGE)
    assert list(table["name"]) == setup
    # Shown in percent, rounded as displayed; BLEU on 0-100.
    assert table[ROUGE].tolist() == pytest.approx([round(m["rouge_l"] * 100, 1) for m in doc["models"]])
    assert table["BLEU (0–100)"].tolist() == pytest.approx([round(m["bleu"] * 100, 1) for m in doc["models"]])
    assert table["params"].iloc[0].endswith("M")  # the size sits in the results table...
    costs = [df.value for df in at.dataframe if "tune lora" in df.value.columns]
    assert len(costs) == 1  # ...so the cost table is shown once: for the candidates
    assert list(costs[0]["model"]) == ["smollm2-135m-instruct", "gemma3-270m"]
    examples = frame(at, "spread")
    spreads = examples["spread"].tolist()
    assert spreads == sorted(spreads, reverse=True)  # default order: most disagreement first
    at.selectbox(key="compare.sort").set_value("dataset order").run()
    assert frame(at, "spread")["#"].tolist() == [0, 1, 2, 3]
    at.selectbox(key="compare.example").set_value(2).run()
    side = at.table[0].value  # one row per answer, the reference first: long answers wrap in a table
    assert list(side.index) == ["Reference", *setup]
    assert side["Answer"].iloc[0] == RECORDS[2]["output"]
    assert side["Answer"].iloc[1] == doc["examples"][2]["outputs"]["tiny-a"]["output"]
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


def _open_with(query: dict) -> "AppTest":  # noqa: F821 - the type lives in streamlit.testing
    """A fresh session opened from a link such as /compare?report=ID (a refresh or a shared link)."""
    from pagetest import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGE)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_report_in_the_url_survives_a_refresh(setup):
    older = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=1, max_new_tokens=2))
    evaluate.run_report(older)
    time.sleep(0.01)
    newer = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=1, max_new_tokens=2))
    at = _open_with({"report": older})
    assert at.session_state["compare.report"] == older  # not the newest: the link's
    assert "completed" in at.selectbox(key="compare.report").format_func(older)
    at.selectbox(key="compare.report").set_value(newer).run()
    assert at.query_params["report"] == newer  # a refresh now reopens this one
    assert _open_with({"report": "compare-gone"}).session_state["compare.report"] == newer  # unknown: newest


def test_picker_labels_are_read_from_disk_and_polled_while_a_report_is_active(setup):
    from tunelab.ui import live

    rid = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=1, max_new_tokens=2))
    at = open_page(PAGE)
    assert "queued" in at.selectbox(key="compare.report").format_func(rid)
    shown = {rid: "queued"}
    assert not live.changed("reports", shown)
    evaluate.run_report(rid)  # completes on disk, as the background process would
    assert live.changed("reports", shown)  # the polling fragment reruns the page on this
    at.run()
    assert "completed" in at.selectbox(key="compare.report").format_func(rid)


def test_delete_a_report_from_the_page(setup):
    keep = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=1, max_new_tokens=2))
    evaluate.run_report(keep)
    time.sleep(0.01)
    gone = evaluate.create_report(evaluate.EvalConfig(models=setup, data="qa-test", limit=1, max_new_tokens=2))
    jobs.write_status(jobs.job_dir("reports", gone), status="running", pid=os.getpid())
    at = open_page(PAGE)
    assert at.session_state["compare.report"] == gone
    assert at.button(key="compare.delete").disabled  # refused while running
    jobs.write_status(jobs.job_dir("reports", gone), status="failed", error="boom")
    at.run()
    at.button(key="compare.delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    assert jobs.job_dir("reports", gone).exists()  # nothing removed before the confirmation
    at.button(key="compare.delete_no").click().run()
    assert not at.warning or not any("cannot be undone" in w.value for w in at.warning)
    at.button(key="compare.delete").click().run()
    at.button(key="compare.delete_yes").click().run()
    assert not at.exception, at.exception
    assert not jobs.job_dir("reports", gone).exists()
    assert f"Deleted report {gone}." in texts(at)
    options = at.selectbox(key="compare.report").options
    assert len(options) == 1 and options[0].startswith(keep) and at.session_state["compare.report"] == keep


def _models(**values) -> list[dict]:
    """Report entries for two models: values maps a metric to its pair of values."""
    base = {"rouge_l": 0.3, "bleu": 0.01, "exact_match": 0.0, "tokens_per_s": 50.0, "latency_s": 1.0,
            "peak_rss_mb": 900.0, "examples": 4}
    return [dict(base, name=n, **{k: v[i] for k, v in values.items()}) for i, n in enumerate(("small", "big"))]


def test_metric_panels_have_a_legend_zero_based_axes_and_friendly_units():
    from tunelab.ui import charts

    fig = charts.metric_bars(_models(bleu=(0.000004, 0.0213), rouge_l=(0.301, 0.305)))
    layout = fig.to_dict()["layout"]
    assert [a["text"] for a in layout["annotations"]][:5] == [
        "ROUGE-L (%)", "BLEU (0–100)", "Exact match (%)", "tokens/s", "latency (s)"]
    assert "no exact matches" in [a["text"] for a in layout["annotations"]]  # not an empty -1..1 axis
    legend = [tr for tr in fig.data if tr.showlegend]
    assert [tr.name for tr in legend] == ["small", "big"]  # one legend entry per model
    bleu = [tr.y[0] for tr in fig.data if tr.xaxis == "x2"]
    assert bleu == [0.0, 2.1]  # 0-100 scale, never 4μ
    for axis in ("yaxis", "yaxis2", "yaxis3"):
        assert list(layout[axis]["range"]) == [0, 105]  # a 0.4-point gap is not made to look large
    for axis in ("yaxis4", "yaxis5"):
        assert layout[axis]["range"][0] == 0
    scatter = charts.quality_speed(_models(rouge_l=(0.30, 0.31)), {"small": 10**8, "big": None}).to_dict()["layout"]
    assert scatter["xaxis"]["range"][0] == 0 and list(scatter["yaxis"]["range"]) == [0, 105]
    assert scatter.get("showlegend") is not False


def test_winners_only_where_the_shown_values_differ():
    from tunelab.ui import charts

    models = _models(exact_match=(0.0, 0.0), bleu=(0.00001, 0.00002), rouge_l=(0.3, 0.5), latency_s=(1.0, 2.0))
    assert charts.winners(models, "exact_match") == set()  # 0.0 vs 0.0
    assert charts.winners(models, "bleu") == set()  # 0.001 vs 0.002 on 0-100: both show 0.0
    assert charts.winners(models, "rouge_l") == {"big"}
    assert charts.winners(models, "latency_s") == {"small"}  # lower is better
    assert evaluate.best_per_column(models)["bleu"] == "big"  # the raw comparison would have crowned one
