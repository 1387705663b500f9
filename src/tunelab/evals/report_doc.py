"""A report's whole document for its HTML page: the report with what other modules keep about it.

Lives apart from evaluate.py so that evaluate never imports judge, votes or the HTML page
(judge and votes import evaluate; tests/test_layers.py forbids the circle).
"""

from __future__ import annotations

from pathlib import Path

from tunelab import jobs
from tunelab.evals import evaluate, html_report, judge, regress, votes
from tunelab.jsonio import read_json


def report_document(report_id: str) -> dict:
    """A report with what other modules keep about it, wherever they keep it.

    "judge": the report folder's judge.json with its calibration against the votes ("judge_agreement");
    "votes": votes.summary (counts and intervals per pair, judge agreement) when anyone voted;
    "regression": the regression suite of every run the report compares (runs/<run>/regress.json).
    """
    doc = evaluate.load_report(report_id)
    extra: dict = {}
    verdicts = judge.load(report_id)
    if verdicts:
        extra["judge"] = dict(verdicts, judge_agreement=votes.agreement(report_id))
    if votes.read(report_id)[0]:
        extra["votes"] = votes.summary(report_id)
    extra["regression"] = regression_docs(doc)
    run = (doc.get("meta") or {}).get("run")
    rec = read_json(jobs.job_dir("runs", run) / "report.json") if run else None  # evals/auto.FILE
    if rec and rec.get("report") == report_id:
        extra["preference_accuracy"] = rec.get("preference_accuracy")
    return {**doc, **{k: v for k, v in extra.items() if v and not doc.get(k)}}


def regression_docs(doc: dict) -> list[dict]:
    """The regression suite documents of the runs a report compares (those that ran it), in model order."""
    out = []
    for entry in doc.get("model_refs") or []:
        ref = entry.get("ref") or {}
        if ref.get("kind") != "run":
            continue
        run_id = Path(ref.get("path") or "").name or entry.get("name")  # a run's ref path is its folder
        got = read_json(jobs.job_dir("runs", run_id) / regress.FILE)
        if got and got not in out:
            out.append(got)
    return out


def export_report(report_id: str, out: str, fmt: str | None = None, force: bool = False) -> Path:
    """Write a report to a file in the workspace (relative paths land in exports/; tunelab.outputs'
    guard: never over TuneLab's own files, an existing file only with force); returns the path.

    fmt: csv, json or html (default: from the suffix, else csv)."""
    from tunelab import outputs

    target = outputs.target(out, force)
    fmt = fmt or {".json": "json", ".html": "html", ".htm": "html"}.get(target.suffix.lower(), "csv")
    if fmt == "html":  # one self-contained page: verdict, intervals, charts, slices, judge, votes, examples, provenance
        return html_report.export(report_document(report_id), target)
    return outputs.write_text(target, evaluate.export_text(evaluate.load_report(report_id), fmt))
