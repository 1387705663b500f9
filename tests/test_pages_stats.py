"""The Stats page through AppTest: metrics and plotly charts for a real dataset."""

from __future__ import annotations

import json

import pytest
from pagetest import open_page

from tunelab.data.importer import import_path


@pytest.fixture
def dataset(workspace):
    recs = [{"instruction": f"Say something number {i}", "input": "", "output": "word " * (i * 40)}
            for i in range(1, 20)]
    recs += [recs[0], {"instruction": "nothing", "input": "", "output": ""}]
    path = workspace.parent / "lengths.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return import_path(str(path))["name"]


def test_stats_shows_metrics_and_charts(dataset):
    at = open_page("pages/stats.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Records"] == "21"
    assert metrics["Exact duplicates"] == "1"
    assert metrics["Empty outputs"] == "1"
    assert float(metrics["Truncated at 256"].rstrip("%")) > 0
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    figure = json.loads(charts[0].proto.spec)
    lines = [s["x0"] for s in figure["layout"]["shapes"]]
    assert 256 in lines and 512 in lines
    assert "smollm2" in at.caption[-1].value.lower() or "tokenizer" in at.caption[-1].value.lower()


def test_empty_workspace_points_to_data(workspace):
    at = open_page("pages/stats.py")
    assert at.info and not at.get("plotly_chart")
