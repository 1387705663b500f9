"""Evaluation with its standard error, and early stopping that noise cannot trigger.

A DPO run of 6 steps on 48 pairs used to "complete" at step 4: the recipe held out 5 pairs, evaluated
every step with patience 3, and an eval loss of 0.709 then 0.717 (noise on 5 pairs) stopped it. Early
stopping now needs all of:
- at least MIN_EVAL held-out examples (pairs, KTO answers), else it is off for the run (logged);
- at least MIN_SHARE of the planned steps done;
- `patience` evaluations that are worse than the best by more than SE_BAND standard errors of the eval
  loss (an evaluation within that band of the best is noise: it neither counts nor resets the count).
The best step is still the lowest eval loss seen: that is the weights the run keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_EVAL = 20  # held-out examples below which early stopping is off
MIN_SHARE = 0.5  # share of the planned steps before a run may stop early
SE_BAND = 1.0  # an evaluation counts against patience only this many standard errors above the best


def ratio_se(sums: list[float], counts: list[float]) -> float | None:
    """Standard error of sum(sums) / sum(counts), each (sum, count) one independent example or batch.

    The delta-method (ratio estimator) error of a mean loss per token; None with fewer than 2 examples.
    """
    m, n = len(sums), sum(counts)
    if m < 2 or n <= 0:
        return None
    r = sum(sums) / n
    var = sum((s - r * c) ** 2 for s, c in zip(sums, counts)) / (m * (m - 1))
    return math.sqrt(var) / (n / m)


@dataclass
class EarlyStopping:
    """The run's early-stopping state; `best` ({"step", "loss", "bad"}) is saved in every checkpoint."""

    patience: int
    max_steps: int
    best: dict = field(default_factory=lambda: {"step": None, "loss": None, "bad": 0})
    why_off: str = ""

    @classmethod
    def for_run(cls, patience: int, eval_examples: int, max_steps: int) -> "EarlyStopping":
        """Patience as configured, or 0 with the reason when the eval set is too small to stop on."""
        if patience and eval_examples < MIN_EVAL:
            return cls(0, max_steps, why_off=(f"early stopping off: {eval_examples} held-out examples are too few "
                                              f"to tell a worse model from noise (it needs {MIN_EVAL})"))
        return cls(patience, max_steps)

    def update(self, step: int, loss: float | None, se: float | None) -> tuple[bool, bool]:
        """Record one evaluation (loss None: none this step); returns (a new best, stop now)."""
        b = self.best
        if loss is None:
            return False, False
        if b["loss"] is None or loss < b["loss"]:
            b.update(step=step, loss=loss, bad=0)
            return True, False
        if loss > b["loss"] + SE_BAND * (se or 0.0):
            b["bad"] = b.get("bad", 0) + 1
        ready = step >= math.ceil(MIN_SHARE * self.max_steps)
        return False, bool(self.patience) and ready and b["bad"] >= self.patience


def evaluate_sft(model, enc, cfg, pad_id: int, device) -> tuple[float | None, float | None]:
    """(mean loss per response token, its standard error over examples) on the held-out examples."""
    import torch

    from tunelab.train import data as tdata
    from tunelab.train.loss import example_losses
    from tunelab.train.setup import autocast, autocast_dtype

    if not enc.examples:
        return None, None
    ptuning = cfg.method.method == "ptuning"
    packing = cfg.data.packing and not ptuning
    rows, per_batch = tdata.plan_rows(enc, cfg.data.cutoff_len, packing, cfg.training.batch_size)
    sums, counts = [], []
    model.eval()
    device_type = torch.device(device).type
    amp = autocast_dtype(cfg, device_type)
    with torch.no_grad():
        for b in tdata.epoch_batches(rows, per_batch, 0, 0, packing):
            batch = tdata.collate(enc, b, pad_id, packing)
            with autocast(device_type, amp):
                if ptuning:  # PEFT's own loss: one value per batch, so the batches are the units of the error
                    from tunelab.train.loss import batch_loss

                    sums.append(float(batch_loss(model, batch, True, device)))
                    counts.append(float((batch["labels"][:, 1:] != tdata.IGNORE).sum()))
                else:
                    s, c = example_losses(model, batch, device)
                    sums += s
                    counts += c
    model.train()
    return sum(sums) / max(sum(counts), 1), ratio_se(sums, counts)
