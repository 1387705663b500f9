"""The loop: a report's wrong answers -> corrected records -> a new data version -> a continued run ->
its own before/after report, whose lineage names every step. Real runs on a tiny random Llama, real
background report jobs, the real CLI and the Compare page through AppTest."""

from __future__ import annotations

import json
import time

import pytest
from pagetest import open_page

import tiny_model
from tunelab import jobs, workflow
from tunelab.cli import main as cli
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import auto, evaluate
from tunelab.synth import prompts
from tunelab.train import runs
from tunelab.train.config import TrainConfig

TRAIN = [{"id": f"t{i}", "instruction": f"Who are you? ({i})", "output": "I am Orbit, made by Lumen Labs."}
         for i in range(8)]
TEST = [{"id": "x0", "instruction": "What is your name?", "output": "My name is Orbit."},
        {"id": "x1", "instruction": "Who made you?", "input": "one line", "output": "Lumen Labs made me."},
        {"id": "x2", "instruction": "你叫什么名字？", "output": "我叫 Orbit。"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


@pytest.fixture
def data(workspace):
    store.commit("loop-train", schema.to_table(TRAIN), "import")
    store.commit("loop-test", schema.to_table(TEST), "import")


def _train(model: str, **kw) -> str:
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "loop-train", "max_steps": 2, "save_steps": 2, "batch_size": 2,
             "cutoff_len": 64, "recipe": "manual", **kw})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


def _report_of(run_id: str, timeout: float = 240) -> str:
    end = time.time() + timeout
    while time.time() < end:
        s = auto.summary(run_id)
        if s and s["status"] not in jobs.ACTIVE:
            assert s["status"] == "completed", s
            return s["report"]
        time.sleep(0.5)
    raise AssertionError(f"no finished report for {run_id}")


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert cli(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_loop_end_to_end_lineage_names_every_step(data, tiny, tmp_path, capsys):
    first = _train(tiny)
    r1 = _report_of(first)
    doc = evaluate.load_report(r1)
    assert workflow.tuned_model(doc) == first
    wrong = _json(capsys, ["reports", "wrong", r1, "--json"])["examples"]
    assert {e["id"] for e in wrong} == {"x0", "x1", "x2"}  # a random model gets none of them right

    # (a) corrected records into the training data: a new version naming the report and its examples.
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "x1", "output": "Lumen Labs built me."}) + "\n")
    # r1 scored the run's test rows (loop-test): adding them to its training data needs saying so.
    capsys.readouterr()
    assert cli(["report", "fix", r1, "--into", "loop-train", "--answers", str(answers)]) == 1
    assert "test rows" in capsys.readouterr().err and store.manifest("loop-train")["head"] == 1
    fixed = _json(capsys, ["report", "fix", r1, "--into", "loop-train", "--answers", str(answers),
                           "--allow-test-rows", "--json"])
    assert (fixed["name"], fixed["version"], fixed["added"], fixed["corrected"]) == ("loop-train", 2, 3, 0)
    v2 = store.read("loop-train", 2).to_pylist()
    assert len(v2) == len(TRAIN) + 3
    added = {r["id"]: r for r in v2[len(TRAIN):]}
    assert added["x1"]["output"] == "Lumen Labs built me." and added["x1"]["input"] == "one line"  # the record kept
    assert added["x0"]["output"] == "My name is Orbit."  # no corrected answer given: the reference
    entry = store.manifest("loop-train")["versions"][-1]
    assert entry["op"] == "fix" and entry["params"]["report"] == r1 and entry["params"]["run"] == first
    assert sorted(entry["params"]["examples"]) == ["x0", "x1", "x2"]

    # (c) continue the run on the new version, from the terminal; its report follows by itself. It trains on
    # loop-test's prompts now, so its report refuses loop-test and scores its own held-out split (seed 0 holds
    # out x0 and x1, rows neither run trained on; x2 trains).
    out = _json(capsys, ["train", "--model", first, "--data", "loop-train", "--max-steps", "2", "--batch-size", "2",
                         "--cutoff-len", "64", "--recipe", "manual", "--eval-split", "0.25", "--seed", "0", "--json"])
    second = out["run"]
    assert out["status"] == "completed", runs.log_tail(second)
    cfg = runs.config(second)
    assert (cfg.model.model, cfg.data.data, cfg.data.data_version) == (first, "loop-train", 2)
    r2 = _report_of(second)
    shown = _json(capsys, ["runs", "show", second, "--json"])
    assert shown["report"]["report"] == r2 and isinstance(shown["report"]["beat_base"], bool)
    assert shown["report"]["leakage"]["overlap"] == 1 and shown["report"]["source"] == "held-out split"
    assert [e["id"] for e in evaluate.load_report(r2)["examples"]] == ["x0", "x1"]

    lin = auto.lineage(r2)
    assert lin["report"] == r2 and lin["data"] == {"name": "loop-train", "version": 2}
    assert lin["run"] == second and lin["init_run"] == first and lin["base"] == tiny
    assert lin["train_data"]["name"] == "loop-train" and lin["train_data"]["version"] == 2
    assert lin["from_report"] == r1 and sorted(lin["examples"]) == ["x0", "x1", "x2"]
    # The first report's lineage stops at its run: that run trained on the imported data.
    assert auto.lineage(r1)["from_report"] is None and auto.lineage(r1)["train_data"]["version"] == 1


