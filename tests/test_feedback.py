"""Playground ratings become training data (issue 13 item 4): thumbs up/down as KTO records, a written
better answer and "prefer A over B" as preference pairs, each a new dataset version with lineage, and
the Home checklist's count of ratings waiting for a preference run."""

from __future__ import annotations

import pytest
from pagetest import open_page, texts

from tunelab import jobs
from tunelab.data import feedback, store
from tunelab.errors import TuneLabError
from tunelab.models.registry import add_model
from tunelab.ui import cache

LINEAGE = {"models": ["tiny"], "system": "Be brief.", "engine": "auto"}
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
          {"role": "assistant", "content": "An apple."}, {"role": "user", "content": "And a vegetable?"}]


# ---------------------------------------------------------------- core: data/feedback.py


def test_pair_and_kto_records_land_as_new_versions_with_lineage(workspace):
    e1 = feedback.save_feedback("prefs", PROMPT, kind="pair", chosen="A carrot.", rejected="A banana.",
                                lineage=LINEAGE, source="better")
    e2 = feedback.save_feedback("prefs", PROMPT, kind="kto", answer="A banana.", desirable=False, lineage=LINEAGE,
                                source="thumbs")
    assert (e1["version"], e1["records"], e2["version"], e2["records"]) == (1, 1, 2, 2)
    pair, kto = store.read("prefs").to_pylist()
    assert pair["id"] == e1["record"] and kto["id"] == e2["record"]
    prompt = {"instruction": "And a vegetable?", "input": "", "system": "Be brief.",
              "history": [["Name a fruit.", "An apple."]]}
    assert {k: pair[k] for k in prompt} == prompt and {k: kto[k] for k in prompt} == prompt
    assert (pair["chosen"], pair["rejected"], pair["output"], pair["kto_tag"]) == ("A carrot.", "A banana.",
                                                                                   "A carrot.", None)
    assert (kto["output"], kto["kto_tag"], kto["chosen"], kto["rejected"]) == ("A banana.", False, None, None)
    m = store.manifest("prefs")
    assert [v["op"] for v in m["versions"]] == ["feedback", "feedback"] and m["versions"][1]["parent"] == 1
    params = m["versions"][0]["params"]
    assert params == {"kind": "pair", "source": "better", "record": e1["record"], "added": 1, **LINEAGE}
    assert m["versions"][1]["params"]["kind"] == "kto"


@pytest.mark.parametrize("kwargs, words", [
    ({"kind": "pair", "chosen": "Same.", "rejected": " Same. "}, "same text"),
    ({"kind": "pair", "chosen": "Good.", "rejected": ""}, "not empty"),
    ({"kind": "kto", "answer": "  "}, "empty answer"),
    ({"kind": "kto", "answer": "An answer.", "desirable": None}, "desirable"),
    ({"kind": "ranking", "chosen": "a", "rejected": "b"}, "unknown feedback kind"),
])
def test_a_rating_that_teaches_nothing_is_refused_and_writes_nothing(workspace, kwargs, words):
    with pytest.raises(TuneLabError, match=words):
        feedback.save_feedback("prefs", PROMPT, **kwargs)
    assert not store.exists("prefs")


def test_prompt_must_end_with_the_users_question(workspace):
    with pytest.raises(TuneLabError, match="ending with a user turn"):
        feedback.save_feedback("prefs", PROMPT[:3], kind="kto", answer="x", desirable=True)


def test_waiting_counts_ratings_no_preference_run_has_used(workspace):
    assert feedback.waiting() == {}
    store.append_records("plain", [{"instruction": "q", "output": "a"}], op="import")
    feedback.save_feedback("prefs", PROMPT, kind="pair", chosen="A carrot.", rejected="A banana.")
    feedback.save_feedback("prefs", PROMPT, kind="kto", answer="A banana.", desirable=False)
    assert feedback.waiting() == {"prefs": {"pairs": 1, "kto": 1}}  # `plain` holds no rating
    assert feedback.waiting([("prefs", 2)]) == {"prefs": {"pairs": 0, "kto": 0}}
    assert feedback.waiting([("prefs", 1)]) == {"prefs": {"pairs": 0, "kto": 1}}
    feedback.save_feedback("prefs", PROMPT, kind="pair", chosen="A leek.", rejected="A pear.")
    assert feedback.waiting([("prefs", 2)]) == {"prefs": {"pairs": 1, "kto": 0}}
    store.undo("prefs")  # the undone rating is no longer in the head's history
    assert feedback.waiting([("prefs", 2)]) == {"prefs": {"pairs": 0, "kto": 0}}


# ---------------------------------------------------------------- the Playground page


def _page(tiny_model, **models):
    add_model("tiny", tiny_model)
    for name, path in models.items():
        add_model(name, path)
    cache.backend.clear()
    at = open_page("pages/playground.py")
    at.selectbox(key="play.model_a").set_value("tiny")
    at.run()
    assert not at.exception, at.exception
    return at


