"""The Home page checklist against real workspaces, through AppTest and tunelab.workflow."""

from __future__ import annotations

import json

from pagetest import APP, TIMEOUT, open_page, texts
from streamlit.testing.v1 import AppTest

from tunelab import jobs, workflow
from tunelab.data import split
from tunelab.data.importer import import_path


def _import(workspace) -> None:
    path = workspace.parent / "toy.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": f"q{i}", "input": "", "output": "a"}) for i in range(10)))
    import_path(str(path))


def test_empty_workspace_says_import_first(workspace):
    at = open_page(None)
    assert "**Next:** import data." in texts(at)
    assert len(at.page_link) == 5
    assert not at.warning


def test_checklist_follows_the_workspace(workspace):
    _import(workspace)
    at = open_page(None)
    assert "1 dataset, 10 records" in texts(at)
    assert "**Next:** split off a test set." in texts(at)
    assert any("No test split yet" in w.value for w in at.warning)
    split.split("toy", 0.2)
    at = open_page(None)
    assert "toy-test" in texts(at) and "**Next:** compare base models." in texts(at)
    assert not at.warning


def test_training_without_comparison_warns(workspace):
    _import(workspace)
    split.split("toy", 0.2)
    jobs.write_status(jobs.job_dir("runs", "run-1"), status="completed", created=1.0)
    state = workflow.steps()
    assert [s.done for s in state] == [True, True, False, False, True]
    assert workflow.next_step(state).key == "compare"
    assert any("without comparing" in w for w in workflow.warnings(state))
    jobs.write_status(jobs.job_dir("reports", "rep-1"), status="completed", created=2.0)
    assert workflow.next_step(workflow.steps()) is None


def test_home_in_chinese(workspace):
    _import(workspace)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["lang"] = "zh"
    at.run()
    assert not at.exception
    # the bold closes before the full-width colon: "**下一步：**划" shows its asterisks (CommonMark flanking)
    assert "**下一步**：划分测试集。" in texts(at) and "还没有测试集" in at.warning[0].value


def test_home_counts_read_in_chinese_and_plural_in_english(workspace):
    _import(workspace)
    split.split("toy", 0.2)
    jobs.write_status(jobs.job_dir("runs", "run-1"), status="completed", created=1.0)
    at = open_page(None)
    shown = texts(at)
    assert "3 datasets, 20 records" in shown and "1 training run" in shown and "(s)" not in shown
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["lang"] = "zh"
    at.run()
    assert not at.exception
    shown = "\n".join(m.value for m in at.markdown)
    assert "3 个数据集，20 条记录" in shown and "1 次训练" in shown and "还没有对比报告" in shown
    assert "dataset" not in shown and "run(s)" not in shown and "records" not in shown


def test_sidebar_lists_active_jobs_from_disk_servers_included(workspace):
    import os

    jobs.write_status(jobs.job_dir("runs", "run-live"), status="running", created=1.0, pid=os.getpid(), progress="3/10")
    jobs.write_status(jobs.job_dir("servers", "srv-live"), status="running", created=2.0, pid=os.getpid(),
                      url="http://127.0.0.1:8123/v1")
    at = open_page(None)
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "run `run-live` — running 3/10" in side and "`srv-live` — running · http://127.0.0.1:8123/v1" in side
    jobs.write_status(jobs.job_dir("runs", "run-live"), status="completed")
    jobs.write_status(jobs.job_dir("servers", "srv-live"), status="stopped")
    at = open_page(None)  # AppTest drops the sidebar on a rerun; the browser test covers the poll
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "run-live" not in side and "srv-live" not in side and "No jobs running." in side
