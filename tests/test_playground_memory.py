"""The Playground keeps its conversation across a refresh, shows answers verbatim and opens on the best
run (issue 22, item 7)."""

from __future__ import annotations

import textwrap
import time

import pytest
from pagetest import open_page
from streamlit.testing.v1 import AppTest

from tunelab.models.registry import add_model
from tunelab.ui import cache


def _page(tiny_model, query: dict | None = None) -> AppTest:
    add_model("tiny", tiny_model)
    cache.backend.clear()
    at = AppTest.from_file(str(__import__("pagetest").APP), default_timeout=120)
    if query:
        at.query_params.update(query)
    at.switch_page("pages/playground.py")
    at.run()
    assert not at.exception, at.exception
    if at.selectbox(key="play.model_a").value != "tiny":
        at.selectbox(key="play.model_a").set_value("tiny").run()
    return at


def _say(at: AppTest, text: str) -> None:
    at.chat_input(key="play.prompt").set_value(text)
    at.run(timeout=120)
    assert not at.exception, at.exception


def _shown(text: str) -> str:
    return textwrap.dedent(text).strip()


def _bubbles(at: AppTest, role: str):
    return [m for m in at.chat_message if m.name == role]


def test_answers_are_shown_verbatim_not_as_markdown(workspace, tiny_model):
    at = _page(tiny_model)
    _say(at, "**not bold** # not a heading")
    user, answer = _bubbles(at, "user")[0], _bubbles(at, "assistant")[0]
    assert not user.markdown and user.text[0].value == "**not bold** # not a heading"
    said = at.session_state["play.history"][0]["replies"]["A"]["text"]
    # every character as generated (st.text only dedents and trims the whole answer: textwrap.dedent)
    assert said.strip() and not answer.markdown and answer.text[0].value == _shown(said)


def test_the_conversation_survives_a_refresh(workspace, tiny_model):
    at = _page(tiny_model)
    at.text_area(key="play.system").set_value("Answer in one word.").run()
    _say(at, "First question")
    _say(at, "Second question")
    said = [ex["replies"]["A"]["text"] for ex in at.session_state["play.history"]]
    chat_id = at.query_params["chat"]
    assert chat_id
    # A refresh is a new session with the same URL.
    again = _page(tiny_model, dict(at.query_params))
    assert [b.text[0].value for b in _bubbles(again, "user")] == ["First question", "Second question"]
    assert [b.text[0].value for b in _bubbles(again, "assistant")] == [_shown(a) for a in said]
    assert again.text_area(key="play.system").value == "Answer in one word."
    # It goes on from there, and Clear forgets it for good.
    _say(again, "Third question")
    assert len(_bubbles(again, "assistant")) == 3
    again.button(key="play.clear").click().run()
    assert "chat" not in again.query_params
    fresh = _page(tiny_model, {"chat": chat_id})
    assert not _bubbles(fresh, "user")
    # A made-up or malformed id opens an empty conversation, never a file outside the playground folder.
    for bad in ("../../runs/x", "0123456789abcdef"):
        assert not _bubbles(_page(tiny_model, {"chat": bad}), "user")


@pytest.mark.slow
def test_opens_on_the_run_with_the_best_report_not_the_newest(workspace, tiny_model):
    import tiny_model as builder

    from tunelab.data import schema, store
    from tunelab.evals import auto
    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    add_model("tiny", tiny_model)
    # Every answer is the same sentence, so the good run learns it and says it to prompts it never
    # saw: the test rows are unseen (the leakage guard would refuse trained prompts as a test set).
    answer = "The sky is blue."
    records = [dict(r, id=f"r{i}", output=answer) for i, r in enumerate(builder.RECORDS)]
    unseen = [{"id": f"t{i}", "instruction": q, "input": "", "output": answer}
              for i, q in enumerate(("Name a colour.", "What is the weather like?", "Say something.",
                                     "Describe the view.", "Look up.", "What do you see?", "Tell me a fact.",
                                     "Any news?", "What is above us?", "Give one sentence.", "Speak.",
                                     "What is true?"))]  # enough rows for the report's paired test to call it
    store.commit("qa-train", schema.to_table(records * 4), "import")
    store.commit("qa-test", schema.to_table(unseen), "import")

    def train(**values) -> str:
        cfg = TrainConfig.for_method("lora")
        cfg.set({"model": "tiny", "data": "qa-train", "recipe": "manual", "batch_size": 4, "cutoff_len": 64,
                 "save_steps": 0, **values})
        run_id = runs.create(cfg)
        assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
        return run_id

    good = train(learning_rate=1e-2, max_steps=60)  # learns the one answer: ROUGE-L about 0 -> 1
    newest = train(learning_rate=1e-7, max_steps=1)  # the newest run barely moved from its base
    end = time.time() + 600
    while time.time() < end and any((auto.summary(r) or {}).get("status") != "completed" for r in (good, newest)):
        time.sleep(1)
    reports = {r: auto.summary(r) for r in (good, newest)}
    assert all(s["status"] == "completed" for s in reports.values()), reports
    gain = {r: s["tuned"]["rouge_l"] - s["base"]["rouge_l"] for r, s in reports.items()}
    verdicts = {r: (s["beat_base"], s["base"]["rouge_l"], s["tuned"]["rouge_l"]) for r, s in reports.items()}
    assert reports[good]["beat_base"] is True and gain[good] > gain[newest], verdicts  # the reports' own verdicts
    at = open_page("pages/playground.py")
    assert at.selectbox(key="play.model_a").value == good
    assert at.selectbox(key="play.model_b").value == "tiny"