def _run(at):
    at.run(timeout=120)
    assert not at.exception, at.exception


def _answer(at, slot="A", i=0):
    """The model's answer as generated (the page shows it rendered as markdown)."""
    return at.session_state["play.history"][i]["replies"][slot]["text"]


def test_playground_rate_down_write_a_better_answer_and_find_the_pair(workspace, tiny_model):
    at = _page(tiny_model)
    at.text_area(key="play.system").set_value("Be brief.")
    at.chat_input(key="play.prompt").set_value("Name a vegetable.")
    _run(at)
    answer = _answer(at)
    assert answer.strip()
    assert at.selectbox(key="play.feedback_dataset").value == "(new dataset)"
    assert at.text_input(key="play.feedback_new").value == "feedback"

    at.button(key="play.down.A.0").click()
    _run(at)
    assert not [b for b in at.button if b.key in ("play.up.A.0", "play.down.A.0")]  # rated once
    assert "saved to **feedback**, version 1" in texts(at)
    at.text_area(key="play.better.A.0").set_value("A carrot.")
    at.button(key="play.better_save.A.0").click()
    _run(at)
    assert "saved to **feedback**, version 2" in texts(at)

    kto, pair = store.read("feedback").to_pylist()
    assert (kto["instruction"], kto["system"], kto["output"], kto["kto_tag"]) == ("Name a vegetable.", "Be brief.",
                                                                                  answer, False)
    assert (pair["instruction"], pair["chosen"], pair["rejected"], pair["output"]) == ("Name a vegetable.",
                                                                                       "A carrot.", answer, "A carrot.")
    params = [v["params"] for v in store.manifest("feedback")["versions"]]
    assert [(p["kind"], p["source"]) for p in params] == [("kto", "thumbs"), ("pair", "better")]
    assert all(p["models"] == ["tiny"] and p["system"] == "Be brief." and p["engine"] == "auto" for p in params)

    # The next rating goes into the now existing dataset, chosen from the list.
    at.selectbox(key="play.feedback_dataset").set_value("feedback")
    at.chat_input(key="play.prompt").set_value("And a fruit?")
    _run(at)
    at.button(key="play.up.A.1").click()
    _run(at)
    rec = store.read("feedback").to_pylist()[-1]
    assert rec["kto_tag"] is True and rec["history"] == [["Name a vegetable.", answer]]


def test_playground_empty_better_answer_is_one_sentence(workspace, tiny_model):
    at = _page(tiny_model)
    at.chat_input(key="play.prompt").set_value("Hello")
    _run(at)
    at.button(key="play.better_save.A.0").click()
    _run(at)
    assert any("not empty" in e.value for e in at.error) and not store.exists("feedback")


def test_playground_prefer_b_over_a(workspace, tiny_model, tmp_path):
    import tiny_model as builder

    other = str(builder.build(tmp_path / "other", width=32, init_range=0.5))  # different weights, other answers
    at = _page(tiny_model, other=other)
    at.selectbox(key="play.model_b").set_value("other")
    _run(at)
    at.text_input(key="play.feedback_new").set_value("ab")
    at.chat_input(key="play.prompt").set_value("Which is better?")
    _run(at)
    a, b = _answer(at, "A"), _answer(at, "B")
    assert a.strip() != b.strip()
    at.button(key="play.prefer.B").click()
    _run(at)
    assert not [x for x in at.button if x.key and x.key.startswith("play.prefer.")]
    assert "Preferred **other**" in texts(at)
    rec = store.read("ab").to_pylist()[0]
    assert (rec["instruction"], rec["chosen"], rec["rejected"]) == ("Which is better?", b, a)
    assert store.manifest("ab")["versions"][0]["params"]["models"] == ["other", "tiny"]


# ---------------------------------------------------------------- the Home checklist


def test_home_counts_pairs_waiting_until_a_preference_run_uses_them(workspace):
    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    at = open_page(None)
    assert "preference pair(s)" not in texts(at)  # nothing rated: no line
    feedback.save_feedback("feedback", PROMPT, kind="pair", chosen="A carrot.", rejected="A banana.")
    feedback.save_feedback("feedback", PROMPT, kind="pair", chosen="A leek.", rejected="A pear.")
    feedback.save_feedback("feedback", PROMPT, kind="kto", answer="A pear.", desirable=False)
    at = open_page(None)
    assert ("**2** preference pair(s) and **1** rated answer(s) from the Playground are waiting for a preference "
            "run (dpo, orpo or kto) in `feedback`.") in texts(at)

    cfg = TrainConfig.for_method("dpo")
    cfg.set({"model": "smollm2-135m-instruct", "data": "feedback"})
    run_id = runs.create(cfg)  # resolves the data version: the head, 3
    jobs.write_status(runs.run_dir(run_id), status="completed", created=1.0)
    at = open_page(None)
    assert "**0** preference pair(s) and **0** rated answer(s)" in texts(at)
