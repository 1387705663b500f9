"""Plotly figures for the Stats page, built from what stats.stats() returns."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from tunelab.data.stats import CUTOFFS
from tunelab.ui.i18n import t


def shown_cutoffs(max_tokens: int) -> list[int]:
    """The cutoffs worth drawing: those inside the data, plus the first one above it."""
    inside = [c for c in CUTOFFS if c < max_tokens]
    above = [c for c in CUTOFFS if c >= max_tokens][:1]
    return inside + above


def token_histogram(s: dict) -> go.Figure:
    """Token-length histogram with a vertical line and the truncated fraction at each cutoff."""
    edges, counts = s["histogram"]["edges"], s["histogram"]["counts"]
    fig = go.Figure(go.Bar(x=[(a + b) / 2 for a, b in zip(edges, edges[1:])], y=counts,
                           width=[b - a for a, b in zip(edges, edges[1:])], name=t("records"),
                           hovertemplate=t("%{x:.0f} tokens: %{y} records") + "<extra></extra>"))
    for cutoff in shown_cutoffs(s["tokens"]["max"]):
        frac = s["truncated"][str(cutoff)]
        fig.add_vline(x=cutoff, line_dash="dash", line_color="crimson" if frac else "gray",
                      annotation_text=t("{cutoff}: {frac} cut", cutoff=cutoff, frac=f"{frac:.1%}"),
                      annotation_position="top")
    fig.update_layout(xaxis_title=t("tokens per record ({tokenizer})", tokenizer=s["tokenizer"]),
                      yaxis_title=t("records"),
                      bargap=0.05, height=360, margin={"t": 40, "b": 40}, showlegend=False)
    return fig


def field_boxes(lengths: pd.DataFrame) -> go.Figure:
    """Per-field character lengths as box plots drawn from precomputed quantiles."""
    fig = go.Figure(go.Box(
        x=lengths["field"], q1=lengths["p25"], median=lengths["p50"], q3=lengths["p75"],
        lowerfence=lengths["min"], upperfence=lengths["max"], name=t("characters"),
        hovertemplate="%{x}<extra></extra>",
    ))
    fig.update_layout(yaxis_title=t("characters (min, quartiles, max)"), height=320,
                      margin={"t": 20, "b": 40}, showlegend=False)
    return fig


# ---------------------------------------------------------------- Compare: metrics a stakeholder can read

# metric key -> (friendly name, scale from the stored value, decimals shown, higher is better).
# ROUGE-L, BLEU and exact match are stored as fractions (0-1); people read them on a 0-100 scale.
METRICS = {
    "rouge_l": ("ROUGE-L (%)", 100.0, 1, True),
    "bleu": ("BLEU (0–100)", 100.0, 1, True),
    "exact_match": ("Exact match (%)", 100.0, 1, True),
    "tokens_per_s": ("tokens/s", 1.0, 1, True),
    "latency_s": ("latency (s)", 1.0, 2, False),
    "peak_rss_mb": ("peak memory (MB)", 1.0, 0, False),
}
QUALITY = ("rouge_l", "bleu", "exact_match")  # 0-100 scales: drawn on a fixed 0..100 axis
SPEED = ("tokens_per_s", "latency_s")
ALL_ZERO = {"exact_match": "no exact matches"}  # what an all-zero panel says instead of an empty axis
COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756")


def metric_name(key: str) -> str:
    """A metric's friendly name with its unit, in the session's language."""
    return t(METRICS[key][0])


def shown(model: dict, key: str) -> float | None:
    """The value of a metric as displayed: on its 0-100 or natural scale, rounded as shown."""
    v = model.get(key)
    if v is None:
        return None
    _, scale, digits, _ = METRICS[key]
    return round(v * scale, digits)


def winners(models: list[dict], key: str) -> set[str]:
    """Names of the best models on a metric, compared as displayed; none when every value shows the same."""
    higher = METRICS[key][3]
    values = {m["name"]: shown(m, key) for m in models if shown(m, key) is not None}
    if len(set(values.values())) < 2:  # 0.000 vs 0.000 (or 41.3 vs 41.3 after rounding) is no win
        return set()
    best = (max if higher else min)(values.values())
    return {n for n, v in values.items() if v == best}


def error_bar(model: dict, key: str) -> dict | None:
    """A bar's 95 % interval (model["ci"][key]) as plotly error_y, on the shown scale; None without one."""
    ci, v = (model.get("ci") or {}).get(key), model.get(key)
    if not ci or v is None:
        return None
    scale = METRICS[key][1]
    return {"type": "data", "symmetric": False, "array": [max(0.0, (ci[1] - v) * scale)],
            "arrayminus": [max(0.0, (v - ci[0]) * scale)], "color": "#333", "thickness": 1.2}


