"""The auto recipe (sized to the data, reasons shown, the user's values win), validation by default,
early stopping that keeps the best step, and the over-fitting / under-training warnings."""

from __future__ import annotations

import json

import pytest
import tiny_model as builder  # the fixture `tiny_model` is a model folder
import yaml

from tunelab.cli import main as cli
from tunelab.train import recipe, runs
from tunelab.train.config import TrainConfig, user_keys
from tunelab.train.diagnose import diagnose

SMOL = 134_515_008  # SmolLM2-135M's parameters


def _cfg(method: str = "lora", **kw) -> TrainConfig:
    cfg = TrainConfig.for_method(method)
    cfg.set({"data": "d", **kw})
    return cfg


def test_small_dataset_gets_about_100_steps_without_packing_and_every_value_says_why():
    cfg = _cfg()
    chosen = recipe.apply(cfg, set(), recipe.Facts(records=82, tokens=6762, params=SMOL, test_split="d-test"))
    assert cfg.data.packing is False and cfg.training.batch_size == 4
    assert cfg.data.eval_data == "d-test" and cfg.data.eval_split == 0  # the -test twin, not a split
    assert cfg.training.epochs == 5  # 82 records / 4 = 21 steps per epoch -> 105 steps
    assert cfg.training.learning_rate == 1e-3
    assert cfg.training.eval_steps == 10 and cfg.training.early_stopping_patience == recipe.PATIENCE
    assert all(v["source"] == "recipe" and len(v["why"]) > 20 for v in chosen.values())
    assert {"epochs", "learning_rate", "batch_size", "packing", "warmup_ratio", "eval_data", "eval_steps",
            "early_stopping_patience"} <= set(chosen)


def test_without_a_test_split_ten_percent_is_held_out_and_a_tiny_dataset_none():
    cfg = _cfg()
    recipe.apply(cfg, set(), recipe.Facts(records=82, tokens=6762, params=SMOL))
    assert int(82 * cfg.data.eval_split) == 8 and not cfg.data.eval_data  # what sft.load_records holds back
    cfg = _cfg()
    recipe.apply(cfg, set(), recipe.Facts(records=30, tokens=2000, params=SMOL))
    assert int(30 * cfg.data.eval_split) == recipe.EVAL_MIN  # 10% of 30 is 3: at least 5
    cfg = _cfg()
    chosen = recipe.apply(cfg, set(), recipe.Facts(records=12, tokens=900, params=SMOL))
    assert cfg.data.eval_split == 0 and "too few" in chosen["eval_split"]["why"]
    assert cfg.training.early_stopping_patience == 0 and "eval_steps" not in chosen
    assert cfg.training.batch_size == 1 and cfg.training.epochs == 9  # 12 steps per epoch, ~100 steps


def test_large_dataset_gets_one_packed_epoch_capped():
    cfg = _cfg()
    recipe.apply(cfg, set(), recipe.Facts(records=50_000, tokens=6_000_000, params=SMOL))
    assert cfg.data.packing is True and cfg.training.epochs == 1
    assert cfg.training.max_steps == recipe.MAX_STEPS  # one epoch would be ~5,800 steps
    assert int(50_000 * cfg.data.eval_split) == recipe.EVAL_MAX
    assert cfg.training.eval_steps == recipe.MAX_STEPS // recipe.EVALS_PER_RUN
    assert cfg.training.warmup_ratio * cfg.training.max_steps <= 100
    cfg = _cfg()
    chosen = recipe.apply(cfg, set(), recipe.Facts(records=5_000, tokens=600_000, params=SMOL))
    assert cfg.training.epochs == 1 and cfg.training.max_steps == 0 and "one pass" in chosen["epochs"]["why"]


def test_learning_rate_by_method_and_model_size():
    def facts(params):
        return recipe.Facts(records=500, tokens=50_000, params=params)

    rates = {}
    for method, params in (("lora", SMOL), ("lora", 1_700_000_000), ("lora", 7_000_000_000), ("full", SMOL),
                           ("ptuning", SMOL)):
        cfg = _cfg(method)
        recipe.apply(cfg, set(), facts(params))
        rates[(method, params)] = cfg.training.learning_rate
    assert list(rates.values()) == [1e-3, 5e-4, 2e-4, 2e-5, 1e-2]


