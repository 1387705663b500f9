"""The Runs page (AppTest) over real tiny runs: filters, 2-5 runs compared (curves, config diff, results,
lineage) and the queue (positions, cancel, move to the front)."""

from __future__ import annotations

import json

import pytest
from pagetest import open_page, texts

import tiny_model as builder
from tunelab.train import manage, runs
from tunelab.train.config import TrainConfig

COMMON = {"data": "tiny", "max_steps": 4, "eval_steps": 2, "eval_split": 0.25, "cutoff_len": 64,
          "auto_report": False}


def _trained(model: str, tag: str, **settings) -> str:
    """A run trained to the end by the real training loop, in this process."""

    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, **COMMON, **settings})
    rid = runs.create(cfg)
    assert runs.main(runs.run_dir(rid)) == 0
    manage.tag(rid, add=[tag])
    return rid


@pytest.fixture
def three_runs(workspace, tiny_model):
    builder.dataset()
    a = _trained(tiny_model, "lr-high", learning_rate=1e-3, lora_r=8)
    b = _trained(tiny_model, "lr-low", learning_rate=2e-4, lora_r=4)
    c = _trained(tiny_model, "lr-low", learning_rate=2e-4, lora_r=4, init_adapter=a)  # continues run a
    return a, b, c


def _figures(at) -> dict[str, dict]:
    return {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


@pytest.mark.slow
def test_compare_two_runs_curves_config_diff_results_lineage(three_runs):
    a, b, c = three_runs
    at = open_page("pages/runs.py")
    assert "Nothing is waiting to train." in texts(at)
    assert set(at.dataframe[0].value["run"]) == {a, b, c}
    at.selectbox(key="runs.filter_tag").set_value("lr-low").run()  # the filter narrows the table
    assert set(at.dataframe[0].value["run"]) == {b, c}
    at.selectbox(key="runs.filter_tag").set_value("").run()

    at.multiselect(key="runs.selected").set_value([a, b]).run()
    assert not at.exception, at.exception
    figs = list(_figures(at).values())
    assert len(figs) == 2  # training loss and eval loss, one chart each
    for fig, metric in zip(figs, ("loss", "eval_loss")):
        assert [tr["name"] for tr in fig["data"]] == [a, b]  # both runs' curves
        for tr, rid in zip(fig["data"], (a, b)):
            want = [(r["step"], r[metric]) for r in runs.metrics(rid) if r.get(metric) is not None]
            assert tr["x"] == [w[0] for w in want] and tr["y"] == pytest.approx([w[1] for w in want])
    diff, results, lineage = (t.value for t in at.table)
    # Only the settings that differ: the oracle is each run's own config.yaml.
    fa, fb = runs.config(a).flat(), runs.config(b).flat()
    assert set(diff.index) == {k for k in fa if fa[k] != fb[k]} and {"learning_rate", "lora_r"} <= set(diff.index)
    assert list(diff.loc["lora_r"]) == ["8", "4"]
    best_b = min(r["eval_loss"] for r in runs.metrics(b) if r.get("eval_loss") is not None)
    assert results.loc["Best eval loss", b] == f"{best_b:.4g}" and results.loc["Status", a] == "completed"
    assert lineage.loc["Dataset", a] == "tiny" and lineage.loc["Parent run", a] == "—"

    at.multiselect(key="runs.selected").set_value([a, c]).run()  # c continued a's adapter
    lineage = list(at.table)[2].value
    assert lineage.loc["Parent run", c] == a and lineage.loc["Dataset version", c] == "1"
    assert not at.exception, at.exception


def _queued(model: str, n: int = 3) -> list[str]:
    """n runs created and waiting (nothing launches them), oldest first."""
    ids = []
    for _ in range(n):
        cfg = TrainConfig.for_method("lora")
        cfg.set({"model": model, "data": "tiny", "max_steps": 2, "cutoff_len": 64})
        ids.append(runs.create(cfg))
    return ids


def test_queue_shows_positions_cancel_and_move_to_front(workspace, tiny_model):
    builder.dataset()
    ids = _queued(tiny_model)
    at = open_page("pages/runs.py")
    shown = texts(at)
    for pos, rid in enumerate(ids, 1):
        assert f"**{pos}.** `{rid}`" in shown
    assert at.button(key=f"runs.front.{ids[0]}").disabled  # already first
    at.button(key=f"runs.cancel.{ids[1]}").click().run()
    assert not at.exception, at.exception
    assert runs.status(ids[1])["status"] == "stopped"
    at.button(key=f"runs.front.{ids[2]}").click().run()
    assert not at.exception, at.exception
    rows = {r["run"]: r for r in runs.list_runs()}
    assert rows[ids[2]]["position"] == 1 and rows[ids[0]]["position"] == 2 and "position" not in rows[ids[1]]
    at.run()
    shown = texts(at)
    assert f"**1.** `{ids[2]}`" in shown and f"**2.** `{ids[0]}`" in shown and ids[1] not in shown


def test_runs_page_refuses_more_than_five(workspace, tiny_model):
    from tunelab.errors import TuneLabError
    from tunelab.train import compare_runs

    builder.dataset()
    ids = _queued(tiny_model, 6)
    with pytest.raises(TuneLabError, match="at most 5"):
        compare_runs.compare(ids)
    assert compare_runs.config_diff(ids[:2]) == []  # same settings: nothing differs
