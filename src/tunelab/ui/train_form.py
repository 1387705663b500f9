"""The Train page's config form: one widget per TrainConfig field, kept in the URL and the session."""

from __future__ import annotations

import streamlit as st

from tunelab import workspace
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.models import registry
from tunelab.train import manage, runs, validate
from tunelab.train.config import METHOD_DEFAULTS, PREFERENCE_METHODS, TrainConfig, all_fields
from tunelab.ui.i18n import t
from tunelab.ui.layout import show_error

SKIP = {"model", "data", "resume_from"}  # chosen with dedicated widgets / set by `runs resume`
FIELDS = [f.name for _, f in all_fields() if f.name != "resume_from"]  # what the form, the draft and the URL hold

# What the form calls each setting (the config's own names stay in the CLI and config.yaml), with units.
LABELS = {
    "model": "Base model", "dtype": "Weight precision while training", "data": "Dataset",
    "data_version": "Dataset version (empty = latest)", "cutoff_len": "Max tokens per example",
    "packing": "Pack short examples together", "eval_split": "Held-out share for evaluation (0-1)",
    "eval_data": "Evaluation dataset", "eval_data_version": "Evaluation dataset version (empty = latest)",
    "max_records": "Use only the first N records (empty = all)", "method": "Method", "lora_r": "LoRA rank (r)",
    "lora_alpha": "LoRA scaling (alpha)", "lora_dropout": "LoRA dropout (0-1)", "lora_target": "Layers that get LoRA",
    "pref_beta": "Preference strength (beta)", "pref_loss": "DPO loss", "pref_tuning": "What preference training updates",
    "num_virtual_tokens": "Soft-prompt length (tokens)", "encoder_hidden_size": "Prompt-encoder size (units)",
    "init_adapter": "Start from a run's adapter", "recipe": "Recipe", "learning_rate": "Learning rate",
    "epochs": "Epochs (passes over the data)", "max_steps": "Max steps (0 = use epochs)",
    "batch_size": "Batch size (examples per step)", "grad_accum": "Gradient accumulation (batches per update)",
    "warmup_ratio": "Warm-up (share of steps, 0-1)", "weight_decay": "Weight decay",
    "max_grad_norm": "Gradient clipping (max norm)", "eval_steps": "Evaluate every N steps (0 = at the end)",
    "early_stopping_patience": "Early-stopping patience (evaluations, 0 = off)",
    "save_steps": "Checkpoint every N steps", "seed": "Random seed", "kto_undesirable_weight": "KTO: weight of bad answers",
    "wait_for_others": "Wait for other runs to finish", "threads": "CPU threads (0 = automatic)", "mixed_precision": "Mixed precision (bfloat16 compute)",
    "auto_report": "Before/after report when the run ends", "kto_desirable_weight": "KTO: weight of good answers",
    "template": "Chat template",
    "gradient_checkpointing": "Gradient checkpointing (less memory, slower)",
    "report_to": "Also log to (tensorboard, mlflow, wandb)",
}
METHOD_LABELS = {
    "lora": "LoRA: small add-on matrices (recommended)", "qlora": "QLoRA: LoRA on a 4-bit model (CUDA GPU)",
    "ptuning": "P-tuning: a learned soft prompt", "full": "Full fine-tune: every weight",
    "dpo": "DPO: learn from chosen/rejected pairs", "orpo": "ORPO: preferences and answers, no reference model",
    "kto": "KTO: answers marked good or bad",
}
NONE = ""  # the pickers' "none" option (the config's empty string)
LORA_FIELDS = {"lora_r", "lora_alpha", "lora_dropout", "lora_target"}


def relevant(name: str, method: str, pref_tuning: str = "lora") -> bool:
    """Whether a setting does anything for this method (the form shows only those)."""
    pref = method in PREFERENCE_METHODS
    tuned = pref_tuning if pref else method
    if name in LORA_FIELDS:
        return tuned in ("lora", "qlora")
    if name in ("pref_beta", "pref_tuning"):
        return pref
    if name == "pref_loss" or name.startswith("kto_"):  # one method's own settings
        return method == ("dpo" if name == "pref_loss" else "kto")
    if name in ("num_virtual_tokens", "encoder_hidden_size"):
        return method == "ptuning"
    if name == "init_adapter":
        return tuned in ("lora", "qlora")
    return True


