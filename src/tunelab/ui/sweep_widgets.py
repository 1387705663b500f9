"""The Runs page's Sweeps section (train/sweep.py): start a sweep, pick one, its trials, Optuna's charts, promote.

A sweep runs as a background `tunelab sweep work ID --job` process (sweep.launch); this page only reads its
study and runs from disk, re-reading them every few seconds while the sweep is going.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab import jobs
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.models import registry
from tunelab.train import sweep, sweep_stats
from tunelab.ui import layout
from tunelab.ui.i18n import t, t_error

POLL_S = 3.0
DEFAULT_PARAMS = "learning_rate=1e-4:3e-3:log\nlora_r=4,8,16"
PRUNER_LABELS = {"median": "median (stop trials behind the median)", "hyperband": "hyperband",
                 "none": "none (every trial runs to the end)"}
COLUMNS = {"number": "Trial", "run": "Run", "status": "Status", "value": "Eval loss", "duration_s": "Duration (s)"}


def _lines(text: str) -> list[str]:
    return [s.strip() for s in (text or "").splitlines() if s.strip()]


def start_form() -> None:
    """Model, dataset, trials, parameter ranges, max steps, pruner (+ fixed settings): creates and launches a sweep."""
    models = [m["name"] for m in registry.list_models() if m["kind"] not in ("openai", "run")]
    datasets = [d["name"] for d in store.list_datasets()]
    if not datasets:
        st.caption(t("No datasets yet: import one in the Data step."))
        return
    with st.form("sweeps.form"):
        c1, c2 = st.columns(2)
        if st.session_state.get("sweeps.model") not in models:
            st.session_state["sweeps.model"] = registry.DEFAULT_MODEL if registry.DEFAULT_MODEL in models else models[0]
        c1.selectbox(t("Base model"), models, key="sweeps.model")
        c2.selectbox(t("Dataset"), datasets, key="sweeps.data")
        c1, c2, c3 = st.columns(3)
        c1.number_input(t("Trials"), min_value=1, max_value=200, value=6, step=1, key="sweeps.trials",
                        help=t("How many trials (runs) the sweep finishes."))
        c2.number_input(t("Max steps"), min_value=1, value=60, step=1, key="sweeps.max_steps",
                        help=t("Training steps of each trial."))
        c3.selectbox(t("Pruner"), list(sweep.PRUNERS), key="sweeps.prune", format_func=lambda v: t(PRUNER_LABELS[v]),
                     help=t("Stops a trial early when its eval losses fall behind the others' (Optuna pruner)."))
        st.text_area(t("Parameters to sweep, one per line"), DEFAULT_PARAMS, key="sweeps.params",
                     help=t("NAME=LOW:HIGH (add :log or :int) for a range, NAME=A,B,C for choices."))
        st.text_area(t("Fixed settings, one per line (optional)"), "", key="sweeps.settings",
                     help=t("NAME=VALUE training settings every trial shares, e.g. eval_steps=10."))
        submitted = st.form_submit_button(t("Start sweep"), key="sweeps.start", icon=":material/play_arrow:")
    if submitted:
        _start()


def _start() -> None:
    s = st.session_state
    try:
        settings = sweep.parse_settings(_lines(s["sweeps.settings"]))
        settings["max_steps"] = int(s["sweeps.max_steps"])
        sid = sweep.create(s["sweeps.model"], s["sweeps.data"], int(s["sweeps.trials"]), _lines(s["sweeps.params"]),
                           settings, prune=s["sweeps.prune"])
        sweep.launch(sid)
    except TuneLabError as exc:
        layout.show_error(exc)
        return
    s["sweeps.selected"] = sid  # the picker (drawn below) shows the new sweep
    st.success(t("Sweep {sweep} started.", sweep=sid))


def picker() -> str | None:
    """The existing sweeps, newest first; returns the chosen id."""
    rows = sweep.list_sweeps()
    if not rows:
        st.caption(t("No sweeps yet."))
        return None
    by_id = {r["sweep"]: r for r in rows}
    if st.session_state.get("sweeps.selected") not in by_id:
        st.session_state["sweeps.selected"] = rows[0]["sweep"]

    def label(sid: str) -> str:
        r = by_id[sid]
        return t("{sweep} — {status}, {trials} trials, {model} on {data}", sweep=sid, status=t(r["status"] or "queued"),
                 trials=r["trials"], model=r["model"], data=r["data"])

    return st.selectbox(t("Sweep"), list(by_id), key="sweeps.selected", format_func=label)


def view(sweep_id: str) -> None:
    """The chosen sweep: live (re-read every few seconds) while it runs, once otherwise."""
    status = (jobs.read_status(sweep.sweep_dir(sweep_id)) or {}).get("status")
    (_live_view if status in jobs.ACTIVE else _view)(sweep_id)


def _view(sweep_id: str) -> None:
    try:
        doc = sweep.show(sweep_id)
    except TuneLabError as exc:
        st.error(t_error(str(exc)))
        return
    done = [r for r in doc["trials"] if r["status"] == "completed"]
    st.caption(t("{status}: {done} of {wanted} trials completed ({model} on {data}).", status=t(doc["status"] or "queued"),
                 done=len(done), wanted=doc["trials_wanted"], model=doc["model"], data=doc["data"]))
    if not doc["trials"]:
        st.caption(t("No trial has started yet."))
        return
    trials_table(doc["trials"])
    if doc["best_vs_second"]:
        bvs = doc["best_vs_second"]
        (st.success if bvs["significant"] else st.info)(sweep_stats.sentence(bvs, t), icon=":material/balance:")
    elif done:
        st.caption(t("Best vs second: needs two completed trials."))
    charts(sweep_id, doc)
    promote_box(sweep_id, doc)


_live_view = st.fragment(run_every=POLL_S)(_view)


def trials_table(trials: list[dict]) -> None:
    """One row per trial: number, run, one column per swept parameter, status, value, duration."""
    names = list(dict.fromkeys(k for r in trials for k in r["params"]))
    df = pd.DataFrame([{"number": r["number"], "run": r["run"] or "", **{n: r["params"].get(n) for n in names},
                        "status": t(r["status"]), "value": r["value"],
                        "duration_s": round(r["duration_s"], 1) if r["duration_s"] is not None else None}
                       for r in trials])
    st.dataframe(df, hide_index=True, key="sweeps.trials_table",
                 column_config={k: t(v) for k, v in COLUMNS.items()})


def _varying(trials: list[dict]) -> list[str]:
    """The parameters that take at least two values among the completed trials."""
    done = [r for r in trials if r["status"] == "completed"]
    names = dict.fromkeys(k for r in done for k in r["params"])
    return [n for n in names if len({repr(r["params"].get(n)) for r in done}) >= 2]


def charts(sweep_id: str, doc: dict) -> None:
    """Optuna's plotly figures: optimisation history, parameter importances, parallel coordinates."""
    import optuna.visualization as vis

    done = [r for r in doc["trials"] if r["status"] == "completed"]
    if not done:
        st.caption(t("The charts appear once a trial has completed."))
        return
    study = sweep.study_for_plots(sweep_id)
    fig = vis.plot_optimization_history(study, target_name=t("eval loss"))
    _show(fig, t("Optimisation history"), "sweeps.chart_history")
    varying = _varying(doc["trials"])
    if len(done) >= 2 and len(varying) >= 2:
        fig = vis.plot_param_importances(study, params=varying)
        _show(fig, t("Parameter importances"), "sweeps.chart_importances")
    else:
        st.caption(t("Parameter importances need two completed trials and two parameters that vary between them "
                     "(so far: {done} completed, {varying} varying).", done=len(done), varying=len(varying)))
    fig = vis.plot_parallel_coordinate(study, target_name=t("eval loss"))
    _show(fig, t("Parallel coordinates"), "sweeps.chart_parallel")


def _show(fig, title: str, key: str) -> None:
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key=key)


def promote_box(sweep_id: str, doc: dict) -> None:
    """Register the best trial's run as a named model (Models, Compare and `tunelab models list` show it)."""
    best = doc["best"]
    if not best:
        return
    st.markdown(t("**Best:** trial {number}, run `{run}`, eval loss {value:.4f}.", number=best["number"],
                  run=best["run"], value=best["value"]))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input(t("Model name"), value=f"{sweep_id}-best", key=f"sweeps.promote_name.{sweep_id}")
    if c2.button(t("Promote best"), key="sweeps.promote", icon=":material/workspace_premium:"):
        try:
            out = sweep.promote(sweep_id, name.strip())
        except TuneLabError as exc:
            layout.show_error(exc)
            return
        st.success(t("Registered {model} (run {run}): it is now a model in Models, Compare and the Playground.",
                     model=out["model"], run=out["run"]))
