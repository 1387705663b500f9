"""Early stopping has a floor (issue 21): not on a handful of held-out examples, not before half the planned
steps, and only on evaluations worse than the best by more than the eval loss's standard error."""

from __future__ import annotations

import math
import random

import pytest

import tiny_model as builder
from tunelab.train import recipe, runs
from tunelab.train.config import TrainConfig
from tunelab.train.stopping import MIN_EVAL, EarlyStopping, ratio_se

OTHER = [{"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital."},
         {"instruction": "Name a colour.", "input": "", "output": "Green, like grass."},
         {"instruction": "Count to three.", "input": "", "output": "One, two, three."},
         {"instruction": "What do cows drink?", "input": "", "output": "Cows drink water."},
         {"instruction": "Say goodbye.", "input": "", "output": "Goodbye, see you soon."}]


def test_noise_within_the_standard_error_never_stops_and_a_clear_rise_does_after_half_the_steps():
    es = EarlyStopping.for_run(3, eval_examples=200, max_steps=20)
    assert es.update(1, 0.709, 0.02) == (True, False)
    for step, loss in ((2, 0.717), (3, 0.715), (4, 0.72), (5, 0.71), (6, 0.725)):  # within one SE of the best
        assert es.update(step, loss, 0.02) == (False, False)
    assert es.best == {"step": 1, "loss": 0.709, "bad": 0}
    assert es.update(7, 0.80, 0.02) == (False, False) and es.update(8, 0.81, 0.02) == (False, False)
    assert es.update(9, 0.82, 0.02) == (False, False)  # 3 clearly worse, but step 9 < half of 20
    assert es.update(10, 0.83, 0.02) == (False, True)
    off = EarlyStopping.for_run(3, eval_examples=5, max_steps=20)
    assert off.patience == 0 and "5 held-out examples" in off.why_off
    assert not any(off.update(s, 0.5 + s, 0.0)[1] for s in range(1, 21))


def test_ratio_se_matches_the_spread_of_resampled_means():
    rng = random.Random(0)
    counts = [rng.randint(3, 30) for _ in range(400)]
    sums = [c * 2.0 + rng.gauss(0, 1) * math.sqrt(c) for c in counts]
    se = ratio_se(sums, counts)
    boots = []
    for _ in range(400):  # bootstrap over examples: the oracle for the standard error of sum/sum
        idx = [rng.randrange(400) for _ in range(400)]
        boots.append(sum(sums[i] for i in idx) / sum(counts[i] for i in idx))
    mean = sum(boots) / len(boots)
    sd = math.sqrt(sum((b - mean) ** 2 for b in boots) / (len(boots) - 1))
    assert se == pytest.approx(sd, rel=0.15)
    assert ratio_se([1.0], [3]) is None


def test_the_recipe_does_not_stop_early_on_a_handful_of_held_out_records():
    cfg = TrainConfig.for_method("dpo")
    cfg.set({"data": "d", "max_steps": 6})
    chosen = recipe.apply(cfg, {"data", "max_steps"}, recipe.Facts(records=48, tokens=9000, params=134_515_008))
    assert int(48 * cfg.data.eval_split) == 5 and cfg.training.early_stopping_patience == 0
    assert "too few" in chosen["early_stopping_patience"]["why"]
    cfg = TrainConfig.for_method("lora")
    cfg.set({"data": "d"})
    recipe.apply(cfg, {"data"}, recipe.Facts(records=2000, tokens=200_000, params=134_515_008))
    assert int(2000 * cfg.data.eval_split) >= MIN_EVAL and cfg.training.early_stopping_patience == recipe.PATIENCE


@pytest.mark.slow
def test_an_overfitting_run_with_five_held_out_records_trains_every_step(workspace, tiny_model, capsys):
    """The old rule stopped this run by step ~10 of 30: 5 eval records, patience 3, any rise counted."""
    builder.dataset("tiny", repeat=4)
    builder.dataset("other", OTHER, repeat=1)
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model, "data": "tiny", "eval_data": "other", "max_steps": 30, "eval_steps": 2,
             "early_stopping_patience": 3, "learning_rate": 5e-2, "batch_size": 2, "packing": False,
             "cutoff_len": 128, "recipe": "manual", "auto_report": False})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    st = runs.status(run_id)
    assert st["status"] == "completed" and st["step"] == 30 and not st.get("early_stopped"), st
    assert "early stopping off: 5 held-out examples" in capsys.readouterr().err
