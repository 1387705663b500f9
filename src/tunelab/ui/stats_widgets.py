"""Uncertainty on the Compare page and in a run's before/after panel: the verdict, intervals, paired
tests, slices and the self-contained HTML download (numbers from evals/analysis.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tunelab.evals import html_report, metrics, report_doc
from tunelab.ui import charts as ch
from tunelab.ui.i18n import t

BANNER = {"better": st.success, "worse": st.warning}  # non-inferior and inconclusive: st.info


def label(doc: dict) -> str | None:
    """better | worse | non-inferior | inconclusive (None before two models have answers)."""
    return (doc.get("verdict_detail") or {}).get("label")


def verdict_banner(doc: dict) -> None:
    """The report's one verdict sentence: green only when a model is significantly better."""
    if doc.get("verdict"):
        BANNER.get(label(doc), st.info)(doc["verdict"], icon=":material/balance:")


def winner(doc: dict) -> str | None:
    """The significantly better model of the report's verdict, or None (inconclusive, tie, worse)."""
    detail = doc.get("verdict_detail") or {}
    return detail.get("a") if detail.get("label") == "better" else None


def winner_label(doc: dict) -> str:
    """The Winner picker's label: "Winner" only when the verdict is significant."""
    if winner(doc):
        return t("Winner")
    return t("Base model to train (inconclusive: no significant winner)")


def interval_columns(frame: pd.DataFrame, models: list[dict]) -> pd.DataFrame:
    """The metrics table with a 95 % interval column after each quality metric (on the shown scale)."""
    out = frame.copy()
    for k in metrics.METRICS:
        col = ch.metric_name(k)
        if col not in out.columns:
            continue
        scale = ch.METRICS[k][1]
        spans = []
        for m in models:
            ci = (m.get("ci") or {}).get(k)
            spans.append(f"[{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]" if ci else "")
        out.insert(out.columns.get_loc(col) + 1, f"{col} {t('95 % interval')}", spans)
    return out


def pairs_and_slices(doc: dict) -> None:
    """Paired differences (with Holm-adjusted p) and the worst slices first, each with its interval."""
    pairs = doc.get("pairs") or []
    if pairs:
        with st.expander(t("Paired differences (95 % intervals, Holm-adjusted p)")):
            rows = [{"a": p["a"], "b": p["b"], t("Metric"): p["metric"], t("Difference"): round(p["diff"], 4),
                     t("95 % interval"): f"[{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]" if p.get("ci") else "",
                     "p": p["p"], t("Holm p"): p["p_adjusted"], t("Test"): p["test"],
                     t("Min. detectable"): p.get("mde")} for p in pairs]
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="compare.pairs")
    slices = doc.get("slices") or []
    if slices:
        with st.expander(t("Slices (worst first)")):
            names = [m["name"] for m in doc["models"]]
            rows = []
            for s in slices:
                row = {t("Column"): s["column"], t("Value"): s["value"], t("Examples"): s["n"]}
                for n in names:
                    m = s["models"].get(n)
                    ci = (m or {}).get("rouge_l_ci")
                    row[f"{n} · ROUGE-L"] = (f"{m['rouge_l'] * 100:.1f}" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"
                                                                             if ci else "")) if m else ""
                rows.append(row)
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="compare.slices")


def html_download(doc: dict) -> None:
    """The report as one HTML page that opens offline (the same file as `tunelab reports export ID out.html`)."""
    st.download_button(t("Download HTML report"), html_report.build(report_doc.report_document(doc["report"])),
                       f"{doc['report']}.html", "text/html", key="compare.download_html", icon=":material/download:")


def before_after_banner(s: dict) -> None:
    """A run's before/after verdict: green "beat its base" only when the verdict is "better"."""
    text = s.get("verdict") or s.get("sentence") or ""
    BANNER.get(s.get("verdict_label"), st.info)(text)


def significant_best(doc: dict, best: dict[str, set[str]]) -> dict[str, set[str]]:
    """best per column, with a quality metric's best kept only when its paired test against every other
    model has a Holm-adjusted p below 0.05 (a higher mean on noise is not painted green)."""
    out = dict(best)
    pairs = doc.get("pairs") or []
    others = [m["name"] for m in doc["models"]]
    for k in metrics.METRICS:
        keep = set()
        for name in best.get(k) or set():
            tests = [p for p in pairs if p["metric"] == k and name in (p["a"], p["b"])]
            won = [p for p in tests if p["p_adjusted"] < 0.05 and (p["diff"] > 0) == (p["a"] == name)]
            if tests and len(won) == len(others) - 1:
                keep.add(name)
        out[k] = keep
    return out
