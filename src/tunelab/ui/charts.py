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