def _model_names() -> list[str]:
    """Base models first, then finished runs (a run as the model continues its adapter); read from disk each run."""
    return _base_models() + [r["run"] for r in runs.list_runs() if r["status"] in ("completed", "stopped")]


@st.cache_data(ttl=10, show_spinner=False)
def _base_models() -> list[str]:
    return [m["name"] for m in registry.list_models() if m["kind"] not in ("openai", "run")]


def _is_run(model: str | None) -> bool:
    """Whether a model name is a run id of this workspace (a full run's id resolves to plain weights)."""
    if not model or not workspace.NAME_RE.match(str(model)):
        return False
    d = workspace.subdir("runs") / str(model)
    return (d / "config.yaml").exists() or (d / "output.json").exists()


def _on_method() -> None:
    """Switching method resets the learning rate to that method's default."""
    lr = METHOD_DEFAULTS[st.session_state["train.method"]]["learning_rate"]
    st.session_state["train.learning_rate"] = lr


def _url_form() -> dict[str, str]:
    """The form settings the URL carries now, as text (?max_steps=7&method=full ...)."""
    return {name: st.query_params[name] for name in FIELDS if name in st.query_params}


def _parse_url(raw: dict[str, str]) -> dict:
    """Those of raw's values that are valid settings, typed; the invalid ones are named in one warning."""
    out, bad = {}, []
    for name, text in raw.items():
        probe = TrainConfig()
        try:
            probe.set({name: text})
            validate.check(probe)  # ?learning_rate=NaN or ?batch_size=0 does not fill the form
        except TuneLabError:
            bad.append(name)
            continue
        out[name] = probe.flat()[name]
    if bad:
        st.warning(t("Ignored invalid values in the link: {names}", names=", ".join(bad)))
    return out


def _init_defaults() -> None:
    """The form's values: this session's draft, else the URL's (a refresh or a shared link), else defaults."""
    draft = st.session_state.setdefault("train.draft", {})
    # The URL is read whenever it holds settings this session did not put there (a refresh, a shared link),
    # not only on the session's first run: a first run can start before the browser's query string is known,
    # and marking the URL as read then made the next runs ignore it and _remember wipe it.
    raw, seen = _url_form(), st.session_state.get("train.url_seen") or {}
    new = {k: v for k, v in raw.items() if seen.get(k) != v}
    if new:
        st.session_state["train.url_seen"] = raw
        for name, value in _parse_url(new).items():
            key = f"train.{name}"
            if key in st.session_state and name in draft and st.session_state[key] != draft[name]:
                continue  # the user changed this field in this very rerun: their value wins over an older URL
            draft[name] = value
            st.session_state[key] = value
    # Widget values vanish when the page is left; the draft (a plain session key) brings them back.
    for name, value in draft.items():
        if f"train.{name}" not in st.session_state or st.session_state[f"train.{name}"] is None and value is not None:
            st.session_state[f"train.{name}"] = value
    defaults = TrainConfig.for_method(st.session_state.get("train.method") or "lora").flat()
    for name, value in defaults.items():
        if name not in SKIP:
            st.session_state.setdefault(f"train.{name}", value)
    if st.session_state.get("train.model") is None:
        winner = st.session_state.get("compare.winner")
        # Only a real base model is carried over from Compare; a run is continued from its own picker entry.
        st.session_state["train.model"] = winner if winner and not _is_run(winner) else registry.DEFAULT_MODEL


def _remember(cfg_values: dict, shown: set[str]) -> None:
    """Keep the form in the session's draft and its non-default values in the URL (a refresh restores them)."""
    draft = st.session_state["train.draft"]
    draft.update({k: v for k, v in cfg_values.items() if k in shown})
    defaults = TrainConfig.for_method(cfg_values["method"]).flat()
    for name in FIELDS:
        value = cfg_values.get(name)
        keep = name in shown and (name == "data" or value != defaults[name]
                                  or (name == "method" and value != "lora"))
        if name == "model" and value == registry.DEFAULT_MODEL:
            keep = False
        text = None if not keep or value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        if text is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != text:
            st.query_params[name] = text
    st.session_state["train.url_seen"] = _url_form()  # what the URL holds now: this session's own values


