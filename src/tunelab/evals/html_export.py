"""A report as one HTML page (`reports export REP out.html`): the summary and every answer, all escaped.

Prompts, references and model answers come from datasets and models: text to show, never markup, so
every value goes through html.escape (a record holding `<script>` is shown as those characters).
"""

from __future__ import annotations

from html import escape

SUMMARY = ("name", "rouge_l", "bleu", "exact_match", "tokens_per_s", "latency_s")
ROWS = ("index", "id", "model", "prompt", "reference", "output", "rouge_l", "bleu", "exact_match", "latency_s")


def _cell(v) -> str:
    return escape("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)), quote=True)


def _table(cols: tuple[str, ...], rows: list[dict]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def to_html(doc: dict, rows: list[dict]) -> str:
    """One self-contained page: the report's id, data, models' scores, then one row per example and model."""
    title = f"TuneLab report {doc['report']} on {doc['data']['name']} v{doc['data']['version']}"
    warn = ""
    if doc.get("leakage"):
        from tunelab.evals import leakage

        warn = f'<p style="color:#b00020">{escape(leakage.sentence(doc["leakage"]))}</p>\n'
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;"
            "vertical-align:top;white-space:pre-wrap}</style></head><body>\n"
            f"<h1>{escape(title)}</h1>\n{warn}{_table(SUMMARY, doc['models'])}{_table(ROWS, rows)}</body></html>\n")
