"""The Compare page shows the verdict, intervals, error bars, pairs and slices; no "Winner" from noise."""

from __future__ import annotations

import json

import pytest
from pagetest import open_page, texts
from test_eval import RECORDS, _tiny_model

from tunelab.data import schema, store
from tunelab.evals import evaluate
from tunelab.models import registry

PAGE = "pages/compare.py"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny-stats-page")
    return [_tiny_model(base / f"m{i}", seed=i) for i in (5, 6)]


def test_verdict_intervals_error_bars_and_no_winner_from_noise(workspace, tiny_dirs):
    for name, path in zip(("tiny-a", "tiny-b"), tiny_dirs):
        registry.add_model(name, path)
    store.commit("qa-test", schema.to_table(RECORDS), "import")
    rid = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="qa-test", max_new_tokens=6))
    doc = evaluate.run_report(rid)
    assert doc["verdict_detail"]["label"] != "better"  # two random models on 5 examples: nothing to call
    at = open_page(PAGE)
    assert not at.exception, at.exception
    # The one verdict sentence, not in green.
    assert doc["verdict"] in [i.value for i in at.info]
    assert doc["verdict"] not in [s.value for s in at.success]
    # Intervals next to each metric in the results table.
    table = next(df.value for df in at.dataframe if "ROUGE-L (%) 95 % interval" in df.value.columns)
    for (_, row), m in zip(table.iterrows(), doc["models"]):
        lo, hi = m["ci"]["rouge_l"]
        assert row["ROUGE-L (%) 95 % interval"] == f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        assert row["Exact match (%) 95 % interval"].startswith("[")
    # Error bars on the metric panels.
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][0]
    with_bars = [tr for tr in bars["data"] if tr.get("error_y", {}).get("arrayminus") is not None]
    assert len(with_bars) == 2 * 3  # two models x three quality panels
    # "Winner" only when significant: here the picker says inconclusive.
    assert at.selectbox(key="compare.pick").label == "Base model to train (inconclusive: no significant winner)"
    # Paired tests and slices are on the page.
    pairs = next(df.value for df in at.dataframe if "Holm p" in df.value.columns)
    assert len(pairs) == 3 and set(pairs["Test"]) == {"paired permutation", "paired bootstrap + permutation",
                                                      "exact McNemar"}
    slices = next(df.value for df in at.dataframe if "Column" in df.value.columns)
    assert "language" in set(slices["Column"])
    assert "Download HTML report" in [b.proto.label for b in at.get("download_button")]
    assert doc["verdict"] in texts(at)
