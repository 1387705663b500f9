"""Train page widgets: the config form, the token preview, live run charts and past-run comparison.

What is running is always read from the run folders (tunelab.train.runs), never from session
state, so a refresh or a second tab re-attaches to a run instead of starting or losing one.
"""

from __future__ import annotations

import html
import shlex

import streamlit as st

from tunelab import jobs, workspace
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.models import registry
from tunelab.train import manage, recipe, runs, validate
from tunelab.train.config import METHOD_DEFAULTS, PREFERENCE_METHODS, TrainConfig, all_fields, to_flags
from tunelab.train.diagnose import diagnose
from tunelab.ui.i18n import t, t_error
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


@st.cache_data(max_entries=16, show_spinner=False)  # preview() shows a spinner in the session's language
def _preview(model: str, data: str, version: int, cutoff: int) -> list[dict]:
    from tunelab.train.data import preview

    return preview(model, store.read(data, version).slice(0, 3).to_pylist(), cutoff)


def preview(cfg: TrainConfig) -> None:
    """What the model sees: tokens after the chat template, loss tokens highlighted, the cutoff marked."""
    st.subheader(t("What the model sees"))
    st.caption(t("Green tokens carry the loss (the answer the model learns to write); grey ones are context. "
                 "Anything after ✂ is cut off by the cutoff length."))
    try:
        with st.spinner(t("Applying the chat template ...")):
            items = _preview(cfg.model.model, cfg.data.data, store.resolve_version(cfg.data.data), cfg.data.cutoff_len)
    except TuneLabError as exc:
        show_error(exc)
        return
    for i, item in enumerate(items):
        spans = []
        for j, tok in enumerate(item["tokens"]):
            if item["truncated_at"] == j:
                spans.append(f'<b style="color:#e5484d">{html.escape(t("✂ cutoff"))}</b>')
            # Translucent tints: readable on the light and the dark theme alike.
            style = "background:rgba(46,160,67,.28)" if tok["loss"] else "background:rgba(128,128,128,.16)"
            if item["truncated_at"] is not None and j >= item["truncated_at"]:
                style += ";opacity:.35;text-decoration:line-through"
            spans.append(f'<span style="{style}">{html.escape(tok["text"])}</span>')
        st.markdown(t("**Record {n}** — {length} tokens", n=i + 1, length=item["length"]), help=None)
        st.html('<div style="white-space:pre-wrap;font-family:monospace;font-size:12px;line-height:1.6">'
                + "".join(spans) + "</div>")


@st.cache_data(max_entries=16, show_spinner=False)
def _tokens_per_epoch(model: str, data: str, version: int, cutoff: int) -> int:
    from tunelab.train.estimate import tokens_per_epoch

    return tokens_per_epoch(model, data, version, cutoff)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def _facts(model: str, data: str, version: int, cutoff: int, max_records: int | None) -> recipe.Facts:
    cfg = TrainConfig()
    cfg.set({"model": model, "data": data, "data_version": version, "cutoff_len": cutoff, "max_records": max_records})
    return recipe.facts(cfg)


def with_recipe(cfg: TrainConfig) -> TrainConfig:
    """A copy of the form's config with the auto recipe applied (the form's own values win)."""
    out = TrainConfig.from_dict(cfg.to_dict())
    if out.training.recipe == "auto":
        d = cfg.data
        facts = _facts(cfg.model.model, d.data, store.resolve_version(d.data, d.data_version), d.cutoff_len,
                       d.max_records)
        recipe.apply(out, recipe.form_keys(cfg), facts)
    return out


def recipe_table(cfg: TrainConfig) -> TrainConfig:
    """The auto recipe for the form's config as a table "setting: value — why"; returns the config it gives."""
    try:
        tuned = with_recipe(cfg)
    except (TuneLabError, OSError, KeyError) as exc:
        st.caption(t("No recipe: {reason}", reason=t_error(str(exc))))
        return cfg
    if tuned.recipe:
        st.markdown(t("**Recipe** (auto: sized to this dataset; a value you change in the form wins)"))
        show_recipe(tuned.recipe, key="train.recipe_table")
    return tuned


