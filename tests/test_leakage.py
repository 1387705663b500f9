"""Leakage guard: a run is never scored as "tested" on rows it trained on (issue 22, item 1).

The reproduction of the issue through the real CLI: import `dates`, split it 0.2, train a tiny random
Llama on the unsplit `dates`; the automatic before/after report must refuse `dates-test` (all its rows
were trained on), name the overlap, and fall back to the run's own held-out split. Plus: the lineage
check (an edited copy of a trained row), a report made by hand (compare / eval) carrying the overlap,
and the fix-the-data loop refusing to add test rows silently.
"""

from __future__ import annotations

import json

import pytest

import tiny_model
from polling import wait_for
from tunelab import jobs, workflow
from tunelab.cli import main as cli
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import auto, evaluate
from tunelab.train import runs, sft
from tunelab.train.config import TrainConfig

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
DATES = [{"instruction": "Write this date in words.", "input": f"{1990 + i % 30}-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
          "output": f"{i % 28 + 1} {MONTHS[i % 12]} {1990 + i % 30}"} for i in range(50)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert cli(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _import_and_split(tmp_path, capsys) -> None:
    src = tmp_path / "dates.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in DATES), encoding="utf-8")
    assert _json(capsys, ["data", "import", str(src), "--json"])["imported"] == 50
    split = _json(capsys, ["data", "split", "dates", "--test-size", "0.2", "--json"])
    assert split["test"] == {"name": "dates-test", "records": 10, "version": 1} or split["test"]["records"] == 10


def _wait(run_id: str, timeout: float = 300) -> dict:
    """The run's before/after report summary once it has finished."""
    def done():
        s = auto.summary(run_id)
        return s if s and s["status"] not in jobs.ACTIVE else None

    return wait_for(done, timeout, every=0.5, what=f"the before/after report of {run_id}")


def _cfg(model: str, data: str, **kw) -> TrainConfig:
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": data, "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "recipe": "manual", **kw})
    return cfg


@pytest.mark.slow
def test_the_issue_reproduction_names_the_overlap_and_claims_no_win(workspace, tiny, tmp_path, capsys):
    _import_and_split(tmp_path, capsys)
    out = _json(capsys, ["train", "--model", tiny, "--data", "dates", "--max-steps", "3", "--batch-size", "2",
                         "--cutoff-len", "64", "--json"])
    run = out["run"]
    assert out["status"] == "completed", runs.log_tail(run)
    s = _wait(run)
    shown = _json(capsys, ["runs", "show", run, "--json"])["report"]
    leak = shown["leakage"]
    # The recipe held some rows of dates out (the same seed as the split: they all lie in dates-test).
    trained_inputs = {r["input"] for r in sft.load_records(runs.config(run))[0]}
    x = sum(r["input"] in trained_inputs for r in store.read("dates-test").to_pylist())
    assert x >= 5
    assert (leak["overlap"], leak["n"], leak["data"], leak["source"]) == (x, 10, "dates-test", "test split")
    assert leak["lineage"] == "dates-test v1 was made from dates v1, which the run trained on"
    assert shown["sentence"].startswith(f"{x} of 10 rows of dates-test v1 were trained on (dates v1)")
    # Scored instead on the run's own held-out split, rows it never trained on; never on dates-test.
    assert shown["source"] == "held-out split" and shown["data"]["name"] == "dates"
    assert s["status"] == "completed" and shown["beat_base"] is not True
    report = evaluate.load_report(shown["report"])
    assert report["leakage"]["overlap"] == x and report["meta"]["source"] == "held-out split"
    held = {r["id"] for r in sft.load_records(runs.config(run))[1]}
    assert {e["id"] for e in report["examples"]} <= held
    # The human `reports show` says it too.
    capsys.readouterr()
    assert cli(["reports", "show", shown["report"]]) == 0
    assert f"warning: {x} of 10 rows of dates-test v1 were trained on" in capsys.readouterr().out

    # The Compare page says it in red above the report.
    from pagetest import open_page

    at = open_page("pages/compare.py")
    at.selectbox(key="compare.report").set_value(shown["report"]).run()
    assert not at.exception, at.exception
    assert any(f"{x} of 10 rows of dates-test v1 were trained on" in e.value for e in at.error)

    # The fix loop: the report's rows are test rows; adding them to training data is not silent.
    with pytest.raises(TuneLabError, match="test rows.*--allow-test-rows"):
        workflow.fix(shown["report"], "dates", threshold=1.01)
    fixed = workflow.fix(shown["report"], "dates", threshold=1.01, allow_test=True)
    assert fixed["test_rows"] == fixed["added"] + fixed["corrected"] > 0
    assert store.manifest("dates")["versions"][-1]["params"]["test_rows"] == fixed["test_rows"]


