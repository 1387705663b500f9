"""Deleting a report: its folder goes, a queued or running one is refused, the CLI says one line."""

from __future__ import annotations

import json
import os

import pytest
from cli_run import one_line_error, tunelab
from test_eval import RECORDS

from tunelab import jobs
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate
from tunelab.models import registry


@pytest.fixture
def report(workspace, tiny_model):
    """A finished two-model report on a small dataset (tiny models: a few seconds)."""
    registry.add_model("tiny-a", tiny_model)
    registry.add_model("tiny-b", tiny_model)
    store.commit("qa-test", schema.to_table(RECORDS), "import")
    rid = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="qa-test", limit=2,
                                                     max_new_tokens=3))
    return evaluate.run_report(rid)["report"]


def test_delete_removes_the_folder_and_the_listing(report):
    other = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="qa-test", limit=1))
    assert evaluate.delete_report(report) == {"report": report, "status": "completed"}
    assert not jobs.job_dir("reports", report).exists()
    assert [r["id"] for r in evaluate.list_reports()] == [other]  # the other report is untouched
    with pytest.raises(TuneLabError, match="unknown report"):
        evaluate.load_report(report)
    with pytest.raises(TuneLabError, match="unknown report"):
        evaluate.delete_report(report)


def test_delete_refuses_a_queued_or_running_report(report):
    queued = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="qa-test", limit=1))
    with pytest.raises(TuneLabError, match="is queued: stop it first"):
        evaluate.delete_report(queued)
    jobs.write_status(jobs.job_dir("reports", report), status="running", pid=os.getpid())
    with pytest.raises(TuneLabError, match="is running: stop it first"):
        evaluate.delete_report(report)
    assert (jobs.job_dir("reports", report) / "examples.jsonl").exists()  # nothing was removed
    assert (jobs.job_dir("reports", queued) / "config.json").exists()


def test_cli_reports_delete(report, workspace):
    queued = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="qa-test", limit=1))
    refused = tunelab(workspace, "reports", "delete", queued)
    assert "is queued: stop it first" in one_line_error(refused)
    out = tunelab(workspace, "reports", "delete", report, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"report": report, "status": "completed"}
    assert not jobs.job_dir("reports", report).exists()
    assert "unknown report" in one_line_error(tunelab(workspace, "reports", "delete", report))
