"""A report's metrics as a table (friendly headers, shown scales) and its live progress."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab import jobs
from tunelab.evals import evaluate
from tunelab.evals.evaluate import HIGHER_IS_BETTER
from tunelab.ui import charts as ch
from tunelab.ui.i18n import t

LABELS = {k: name for k, (name, *_rest) in ch.METRICS.items()}  # friendly names with units


@st.fragment(run_every=1.5)
def progress(report_id: str) -> None:
    """Live progress from status.json; the whole page reruns once the report finishes."""
    status = jobs.read_status(jobs.job_dir(evaluate.KIND, report_id)) or {}
    if status.get("status") not in jobs.ACTIVE:
        st.rerun()
    done, total = status.get("done", 0), status.get("total", 0) or 1
    st.progress(done / total, text=t("{status}: {model} — {done}/{total} answers", status=t(status.get("status") or "queued"),
                                     model=status.get("model") or t("loading"), done=done, total=total))
    if st.button(t("Stop"), key="compare.stop", icon=":material/stop:"):
        jobs.stop(evaluate.KIND, report_id)
    partial = evaluate.load_report(report_id)["models"]
    if any(m["examples"] for m in partial):
        st.dataframe(_metrics_frame(partial), hide_index=True, key="compare.partial", column_config=_row_headers())


def _metrics_frame(models: list[dict], params: dict[str, int | None] | None = None) -> pd.DataFrame:
    """One row per model: metrics on the scale they are shown at (percent, 0-100 BLEU), friendly headers."""
    rows = []
    for m in models:
        row = {"name": m["name"], **{k: ch.shown(m, k) for k in HIGHER_IS_BETTER}, "examples": m.get("examples")}
        if params is not None:
            n = params.get(m["name"])
            row["params"] = (f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M") if n else None
        rows.append(row)
    return pd.DataFrame(rows).rename(columns=_labels())


def _row_headers() -> dict[str, str]:
    return {"name": t("Model"), "examples": t("Examples"), "params": t("Parameters")}


def _labels() -> dict[str, str]:
    """LABELS in the session's language (column headers and chart titles)."""
    return {k: t(v) for k, v in LABELS.items()}
