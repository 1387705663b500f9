"""The run view's regression suite: kept / lost / gained per task, base vs tuned (evals/regress.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab import jobs
from tunelab.evals import regress
from tunelab.ui import live
from tunelab.ui.i18n import t
from tunelab.ui.layout import show_error

VERDICTS = {"kept": "kept", "lost": "lost", "gained": "gained"}  # shown through t()


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _pts(v) -> str:
    return "–" if v is None else f"{100 * v:+.0f}"


def table(doc: dict) -> pd.DataFrame:
    """One row per task: scores with lm-eval's stderr, the paired change with its interval, Holm p, verdict."""
    rows = []
    for r in doc["tasks"]:
        se = r.get("stderr") or {}
        lo, hi = (r.get("ci") or [None, None])[:2]
        rows.append({
            t("Task"): r["task"], t("Checks"): t(r["checks"]) if r.get("checks") else "",
            t("Base"): f"{_pct(r['base'])} ± {_pct(se.get('base'))}",
            t("Tuned"): f"{_pct(r['tuned'])} ± {_pct(se.get('tuned'))}",
            t("Change (points)"): f"{_pts(r['diff'])} [{_pts(lo)}, {_pts(hi)}]",
            t("p (Holm)"): "–" if r.get("p_adjusted") is None else f"{r['p_adjusted']:.3f}",
            t("Items"): r["n"], t("Verdict"): t(VERDICTS.get(r["verdict"], r["verdict"]))})
    return pd.DataFrame(rows)


def _lost_items(run_id: str, doc: dict) -> None:
    lost = [r["task"] for r in doc["tasks"] if (r.get("a_only") or 0) > 0]
    if not lost:
        return
    items = [x for x in regress.load_samples(run_id) if x["base_score"] > x["tuned_score"]]
    with st.expander(t("Items the base model passed and the tuned model failed ({n})", n=len(items))):
        st.dataframe(pd.DataFrame([{t("Task"): x["task"], t("Prompt"): x["prompt"], t("Base"): x["base"],
                                    t("Tuned"): x["tuned"]} for x in items]),
                     hide_index=True, key=f"train.regress_lost.{run_id}")


def panel(run_id: str) -> None:
    """The run's regression suite: the stored result, its job while it runs, a button to (re)run it.

    Shown once the run has ended with saved weights (nothing to compare before that).
    """
    from tunelab.models import run_output

    run = jobs.read_status(jobs.job_dir("runs", run_id)) or {}
    if run.get("status") in jobs.ACTIVE or not run_output.read(jobs.job_dir("runs", run_id)):
        return
    st.subheader(t("Regression suite"))
    st.caption(t("Did tuning break what the run did not train on? Base and tuned answer the same "
                 "instruction-following checks through lm-evaluation-harness; a task is lost or gained only "
                 "when the paired test says so (Holm-adjusted p < 0.05)."))
    status = regress.job_status(run_id)
    live.watch(regress.KIND, {j["id"]: j.get("status") for j in jobs.list_jobs(regress.KIND)},
               key=f"train.regress_watch.{run_id}")
    active = bool(status and status.get("status") in jobs.ACTIVE)
    if active:
        st.info(t("The regression suite is {status}: {progress}", status=t(status["status"]),
                  progress=status.get("progress") or ""), icon=":material/hourglass_top:")
    elif status and status.get("status") in ("failed", "interrupted"):
        st.error(t("The last regression suite {status}: {error}", status=t(status["status"]),
                   error=status.get("error") or ""))
    doc = regress.load(run_id)
    if doc:
        s = doc["summary"]
        (st.warning if s["lost"] else st.success)(
            t("{kept} kept · {lost} lost · {gained} gained, of {n} tasks", n=len(doc["tasks"]), **s))
        st.dataframe(table(doc), hide_index=True, key=f"train.regress.{run_id}")
        _lost_items(run_id, doc)
        prov = doc.get("provenance") or {}
        st.caption(t("lm-eval {version}, {seconds} s · `tunelab reports regress {run}`",
                     version=(prov.get("versions") or {}).get("lm_eval") or "?", seconds=prov.get("seconds", "?"),
                     run=run_id))
    elif not active:
        st.caption(t("Not run yet for this run: about a few minutes on a CPU. From a terminal: "
                     "`tunelab reports regress {run}`", run=run_id))
    if not active and st.button(t("Run the regression suite") if not doc else t("Run the regression suite again"),
                                key=f"train.regress_run.{run_id}"):
        try:
            regress.start(run_id)
            st.rerun()
        except Exception as exc:  # noqa: BLE001 - one sentence for user errors
            show_error(exc)