def show_recipe(chosen: dict, key: str) -> None:
    """A recipe's values and reasons as a table."""
    st.dataframe([{"setting": t(LABELS.get(k, k.replace("_", " "))), "value": str(v["value"]), "why": v["why"],
                   "by": t("you") if v.get("source") == "you" else t("recipe")} for k, v in chosen.items()],
                 hide_index=True, key=key,
                 column_config={"setting": t("Setting"), "value": t("Value"), "why": t("Why"), "by": t("Set by")})


def estimate(cfg: TrainConfig) -> None:
    """Trainable parameters, memory and time, before launching."""
    from tunelab.train.estimate import estimate as est

    try:
        tokens = None if cfg.training.max_steps else _tokens_per_epoch(
            cfg.model.model, cfg.data.data, store.resolve_version(cfg.data.data), cfg.data.cutoff_len)
        e = est(cfg, tokens)
    except (TuneLabError, OSError, KeyError) as exc:
        st.caption(t("No estimate: {reason}", reason=t_error(str(exc))))
        return
    c = st.columns(4)
    c[0].metric(t("trainable parameters"), f"{e['trainable']:,}",
                t("{share}% of {total}", share=f"{100 * e['trainable'] / e['total']:.2f}", total=f"{e['total']:,}"),
                delta_color="off")
    c[1].metric(t("memory (approx.)"), f"{e['memory_gb']} GB")
    c[2].metric(t("per step (approx.)"), f"{e['seconds_per_step']} s")
    c[3].metric(t("whole run (approx.)"), t("{n} min", n=round(e["seconds"] / 60, 1)) if e["seconds"] else "—")


def command(cfg: TrainConfig) -> str:
    """The exact CLI command for this config, shown for copying."""
    cmd = "tunelab train " + shlex.join(to_flags(cfg))
    st.code(cmd, language="bash")
    return cmd


def current_run() -> str | None:
    """The run to watch: an active one from disk first, else the one chosen (this tab or ?run=), else the newest."""
    all_runs = runs.list_runs()
    ids = {r["run"] for r in all_runs}
    active = [r["run"] for r in all_runs if r["status"] in jobs.ACTIVE]
    if st.session_state.get("train.run") not in ids and st.query_params.get("run") in ids:
        st.session_state["train.run"] = st.query_params["run"]
    if active:
        return active[-1]  # oldest active = the one training now (newest first order)
    chosen = st.session_state.get("train.run")
    return chosen if chosen in ids else (all_runs[0]["run"] if all_runs else None)


def playground_link(run_id: str, key: str) -> None:
    """A link that opens the Playground on this run (?model=RUN_ID)."""
    with st.container(key=key):
        st.page_link("pages/playground.py", label=t("Open in Playground"), icon=":material/chat:",
                     query_params={"model": run_id})


