"""Before/after for preference runs (issue 13, item 5) and their live reward charts (item 3).

A real tiny DPO run, trained in this process through the worker's own entry point (train/sft.main),
which ends by starting its before/after report (evals/auto.py): the preference accuracy of the base
and of the tuned model on the run's held-out pairs (the NAME-test twin here) is measured then. The
answer report's background job is not what these tests look at, so it is not launched; the Train
page is the real one, through AppTest.
"""

from __future__ import annotations

import json
import re

import pytest
from pagetest import open_page, texts

from tunelab import jobs
from tunelab.cli import main as cli
from tunelab.data import store
from tunelab.data.schema import to_table
from tunelab.evals import auto
from tunelab.train import preference, runs
from tunelab.train.config import TrainConfig

WORDS = ["river", "lamp", "garden", "coffee", "window", "pencil", "ocean", "violin", "forest", "candle",
         "bridge", "rocket", "tiger", "cloud", "mirror", "orange"]
SENTENCE = re.compile(r"The tuned model prefers the chosen answer (more often|no more often) than its base "
                      r"\((\d\.\d\d) \[\d\.\d\d, \d\.\d\d\] vs (\d\.\d\d) \[\d\.\d\d, \d\.\d\d\] "
                      r"of 6 held-out pairs, 95 % Wilson intervals\)\.$")


def _pairs(words) -> list[dict]:
    return [{"id": f"p{i}", "instruction": f"Please tell me about the {w}.", "input": "",
             "output": f"Yes, here is the {w}.", "chosen": f"Yes, here is the {w}.", "rejected": f"No. Go away, {w}."}
            for i, w in enumerate(words)]


def _dpo_run(tiny_model: str, monkeypatch) -> str:
    """A finished 3-step DPO run on 10 pairs, evaluated every 2 steps on prefs-test (6 pairs), auto report on."""
    store.commit("prefs", to_table(_pairs(WORDS[:10])), op="test")
    store.commit("prefs-test", to_table(_pairs(WORDS[10:])), op="test")
    cfg = TrainConfig.for_method("dpo")
    cfg.set({"model": tiny_model, "data": "prefs", "eval_data": "prefs-test", "eval_steps": 2, "max_steps": 3,
             "save_steps": 3, "batch_size": 2, "cutoff_len": 64, "recipe": "manual", "learning_rate": 5e-3})
    run_id = runs.create(cfg)
    monkeypatch.setattr(jobs, "launch", lambda *a, **k: None)  # the answer report's job: not under test
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


def _accuracy_by_the_models_own_loss(model_spec: str, records: list[dict]) -> float:
    """The oracle: a pair is won when the model's own loss (mean NLL of the answer tokens) is lower for chosen."""
    import torch

    from tunelab.models.loading import load_model

    model, tok = load_model(model_spec, device="cpu")
    enc = preference.encode(tok, records, 1024, "dpo")
    wins = 0
    with torch.no_grad():
        for e in enc.examples:
            (c_ids, c_lab), (r_ids, r_lab) = e.seqs
            nll = [float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([lab])).loss)
                   for ids, lab in ((c_ids, c_lab), (r_ids, r_lab))]
            wins += nll[0] < nll[1]
    return wins / len(enc.examples)


def test_dpo_run_report_carries_preference_accuracy_of_base_and_tuned(workspace, tiny_model, monkeypatch, capsys):
    run = _dpo_run(tiny_model, monkeypatch)
    assert "preference accuracy on 6 held-out pairs" in capsys.readouterr().err  # the run's log line
    rec = json.loads((runs.run_dir(run) / auto.FILE).read_text())
    assert rec["source"] == "test split" and rec["data"] == "prefs-test"
    pref = rec["preference_accuracy"]
    # The shares the models' own losses give on the held-out pairs, for the base and for the run.
    held = store.read("prefs-test").to_pylist()
    assert pref["pairs"] == 6
    assert pref["base"] == pytest.approx(_accuracy_by_the_models_own_loss(tiny_model, held), abs=1e-4)
    assert pref["tuned"] == pytest.approx(_accuracy_by_the_models_own_loss(run, held), abs=1e-4)  # stored to 4 places

    capsys.readouterr()
    assert cli(["runs", "show", run, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    shown = report["preference_accuracy"]
    assert (shown["base"], shown["tuned"]) == (pref["base"], pref["tuned"])
    assert shown["beat_base"] == (pref["tuned"] > pref["base"])
    m = SENTENCE.search(report["sentence"])  # appended to the report's own sentence
    assert m and m.group(1) == ("more often" if shown["beat_base"] else "no more often")
    assert (float(m.group(2)), float(m.group(3))) == (round(pref["tuned"], 2), round(pref["base"], 2))
    capsys.readouterr()
    assert cli(["runs", "show", run]) == 0
    assert "prefers the chosen answer" in capsys.readouterr().out


def test_train_page_shows_reward_charts_and_preference_before_after(workspace, tiny_model, monkeypatch):
    run = _dpo_run(tiny_model, monkeypatch)
    rows = runs.metrics(run)
    assert any(r.get("eval_reward_margin") is not None for r in rows)
    at = open_page("pages/train.py")
    # The live chart: reward margin and reward accuracy (train and eval) next to the loss.
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    live = next(c for c in charts if any(a.get("text") == "loss" for a in c["layout"].get("annotations", [])))
    titles = {a["text"] for a in live["layout"]["annotations"]}
    assert {"loss", "reward margin", "reward accuracy"} <= titles
    names = {tr.get("name") for tr in live["data"]}
    assert {"reward margin", "eval reward margin", "reward accuracy", "eval reward accuracy"} <= names
    acc = next(tr for tr in live["data"] if tr.get("name") == "reward accuracy")
    assert acc["y"] == [r["reward_accuracy"] for r in rows]
    # The before/after panel: preference accuracy of the base and of the tuned model.
    s = auto.summary(run)["preference_accuracy"]
    shown = texts(at)
    word = "more often" if s["beat_base"] else "no more often"
    assert (f"The tuned model prefers the chosen answer {word} than its base "
            f"({s['tuned']:.2f} vs {s['base']:.2f} of 6 held-out pairs).") in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["preference accuracy before"] == f"{s['base']:.2f}"
    assert metrics["preference accuracy after"] == f"{s['tuned']:.2f}"
    # The form with dpo selected: its command and no error.
    at.selectbox(key="train.method").set_value("dpo").run()
    assert not at.exception, at.exception
    cmd = next(c.value for c in at.code if c.value.startswith("tunelab train"))
    assert "--method dpo" in cmd


def test_train_form_shows_ktos_weights_for_kto_only(workspace, tiny_model):
    store.commit("prefs", to_table(_pairs(WORDS[:10])), op="test")
    at = open_page("pages/train.py")
    at.selectbox(key="train.method").set_value("kto").run()
    assert not at.exception, at.exception
    labels = {w.label for w in at.number_input}
    assert {"KTO: weight of good answers", "KTO: weight of bad answers"} <= labels and "DPO loss" not in {
        w.label for w in at.selectbox}
    at.number_input(key="train.kto_desirable_weight").set_value(1.5).run()
    cmd = next(c.value for c in at.code if c.value.startswith("tunelab train"))
    assert "--method kto" in cmd and "--kto-desirable-weight 1.5" in cmd
    at.selectbox(key="train.method").set_value("dpo").run()
    assert not {"KTO: weight of good answers", "KTO: weight of bad answers"} & {w.label for w in at.number_input}