def test_a_run_scored_by_hand_on_trained_rows_carries_the_overlap(workspace, tiny, tmp_path, capsys):
    _import_and_split(tmp_path, capsys)
    run = runs.create(_cfg(tiny, "dates"))  # no held-out split: every row of dates trains
    assert runs.main(runs.run_dir(run)) == 0, runs.log_tail(run)
    doc = _json(capsys, ["eval", run, "--data", "dates-test", "--max-new-tokens", "4", "--json"])
    assert doc["leakage"]["overlap"] == 10 and doc["leakage"]["run"] == run
    rep = evaluate.load_report(doc["report"])
    assert rep["leakage"]["n"] == 10 and rep["leakage"]["source"] == "chosen data"
    # On rows the run did not train on, nothing is flagged.
    unseen = [dict(r, input=r["input"].replace("-", "/")) for r in DATES[:5]]
    store.commit("unseen", schema.to_table(unseen), "import")
    doc = _json(capsys, ["eval", run, "--data", "unseen", "--max-new-tokens", "4", "--json"])
    assert doc["leakage"] is None


def test_lineage_catches_an_edited_copy_and_a_run_without_a_held_out_split_uses_unseen_rows(workspace, tiny):
    from tunelab.evals import leakage

    store.commit("dates", schema.to_table([dict(r, id=f"d{i}") for i, r in enumerate(DATES)]), "import")
    from tunelab.data import split

    split.split("dates", 0.2)
    # The test rows reworded after the split (same ids): content differs, lineage still ties them.
    test = store.read("dates-test").to_pylist()
    store.commit("dates-test", schema.to_table([dict(r, instruction="Spell the date out.") for r in test]), "edit")
    run = runs.create(_cfg(tiny, "dates"))  # no eval split: nothing held out
    (runs.run_dir(run) / "output.json").write_text(json.dumps(
        {"schema": 1, "base": tiny, "method": "lora", "step": 1, "adapter_dir": "adapter",
         "lineage": {"data": "dates", "data_version": 1}}))
    src = auto.test_data(runs.run_dir(run))
    assert (src["source"], src["data"], src["version"]) == ("test split", "dates-test", 2)
    got, leak = leakage.guard(runs.run_dir(run), src)
    assert got is None and leak["overlap"] == leak["n"] == 10  # every test row trained on; none unseen
    assert leak["lineage"] == "dates-test v2 was made from dates v1, which the run trained on"
    # Half of dates-test was never in dates (new rows): only those are scored.
    fresh = [{"id": f"n{i}", "instruction": "Write this date in words.", "input": f"2031-01-{i + 1:02d}",
              "output": f"{i + 1} January 2031"} for i in range(4)]
    store.append_records("dates-test", fresh, op="append")
    got, leak = leakage.guard(runs.run_dir(run), auto.test_data(runs.run_dir(run)))
    assert leak["overlap"] == 10 and leak["n"] == 14 and got["source"] == "unseen rows of dates-test"
    assert [r["id"] for r in leakage.source_records(got)] == [f"n{i}" for i in range(4)]
    # A run on dates-train scored on dates-test: no overlap, no leakage.
    clean = runs.create(_cfg(tiny, "dates-train"))
    src = auto.test_data(runs.run_dir(clean))
    assert leakage.guard(runs.run_dir(clean), src) == (src, None)
