"""One typed training config: the form, the CLI flags and the run folder's config.yaml all come from it.

Every field carries a beginner's explanation in `metadata["help"]`; the Train page shows it as a
tooltip and `tunelab train --help` prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pydantic
import yaml

from tunelab.errors import TuneLabError
from tunelab.train import validate

PREFERENCE_METHODS = ("dpo", "orpo", "kto")  # learn from preferences (train/preference.py), on LoRA or full weights
METHODS = ("lora", "qlora", "ptuning", "full", *PREFERENCE_METHODS)
LAUNCHERS = ("python", "accelerate")  # one process, or `accelerate launch` (multi-process / multi-GPU)

# Values that differ by method: adapters tolerate (and need) a much larger learning rate than
# updating every weight; P-tuning trains only a small prompt encoder and needs larger still.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": {"learning_rate": 2e-4},
    "qlora": {"learning_rate": 2e-4},
    "ptuning": {"learning_rate": 1e-2},
    "full": {"learning_rate": 2e-5},
    # Preference methods (with pref_tuning lora) nudge a model that already answers well: a smaller
    # step than SFT's LoRA 2e-4. ORPO also learns the chosen answers (an SFT term), so a bit larger.
    "dpo": {"learning_rate": 5e-5},
    "orpo": {"learning_rate": 1e-4},
    "kto": {"learning_rate": 5e-5},
}


def _f(default: Any, help: str, *, beginner: bool = False, choices: tuple | None = None) -> Any:
    """A dataclass field with its help text (and whether the beginner form shows it)."""
    meta = {"help": help, "beginner": beginner}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass
class ModelArgs:
    """Which model to start from."""

    model: str = _f("smollm2-135m-instruct",
                    "The model to fine-tune: a registry name, a local Hugging Face folder, or a run id "
                    "(to keep training that run's adapter).", beginner=True)
    dtype: str = _f("float32",
                    "Number format of the weights while training. float32 is safest on a CPU; bfloat16 "
                    "halves memory on recent GPUs.", choices=("float32", "bfloat16", "float16"))
    template: str = _f("auto",
                       "Chat template the examples are written in. auto: the model's own template, or for a base "
                       "model the one its tokenizer's special tokens point to (else Alpaca). The run keeps it, so "
                       "chat, compare, serve and export use the same one.",
                       choices=("auto", "native", "chatml", "qwen", "llama3", "gemma", "mistral", "phi3",
                                "alpaca", "plain"))


@dataclass
class DataArgs:
    """Which records to learn from and how to cut them."""

    data: str = _f("", "The dataset to learn from (see the Data step).", beginner=True)
    data_version: int | None = _f(None, "Which version of the dataset; empty means the latest.")
    cutoff_len: int = _f(512,
                         "Longest example in tokens. Longer examples are cut here (the page counts how many): "
                         "a larger value keeps more text but costs memory and time.", beginner=True)
    packing: bool = _f(True,
                       "Put several short examples side by side in one row (each still sees only itself), "
                       "so no time is spent on padding.")
    eval_split: float = _f(0.0,
                           "Share of the records held back to measure the loss on text the model is not "
                           "trained on (0.1 = 10%). 0 turns evaluation off.")
    eval_data: str = _f("", "A separate dataset to evaluate on (instead of eval_split), e.g. NAME-test.")
    eval_data_version: int | None = _f(None, "Which version of the eval dataset; empty means the latest "
                                       "(a run pins it, so a resume or re-run evaluates on the same records).")
    max_records: int | None = _f(None, "Use only the first N records (quick trials); empty means all.")


@dataclass
class MethodArgs:
    """How much of the model is trained."""

    method: str = _f("lora",
                     "lora: train small add-on matrices (fast, small files). qlora: the same on a 4-bit "
                     "model (needs a CUDA GPU). ptuning: learn a few soft prompt vectors. full: update "
                     "every weight (slow, large files). dpo, orpo, kto: learn from preferences (records with a chosen and a "
                     "rejected answer, or answers marked good/bad for kto), usually starting from an SFT run; dpo "
                     "is the usual choice, orpo also learns the chosen answers and needs no reference model, kto "
                     "learns from single answers marked good or bad.", beginner=True, choices=METHODS)
    lora_r: int = _f(8,
                     "LoRA rank: the size of the add-on matrices. Higher learns more but trains more "
                     "parameters; 8-16 is plenty for small datasets.", beginner=True)
    lora_alpha: int = _f(16,
                         "LoRA scaling: the update is multiplied by alpha / r. Keep it about 2 x r.")
    lora_dropout: float = _f(0.05,
                             "Randomly drop part of the LoRA input while training, to avoid learning the "
                             "examples by heart. 0 - 0.1.")
    lora_target: str = _f("all-linear",
                          "Which layers get LoRA matrices: all-linear (every linear layer; learns visibly "
                          "faster for about 3% more time per step) or names such as q_proj,v_proj.")
    pref_beta: float = _f(0.1,
                          "Preference methods: how strongly to follow the preferences. DPO and KTO: beta, how far "
                          "the model may move from where it started (smaller = further; 0.1 is the usual value, "
                          "0.5 stays close). ORPO: lambda, the weight of the preference term next to learning the "
                          "chosen answer (0.1 - 0.5).", beginner=True)
    pref_loss: str = _f("sigmoid",
                        "DPO's loss: sigmoid (the original DPO), ipo (stays closer to the starting model when "
                        "the preferences are noisy or the pairs few), hinge (stops pushing once a pair is "
                        "clearly separated).", choices=("sigmoid", "ipo", "hinge"))
    kto_desirable_weight: float = _f(1.0,
                                     "KTO: the weight of the answers marked good in the loss (TRL's desirable_weight). "
                                     "With fewer good than bad answers, raise it so that good x weight is about bad "
                                     "(the KTO paper suggests 1 to 1.33 times that).")
    kto_undesirable_weight: float = _f(1.0,
                                       "KTO: the weight of the answers marked bad in the loss (TRL's undesirable_weight); "
                                       "with fewer bad than good answers, raise this one instead.")
    pref_tuning: str = _f("lora",
                          "Preference methods: what they train. lora: an adapter; the model it starts from is "
                          "its own reference (adapter switched off), so no second copy in memory. full: every "
                          "weight (needs a much smaller learning rate, and large files).", choices=("lora", "full"))
    num_virtual_tokens: int = _f(20, "P-tuning: how many learned soft-prompt vectors precede every input.")
    encoder_hidden_size: int = _f(128, "P-tuning: size of the small network that produces the soft prompt.")
    init_adapter: str = _f("",
                           "Start from an earlier run's adapter (a run id) instead of fresh weights, to "
                           "continue training it on new or corrected data.")


@dataclass
class TrainingArgs:
    """How long and how fast to train."""

    recipe: str = _f("auto",
                     "auto: size the run to the dataset (steps, learning rate, batch, packing, warmup, evaluation "
                     "and early stopping), each value shown with its reason; anything you set yourself wins. "
                     "manual: use exactly the values given here.", beginner=True, choices=("auto", "manual"))
    learning_rate: float = _f(2e-4,
                              "How big a step the weights take each update. Too high: the loss jumps or "
                              "explodes; too low: it barely moves.", beginner=True)
    epochs: float = _f(1.0, "How many times to go through the whole dataset.", beginner=True)
    max_steps: int = _f(0, "Stop after this many updates (overrides epochs); 0 means use epochs.",
                        beginner=True)
    batch_size: int = _f(2, "Examples processed together in one forward pass; with packing, a batch holds "
                         "batch_size x cutoff_len tokens of packed examples. Larger uses more memory and makes "
                         "each step slower.")
    grad_accum: int = _f(1,
                         "Gradient accumulation: add up gradients of this many batches before one update, "
                         "to imitate a bigger batch without the memory.")
    warmup_ratio: float = _f(0.05,
                             "Share of the steps over which the learning rate ramps up from 0, so the first "
                             "updates do not wreck the model.")
    weight_decay: float = _f(0.0, "Pull weights slightly towards zero each step (a mild regulariser).")
    max_grad_norm: float = _f(1.0, "Gradient clipping: cap the size of each update to keep training stable.")
    eval_steps: int = _f(0, "Measure the evaluation loss every N steps (needs eval_split or eval_data); 0 = at the end only.")
    early_stopping_patience: int = _f(0,
                                      "Stop when the evaluation loss has not improved for this many evaluations in a "
                                      "row, and keep the best step's weights as the run's result; 0 = off.")
    save_steps: int = _f(10,
                         "Save a checkpoint every N steps: a stopped or crashed run resumes from the last one, "
                         "and the run is usable as a model from the first one.")
    seed: int = _f(42, "Random seed: the same seed and data give the same run.")
    resume_from: str = _f("",
                          "Continue this run from a checkpoint: 'last' (what `runs resume` sets) or a "
                          "checkpoint folder name such as step-20.")
    wait_for_others: bool = _f(True, "Wait until other runs have finished before starting (one run at a time).")
    threads: int = _f(0, "CPU threads for training; 0 lets torch decide.")
    mixed_precision: str = _f("auto", "Compute in bfloat16 while the weights stay float32 (autocast): about 1.5x "
                              "faster where the hardware has native bf16 (CPUs with AVX512-BF16 or AMX, recent "
                              "GPUs). auto uses it there only; bf16 forces it; no turns it off.",
                              choices=("auto", "bf16", "no"))
    gradient_checkpointing: str = _f("auto", "Gradient (activation) checkpointing: keep only each layer's input during "
                                     "the forward pass and recompute the rest in the backward pass. It takes much "
                                     "less memory for about 20-30% more time per step. auto turns it on when the "
                                     "run would otherwise need more than half of the free memory; on forces it; "
                                     "off turns it off.", choices=("auto", "on", "off"))
    auto_report: bool = _f(True, "When the run finishes, evaluate the base and the tuned model side by side on the "
                           "test data (NAME-test, the eval data or the held-out split; up to 50 examples) as a "
                           "background report, shown with the run. --no-auto-report turns it off.")
    report_to: str = _f("tensorboard", "Where the run's curves go besides the dashboard: TensorBoard always "
                        "(runs/<id>/tb); add mlflow or wandb (comma-separated, e.g. tensorboard,mlflow) when that "
                        "package is installed. Both stay offline unless MLFLOW_TRACKING_URI or WANDB_MODE say otherwise.")


def tuning(cfg: "TrainConfig") -> str:
    """What a run trains: lora, qlora, ptuning or full; a preference method trains its pref_tuning."""
    m = cfg.method
    return m.pref_tuning if m.method in PREFERENCE_METHODS else m.method


GROUPS = {"model": ModelArgs, "data": DataArgs, "method": MethodArgs, "training": TrainingArgs}


@dataclass
class TrainConfig:
    """Everything a run needs, grouped as in config.yaml."""

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    method: MethodArgs = field(default_factory=MethodArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    # What the auto recipe picked: {setting: {"value", "why", "source": "recipe"|"you"}} (train/recipe.py).
    recipe: dict = field(default_factory=dict)
    # The settings the user gave (flags, YAML keys, changed form fields), recorded when the run is made:
    # re-running this config keeps exactly these and lets the recipe size the rest to the new data.
    # None in a config.yaml written before it was recorded (user_keys() infers them then).
    user_set: list[str] | None = None

    @classmethod
    def for_method(cls, method: str = "lora") -> "TrainConfig":
        """Defaults for a method (learning rate differs between adapters and full fine-tuning)."""
        if method not in METHODS:
            raise TuneLabError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        cfg = cls()
        cfg.method.method = method
        cfg.set(METHOD_DEFAULTS[method])
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a nested dict (config.yaml); unknown groups or keys are refused."""
        validate.document(d)  # a mapping of sections of plain values (train/validate.py)
        method = (d.get("method") or {}).get("method", "lora")
        cfg = cls.for_method(method)
        for group, values in d.items():
            if group == RECIPE:
                cfg.recipe = _recipe_section(values)
                continue
            if group == USER_SET:
                cfg.user_set = _user_set_section(values)
                continue
            if group not in GROUPS:
                raise TuneLabError(f"unknown config section {group!r}: use {', '.join(GROUPS)}")
            for k, v in (values or {}).items():
                cfg.set({k: v}, group=group)
        return validate.check(cfg)

    def to_yaml(self, path: Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from tunelab.jsonio import write_atomic

            write_atomic(Path(path), text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> "TrainConfig":
        """Read a config from a YAML file path or YAML text."""
        if isinstance(source, Path):
            return cls.from_dict(validate.load_yaml(Path(source).read_bytes(), where=str(source)))
        return cls.from_dict(validate.load_yaml(source))

    def set(self, values: dict, group: str | None = None) -> None:
        """Set flat field values (`lora_r=16`), finding each field's group; types are checked."""
        for key, value in values.items():
            g = group or field_group(key)
            obj = getattr(self, g)
            f = {x.name: x for x in fields(obj)}.get(key)
            if f is None:
                raise TuneLabError(f"unknown setting {key!r} in section {g!r}")
            setattr(obj, key, _coerce(f, value))

    def flat(self) -> dict:
        """All fields in one dict, as the CLI flags name them."""
        return {k: v for g in GROUPS for k, v in dataclasses.asdict(getattr(self, g)).items()}


RECIPE = "recipe"


def _recipe_section(values: Any) -> dict:
    """The config.yaml `recipe:` section as {setting: {"value", "why", "source"}}; refused when malformed."""
    values = values or {}
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise TuneLabError("the recipe section of a config must map each setting to its value and reason")
    return {str(k): dict(v) for k, v in values.items()}


USER_SET = "user_set"
# Written into config.yaml by TuneLab, not chosen: the pinned dataset versions and `runs resume`'s checkpoint.
RUN_STATE = ("data_version", "eval_data_version", "resume_from")


def _user_set_section(values: Any) -> list[str] | None:
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TuneLabError("the user_set section of a config must list setting names")
    known = {f.name for _, f in all_fields()}
    return [v for v in values if v in known]


def user_keys(d: dict) -> set[str]:
    """Settings a config dict (config.yaml) sets itself, as opposed to what the auto recipe picked.

    The settings recorded in its `user_set` section, plus any value edited by hand since: one that
    differs from the recipe's pick for it or, for a setting the recipe did not pick, from the method's
    default. A file without `user_set` (written before it was recorded) is read by the same rule, so
    its default values and the recipe's picks are sized again for new data instead of frozen. A file with
    neither section was written by hand (TuneLab writes `recipe:` into every run's): all its keys are the user's.
    """
    if USER_SET not in d and RECIPE not in d:
        return {k for group, values in d.items() if group in GROUPS and isinstance(values, dict) for k in values}
    recipe = {k: v for k, v in (d.get(RECIPE) or {}).items() if isinstance(v, dict)}
    picked = {k: v.get("value") for k, v in recipe.items() if v.get("source", "recipe") == "recipe"}
    keys = set(_user_set_section(d.get(USER_SET)) or [])
    keys |= {k for k, v in recipe.items() if v.get("source") == "you"}
    method = (d.get("method") or {}).get("method", "lora")
    defaults = TrainConfig.for_method(method if method in METHODS else "lora").flat()
    for group, values in d.items():
        if group in GROUPS and isinstance(values, dict):
            for k, v in values.items():
                if k in RUN_STATE or k not in defaults:
                    continue
                if (picked[k] != v) if k in picked else (v != defaults[k] and not (v in (None, "") and
                                                                              defaults[k] in (None, ""))):
                    keys.add(k)
    return keys


def rerun(d: dict) -> tuple[TrainConfig, set[str]]:
    """A run's config.yaml (as a dict) as the start of a new run: (config, the user's settings).

    The config holds the method's defaults, the model, the dataset (with its pinned version, and the eval
    dataset's when that was the user's) and every setting the user gave; the recipe's old picks are left out,
    so recipe.apply sizes them again, to the data of the new run.
    """
    old = TrainConfig.from_dict(d)
    mine = user_keys(d)
    cfg = TrainConfig.for_method(old.method.method)
    flat = old.flat()
    keep = (mine | {"model", "data", "data_version"}) - {"resume_from"}
    if "eval_data" in mine:
        keep.add("eval_data_version")
    cfg.set({k: flat[k] for k in keep})
    return cfg, mine - {"resume_from"}


def flag_keys(args: argparse.Namespace) -> set[str]:
    """Settings given as flags (add_flags leaves unset flags out of the namespace)."""
    return {f.name for _, f in all_fields() if hasattr(args, f.name)}


def field_group(name: str) -> str:
    """The group (model, data, method, training) that holds a field."""
    for g, cls in GROUPS.items():
        if name in {f.name for f in fields(cls)}:
            return g
    raise TuneLabError(f"unknown training setting {name!r}")


def all_fields() -> list[tuple[str, dataclasses.Field]]:
    """(group, field) for every setting, in form order."""
    return [(g, f) for g, cls in GROUPS.items() for f in fields(cls)]


@functools.cache
def _hints() -> dict[str, Any]:
    """Every field's declared type (`int | None`, `float`, ...), resolved once from the dataclasses."""
    return {k: v for cls in GROUPS.values() for k, v in typing.get_type_hints(cls).items()}


def _hint(name: str) -> Any:
    return _hints()[name]


def _kind(f: dataclasses.Field) -> type:
    """The field's base type without `| None`: bool, int, float or str."""
    args = [a for a in typing.get_args(_hint(f.name)) if a is not type(None)]
    return args[0] if args else _hint(f.name)


@functools.cache
def _adapter(name: str) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(_hint(name))


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Check and convert a value (from YAML, a flag or the form) to the field's declared type.

    pydantic's lax mode does the conversion ("3" -> 3, "1e-3" -> 0.001, "yes" -> True, 2.0 -> 2) and
    refuses what does not fit (2.5 for an int, "maybe" for a bool); the error is one sentence.
    """
    typ, optional = _kind(f), type(None) in typing.get_args(_hint(f.name))
    if value is None or value == "":
        if optional or typ is str:
            return None if optional else ""
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # `lora_target: 7` in YAML is text, not an error
    if typ is int and isinstance(value, str):
        try:  # "1e3" or "2.0" from a flag or YAML: pydantic parses only integer text
            as_float = float(value)
            value = int(as_float) if as_float.is_integer() else value
        except ValueError:
            pass
    try:
        value = _adapter(f.name).validate_python(value)
    except pydantic.ValidationError:
        raise TuneLabError(f"{f.name} must be a {typ.__name__}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise TuneLabError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--field-name` flag per config field; unset flags stay absent from the namespace."""
    for _group, f in all_fields():
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                              "help": f.metadata["help"].replace("%", "%%")}  # argparse formats help with %
        if _kind(f) is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            parser.add_argument(flag, choices=f.metadata.get("choices"),
                                metavar=f.name.upper() if not f.metadata.get("choices") else None, **kw)


def from_flags(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """A config from parsed flags over base (or the method's defaults when no base is given)."""
    given = {g_f.name: getattr(args, g_f.name) for _, g_f in all_fields() if hasattr(args, g_f.name)}
    if base is None:
        cfg = TrainConfig.for_method(given.get("method", "lora"))
    else:
        cfg = TrainConfig.from_dict(base.to_dict())
        if "method" in given and given["method"] != cfg.method.method and "learning_rate" not in given:
            cfg.set(METHOD_DEFAULTS[given["method"]])
    cfg.set(given)
    return validate.check(cfg)


def to_flags(cfg: TrainConfig) -> list[str]:
    """The CLI flags that reproduce cfg from the method's defaults (for the page's copyable command)."""
    defaults = TrainConfig.for_method(cfg.method.method).flat()
    out = []
    for key, value in cfg.flat().items():
        if key == "method" or (value == defaults[key] and key not in ("model", "data")):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None:
            out += [flag, str(value)]
    return ["--method", cfg.method.method] + out
