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
    assert len(assistant) == 1 and assistant[0].markdown and assistant[0].markdown[0].value.strip()
    assert "tokens/s" in texts(at)
    answer = assistant[0].markdown[0].value

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

    from tunelab.train import runs, sft
    from tunelab.train.config import TrainConfig

    add_model("tiny", tiny_model)
    at = open_page("pages/playground.py")
    assert at.selectbox(key="play.model_b").value == "(none)"  # nothing trained yet: one model

    builder.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "tiny", "data": "tiny", "max_steps": 2, "batch_size": 2, "cutoff_len": 64})
    run_id = runs.create(cfg)
    assert sft.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
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