def test_values_the_user_set_win_and_are_listed_as_theirs():
    cfg = _cfg(learning_rate=3e-4, epochs=2.0, packing=True)
    chosen = recipe.apply(cfg, {"learning_rate", "epochs", "packing"},
                          recipe.Facts(records=82, tokens=6762, params=SMOL))
    assert (cfg.training.learning_rate, cfg.training.epochs, cfg.data.packing) == (3e-4, 2.0, True)
    assert chosen["learning_rate"] == {"value": 3e-4, "why": "set by you", "source": "you"}
    assert chosen["epochs"]["source"] == "you" and chosen["batch_size"]["source"] == "recipe"
    cfg = _cfg(max_steps=7)
    recipe.apply(cfg, {"max_steps"}, recipe.Facts(records=82, tokens=6762, params=SMOL))
    assert cfg.training.max_steps == 7 and cfg.training.epochs == 1.0  # max_steps given: epochs left alone
    assert cfg.training.eval_steps == 1  # ~10 evaluations of a 7-step run
    cfg = _cfg(eval_split=0.0)
    recipe.apply(cfg, {"eval_split"}, recipe.Facts(records=82, tokens=6762, params=SMOL))
    assert cfg.data.eval_split == 0 and cfg.training.early_stopping_patience == 0
    cfg = _cfg(recipe="manual")
    assert recipe.apply(cfg, set(), recipe.Facts(records=82, tokens=6762, params=SMOL)) == {}
    assert cfg.flat() == _cfg(recipe="manual").flat()  # manual: exactly the given values


def test_config_yaml_keeps_the_recipe_and_reuse_repicks_it(tmp_path):
    cfg = _cfg()
    recipe.apply(cfg, set(), recipe.Facts(records=82, tokens=6762, params=SMOL))
    path = tmp_path / "config.yaml"
    cfg.to_yaml(path)
    doc = yaml.safe_load(path.read_text())
    assert doc["recipe"]["learning_rate"]["value"] == 1e-3 and doc["recipe"]["learning_rate"]["why"]
    back = TrainConfig.from_yaml(path)
    assert back == cfg and back.recipe == cfg.recipe
    assert user_keys(doc) & set(cfg.recipe) == set()  # the recipe's picks are not the user's
    doc["training"]["learning_rate"] = 5e-4  # edited by hand: now it is the user's value
    assert "learning_rate" in user_keys(doc)
    from tunelab.errors import TuneLabError

    with pytest.raises(TuneLabError, match="recipe section"):
        TrainConfig.from_dict({"recipe": ["learning_rate"]})


def test_facts_count_records_tokens_and_find_the_test_twin(workspace):
    builder.dataset("qa-train", repeat=4)
    builder.dataset("qa-test", repeat=1)
    cfg = _cfg(data="qa-train", model="smollm2-135m-instruct")
    f = recipe.facts(cfg)
    assert f.records == 32 and f.test_split == "qa-test" and f.params == SMOL
    assert 32 * 10 < f.tokens < 32 * 100  # chat-templated short records
    cfg.set({"max_records": 8})
    assert recipe.facts(cfg).records == 8 and recipe.facts(cfg).tokens == pytest.approx(f.tokens / 4, abs=1)
    assert recipe.facts(_cfg(data="qa-test", model="smollm2-135m-instruct")).test_split == ""


def test_diagnose_overfitting_and_undertraining():
    over = [{"step": s, "loss": 2.0 - 0.1 * s, "eval_loss": e, "learning_rate": 1e-3}
            for s, e in zip(range(1, 11), [None, 1.5, None, 1.2, None, 1.3, None, 1.45, None, 1.6])]
    (w,) = diagnose(over)
    assert w["kind"] == "overfitting" and w["values"]["best_step"] == 4
    assert "fewer epochs" in w["suggestion"]
    flat = [{"step": s, "loss": 2.0 - 0.005 * s, "eval_loss": None, "learning_rate": 2e-4} for s in range(1, 21)]
    assert diagnose(flat) == []  # a run still going is not judged yet
    (w,) = diagnose(flat, finished=True)
    assert w["kind"] == "undertraining" and w["values"]["lr"] == "0.0006"
    good = [{"step": s, "loss": 2.0 / s, "eval_loss": 2.0 / s if s % 2 == 0 else None, "learning_rate": 1e-3}
            for s in range(1, 21)]
    assert diagnose(good, finished=True) == []