def smooth(values: list[float | None], weight: float = 0.8) -> list[float | None]:
    """Exponential moving average (TensorBoard's smoothing, debiased) so a noisy loss shows its trend."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        n += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** n))
    return out


def _charts(rows: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pref = any(r.get("reward_margin") is not None for r in rows)  # a dpo/orpo/kto run: its rewards too
    titles = (t("loss"), t("learning rate"), t("grad norm"), t("tokens/s"))
    if pref:
        titles += (t("reward margin"), t("reward accuracy"))
    fig = make_subplots(rows=3 if pref else 2, cols=2, subplot_titles=titles)
    steps = [r["step"] for r in rows]
    losses = [r.get("loss") for r in rows]
    fig.add_trace(go.Scatter(x=steps, y=losses, name=t("loss"), mode="lines+markers", opacity=0.35), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=smooth(losses), name=t("loss (smoothed)"), mode="lines",
                             line={"width": 3}), 1, 1)
    ev = [r for r in rows if r.get("eval_loss") is not None]  # 0.0 is a value: test for None only
    if ev:
        fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[r["eval_loss"] for r in ev], name=t("eval loss"),
                                 mode="lines+markers"), 1, 1)
    # One line per panel, named by the panel's title: only the loss panel, with several lines, needs a legend.
    fig.add_trace(go.Scatter(x=steps, y=[r.get("learning_rate") for r in rows], name=t("learning rate"),
                             showlegend=False), 1, 2)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("grad_norm") for r in rows], name=t("grad norm"), showlegend=False),
                  2, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r.get("tokens_per_s") for r in rows], name=t("tokens/s"), showlegend=False),
                  2, 2)
    if pref:  # train and eval side by side, like loss and eval loss
        for col, key in ((1, "reward_margin"), (2, "reward_accuracy")):
            label = t(key.replace("_", " "))
            fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in rows], name=label, mode="lines+markers"), 3, col)
            ev = [r for r in rows if r.get(f"eval_{key}") is not None]
            if ev:
                fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[r[f"eval_{key}"] for r in ev],
                                         name=t("eval {metric}", metric=label), mode="lines+markers"), 3, col)
        fig.update_yaxes(range=[-0.05, 1.05], row=3, col=2)
    fig.update_xaxes(title_text=t("step"))
    fig.update_layout(height=760 if pref else 540, margin=dict(l=10, r=10, t=30, b=10), showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0))
    return fig


def preference_report(s: dict) -> None:
    """A dpo/orpo/kto run's preference accuracy before and after, from its report summary (evals/auto.py)."""
    pref = s.get("preference_accuracy")
    if not pref:
        return
    if pref.get("error"):
        st.caption(t("No preference accuracy: {reason}", reason=t_error(pref["error"])))
        return
    if pref.get("tuned") is None:
        return
    values = {"after": f"{pref['tuned']:.2f}", "before": f"{pref['base']:.2f}", "n": pref["pairs"]}
    c = st.columns(2)
    c[0].metric(t("preference accuracy before"), values["before"],
                help=t("Share of held-out pairs where the model finds the chosen answer likelier than the rejected one."))
    c[1].metric(t("preference accuracy after"), values["after"], f"{pref['tuned'] - pref['base']:+.2f}")
    if pref.get("beat_base"):
        st.success(t("The tuned model prefers the chosen answer more often than its base "
                     "({after} vs {before} of {n} held-out pairs).", **values))
    else:
        st.warning(t("The tuned model prefers the chosen answer no more often than its base "
                     "({after} vs {before} of {n} held-out pairs).", **values))
    j = s.get("judge")
    if j and j.get("win_rate") is not None:
        st.caption(t("Judge win rate of the tuned model over its base: {rate}", rate=f"{j['win_rate']:.0%}"))


