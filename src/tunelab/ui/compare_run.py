"""A run's before/after report on the Train page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab import jobs
from tunelab.ui import charts as ch
from tunelab.ui import leakage_widgets, vote_widgets
from tunelab.ui import stats_widgets as sw
from tunelab.ui.compare_tables import _labels
from tunelab.ui.i18n import t
from tunelab.ui.train_live import preference_report


def _open_in_compare(report_id: str) -> None:
    st.session_state["compare.report"] = report_id


@st.fragment(run_every=2)
def run_report(run_id: str) -> None:
    """The run's before/after report (base vs tuned on its test data), re-read from disk every 2 s.

    Appears by itself once the run finishes: the training process starts the report.
    """
    from tunelab.evals import auto
    from tunelab.evals import judge as judging

    s = auto.summary(run_id)
    if s is None:
        return
    st.subheader(t("Before / after"))
    leakage_widgets.warn(s.get("leakage"))
    if s["status"] == "skipped":
        st.caption(t("No before/after report for this run: {reason}.", reason=t(s["reason"])))
        return
    if s["status"] == "missing":
        st.caption(t("The before/after report {id} cannot be read.", id=s["report"]))
        return
    preference_report(s)  # a dpo/orpo/kto run's preference accuracy, before and after
    if s["status"] in jobs.ACTIVE:
        p = s["progress"]
        st.info(t("The before/after report is {status} ({done}/{total} answers).", status=t(s["status"]),
                  done=p["done"], total=p["total"]), icon=":material/hourglass_top:")
        st.progress(p["done"] / max(p["total"], 1))
    elif s["beat_base"] is not None:
        sw.before_after_banner(s)  # green only when the paired test says better
    else:
        st.warning(t("The before/after report {status}: it shows what it finished.", status=t(s["status"])))
    rows = [{"model": t("before: {model}", model=s["base"]["name"]), **{_labels()[k]: ch.shown(s["base"], k) for k in
                                                                         ch.QUALITY}},
            {"model": t("after: {model}", model=s["tuned"]["name"]), **{_labels()[k]: ch.shown(s["tuned"], k) for k in
                                                                         ch.QUALITY}}]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"train.report.{run_id}",
                 column_config={"model": t("Model")})
    if s.get("judge"):
        st.caption(t("Judge {judge}: {win} win, {tie} tie, {loss} loss for the tuned model.", **s["judge"]))
        vote_widgets.judge_checks(judging.load(s["report"]) or {}, s["report"])
    st.caption(t("Report {id} on {data} v{version} ({source}) · `tunelab reports show {id}`", id=s["report"],
                 data=s["data"]["name"], version=s["data"]["version"], source=t(s.get("source") or "")))
    if s["status"] not in jobs.ACTIVE:
        st.button(t("Open in Compare: fix the data from its mistakes"), key=f"train.report_open.{run_id}",
                  on_click=_open_in_compare, args=(s["report"],), icon=":material/compare_arrows:")
        if st.session_state.get("compare.report") == s["report"]:
            st.page_link("pages/compare.py", label=t("Go to Compare"), icon=":material/compare_arrows:")