def _report(tiny: str, tmp_path) -> str:
    """A finished comparison of two registered tiny models on loop-test (no run involved)."""
    from tunelab.models import registry

    registry.add_model("tiny-a", tiny)
    registry.add_model("tiny-b", str(tiny_model.build(tmp_path / "b")))
    rid = evaluate.create_report(evaluate.EvalConfig(models=["tiny-a", "tiny-b"], data="loop-test", max_new_tokens=4))
    evaluate.run_report(rid)
    return rid


def test_fix_corrects_a_reference_the_dataset_already_holds(data, tiny, tmp_path):
    rid = _report(tiny, tmp_path)
    with pytest.raises(TuneLabError, match="test rows"):  # loop-test is a test split by its name
        workflow.fix(rid, "loop-test", examples=[0], answers={"0": "Orbit."})
    out = workflow.fix(rid, "loop-test", examples=[0], answers={"0": "Orbit."}, allow_test=True)
    assert (out["added"], out["corrected"], out["version"]) == (0, 1, 2)
    rows = store.read("loop-test").to_pylist()
    assert [r["output"] for r in rows] == ["Orbit.", TEST[1]["output"], TEST[2]["output"]]
    with pytest.raises(TuneLabError, match="has no example 9"):
        workflow.fix(rid, "loop-test", examples=[9])
    with pytest.raises(TuneLabError, match="invalid dataset name"):
        workflow.fix(rid, "../up", examples=[0])


def test_seeds_and_mistakes_to_avoid_for_generate(data, tiny, tmp_path, capsys):
    rid = _report(tiny, tmp_path)
    out = _json(capsys, ["reports", "seeds", rid, "--into", "loop-seeds", "--json"])
    seeds = store.read("loop-seeds").to_pylist()
    assert {r["id"]: r["output"] for r in seeds} == {r["id"]: r["output"] for r in TEST}  # prompt + reference
    assert sorted(r["id"] for r in seeds) == ["x0", "x1", "x2"]
    # One Chinese prompt among them: the Chinese default template gets the mistakes, in Chinese.
    version = prompts.get(out["prompt"]["name"], out["prompt"]["version"])
    assert out["prompt"]["name"] == "default-zh" and version["parent"] == out["prompt"]["version"] - 1
    assert len(version["mistakes"]) == 3 and any("你叫什么名字" in m for m in version["mistakes"])
    assert rid in version["note"]
    rendered = prompts.render(version, seeds, 5)
    assert "避免这些错误" in rendered and "What is your name?" in rendered
    assert f"--prompt-version {version['version']}" in out["command"]
    with pytest.raises(TuneLabError, match="no wrong answers"):
        workflow.seeds(rid, "loop-seeds", threshold=0.0)


def test_compare_page_one_click_each(data, tiny, capsys):
    first = _train(tiny)
    r1 = _report_of(first)
    at = open_page("pages/compare.py")
    at.selectbox(key="compare.report").set_value(r1).run()
    assert at.text_input(key="compare.fix_into").value == "loop-train"  # the run's own training data
    at.button(key="compare.fix").click().run()  # refused: they are the run's test rows
    assert store.manifest("loop-train")["head"] == 1 and any("test rows" in e.value for e in at.error)
    at.checkbox(key="compare.fix_allow_test").check().run()
    at.button(key="compare.fix").click().run()
    assert not at.exception, at.exception
    entry = store.manifest("loop-train")["versions"][-1]
    assert entry["version"] == 2 and entry["params"]["report"] == r1
    at.button(key="compare.seeds").click().run()
    assert store.exists("loop-test-seeds")
    assert at.session_state["gen.seeds"] == "loop-test-seeds" and at.session_state["gen.template"] == "default-zh"
    at.button(key="compare.continue").click().run()
    assert not at.exception, at.exception
    new = at.session_state["compare.continued"]
    try:
        cfg = runs.config(new)
        assert (cfg.model.model, cfg.data.data, cfg.data.data_version) == (first, "loop-train", 2)
        assert cfg.recipe  # sized by the auto recipe, like `tunelab train --model RUN --data NAME`
    finally:
        if runs.status(new).get("status") in jobs.ACTIVE:
            runs.stop(new)
