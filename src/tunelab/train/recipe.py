"""The auto recipe: a run sized to its data, every picked value with the reason for it.

TuneLab's old fixed defaults (one epoch, packing, batch 2, LoRA at 2e-4) gave an 82-record persona
dataset about 9 optimizer steps, and the tuned SmolLM2-135M never said its new name. The same
records, one per row and 4 per step, at 1e-3 say it in 12 of 12 held-out answers from step 30
(docs/RECIPES.md has the measurements behind every rule here). So the recipe:

- counts the dataset (records, tokens after the cutoff) and the model (parameters);
- holds out an eval split when there is no NAME-test twin or eval dataset, and sizes evaluation
  (about 10 per run) and early stopping to the run;
- gives a small dataset enough epochs for ~100 optimizer steps (one record per row, 4 per step,
  so a step is a small part of the data) and a large one a single epoch, capped;
- picks the learning rate by method and model size, and the warmup by the number of steps.

Every value the user set (flag, YAML key or form field) wins; it is listed with source "you".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunelab.train.config import METHOD_DEFAULTS, PREFERENCE_METHODS, TrainConfig
from tunelab.train.stopping import MIN_EVAL, MIN_SHARE

MIN_STEPS = 100  # persona measured: 1e-3 learnt by step 30, 2e-4 by ~100; early stopping trims the rest
MAX_EPOCHS = 10  # a tiny dataset is seen at most this often: beyond it the model recites, not learns
MAX_STEPS = 3000  # a large dataset: one epoch, but no more steps than this
SMALL_DATA = 1000  # records below which packing is off and a batch holds 4 records
SMALL_BATCH = 4  # records per step below SMALL_DATA (fewer for under 40 records: at most a tenth of them)
EVAL_SHARE, EVAL_MIN, EVAL_MAX = 0.10, 5, 200  # held-out share, and its bounds in records
NO_EVAL_BELOW = 20  # with fewer records, none are held out
EVALS_PER_RUN = 10
PATIENCE = 3  # evaluations without a new best before early stopping

# The settings the recipe may pick, in the order the table shows them.
PICKS = ("eval_data", "eval_split", "packing", "batch_size", "epochs", "max_steps", "learning_rate",
         "warmup_ratio", "eval_steps", "early_stopping_patience", "gradient_checkpointing")


@dataclass
class Facts:
    """What the recipe is sized from."""

    records: int  # records the run reads (after max_records)
    tokens: int  # their tokens after the cutoff, chat template included
    params: int  # the model's parameter count
    test_split: str = ""  # NAME-test when the dataset is NAME-train and its twin exists


def facts(cfg: TrainConfig) -> Facts:
    """Count the dataset and the model of cfg (tokens from an even sample of up to 2000 records).

    Args:
        cfg: the run's config (model, data, data_version, max_records, cutoff_len are read).
    Returns:
        The Facts the recipe needs.
    """
    from tunelab.data import store
    from tunelab.models.size import model_size
    from tunelab.train.estimate import tokens_per_epoch

    d = cfg.data
    version = store.resolve_version(d.data, d.data_version)
    entry = next(v for v in store.manifest(d.data)["versions"] if v["version"] == version)
    total = int(entry.get("records") or store.read(d.data, version).num_rows)
    records = min(total, d.max_records) if d.max_records else total
    tokens = tokens_per_epoch(cfg.model.model, d.data, version, d.cutoff_len)
    tokens = round(tokens * records / total) if total else 0
    twin = ""
    if d.data.endswith("-train") and store.exists(d.data[: -len("-train")] + "-test"):
        twin = d.data[: -len("-train")] + "-test"
    return Facts(records=records, tokens=tokens, params=model_size(cfg.model.model).params, test_split=twin)


def _size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def _lr(method: str, params: int, tuning: str = "lora") -> tuple[float, str]:
    """Learning rate for a method and model size, with its reason (tuning: a preference method's pref_tuning)."""
    if method in PREFERENCE_METHODS:
        # Common practice (TRL, LLaMA-Factory examples), not yet measured here like SFT's persona rule.
        lr = _PREF_LR[(tuning, params < 0.5e9)]
        what = "LoRA" if tuning == "lora" else "full-weight"
        return lr, (f"{method} with {what} training on a {_size(params)}-parameter model: preference tuning nudges "
                    f"a model that already answers, so a smaller step than SFT's")
    if method in ("lora", "qlora"):
        if params < 0.5e9:
            return 1e-3, (f"LoRA on a {_size(params)}-parameter model: a small model takes a large step well "
                          "(measured: 1e-3 taught SmolLM2-135M a persona by step 30, 2e-4 only by step ~100)")
        if params < 2e9:
            return 5e-4, f"LoRA on a {_size(params)}-parameter model: between small-model 1e-3 and large-model 2e-4"
        return 2e-4, f"LoRA on a {_size(params)}-parameter model: large models move with a small step"
    lr = METHOD_DEFAULTS[method]["learning_rate"]
    why = {"ptuning": "P-tuning trains only a small prompt encoder, which needs a large step",
           "full": "full fine-tuning moves every weight, so each step must be small"}[method]
    return lr, why


# (pref_tuning, small model) -> learning rate of a preference method.
_PREF_LR = {("lora", True): 1e-4, ("lora", False): 5e-5, ("full", True): 5e-6, ("full", False): 2e-6}


def _eval(cfg: TrainConfig, f: Facts, mine: set[str]) -> tuple[dict, int]:
    """Picks for evaluation data, and how many records remain to train on."""
    d, out = cfg.data, {}
    if "eval_data" in mine or d.eval_data:
        return out, f.records
    if "eval_split" in mine:
        return out, f.records - (max(1, int(f.records * d.eval_split)) if d.eval_split > 0 else 0)
    if f.test_split:
        out["eval_data"] = (f.test_split, (f"the dataset's own test split: the eval-loss curve measures text "
                                          f"the run never trains on, and all {f.records} records train"))
        return out, f.records
    if f.records < NO_EVAL_BELOW:
        out["eval_split"] = (0.0, (f"only {f.records} records: too few to hold any back, so this run has no "
                                  "eval-loss curve and no early stopping (add records, or a NAME-test dataset)"))
        return out, f.records
    k = min(EVAL_MAX, max(EVAL_MIN, round(EVAL_SHARE * f.records)))
    share = (k + 0.5) / f.records  # load_records holds back int(records x share) = k
    out["eval_split"] = (round(share, 6), (f"{k} of {f.records} records held back ({EVAL_SHARE:.0%}, at least "
                                          f"{EVAL_MIN}, at most {EVAL_MAX}) to draw the eval-loss curve"))
    return out, f.records - k


def pick(cfg: TrainConfig, f: Facts, mine: set[str], processes: int = 1) -> dict:
    """The recipe for cfg: {setting: {"value", "why", "source"}} without changing cfg.

    Args:
        cfg: the config as the user left it.
        f: the dataset's and model's counts (facts()).
        mine: the settings the user gave (flags, YAML keys, changed form fields): they are kept.
        processes: data-parallel processes (--num-processes): a step trains processes x batch x grad_accum records.
    Returns:
        Every setting the recipe decides, in PICKS order; the user's own are listed with source "you".
    """
    t, d = cfg.training, cfg.data
    picks, train_n = _eval(cfg, f, mine)
    def get(k):
        return picks[k][0] if k in picks else cfg.flat()[k]


    small = train_n < SMALL_DATA
    if small:
        per_row = max(1, round(f.tokens / max(f.records, 1)))
        picks["packing"] = (False, (f"{train_n} records: packing would put about {d.cutoff_len // per_row} of them "
                                   "in one row, leaving very few optimizer steps; one record per row instead"))
        step_batch = max(1, min(SMALL_BATCH, train_n // 10))
        batch = max(1, step_batch // processes)  # per process: the step's batch is spread over the processes
        each = f" per process, {batch * processes} per step over {processes} processes" if processes > 1 else " per step"
        picks["batch_size"] = (batch, (f"{batch} record{'s' if batch > 1 else ''}{each}, so one step is a small "
                                      f"part of {train_n} records and an epoch has many steps"))
    else:
        picks["packing"] = (True, f"{train_n} records: packing short records side by side wastes no time on padding")
        picks["batch_size"] = (t.batch_size, f"{t.batch_size} packed rows of {d.cutoff_len} tokens per step")
    picks = {k: v for k, v in picks.items() if k not in mine}

    batch, ga = get("batch_size"), max(1, t.grad_accum)
    if get("packing") and cfg.method.method not in ("ptuning", *PREFERENCE_METHODS):
        micro = math.ceil(f.tokens * train_n / max(f.records, 1) / (batch * d.cutoff_len))
    else:
        micro = math.ceil(train_n / batch)
    per_epoch = max(1, micro // (ga * processes))  # as the trainer counts: the global batch is processes x batch x ga

    if "max_steps" in mine or t.max_steps:
        steps = t.max_steps
    elif "epochs" in mine:
        steps = max(1, math.ceil(t.epochs * per_epoch))
    else:
        epochs = min(MAX_EPOCHS, max(1, math.ceil(MIN_STEPS / per_epoch)))
        steps = epochs * per_epoch
        if epochs == 1:
            why = f"{per_epoch} steps per epoch: one pass is enough to learn from, more would over-train"
        elif epochs == MAX_EPOCHS and steps < MIN_STEPS:
            why = (f"{per_epoch} steps per epoch: {MAX_EPOCHS} epochs ({steps} steps) is the most a tiny dataset "
                   "gets; beyond that the model recites it (add records to learn more)")
        else:
            why = (f"{per_epoch} steps per epoch: {epochs} epochs give {steps} optimizer steps, about the "
                   f"{MIN_STEPS} a small dataset needs to be learnt")
        picks["epochs"] = (float(epochs), why)
        if steps > MAX_STEPS:
            picks["max_steps"] = (MAX_STEPS, (f"one epoch is {steps} steps: capped at {MAX_STEPS}, enough to "
                                             "learn from a large dataset without hours of over-training"))
            steps = MAX_STEPS

    if "learning_rate" not in mine:
        picks["learning_rate"] = _lr(cfg.method.method, f.params, cfg.method.pref_tuning)
    if "warmup_ratio" not in mine:
        warm = 0.1 if steps <= 200 else min(0.05, 100 / steps)
        picks["warmup_ratio"] = (round(warm, 4), (f"the first {max(1, round(warm * steps))} of {steps} steps ramp "
                                                 "the learning rate up, so early updates do not wreck the model"))

    has_eval = bool(get("eval_data")) or get("eval_split") > 0
    if has_eval and "eval_steps" not in mine:
        every = max(1, round(steps / EVALS_PER_RUN))
        picks["eval_steps"] = (every, (f"about {EVALS_PER_RUN} evaluations over {steps} steps draw the eval-loss "
                                      "curve without slowing the run much"))
    n_eval = f.records - train_n if not get("eval_data") else None  # a separate eval dataset: the trainer counts it
    if "early_stopping_patience" not in mine:
        if has_eval and n_eval is not None and n_eval < MIN_EVAL:
            picks["early_stopping_patience"] = (0, (f"only {n_eval} held-out records: too few to tell a worse model "
                                                   f"from noise, so no early stopping (it needs {MIN_EVAL})"))
        elif has_eval:
            picks["early_stopping_patience"] = (PATIENCE, (
                f"stop when {PATIENCE} evaluations are worse than the best by more than their noise (one standard "
                f"error), not before {MIN_SHARE:.0%} of the steps; the best step becomes the run's result"))
        else:
            picks["early_stopping_patience"] = (0, "no evaluation data, so nothing to stop on")

    if "gradient_checkpointing" not in mine and t.gradient_checkpointing == "auto":
        on, why = _checkpointing(cfg, {k: v[0] for k, v in picks.items()})
        if on:  # listed only when memory is tight; otherwise the run simply keeps every activation
            picks["gradient_checkpointing"] = ("on", why)

    flat = cfg.flat()
    out = {}
    for k in PICKS:
        if k in picks:
            out[k] = {"value": picks[k][0], "why": picks[k][1], "source": "recipe"}
        elif k in mine:
            out[k] = {"value": flat[k], "why": "set by you", "source": "you"}
    return out


def _checkpointing(cfg: TrainConfig, picked: dict) -> tuple[bool, str]:
    """Gradient checkpointing for cfg with the recipe's other picks applied (train/estimate.py decides)."""
    from tunelab.train.estimate import checkpointing

    trial = TrainConfig.from_dict(cfg.to_dict())
    trial.set(picked)
    on, why = checkpointing(trial)
    return on, why.removeprefix("on: ")


def apply(cfg: TrainConfig, mine: set[str], f: Facts | None = None, processes: int = 1) -> dict:
    """Apply the auto recipe to cfg in place (nothing when cfg.training.recipe is manual).

    Args:
        cfg: the config as the user left it; it gets the picked values and cfg.recipe (the reasons).
        mine: the settings the user gave explicitly; they win.
        f: the counts, when already known (facts(cfg) otherwise).
        processes: data-parallel processes of the run (steps are sized for the global batch).
    Returns:
        cfg.recipe: {setting: {"value", "why", "source"}}, empty for a manual recipe.
    """
    from tunelab.train.config import all_fields

    known = {f.name for _, f in all_fields()}
    cfg.user_set = sorted(k for k in mine if k in known)  # config.yaml records them: a re-run keeps only these
    if cfg.training.recipe != "auto":
        cfg.recipe = {}
        return cfg.recipe
    chosen = pick(cfg, f or facts(cfg), mine, max(1, int(processes)))
    cfg.set({k: v["value"] for k, v in chosen.items() if v["source"] == "recipe"})
    cfg.recipe = chosen
    return chosen


def lines(recipe: dict) -> list[str]:
    """One line per setting, "recipe: name value — why", for a terminal."""
    return [f"recipe: {k} {_show(v['value'])} — {v['why']}" for k, v in recipe.items()]


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def form_keys(cfg: TrainConfig) -> set[str]:
    """Settings a form changed from the method's defaults: those the user chose, so the recipe keeps them."""
    defaults = TrainConfig.for_method(cfg.method.method).flat()
    return {k for k, v in cfg.flat().items() if v != defaults[k] and k not in ("model", "data")}
