"""The Train page's run picker: past runs in a table, and the chosen run's manage panel."""

from __future__ import annotations

import streamlit as st

from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.train import manage, runs
from tunelab.ui.i18n import t, t_error
from tunelab.ui.layout import show_error
from tunelab.ui.train_form import FIELDS


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
        from tunelab.train import curves

        st.download_button(t("Download curves (CSV)"), lambda: curves.curves_csv(chosen), file_name="curves.csv",
                           mime="text/csv", key="train.curves_csv", icon=":material/download:", on_click="ignore")
