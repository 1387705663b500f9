"""Checks of a training config before anything is launched: a safe YAML loader and every number's range.

`load_yaml` reads a config file's text without the ways YAML can hurt (aliases that expand a few lines
into gigabytes, deep nesting, a huge file, bytes that are not UTF-8); `document` checks the shape of
the parsed mapping; `problems` lists every value out of range (the form disables Start with them);
`check` raises the first as one line. TrainConfig.from_yaml / from_dict / from_flags call these, so
the CLI, the form, a URL and a run folder's config.yaml all pass the same checks.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from tunelab.errors import TuneLabError

MAX_YAML_BYTES = 256 * 1024  # a config is a few hundred bytes; a recipe section a few KB
MAX_DEPTH = 6  # groups -> settings (-> recipe entries): deeper nesting is not a config
MAX_TEXT = 1000  # characters of one text value (a model path, a dataset name, layer names)
SHOWN = 60  # characters of a refused value quoted in an error

# (lowest, highest, lowest included) per numeric setting; None = unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "learning_rate": (0.0, 1.0, False),
    "epochs": (0.0, 10_000.0, False),
    "max_steps": (0, 10_000_000, True),
    "batch_size": (1, 4096, True),
    "grad_accum": (1, 4096, True),
    "warmup_ratio": (0.0, 1.0, True),
    "weight_decay": (0.0, 10.0, True),
    "max_grad_norm": (0.0, 1e6, True),
    "eval_steps": (0, 10_000_000, True),
    "early_stopping_patience": (0, 1_000_000, True),
    "save_steps": (0, 10_000_000, True),
    "seed": (0, 2**32 - 1, True),
    "threads": (0, 4096, True),  # 0 lets torch decide
    "cutoff_len": (8, 1_048_576, True),
    "eval_split": (0.0, 1.0, True),  # below 1: checked apart
    "max_records": (0, None, True),  # 0 or empty: every record
    "data_version": (1, None, True),
    "lora_r": (1, 4096, True),
    "lora_alpha": (1, 65_536, True),
    "lora_dropout": (0.0, 1.0, True),  # below 1: checked apart
    "pref_beta": (0.0, 1000.0, False),
    "num_virtual_tokens": (1, 4096, True),
    "encoder_hidden_size": (1, 65_536, True),
}
BELOW_ONE = ("eval_split", "lora_dropout")  # a share that must leave something: 0 <= x < 1


def short(value: Any) -> str:
    """A value for an error line: its repr, cut to SHOWN characters (never the whole of a huge value)."""
    text = repr(value) if not isinstance(value, str) else repr(value[: SHOWN + 1])
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases (the billion-laughs expansion) and with a nesting limit."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise TuneLabError(f"malformed config YAML: line {mark.line + 1} uses an alias (*name); "
                               "write the value out instead")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise TuneLabError(f"malformed config YAML: nested more than {MAX_DEPTH} levels deep "
                                   f"(line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(source: str | bytes, where: str = "config") -> dict:
    """Parse a config's YAML text (or raw bytes) into a mapping, safely; any problem is one TuneLabError line."""
    size = len(source)
    if size > MAX_YAML_BYTES:
        raise TuneLabError(f"{where} is {size // 1024} KB: a training config is at most {MAX_YAML_BYTES // 1024} KB")
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TuneLabError(f"{where} is not UTF-8 text (at byte {exc.start})") from None
    try:
        doc = yaml.load(source, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise TuneLabError(f"malformed config YAML: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise TuneLabError(f"malformed config YAML: nested more than {MAX_DEPTH} levels deep") from None
    return document(doc if doc is not None else {})


def document(d: Any) -> dict:
    """Check a parsed config's shape: a mapping of sections, each a mapping of settings to plain values."""
    if not isinstance(d, dict):
        raise TuneLabError(f"a training config must be a mapping of groups (model, data, method, training), "
                           f"not {_kind(d)}")
    for group, values in d.items():
        if values is None or group in ("recipe", "user_set"):  # train/config.py checks these sections itself
            continue
        if not isinstance(values, dict):
            raise TuneLabError(f"config section {short(group)} must be a mapping of settings, not {_kind(values)}")
        for key, value in values.items():
            if isinstance(value, (dict, list, tuple, set)):
                raise TuneLabError(f"setting {short(key)} in section {short(group)} must be a single value, "
                                   f"not {_kind(value)}")
            if isinstance(value, (str, bytes)) and len(value) > MAX_TEXT:
                raise TuneLabError(f"setting {short(key)} in section {short(group)} is {len(value)} characters long "
                                   f"(at most {MAX_TEXT}): {short(value)}")
    return d


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", tuple: "a list", str: "text", bool: "true/false",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def value_problem(name: str, value: Any) -> str | None:
    """Why a setting's value cannot run (one sentence), or None when it is fine."""
    try:
        check_value(name, value)
    except TuneLabError as exc:
        return str(exc)
    return None


def check_value(name: str, value: Any) -> None:
    """Raise a TuneLabError saying why a setting's value cannot run; nothing when it is fine."""
    if name not in RANGES or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # not a number: the type check (config._coerce) names that
    if not math.isfinite(value):
        raise TuneLabError(f"{name} must be a finite number, not {value}")
    lo, hi, lo_ok = RANGES[name]
    if lo is not None and value < lo:
        raise TuneLabError(f"{name} must be at least {_num(lo)}, not {_num(value)}")
    if lo is not None and value == lo and not lo_ok:
        raise TuneLabError(f"{name} must be greater than {_num(lo)}, not {_num(value)}")
    if name in BELOW_ONE and value >= 1:
        raise TuneLabError(f"{name} must be below 1 (a share of the records), not {_num(value)}")
    if hi is not None and value > hi:
        raise TuneLabError(f"{name} must be at most {_num(hi)}, not {_num(value)}")


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def problems(cfg: Any) -> list[str]:
    """Every value of a TrainConfig out of range, in form order."""
    flat = cfg.flat()
    return [p for name, value in flat.items() if (p := value_problem(name, value))]


def check(cfg: Any) -> Any:
    """Raise the first problem of cfg as a TuneLabError (problems() lists them all); returns cfg."""
    for name, value in cfg.flat().items():
        check_value(name, value)
    return cfg


def stop_if_nonfinite(step: int, loss: float) -> None:
    """Fail the run in one line naming the step when its loss is NaN or infinite (before the weights take it)."""
    if not math.isfinite(loss):
        raise TuneLabError(f"the loss became {loss} at step {step}: training stopped (try a smaller learning "
                           "rate, or check the data)")
