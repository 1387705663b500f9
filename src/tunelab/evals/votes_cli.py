"""`tunelab reports votes | vote-link | vote-pairs`: stakeholder votes on a report from the terminal."""

from __future__ import annotations

from tunelab.cli import add_json, emit
from tunelab.evals import rates, votes


def register(rsub) -> None:
    q = rsub.add_parser("votes", help="the reviewers' blind votes on a report: per model pair, with intervals, "
                                      "and how often the judge agrees with them")
    q.add_argument("report")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.summary(a.report), a.json, human))
    q = rsub.add_parser("vote-link", help="the voting page's link for a report (with its access code) to send to "
                                          "reviewers")
    q.add_argument("report")
    q.add_argument("--url", default="http://127.0.0.1:8501",
                   help="the dashboard's address as reviewers reach it (default http://127.0.0.1:8501)")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.link(a.report, a.url), a.json,
                                       lambda d: f"{d['url']}\naccess code: {d['code']}"))
    q = rsub.add_parser("vote-pairs", help="the reviewers' preferred answers as preference pairs (a new dataset "
                                           "version for `tunelab train --method dpo`)")
    q.add_argument("report")
    q.add_argument("--into", required=True, help="dataset NAME to add the pairs to (created if new)")
    add_json(q)
    q.set_defaults(func=lambda a: emit(votes.to_preferences(a.report, a.into), a.json,
                                       lambda d: f"{d['name']} v{d['version']}: {d['pairs']} preference pairs from "
                                                 f"report {d['report']}; next: tunelab train --method dpo "
                                                 f"--model MODEL --data {d['name']}"))


def human(d: dict) -> str:
    """Plain-text vote results: one line per pair, then the judge's agreement."""
    lines = [f"{d['votes']} votes from {len(d['voters'])} reviewers on {d['items']} items"
             + (f" ({d['damaged']} damaged lines skipped)" if d["damaged"] else "")]
    for p in d["pairs"]:
        c = p["counts"]
        lines.append(f"{p['b']} vs {p['a']}: {c['win']} preferred, {c['tie']} tie, {c['loss']} not preferred; "
                     f"{p['b']} preferred in {rates.percent(p['preferred'])} of decided votes")
    lines.append(d["judge_agreement"]["sentence"])
    return "\n".join(lines)
