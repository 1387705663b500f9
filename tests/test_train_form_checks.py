"""The Train form runs the same checks as the CLI (issue 22, items 4 and 7): a value out of range
disables Start with the reason, a bad value in a link does not fill the form, and a form value the
auto recipe replaces is shown with the value that will run."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import tiny_model as builder
from tunelab.train import recipe
from tunelab.train.config import TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _open(model: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["train.model"] = model
    if query:
        at.query_params.update(query)
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _start(at: AppTest):
    return at.button(key="train.start")


def test_out_of_range_values_disable_start_with_the_reason(workspace, tiny_model):
    builder.dataset()
    at = _open(tiny_model)
    assert _start(at).disabled is False
    at.number_input(key="train.batch_size").set_value(0).run()
    assert not at.exception, at.exception
    assert _start(at).disabled is True
    assert any("batch_size must be at least 1" in e.value for e in at.error)
    at.number_input(key="train.batch_size").set_value(2).run()
    at.number_input(key="train.learning_rate").set_value(0.0).run()
    assert _start(at).disabled is True
    assert any("learning_rate must be greater than 0" in e.value for e in at.error)
    at.number_input(key="train.learning_rate").set_value(1e-4).run()
    assert _start(at).disabled is False and not at.error
    assert not (workspace / "runs").exists() or not list((workspace / "runs").glob("run-*"))


@pytest.mark.parametrize("query", [{"learning_rate": "NaN"}, {"learning_rate": "inf"}, {"batch_size": "0"},
                                   {"warmup_ratio": "5"}, {"max_records": "-1"}])
def test_a_bad_link_value_does_not_fill_the_form(workspace, tiny_model, query):
    builder.dataset()
    at = _open(tiny_model, query)
    (name, _), = query.items()
    assert any(name in w.value for w in at.warning)
    default = TrainConfig.for_method("lora").flat()[name]
    value = at.number_input(key=f"train.{name}").value
    assert value == pytest.approx(default) if default is not None else value is None
    assert _start(at).disabled is False


def test_the_form_shows_the_learning_rate_the_recipe_runs(workspace, tiny_model):
    builder.dataset()
    at = _open(tiny_model)
    form_lr = at.number_input(key="train.learning_rate").value
    # What the run would get: the recipe itself, on the same form values.
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny"})
    recipe.apply(cfg, set())
    runs_lr = cfg.training.learning_rate
    assert runs_lr != pytest.approx(form_lr)  # the case the issue found: 0.0002 shown, 0.001 run
    note = "\n".join(i.value for i in at.info)
    assert "Learning rate" in note and f"runs {runs_lr:g}" in note and f"form shows {form_lr:g}" in note
    # A value the user sets is the value that runs: the note no longer lists it.
    at.number_input(key="train.learning_rate").set_value(3e-4).run()
    assert "Learning rate" not in "\n".join(i.value for i in at.info)
