"""The before/after report: a finished run evaluates its base and itself on its test data, unasked.

Real runs on a tiny random Llama (trained in this process through the worker's own entry point),
real background report jobs, the real `runs show` CLI and the real Train page through AppTest;
the LLM judge against a small HTTP server on 127.0.0.1 written here.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from chat_server import serve
from pagetest import open_page, texts

import tiny_model
from tunelab import jobs
from tunelab.cli import main as cli
from tunelab.data import schema, store
from tunelab.evals import auto, evaluate, judge
from tunelab.train import config as tconfig
from tunelab.train import runs, sft
from tunelab.train.config import TrainConfig

QA = [{"id": f"q{i}", "instruction": f"What is {i} plus {i}?", "output": f"{2 * i}"} for i in range(12)]
SENTENCE = re.compile(r"^(.+ beats .+ on ROUGE-L by |.+ is worse than .+ on ROUGE-L: |.+ is not worse than .+ on "
                      r"ROUGE-L by more than |No detectable difference between .+ on ROUGE-L on \d+ examples)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _cfg(model: str, data: str, **kw) -> TrainConfig:
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": data, "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "recipe": "manual"})
    cfg.set(kw)
    return cfg


def _train(cfg: TrainConfig) -> str:
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


def _wait_report(run_id: str, timeout: float = 240) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        s = auto.summary(run_id)
        if s and s["status"] not in jobs.ACTIVE:
            return s
        time.sleep(0.5)
    rid = (auto.summary(run_id) or {}).get("report")
    log = (jobs.job_dir("reports", rid) / "job.log").read_text() if rid else "no report"
    raise AssertionError(f"the report did not finish:\n{log}")


def _show_json(run_id: str, capsys) -> dict:
    capsys.readouterr()
    assert cli(["runs", "show", run_id, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- which test data

def test_test_data_prefers_the_test_twin_then_eval_data_then_the_held_out_split(workspace, tiny):
    store.commit("qa", schema.to_table(QA), "import")
    run = runs.create(_cfg(tiny, "qa", eval_split=0.25, seed=7))
    src = auto.test_data(runs.run_dir(run))
    assert src["source"] == "held-out split" and src["data"] == "qa"
    # The same records the training held out (sft.load_records), not a second, different draw.
    _, held = sft.load_records(runs.config(run))
    assert [e["id"] for e in auto.examples(src)] == [r["id"] for r in held]
    assert [e["index"] for e in auto.examples(src)] == list(range(len(held)))  # the Compare page indexes by position

    store.commit("other", schema.to_table(QA[:3]), "import")
    run = runs.create(_cfg(tiny, "qa", eval_data="other"))
    assert auto.test_data(runs.run_dir(run))["data"] == "other"

    store.commit("qa-train", schema.to_table(QA[:8]), "import")
    store.commit("qa-test", schema.to_table(QA[8:]), "import")
    run = runs.create(_cfg(tiny, "qa-train", eval_data="other"))
    src = auto.test_data(runs.run_dir(run))
    assert (src["source"], src["data"], src["indices"]) == ("test split", "qa-test", None)

    run = runs.create(_cfg(tiny, "other"))  # no twin, no eval data, nothing held out
    assert auto.test_data(runs.run_dir(run)) is None


def test_answer_length_follows_the_references():
    short = [{"reference": "4"}, {"reference": "ten"}]
    assert auto.new_tokens_for(short) == auto.MIN_NEW_TOKENS
    assert auto.new_tokens_for([{"reference": "word " * 30}]) == 2 * 30 + 8
    assert auto.new_tokens_for([{"reference": "word " * 500}]) == auto.MAX_NEW_TOKENS


def test_no_auto_report_flag_reaches_the_run_config():
    import argparse

    p = argparse.ArgumentParser()
    tconfig.add_flags(p)
    assert tconfig.from_flags(p.parse_args(["--no-auto-report"])).training.auto_report is False
    assert tconfig.from_flags(p.parse_args([])).training.auto_report is True
    assert "--no-auto-report" in tconfig.to_flags(tconfig.from_flags(p.parse_args(["--no-auto-report"])))


def test_a_run_without_test_data_says_why_it_has_no_report(workspace, tiny, capsys):
    tiny_model.dataset()
    run = _train(_cfg(tiny, "tiny"))
    doc = _show_json(run, capsys)
    assert doc["report"]["report"] is None and doc["report"]["status"] == "skipped"
    assert "no test data" in doc["report"]["sentence"]
    assert not evaluate.list_reports()


def test_auto_report_off_launches_nothing(workspace, tiny, capsys):
    store.commit("qa-train", schema.to_table(QA[:8]), "import")
    store.commit("qa-test", schema.to_table(QA[8:]), "import")
    run = _train(_cfg(tiny, "qa-train", auto_report=False))
    assert "turned off" in _show_json(run, capsys)["report"]["reason"]
    assert not evaluate.list_reports()


# ---------------------------------------------------------------- the report itself, in the CLI and on the page

def test_finished_run_shows_its_before_after_report_without_a_click(workspace, tiny, capsys):
    store.commit("qa-train", schema.to_table(QA[:8]), "import")
    store.commit("qa-test", schema.to_table(QA[8:]), "import")
    run = _train(_cfg(tiny, "qa-train"))
    rec = json.loads((runs.run_dir(run) / auto.FILE).read_text())
    assert rec["source"] == "test split" and rec["data"] == "qa-test" and rec["examples"] == 4
    # The Compare page's list has it, labelled with its run.
    listed = {r["id"]: r for r in evaluate.list_reports()}
    assert listed[rec["report"]]["run"] == run and listed[rec["report"]]["models"] == [tiny, run]

    s = _wait_report(run)
    assert s["status"] == "completed", s
    doc = _show_json(run, capsys)
    report = doc["report"]
    assert report["report"] == rec["report"] and report["status"] == "completed"
    assert report["base"]["name"] == tiny and report["tuned"]["name"] == run
    for side in ("base", "tuned"):
        assert report[side]["examples"] == 4
        assert all(isinstance(report[side][k], float) for k in ("rouge_l", "bleu", "exact_match"))
    assert isinstance(report["beat_base"], bool)
    # One verdict from the paired test: "beat its base" only when it says better, never from a higher mean alone.
    assert report["sentence"] == report["verdict"] and SENTENCE.match(report["verdict"]), report["verdict"]
    assert report["verdict_label"] in ("better", "worse", "non-inferior", "inconclusive")
    assert report["beat_base"] == (report["verdict_label"] == "better")
    assert set(report["tuned"]["ci"]) == {"rouge_l", "bleu", "exact_match"} and len(report["pairs"]) == 3
    assert report["provenance"]["models"][1]["run"]["id"] == run
    full = evaluate.load_report(rec["report"])
    assert all(set(ex["outputs"]) == {tiny, run} for ex in full["examples"])  # per-example answers of both
    assert full["generation"]["max_new_tokens"] == auto.MIN_NEW_TOKENS  # sized to the short references

    # The Train page's run view shows it on open: no button pressed.
    at = open_page("pages/train.py")
    shown = texts(at)
    assert report["sentence"] in shown
    assert rec["report"] in shown

    # The Compare page lists it under the run's name.
    at = open_page("pages/compare.py")
    label = at.selectbox(key="compare.report").format_func(rec["report"])
    assert run in label


def test_train_page_shows_a_report_in_progress_then_its_result(workspace, tiny, monkeypatch):
    """The run view's report panel reads the folder on every rerun (the polling fragment)."""
    store.commit("qa-train", schema.to_table(QA[:8]), "import")
    store.commit("qa-test", schema.to_table(QA[8:]), "import")
    run = _train(_cfg(tiny, "qa-train", auto_report=False))
    d = runs.run_dir(run)
    # The run's report made but its job not started yet, as right after training.
    cfg = runs.config(run)
    cfg.training.auto_report = True
    cfg.to_yaml(d / "config.yaml")
    with monkeypatch.context() as m:
        m.setattr(jobs, "launch", lambda *a, **k: None)  # the job itself is not under test here
        rid = auto.start(d)
    at = open_page("pages/train.py")
    assert "The before/after report is queued (0/8 answers)." in texts(at)
    evaluate.run_report(rid)
    at.run()  # the fragment's next tick: a rerun, not a click
    assert auto.summary(run)["sentence"] in texts(at)