@pytest.mark.slow
def test_a_run_without_flags_has_an_eval_curve(workspace, tiny_model, capsys):
    rc = cli(["train", "--model", tiny_model, "--data", tiny_model_dataset(), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-2000:]
    doc = json.loads(out)
    assert doc["status"] == "completed" and doc["recipe"]["eval_split"]["source"] == "recipe"
    assert err.splitlines()[0].startswith("recipe: ")
    rows = runs.metrics(doc["run"])
    evals = [r["eval_loss"] for r in rows if r["eval_loss"] is not None]
    assert len(evals) >= 5  # about 10 per run, with no flag asking for them
    assert runs.config(doc["run"]).recipe == doc["recipe"]  # config.yaml records the picks and reasons
    assert cli(["runs", "show", doc["run"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["best_eval_loss"] == min(evals)


def tiny_model_dataset() -> str:
    """32 records, no -test twin: the recipe holds 5 back."""
    return builder.dataset("tiny", repeat=4)


OTHER = [{"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital."},
         {"instruction": "Name a colour.", "input": "", "output": "Green, like grass."},
         {"instruction": "Count to three.", "input": "", "output": "One, two, three."},
         {"instruction": "What do cows drink?", "input": "", "output": "Cows drink water."},
         {"instruction": "Say goodbye.", "input": "", "output": "Goodbye, see you soon."}]


@pytest.mark.slow
def test_early_stopping_ends_an_overfitting_run_and_keeps_the_best_step(workspace, tiny_model):
    tiny_model_dataset()
    builder.dataset("other", OTHER, repeat=4)  # answers the training records never show; 20: enough to stop on
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny", "eval_data": "other", "max_steps": 60, "eval_steps": 2,
             "early_stopping_patience": 3, "learning_rate": 5e-2, "batch_size": 2, "packing": False,
             "cutoff_len": 128, "recipe": "manual"})
    run_id = runs.create(cfg)
    d = runs.run_dir(run_id)
    assert runs.main(d) == 0, runs.log_tail(run_id)
    st = runs.status(run_id)
    evals = {r["step"]: r["eval_loss"] for r in runs.metrics(run_id) if r["eval_loss"] is not None}
    assert st["status"] == "completed" and st["early_stopped"] and 30 <= st["step"] < 60  # not before half the steps
    assert st["best_step"] < st["step"] and evals[st["best_step"]] == min(evals.values()) == st["best_eval_loss"]
    assert max(evals[s] for s in evals if s > st["best_step"]) > st["best_eval_loss"]  # it did get worse after
    # The run's weights are the best step's, not the last step's.
    out = json.loads((d / "output.json").read_text())
    assert out["step"] == st["best_step"]
    published = (d / "adapter" / "adapter_model.safetensors").read_bytes()
    assert published == (d / "checkpoints" / f"step-{st['best_step']}" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert published != (d / "checkpoints" / f"step-{st['step']}" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert cli(["runs", "show", run_id, "--json"]) == 0


def _page(model: str, **state):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["train.model"] = model
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _recipe_rows(at) -> dict:
    """The recipe table's rows by setting name ("learning rate"); the page shows the form's labels."""
    from tunelab.ui.train_widgets import LABELS

    names = {label: key.replace("_", " ") for key, label in LABELS.items()}
    table = next(df.value for df in at.dataframe if "why" in df.value.columns)
    return {names.get(row.setting, row.setting): row for row in table.itertuples()}


def test_train_page_shows_the_recipe_and_the_form_wins(workspace, tiny_model):
    builder.dataset("tiny", repeat=4)
    at = _page(tiny_model)
    rows = _recipe_rows(at)
    assert rows["learning rate"].value == "0.001" and rows["learning rate"].by == "recipe"
    assert "too few" not in rows["eval split"].why and rows["eval split"].value != "0.0"
    assert rows["packing"].value == "False" and len(rows["epochs"].why) > 20
    cmd = next(c.value for c in at.code if c.value.startswith("tunelab train"))
    assert "--learning-rate" not in cmd  # the CLI picks the same recipe itself
    at.number_input(key="train.learning_rate").set_value(3e-4).run()
    rows = _recipe_rows(at)
    assert rows["learning rate"].value == "0.0003" and rows["learning rate"].by == "you"
    assert "--learning-rate 0.0003" in next(c.value for c in at.code if c.value.startswith("tunelab train"))
    at.selectbox(key="train.recipe").set_value("manual").run()
    assert not any("why" in df.value.columns for df in at.dataframe)


def test_live_panel_warns_of_overfitting_with_the_fix(workspace, tiny_model):
    from tunelab import jobs
    from tunelab.jsonio import append_jsonl

    builder.dataset("tiny", repeat=4)
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny", "max_steps": 10})
    run_id = runs.create(cfg)
    d = runs.run_dir(run_id)
    for s, e in zip(range(1, 11), [None, 1.5, None, 1.2, None, 1.3, None, 1.45, None, 1.6]):
        append_jsonl(d / "metrics.jsonl", {"step": s, "loss": 2.0 - 0.1 * s, "eval_loss": e, "learning_rate": 1e-3})
    jobs.write_status(d, status="completed", step=10, max_steps=10, best_step=4, best_eval_loss=1.2)
    at = _page(tiny_model, **{"train.run": run_id})
    warning = " ".join(w.value for w in at.warning)
    assert "Over-fitting" in warning and "step 4" in warning and "fewer epochs" in warning
    assert any("best eval loss 1.2000 at step 4" in c.value for c in at.caption)