@st.fragment(run_every=2)
def live(run_id: str) -> None:
    """Status, charts, log tail and Stop/Resume of one run, re-read from its folder every 2 s."""
    try:
        st_ = runs.status(run_id)
    except TuneLabError:
        st.info(t("run {run} no longer exists", run=run_id))
        return
    rows = runs.metrics(run_id)
    status, step, total = st_.get("status"), st_.get("step", 0), st_.get("max_steps")
    seen = st.session_state.get("train.live_seen")
    st.session_state["train.live_seen"] = (run_id, status)
    if seen and seen[0] == run_id and seen[1] in jobs.ACTIVE and status not in jobs.ACTIVE:
        st.rerun()  # it just ended: the whole page, so its export panel, report and pickers appear
    st.markdown(t("**{run}** · `{status}` · step {step}/{total} · {method} on `{data}` from `{model}`", run=run_id,
                  status=t(status or "queued"), step=step, total=total or "?", method=st_.get("method"), data=st_.get("data"),
                  model=st_.get("model")))
    lin = runs.lineage(run_id)
    adapter = t(" + adapter of run `{run}`", run=lin["init_adapter"]) if lin.get("init_adapter") else ""
    st.caption(t("lineage: base `{base}`", base=lin["base"]) + adapter
               + t(" · data `{data}` v{version}", data=lin["data"], version=lin.get("data_version")))
    if total:
        st.progress(min(step / total, 1.0))
    if st_.get("truncated"):
        st.caption(t("{n} records were cut at the cutoff length; {dropped} dropped.", n=st_["truncated"],
                     dropped=st_.get("dropped", 0)))
    if st_.get("error"):
        st.error(t_error(st_["error"]))
    b1, b2, _ = st.columns([1, 1, 6])
    if status in jobs.ACTIVE and b1.button(t("Stop"), key="train.stop"):
        runs.stop(run_id)
        st.toast(t("stopping: the run saves a checkpoint after this step"))
    if status in ("stopped", "interrupted", "failed") and b2.button(t("Resume"), key="train.resume"):
        try:
            runs.resume(run_id)
        except TuneLabError as exc:
            show_error(exc)
    if rows:
        st.plotly_chart(_charts(rows), key=f"train.chart.{run_id}")
    if st_.get("best_step") is not None and st_.get("best_eval_loss") is not None:
        st.caption(t("best eval loss {loss} at step {step}", loss=f"{st_['best_eval_loss']:.4f}", step=st_["best_step"])
                   + (t(" · stopped early: the run's weights are that step's") if st_.get("early_stopped") else ""))
    for w in diagnose(rows, finished=status in jobs.FINAL):
        st.warning(t(w["message"], **w["values"]) + " " + t(w["suggestion"], **w["values"]),
                   icon=":material/warning:")
    try:
        chosen = runs.config(run_id).recipe
    except TuneLabError:
        chosen = {}
    if chosen:
        with st.expander(t("Recipe of this run")):
            show_recipe(chosen, key=f"train.run_recipe.{run_id}")
    with st.expander(t("Log"), expanded=status == "failed"):
        st.code(runs.log_tail(run_id) or t("(empty)"), language=None)
    if status == "completed":
        name = manage.meta(run_id)["name"] or run_id
        st.success(t("Done: {name} is ready to try, compare or export below.", name=name))
        playground_link(run_id, "train.open_playground")


EXPORT_LABELS = {"adapter": "adapter only (small; needs the base model)",
                 "merged": "merged weights (safetensors, a standalone model)",
                 "gguf": "GGUF float32 for llama.cpp (same answers)",
                 "gguf-q8_0": "GGUF Q8_0 for llama.cpp (3.7x smaller, faster)",
                 "ollama": "Ollama: GGUF + Modelfile folder (ollama create)",
                 "gguf-q4_k_m": "GGUF Q4_K_M for llama.cpp (needs the llamacpp extra)",
                 "gguf-q4_0": "GGUF Q4_0 for llama.cpp (needs the llamacpp extra)",
                 "gguf-q5_k_m": "GGUF Q5_K_M for llama.cpp (needs the llamacpp extra)",
                 "gguf-q6_k": "GGUF Q6_K for llama.cpp (needs the llamacpp extra)",
                 "ollama-q4_k_m": "Ollama with a Q4_K_M GGUF (needs the llamacpp extra)"}


def export_panel(run_id: str) -> None:
    """Export a run with saved weights as a background `tunelab export` job; lists its exports."""
    from tunelab.train import export

    try:
        status = (runs.status(run_id) or {}).get("status")
    except TuneLabError:  # deleted (or half-written) since the page listed it
        return
    if status not in ("completed", "stopped"):
        return
    with st.expander(t("Export this run"), icon=":material/download:", expanded=bool(export.list_jobs(run_id))):
        labels = {k: t(EXPORT_LABELS.get(k, k)) for k in export.FORMATS}
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        fmt = c1.selectbox(t("Format"), list(export.FORMATS), key="train.export_format", format_func=labels.get)
        name = c2.text_input(t("Name"), value=run_id, key="train.export_name",
                             help=t("Written under the workspace's exports/ folder."))
        if c3.button(t("Export"), key="train.export", icon=":material/download:"):
            try:
                export.start(run_id, name, fmt)
            except TuneLabError as exc:
                show_error(exc)
        st.caption(t("The same from a terminal: `{cmd}`",
                     cmd=shlex.join(["tunelab", "export", run_id, name + export.FORMATS[fmt][1], *export.FORMATS[fmt][0]])))
        export_jobs(run_id)