# ---------------------------------------------------------------- LLM-as-judge

@pytest.fixture
def judge_server():
    """A judge that always prefers answer B (and mumbles once): (its model spec, [(model, prompt)] it was asked)."""
    with serve(lambda model, prompt: "hmm" if "What is 10 plus 10?" in prompt else "B") as (url, asked):
        yield f"openai:{url}", asked


def test_judge_asks_both_orders_and_a_position_biased_judge_makes_no_winner(workspace, tiny, judge_server, tmp_path, capsys):
    judge_server, asked = judge_server
    from tunelab.models import registry

    registry.add_model("tiny-a", tiny)
    registry.add_model("tiny-b", str(tiny_model.build(tmp_path / "b")))
    store.commit("qa-test", schema.to_table(QA[6:11]), "import")  # q6..q10; q10 gets an unreadable reply
    prompt = tmp_path / "judge.txt"
    prompt.write_text("Q: {prompt}\nRef: {reference}\nA: {answer_a}\nB: {answer_b}\nBetter? A or B.")
    capsys.readouterr()
    assert cli(["compare", "--models", "tiny-a,tiny-b", "--data", "qa-test", "--max-new-tokens", "4",
                "--judge", judge_server, "--judge-prompt", str(prompt), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # The judge always says B: tiny-b when tiny-a is shown first, tiny-a when tiny-b is: the orders never agree.
    assert doc["judge"] == {"win": 0, "tie": 4, "loss": 0, "invalid": 1}
    stored = judge.load(doc["report"])
    assert stored["prompt"] == prompt.read_text() and stored["judge"] == judge_server
    assert stored["orders"]["ab"]["win"] == 4 and stored["orders"]["ba"]["loss"] == 4
    assert stored["position_consistency"] == 0.0
    prompts = [p for _, p in asked]
    assert len(prompts) == 10 and all(p.startswith("Q: What is") and "\nRef: " in p for p in prompts)
    # Judged again from the CLI with the default prompt; the report keeps the latest verdicts.
    assert cli(["reports", "judge", doc["report"], "--judge", judge_server, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["prompt"] == judge.DEFAULT_PROMPT and again["counts"]["tie"] == 4


def test_judge_refuses_a_prompt_without_both_answers(workspace):
    from tunelab.errors import TuneLabError

    with pytest.raises(TuneLabError, match=r"needs \{answer_a\} and \{answer_b\}"):
        judge.check_prompt("Which is better? {answer_a}")
    assert [judge.parse(x) for x in ("B", " a.", "TIE", "Answer: B", "")] == ["B", "A", "tie", None, None]
