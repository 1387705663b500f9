"""Playground page through AppTest: chat, see the answer with its speed, save it as a record, compare two models."""

from __future__ import annotations

from pagetest import open_page, texts

from tunelab.data import store
from tunelab.models.registry import add_model
from tunelab.ui import cache


def _page(tiny_model):
    add_model("tiny", tiny_model)
    add_model("tiny2", tiny_model)
    cache.backend.clear()
    at = open_page("pages/playground.py")
    at.selectbox(key="play.model_a").set_value("tiny")
    at.run()
    assert not at.exception, at.exception
    return at


def _say(at, text):
    at.chat_input(key="play.prompt").set_value(text)
    at.run(timeout=120)
    assert not at.exception, at.exception


def test_chat_and_save_records(workspace, tiny_model):
    at = _page(tiny_model)
    _say(at, "Hello there")
    assistant = [m for m in at.chat_message if m.name == "assistant"]
    assert len(assistant) == 1 and assistant[0].text and assistant[0].text[0].value.strip()
    assert "tokens/s" in texts(at)
    answer = assistant[0].text[0].value  # verbatim (st.text), not Markdown

    at.text_input(key="play.save_dataset").set_value("chats")
    at.button(key="play.save").click()
    at.run()
    assert not at.exception, at.exception
    assert "version 1" in texts(at)
    rec = store.read("chats").to_pylist()[0]
    assert rec["instruction"] == "Hello there" and rec["output"].strip() == answer.strip()

    _say(at, "And again")  # multi-turn: the first exchange becomes history
    at.button(key="play.save").click()
    at.run()
    m = store.manifest("chats")
    assert m["head"] == 2 and m["versions"][-1]["records"] == 2 and m["versions"][-1]["op"] == "playground"
    assert store.read("chats").to_pylist()[1]["history"] == [["Hello there", rec["output"]]]

    at.button(key="play.clear").click()
    at.run()
    assert not [m for m in at.chat_message if m.name == "assistant"]


def test_side_by_side(workspace, tiny_model):
    at = _page(tiny_model)
    at.selectbox(key="play.model_b").set_value("tiny2")
    at.run()
    _say(at, "Compare us")
    assistant = [m for m in at.chat_message if m.name == "assistant"]
    assert len(assistant) == 2
    assert [s.value for s in at.subheader] == ["tiny", "tiny2"]
    assert at.radio(key="play.save_slot").options == ["tiny", "tiny2"]


def test_base_model_fallback_note(workspace, tiny_model, tmp_path):
    import shutil

    base = tmp_path / "base-model"
    shutil.copytree(tiny_model, base)
    for f in base.glob("chat_template*"):
        f.unlink()
    add_model("base", str(base))
    cache.backend.clear()
    at = open_page("pages/playground.py")
    at.selectbox(key="play.model_a").set_value("base")
    at.run()
    assert "without a chat template" in texts(at)


def test_opens_on_the_newest_tuned_run_next_to_its_base(workspace, tiny_model):
    import tiny_model as builder

    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    add_model("tiny", tiny_model)
    at = open_page("pages/playground.py")
    assert at.selectbox(key="play.model_b").value == "(none)"  # nothing trained yet: one model

    builder.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "tiny", "data": "tiny", "max_steps": 2, "batch_size": 2, "cutoff_len": 64})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    at = open_page("pages/playground.py")
    assert not at.exception, at.exception
    assert at.selectbox(key="play.model_a").value == run_id
    assert at.selectbox(key="play.model_b").value == "tiny"


def test_engine_choice(workspace, tiny_model):
    from tunelab.models import generation
    from tunelab.ui import chat

    at = _page(tiny_model)
    assert chat.backend_spec("tiny", "auto") == "tiny"
    assert chat.backend_spec("tiny", "transformers") == "local:tiny"
    assert chat.backend_spec("tiny", "llama.cpp") == "llamacpp:tiny"
    at.radio(key="play.engine").set_value("transformers").run()
    assert not at.exception, at.exception
    _say(at, "Hello")
    assert len([m for m in at.chat_message if m.name == "assistant"]) == 1
    if not generation.llamacpp_available():
        at.radio(key="play.engine").set_value("llama.cpp").run()
        assert not at.exception, at.exception
        assert any("llama.cpp is not installed" in e.value for e in at.error)  # one sentence, no traceback


def _words(text: str) -> list[str]:
    return text.split()  # st.text dedents its text: compare the words


def _answers(at):
    return [m for m in at.chat_message if m.name == "assistant"]