def _download(path: str, key: str) -> None:
    """A download button for one exported file or folder (a folder is zipped once, when first clicked)."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        st.caption(t("{name} no longer exists", name=p.name))
        return
    name = p.name + (".zip" if p.is_dir() else "")
    # Deferred: the bytes are read (and a folder zipped) only when the button is clicked, never on a rerun.
    st.download_button(t("Download {name} ({mb} MB)", name=name, mb=manage.size_mb(p)),
                       lambda: open(manage.download_file(p), "rb"), file_name=name, key=key,
                       mime="application/zip" if p.is_dir() else "application/octet-stream",
                       icon=":material/download:", on_click="ignore")


@st.fragment(run_every=2)
def export_jobs(run_id: str) -> None:
    """This run's exports with their status and downloads, re-read from disk every 2 seconds."""
    from tunelab.train import export

    rows = export.list_jobs(run_id)
    if not rows:
        return
    st.dataframe([{"format": j.get("format"), "status": t(j.get("status") or "queued"),
                   "out": j.get("out"), "error": t_error(j["error"]) if j.get("error") else ""} for j in rows],
                 hide_index=True, key="train.exports",
                 column_config={"format": t("Format"), "status": t("Status"), "out": t("File or folder"),
                                "error": t("Error")})
    done = [j for j in rows if j.get("status") == "completed"]
    for j in done:
        for i, path in enumerate(j.get("files") or [j.get("out")]):
            _download(path, key=f"train.download.{j['id']}.{i}")
    if done:
        playground_link(run_id, "train.export_playground")


def _manage_panel(row: dict) -> None:
    """Rename, notes, tags, clone and delete for one run (its id never changes)."""
    rid = row["run"]
    active = row.get("status") in jobs.ACTIVE
    with st.expander(t("Manage {run}", run=manage.label(row)), icon=":material/edit:"):
        c1, c2 = st.columns([2, 3])
        with st.form(key=f"train.meta_form.{rid}", border=False):
            name = c1.text_input(t("Display name"), value=row.get("name") or "", key=f"train.rename.{rid}",
                                 help=t("Shown instead of the id in pickers; the id stays the same everywhere."))
            tags = c1.text_input(t("Tags (comma-separated)"), value=", ".join(row.get("tags") or []),
                                 key=f"train.tags.{rid}")
            notes = c2.text_area(t("Notes"), value=row.get("notes") or "", key=f"train.notes.{rid}", height=108)
            if st.form_submit_button(t("Save"), icon=":material/save:"):
                try:
                    manage.rename(rid, name)
                    manage.note(rid, notes)
                    manage.set_tags(rid, [x.strip() for x in tags.split(",") if x.strip()])
                except TuneLabError as exc:
                    show_error(exc)
                else:
                    st.toast(t("saved {run}", run=rid))
                    st.rerun()
        b1, b2, _ = st.columns([1, 1, 3])
        b1.button(t("Clone into the form"), key=f"train.clone.{rid}", icon=":material/content_copy:",
                  on_click=_clone, args=(rid,),
                  help=t("Copy this run's settings into the New run form (the recipe picks again for the data)."))
        with b2.popover(t("Delete…"), icon=":material/delete:", disabled=active,
                        help=t("Stop the run first.") if active else None):
            st.markdown(t("Delete **{run}**: its weights, checkpoints, metrics and log are removed for good. "
                          "Exports already written stay.", run=manage.label(row)))
            if st.button(t("Delete for good"), key=f"train.delete.{rid}", type="primary"):
                try:
                    out = manage.delete(rid)
                except TuneLabError as exc:
                    show_error(exc)
                else:
                    if st.query_params.get("run") == rid:  # the picker moves on by itself next run
                        st.query_params.pop("run", None)
                    st.toast(t("deleted {run} ({mb} MB freed)", run=rid, mb=out["freed_mb"]))
                    st.rerun()


