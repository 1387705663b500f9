"""The Runs page's widgets: the queue, filters, a selection of 2-5 runs and their comparison (train/compare_runs.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab.errors import TuneLabError
from tunelab.train import compare_runs, runs
from tunelab.ui.i18n import t, t_error

QUEUE_POLL_S = 3.0
FILTER_LABELS = {"tag": "Tag", "status": "Status", "model": "Model", "data": "Dataset"}
METRIC_LABELS = {"status": "Status", "step": "Step", "max_steps": "Max steps", "loss": "Last training loss",
                 "eval_loss": "Last eval loss", "best_eval_loss": "Best eval loss", "best_step": "Best step",
                 "report": "Before/after report", "base_rouge_l": "ROUGE-L before", "tuned_rouge_l": "ROUGE-L after",
                 "base_exact_match": "Exact match before", "tuned_exact_match": "Exact match after",
                 "verdict": "Verdict"}
LINEAGE_LABELS = {"base": "Base model", "data": "Dataset", "data_version": "Dataset version",
                  "parent": "Parent run", "sweep": "Sweep"}


def _label(r: dict) -> str:
    name = r.get("name")
    return f"{name} ({r['run']})" if name else r["run"]


@st.fragment(run_every=QUEUE_POLL_S)
def queue_panel() -> None:
    """Every waiting run with its position, re-read from disk; cancel one or move it to the front."""
    waiting = compare_runs.queue()
    if not waiting:
        st.caption(t("Nothing is waiting to train."))
        return
    for r in waiting:
        c1, c2, c3 = st.columns([6, 1, 1], vertical_alignment="center")
        c1.markdown(f"**{r['position']}.** `{r['run']}` — {r.get('model')} · {r.get('data')}"
                    + (f" · {', '.join(r['tags'])}" if r.get("tags") else ""))
        if c2.button(t("Cancel"), key=f"runs.cancel.{r['run']}", icon=":material/cancel:"):
            _act(runs.cancel, r["run"])
        if c3.button(t("To front"), key=f"runs.front.{r['run']}", icon=":material/vertical_align_top:",
                     disabled=r["position"] == 1):
            _act(runs.front, r["run"])


def _act(action, run_id: str) -> None:
    try:
        action(run_id)
    except TuneLabError as exc:  # it started or ended meanwhile
        st.session_state["runs.error"] = str(exc)
    st.rerun()  # the whole page: the runs table shows the new statuses and positions too


def filters() -> dict:
    """The four filter pickers (empty = any); returns the chosen values."""
    options = compare_runs.filter_options(compare_runs.list_rows())
    chosen = {}
    for col, name in zip(st.columns(len(compare_runs.FILTERS)), compare_runs.FILTERS):
        values = ["", *options[name]]
        key = f"runs.filter_{name}"
        if st.session_state.get(key) not in values:
            st.session_state[key] = ""
        shown = (lambda v: t(v) if v else t("Any")) if name == "status" else (lambda v: v or t("Any"))
        chosen[name] = col.selectbox(t(FILTER_LABELS[name]), values, key=key, format_func=shown) or None
    return chosen


def runs_table(rows: list[dict]) -> None:
    st.dataframe(pd.DataFrame([{"run": r["run"], "name": r.get("name") or "", "status": t(r["status"]),
                                "position": r.get("position"), "model": r.get("model"), "data": r.get("data"),
                                "tags": ", ".join(r.get("tags") or []), "sweep": r.get("sweep") or ""}
                               for r in rows]),
                 hide_index=True, key="runs.table",
                 column_config={"run": t("Run"), "name": t("Name"), "status": t("Status"),
                                "position": t("Queue position"), "model": t("Model"), "data": t("Dataset"),
                                "tags": t("Tags"), "sweep": t("Sweep")})


def pick(rows: list[dict]) -> list[str]:
    """The multiselect of runs to compare (the filtered runs, plus any already chosen)."""
    labels = {r["run"]: _label(r) for r in compare_runs.list_rows()}
    kept = [rid for rid in st.session_state.get("runs.selected", []) if rid in labels]
    st.session_state["runs.selected"] = kept
    options = list(dict.fromkeys([r["run"] for r in rows] + kept))
    return st.multiselect(t("Runs to compare (2 to 5)"), options, key="runs.selected",
                          max_selections=compare_runs.MAX_SELECTED, format_func=lambda v: labels.get(v, v),
                          placeholder=t("Choose runs"))


def _curve_chart(doc: dict, metric: str, labels: dict, title: str, key: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for rid in doc["runs"]:
        points = doc["curves"][rid][metric]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=labels[rid],
                                 mode="lines+markers" if metric == "eval_loss" else "lines"))
    fig.update_layout(height=340, title=title, xaxis_title=t("step"), yaxis_title=title, showlegend=True,
                      legend_title_text=t("Run"), margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key=key)


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _side_by_side(rows: list[dict], names: dict[str, str], ids: list[str], labels: dict) -> pd.DataFrame:
    """A table with one row per quantity and one column per run (strings, so mixed types show as written)."""
    by_run = {r["run"]: r for r in rows}
    data = {labels[rid]: [_cell(by_run[rid].get(k)) for k in names] for rid in ids}
    return pd.DataFrame(data, index=[t(v) for v in names.values()])


def comparison(run_ids: list[str], rows: list[dict]) -> None:
    """Curves overlaid, the config diff, final metrics with report results, and lineage of the chosen runs."""
    try:
        doc = compare_runs.compare(run_ids)
    except TuneLabError as exc:
        st.error(t_error(str(exc)))
        return
    labels = {r["run"]: _label(r) for r in compare_runs.list_rows()}
    c1, c2 = st.columns(2)
    with c1, st.container(key="runs.loss_box"):  # the keyed boxes are the browser test's handles
        _curve_chart(doc, "loss", labels, t("training loss"), "runs.chart_loss")
    with c2, st.container(key="runs.eval_box"):
        _curve_chart(doc, "eval_loss", labels, t("eval loss"), "runs.chart_eval")
    st.subheader(t("Settings that differ"))
    with st.container(key="runs.diff"):
        if doc["config_diff"]:
            st.table(pd.DataFrame({labels[rid]: [_cell(d[rid]) for d in doc["config_diff"]] for rid in doc["runs"]},
                                  index=[d["setting"] for d in doc["config_diff"]]))
        else:
            st.info(t("The selected runs have the same settings."))
    st.subheader(t("Results"))
    with st.container(key="runs.metrics"):
        st.table(_side_by_side(doc["metrics"], METRIC_LABELS, doc["runs"], labels))
    st.subheader(t("Lineage"))
    with st.container(key="runs.lineage"):
        st.table(_side_by_side(doc["lineage"], LINEAGE_LABELS, doc["runs"], labels))
