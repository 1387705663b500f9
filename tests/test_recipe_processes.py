"""The recipe sizes a run for its global batch: --num-processes N trains N x batch x grad_accum records a step."""

from __future__ import annotations

import math

from tunelab.train import recipe
from tunelab.train.config import TrainConfig

SMOL = 134_515_008


def _trainer_steps(cfg: TrainConfig, train_n: int, processes: int) -> int:
    """The optimizer steps sft._train runs for this config (one record per row: no packing)."""
    t = cfg.training
    micro_per_epoch = math.ceil(train_n / t.batch_size)
    per_epoch = max(1, micro_per_epoch // (t.grad_accum * processes))
    return t.max_steps or max(1, math.ceil(t.epochs * per_epoch))


def test_two_processes_keep_the_step_batch_and_the_planned_step_count():
    facts = recipe.Facts(records=400, tokens=40_000, params=SMOL)
    planned = {}
    for n in (1, 2, 4):
        cfg = TrainConfig.for_method("lora")
        cfg.set({"data": "d"})
        chosen = recipe.apply(cfg, {"data"}, facts, processes=n)
        train_n = 400 - int(400 * cfg.data.eval_split)
        # the step's batch stays the recipe's 4 records, spread over the processes
        assert cfg.training.batch_size * n * cfg.training.grad_accum == recipe.SMALL_BATCH
        steps = _trainer_steps(cfg, train_n, n)
        assert f"give {steps} optimizer steps" in chosen["epochs"]["why"]
        assert cfg.training.eval_steps == max(1, round(steps / recipe.EVALS_PER_RUN))
        planned[n] = steps
    assert planned[1] == planned[2] == planned[4]  # the same data, the same global batch: the same run length


def test_a_users_batch_with_two_processes_halves_the_steps_per_epoch():
    facts = recipe.Facts(records=400, tokens=40_000, params=SMOL)
    one, two = TrainConfig.for_method("lora"), TrainConfig.for_method("lora")
    for cfg in (one, two):
        cfg.set({"data": "d", "batch_size": 4})
    a = recipe.apply(one, {"data", "batch_size"}, facts, processes=1)
    b = recipe.apply(two, {"data", "batch_size"}, facts, processes=2)
    per_epoch = [int(x["epochs"]["why"].split(" steps per epoch")[0]) for x in (a, b)]
    assert per_epoch[1] == per_epoch[0] // 2  # 8 records a step instead of 4
    train_n = 400 - int(400 * two.data.eval_split)
    assert two.training.epochs * per_epoch[1] == _trainer_steps(two, train_n, 2)