def _clone(run_id: str) -> None:
    """Callback (runs before the page, so the form's widgets take the values): a run's settings into the form."""
    try:
        values = manage.form_values(run_id)
    except TuneLabError as exc:
        st.session_state["train.clone_error"] = str(exc)
        return
    st.session_state["train.draft"] = dict(values)
    for name, value in values.items():
        if name in FIELDS:
            st.session_state[f"train.{name}"] = value
    st.session_state["train.cloned"] = run_id


@st.fragment(run_every=3)
def _runs_table() -> None:
    """Every run with its status now, and the picker of the run to watch; labels re-read from disk every 3 s."""
    rows = manage.list_runs()
    st.dataframe([{"run": r["run"], "name": r.get("name") or "", "status": t(r["status"] or "queued"),
                   "step": r["step"], "max_steps": r["max_steps"], "method": r["method"], "model": r["model"],
                   "data": r["data"], "tags": ", ".join(r.get("tags") or [])} for r in rows],
                 hide_index=True, key="train.runs_table",
                 column_config={"run": t("Run"), "name": t("Name"), "status": t("Status"), "step": t("Step"),
                                "max_steps": t("Max steps"), "method": t("Method"), "model": t("Model"),
                                "data": t("Dataset"), "tags": t("Tags")})
    ids = [r["run"] for r in rows]
    if not ids:
        return
    if st.session_state.get("train.run") not in ids:
        st.session_state["train.run"] = st.query_params.get("run") if st.query_params.get("run") in ids else ids[0]
    # Built in this run from disk (format_func cannot call t() or read files outside it): never a stale status.
    labels = {r["run"]: f"{r.get('name') or r['run']}" + (f" ({r['run']})" if r.get("name") else "")
              + f" · {t(r['status'] or 'queued')}" for r in rows}
    pick = st.selectbox(t("Run to watch (when none is training)"), ids, key="train.run", format_func=labels.get)
    if st.query_params.get("run") != pick:
        st.query_params["run"] = pick
    last = st.session_state.get("train.last_pick")
    st.session_state["train.last_pick"] = pick
    if last is not None and last != pick:
        st.rerun(scope="app")  # the live panel and the manage panel show the chosen run


def past_runs() -> None:
    """Every run in a table, management of the chosen one, and the loss curves of the chosen ones overlaid."""
    import plotly.graph_objects as go

    if st.session_state.pop("train.cloned", None):
        st.success(t("Settings copied into the New run form."))
    if st.session_state.get("train.clone_error"):
        st.error(t_error(st.session_state.pop("train.clone_error")))
    rows = manage.list_runs()
    if not rows:
        st.caption(t("No runs yet."))
        return
    _runs_table()
    by_id = {r["run"]: r for r in rows}
    chosen_run = st.session_state.get("train.run")
    if chosen_run in by_id:
        _manage_panel(by_id[chosen_run])
    ids = list(by_id)
    names = {rid: r.get("name") or rid for rid, r in by_id.items()}
    st.session_state["train.overlay"] = [r for r in st.session_state.get("train.overlay", ids[:3]) if r in by_id]
    chosen = st.multiselect(t("Compare loss curves"), ids, key="train.overlay",
                            format_func=lambda v: names.get(v, v))
    fig = go.Figure()
    for rid in chosen:
        m = runs.metrics(rid)
        fig.add_trace(go.Scatter(x=[r["step"] for r in m], y=[r.get("loss") for r in m], name=names[rid],
                                 mode="lines"))
    fig.update_layout(height=360, xaxis_title=t("step"), yaxis_title=t("training loss"), showlegend=True,
                      legend_title_text=t("Run"), margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, key="train.overlay_chart")
    if chosen:
        from tunelab.train import tracking

        st.download_button(t("Download curves (CSV)"), lambda: tracking.curves_csv(chosen), file_name="curves.csv",
                           mime="text/csv", key="train.curves_csv", icon=":material/download:", on_click="ignore")
