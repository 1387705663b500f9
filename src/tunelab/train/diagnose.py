"""Read a run's curves and say what went wrong, with the change to make: over-fitting, under-training.

The pages render these; the rules live here so the CLI and tests see the same verdicts. Messages are
templates with named values, so the dashboard can translate them (locales/zh.json) and fill them in.
"""

from __future__ import annotations

OVERFIT_RISE = 0.05  # eval loss this far (5%) above its best counts as risen
UNDERTRAIN_DROP = 0.10  # a training loss that fell less than 10% barely moved

OVERFIT = ("Over-fitting: the eval loss rose from {best} at step {best_step} to {last} at step {step} while the "
           "training loss kept falling ({train_then} -> {train_now}).")
OVERFIT_FIX = ("Train fewer epochs or steps (about {best_step}), lower the learning rate, or add more varied records; "
               "with early stopping on (early_stopping_patience), the run keeps its best step by itself.")
UNDERTRAINED = "Under-training: the training loss barely moved ({first} -> {last} over {steps} steps)."
UNDERTRAINED_FIX = ("Raise the learning rate (e.g. {lr} instead of {lr_now}) or train for more steps; "
                    "--recipe auto sizes both to the dataset.")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _train_loss_near(rows: list[dict], step: int, window: int) -> float:
    """Mean training loss of the `window` rows ending at step (one row is too noisy to compare)."""
    upto = [r["loss"] for r in rows if r["step"] <= step and r.get("loss") is not None]
    return _mean(upto[-window:])


def diagnose(rows: list[dict], finished: bool = False) -> list[dict]:
    """Warnings about a run from its metrics rows.

    Args:
        rows: metrics.jsonl rows (step, loss, eval_loss, learning_rate).
        finished: whether the run has ended; under-training is only judged on a whole run.
    Returns:
        [{"kind": "overfitting"|"undertraining", "message": template, "suggestion": template, "values": {...}}];
        t(message, **values) reads it in the dashboard's language.
    """
    out = []
    rows = [r for r in rows if r.get("step") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    if len(evals) >= 3:
        best_step, best = min(evals, key=lambda e: e[1])
        step, last = evals[-1]
        after = [e for e in evals if e[0] > best_step]
        window = max(3, len(rows) // 20)
        then, now = _train_loss_near(rows, best_step, window), _train_loss_near(rows, step, window)
        if len(after) >= 2 and last > best * (1 + OVERFIT_RISE) and now < then:
            out.append({"kind": "overfitting", "message": OVERFIT, "suggestion": OVERFIT_FIX,
                        "values": {"best": f"{best:.3f}", "best_step": best_step, "last": f"{last:.3f}", "step": step,
                                   "train_then": f"{then:.3f}", "train_now": f"{now:.3f}"}})
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    if finished and len(losses) >= 6:
        k = max(3, len(losses) // 10)
        first, last = _mean(losses[:k]), _mean(losses[-k:])
        if last > first * (1 - UNDERTRAIN_DROP):
            lr_now = max((r.get("learning_rate") or 0) for r in rows) or None
            out.append({"kind": "undertraining", "message": UNDERTRAINED, "suggestion": UNDERTRAINED_FIX,
                        "values": {"first": f"{first:.3f}", "last": f"{last:.3f}", "steps": rows[-1]["step"],
                                   "lr_now": f"{lr_now:.2g}" if lr_now else "?",
                                   "lr": f"{3 * lr_now:.2g}" if lr_now else "3x"}})
    return out
