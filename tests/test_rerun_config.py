"""Re-running a run's config.yaml on other data (issue 21): the user's settings stay, the recipe's are sized again.

`tunelab train RUN/config.yaml --data BIGGER` used to treat every key of the file as set by the user, so the
recipe's picks for the old data (steps, eval split, eval every) were frozen: max_steps 0 and eval_steps 0 read
as "yours", and the bigger run evaluated its held-out records after every step.
"""

from __future__ import annotations

import json

import pytest
import yaml

import tiny_model as builder
from cli_run import tunelab
from polling import wait_for
from tunelab import jobs
from tunelab.train import recipe, runs
from tunelab.train.config import TrainConfig, rerun, user_keys


def _first_run(model: str) -> str:
    """A run on 30 records with two settings of the user's (created, not started)."""
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "small", "lora_r": 4, "learning_rate": 3e-4})
    recipe.apply(cfg, {"model", "data", "lora_r", "learning_rate"})
    return runs.create(cfg)


def _rerun(home, config_path, data: str):
    p = tunelab(home, "train", str(config_path), "--data", data, "--detach", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    run = json.loads(p.stdout)["run"]
    runs.stop(run)  # only its recipe matters here
    wait_for(lambda: runs.status(run).get("status") in jobs.FINAL, timeout=240, what="the re-run to stop")
    return p.stderr, runs.config(run)


@pytest.mark.slow
def test_rerun_on_bigger_data_resizes_the_recipe_and_keeps_the_users_values(workspace, tiny_model):
    builder.dataset("small", repeat=4)  # 32 records
    builder.dataset("bigger", repeat=250)  # 2000 records
    first = _first_run(tiny_model)
    old = runs.config(first)
    assert old.user_set == ["data", "learning_rate", "lora_r", "model"]
    assert int(32 * old.data.eval_split) == 5 and old.training.eval_steps >= 5
    path = workspace / "runs" / first / "config.yaml"
    legacy = workspace / "legacy.yaml"  # the same file as written before user_set was recorded
    doc = yaml.safe_load(path.read_text())
    del doc["user_set"]
    legacy.write_text(yaml.safe_dump(doc, sort_keys=False))

    for source in (path, legacy):
        err, cfg = _rerun(workspace, source, "bigger")
        # the recipe's lines are sized to 2000 records: 200 held out, packed, about 10 evaluations
        assert "recipe: eval_split" in err and "200 of 2000 records held back" in err, err
        assert "recipe: packing True — 1800 records" in err, err
        expect = recipe.pick(cfg, recipe.facts(cfg), set(cfg.user_set))
        steps = cfg.training.max_steps or round(cfg.training.epochs * _steps_per_epoch(expect["epochs"]["why"]))
        assert cfg.training.eval_steps == max(1, round(steps / recipe.EVALS_PER_RUN)) > 1
        assert f"about {recipe.EVALS_PER_RUN} evaluations over {steps} steps" in err, err
        assert int(2000 * cfg.data.eval_split) == 200 and cfg.data.packing is True
        # the user's values are kept and listed as theirs
        assert cfg.method.lora_r == 4 and cfg.training.learning_rate == 3e-4
        assert "recipe: learning_rate 0.0003 — set by you" in err, err
        assert cfg.data.data == "bigger" and cfg.data.data_version == 1  # pinned to the new dataset's version
        assert set(cfg.user_set) == {"data", "learning_rate", "lora_r", "model"}


def _steps_per_epoch(why: str) -> int:
    return int(why.split(" steps per epoch")[0])


def test_user_keys_of_an_old_file_leave_defaults_and_picks_to_the_recipe():
    cfg = TrainConfig.for_method("lora")
    cfg.set({"data": "d", "lora_r": 16})
    recipe.apply(cfg, {"data", "lora_r"}, recipe.Facts(records=82, tokens=6762, params=134_515_008))
    doc = yaml.safe_load(cfg.to_yaml())
    assert user_keys(doc) == {"data", "lora_r"}
    del doc["user_set"]  # an old file: the same keys, inferred
    assert user_keys(doc) == {"data", "lora_r"}
    doc["training"]["eval_steps"] = 3  # edited by hand: the user's
    assert "eval_steps" in user_keys(doc)
    doc["data"]["data_version"] = 2
    doc["training"]["resume_from"] = "last"  # written by TuneLab, not chosen
    base, mine = rerun(doc)
    assert base.data.data_version == 2 and base.training.resume_from == "" and "resume_from" not in mine
    assert base.training.eval_steps == 3 and base.training.epochs == 1.0 and base.data.eval_split == 0.0


def test_every_key_of_a_hand_written_config_is_the_users():
    doc = {"data": {"data": "d"}, "training": {"max_steps": 0, "eval_steps": 0, "learning_rate": 1e-4}}
    assert user_keys(doc) == {"data", "max_steps", "eval_steps", "learning_rate"}
    doc["recipe"] = {}  # a run's config.yaml (manual recipe) from before user_set: defaults are not the user's
    assert user_keys(doc) == {"data", "learning_rate"}