def _label(f) -> str:
    return t(LABELS.get(f.name, f.name.replace("_", " ")))


def _widget(f, datasets: list[str], adapters: list[str]) -> None:
    key, help_ = f"train.{f.name}", t(f.metadata["help"])
    label = _label(f)
    typ = str(f.type)
    if f.name == "eval_data":  # pickers, not free text: only what exists can be chosen
        opts = [NONE, *datasets]
        if st.session_state.get(key) not in opts:
            st.session_state[key] = NONE
        names = {NONE: t("(none: use the held-out share)")} | {d: d for d in datasets}
        st.selectbox(label, opts, key=key, help=help_, format_func=lambda v: names.get(v, v))
    elif f.name == "init_adapter":
        opts = [NONE, *adapters]
        if st.session_state.get(key) not in opts:
            st.session_state[key] = NONE
        names = {NONE: t("(none: fresh adapter)")} | {r["run"]: manage.label(r) for r in manage.list_runs()
                                                      if r["run"] in adapters}
        st.selectbox(label, opts, key=key, help=help_, format_func=lambda v: names.get(v, v))
    elif f.metadata.get("choices"):
        kw = {"on_change": _on_method} if f.name == "method" else {}
        if f.name == "method":
            names = {m: t(METHOD_LABELS.get(m, m)) for m in f.metadata["choices"]}
            kw["format_func"] = names.get
        st.selectbox(label, f.metadata["choices"], key=key, help=help_, **kw)
    elif typ.startswith("bool"):
        st.checkbox(label, key=key, help=help_)
    elif typ.startswith("int"):
        st.number_input(label, key=key, help=help_, step=1, min_value=0)
    elif typ.startswith("float"):
        st.number_input(label, key=key, help=help_, format="%g", min_value=0.0,
                        step=1e-5 if f.name == "learning_rate" else 0.05)
    else:
        st.text_input(label, key=key, help=help_)


def config_form() -> TrainConfig | None:
    """The form: model + dataset, the few beginner knobs, the rest under Advanced. Returns the config.

    Only the settings of the chosen method are shown; every value survives a refresh (URL + session draft).
    """
    _init_defaults()
    models = _model_names()
    if st.session_state["train.model"] not in models:
        models = [st.session_state["train.model"], *models]
    datasets = [d["name"] for d in store.list_datasets()]
    names = {m: t("run {run} (continue its adapter)", run=m) if _is_run(m) else m for m in models}
    c1, c2 = st.columns(2)
    c1.selectbox(t("Base model"), models, key="train.model", help=t(all_fields()[0][1].metadata["help"]),
                 format_func=lambda v: names.get(v, v))
    if not datasets:
        c2.info(t("No datasets yet: import one in the Data step."))
        return None
    if st.session_state.get("train.data") not in datasets:
        # A -train split is what a run should learn from (its -test twin is for Compare).
        st.session_state["train.data"] = next((d for d in datasets if d.endswith("-train")), datasets[0])
    c2.selectbox(t("Dataset"), datasets, key="train.data", help=t("The dataset to learn from (see the Data step)."))
    adapters = manage.adapter_runs()
    method = st.session_state["train.method"]

    def shown(f) -> bool:
        return f.name not in SKIP and relevant(f.name, method, st.session_state.get("train.pref_tuning") or "lora")

    beginner = [f for _, f in all_fields() if f.metadata.get("beginner") and shown(f)]
    cols = st.columns(3)
    for i, f in enumerate(beginner):
        with cols[i % 3]:
            _widget(f, datasets, adapters)
    with st.expander(t("Advanced")):
        cols = st.columns(3)
        rest = [f for _, f in all_fields() if not f.metadata.get("beginner") and shown(f)]
        for i, f in enumerate(rest):
            with cols[i % 3]:
                _widget(f, datasets, adapters)
    visible = {f.name for f in beginner + rest} | {"model", "data"}
    cfg = TrainConfig.for_method(method)
    try:  # a hidden setting keeps the method's default: it would do nothing for this method anyway
        cfg.set({name: st.session_state[f"train.{name}"] for name in FIELDS if name in visible})
    except TuneLabError as exc:
        show_error(exc)
        return None
    _remember(cfg.flat(), visible)
    return cfg