def model_colors(names: list[str]) -> dict[str, str]:
    return {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)}


def metric_bars(models: list[dict]) -> go.Figure:
    """One panel per metric, a bar per model in the same colour everywhere, named in the legend.

    Quality panels share a 0..100 axis and speed panels start at zero, so bar heights compare
    magnitudes; a panel where every model scores zero says so instead of showing an empty axis.
    """
    from plotly.subplots import make_subplots

    keys = [*QUALITY, *SPEED]
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[metric_name(k) for k in keys],
                        horizontal_spacing=0.06)
    colors = model_colors([m["name"] for m in models])
    for i, k in enumerate(keys, start=1):
        for m in models:
            v = shown(m, k)
            fig.add_trace(go.Bar(x=[m["name"]], y=[v], name=m["name"], legendgroup=m["name"], showlegend=i == 1,
                                 error_y=error_bar(m, k),
                                 marker_color=colors[m["name"]], text=["n/a" if v is None else f"{v:g}"],
                                 textposition="outside", cliponaxis=False,
                                 hovertemplate=f"{m['name']}: %{{y}} {metric_name(k)}<extra></extra>"), row=1, col=i)
        values = [shown(m, k) for m in models if shown(m, k) is not None]
        if k in QUALITY:
            fig.update_yaxes(range=[0, 105], row=1, col=i)
        else:
            fig.update_yaxes(rangemode="tozero", range=[0, (max(values or [0]) or 1) * 1.2], row=1, col=i)
        if values and not any(values):
            fig.add_annotation(text=t(ALL_ZERO.get(k, "all zero")), showarrow=False, font={"size": 13},
                               xref=f"x{i if i > 1 else ''} domain", yref=f"y{i if i > 1 else ''} domain",
                               x=0.5, y=0.5)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=340, margin={"t": 50, "b": 10}, bargap=0.25, showlegend=True,
                      legend={"orientation": "h", "y": -0.05, "title": {"text": t("Model")}})
    return fig


def quality_speed(models: list[dict], params: dict[str, int | None]) -> go.Figure:
    """ROUGE-L (%) against tokens/s, both axes from zero; marker area grows with parameter count."""
    import math

    fig = go.Figure()
    biggest = max([p for p in params.values() if p] or [1])
    colors = model_colors([m["name"] for m in models])
    for m in models:
        p = params.get(m["name"])
        size = 14 + 36 * math.sqrt(p / biggest) if p else 14
        fig.add_trace(go.Scatter(x=[shown(m, "tokens_per_s")], y=[shown(m, "rouge_l")], mode="markers",
                                 marker={"size": size, "color": colors[m["name"]], "line": {"width": 1}},
                                 name=m["name"],
                                 hovertemplate=f"{m['name']}<br>%{{x}} tokens/s<br>ROUGE-L %{{y}}%<br>"
                                               + t("{n} params", n=p or "n/a") + "<extra></extra>"))
    fastest = max([shown(m, "tokens_per_s") or 0 for m in models] or [0])
    fig.update_layout(xaxis={"title": t("tokens/s (faster →)"), "range": [0, (fastest or 1) * 1.15]},
                      yaxis={"title": t("ROUGE-L (%) (better ↑)"), "range": [0, 105]}, height=360,
                      margin={"t": 20}, showlegend=True,
                      legend={"title": {"text": t("Model (marker size: parameters)")}})
    return fig


def acceptance(rows: list[dict]) -> go.Figure:
    """Acceptance rate (%) per prompt version, one colour per template (named in the legend), axis 0..100."""
    fig = go.Figure()
    for template in dict.fromkeys(r["template"] for r in rows):
        mine = [r for r in rows if r["template"] == template]
        fig.add_trace(go.Bar(x=[f"{template} v{r['version']}" for r in mine], y=[round(r["rate"] * 100, 1) for r in mine],
                             text=[f"{r['accepted']}/{r['items']}" for r in mine], textposition="outside",
                             cliponaxis=False, name=template,
                             hovertemplate="%{x}: %{y}% (%{text})<extra></extra>"))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=True,
                      xaxis_title=t("prompt version"), yaxis={"title": t("acceptance rate (%)"), "range": [0, 105]},
                      legend={"title": {"text": t("Prompt template")}})
    return fig