def test_side_by_side_answers_are_generated_together_and_survive_the_next_message(workspace, tiny_model):
    """Issue 15: B used to start only once A had finished; both now stream at once, and every answer stays."""
    at = _page(tiny_model)
    at.selectbox(key="play.model_b").set_value("tiny2")
    at.number_input(key="play.max_new_tokens").set_value(120)
    at.run()
    _say(at, "Compare us")
    log = at.session_state["play.history"]
    a, b = log[0]["replies"]["A"], log[0]["replies"]["B"]
    # Each side's first words arrived before the other side had finished: generated together.
    assert b["first_token_at"] < a["finished_at"] and a["first_token_at"] < b["finished_at"], (a, b)
    assert a["tokens_per_s"] > 0 and b["tokens_per_s"] > 0 and a["first_token_s"] is not None
    assert texts(at).count("tokens/s") == 2 and "first words after" in texts(at)
    assert not at.chat_input(key="play.prompt").disabled  # unlocked once both are in

    _say(at, "And now?")
    answers = _answers(at)
    assert len(answers) == 4  # two exchanges, two columns: the first pair is still there
    shown = [m.text[0].value for m in answers]
    assert _words(shown[0]) == _words(a["text"]) and _words(shown[2]) == _words(b["text"])  # columns A, then B
    log = at.session_state["play.history"]
    assert [sorted(ex["replies"]) for ex in log] == [["A", "B"], ["A", "B"]]


def test_an_answer_lands_in_the_history_without_the_page(workspace, tiny_model):
    """The worker thread writes the finished reply into the session's log itself: a script run cut short
    mid-answer (a rerun, a click) cannot lose it."""
    from tunelab.models import generation
    from tunelab.models.generation import GenerationSettings
    from tunelab.ui import chat

    backend = generation.get_backend(tiny_model)
    log = [{"user": "Hi", "replies": {}}]
    answer = chat.Answer(log[0], "B", "tiny", backend, chat.conversation(log, "B", ""),
                         GenerationSettings(max_new_tokens=40))
    assert answer.wait(120)
    reply = log[0]["replies"]["B"]
    assert reply["model"] == "tiny" and reply["text"] == answer.text and reply["completion_tokens"] >= 1

    bad = chat.Answer(log[0], "A", "tiny", backend, [], GenerationSettings())  # an empty conversation
    assert bad.wait(60) and "A" not in log[0]["replies"]
    assert "at least one message" in log[0]["errors"]["A"]


def test_model_from_the_link(workspace, tiny_model):
    """?model=NAME (how other pages open the Playground) selects it; the choice goes back into the URL."""
    from streamlit.testing.v1 import AppTest

    from pagetest import APP

    add_model("tiny", tiny_model)
    add_model("tiny2", tiny_model)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["model"] = "tiny2"
    at.query_params["compare"] = "tiny"
    at.run()
    at.switch_page("pages/playground.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="play.model_a").value == "tiny2"
    assert at.selectbox(key="play.model_b").value == "tiny"
    at.selectbox(key="play.model_b").set_value("(none)").run()  # a choice in the page is not undone by the URL
    assert at.selectbox(key="play.model_a").value == "tiny2" and at.selectbox(key="play.model_b").value == "(none)"
    assert at.query_params["model"] in ("tiny2", ["tiny2"]) and "compare" not in at.query_params

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["model"] = "no-such-run"
    at.run()
    at.switch_page("pages/playground.py")
    at.run()
    assert not at.exception, at.exception
    assert any("no-such-run" in w.value and "not available" in w.value for w in at.warning)


def test_stop_keeps_the_words_written_so_far(workspace, tiny_model):
    """Stop generating ends an answer at its next token and keeps its text (the box unlocks)."""
    from polling import wait_for

    from tunelab.models import generation
    from tunelab.models.generation import GenerationSettings
    from tunelab.ui import chat

    backend = generation.get_backend(tiny_model)
    log = [{"user": "Tell me everything", "replies": {}}]
    answer = chat.Answer(log[0], "A", "tiny", backend, chat.conversation(log, "A", ""),
                         GenerationSettings(max_new_tokens=900))
    wait_for(lambda: answer.text or answer.done.is_set(), timeout=60, every=0.01, what="the first words")
    answer.cancel.set()
    assert answer.wait(60)
    reply = log[0]["replies"]["A"]
    assert reply["finish_reason"] == "stopped" and reply["text"] == answer.text and reply["text"]
    assert "stopped after" in chat.stats_caption(reply)
