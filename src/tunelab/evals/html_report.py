"""A report as one self-contained HTML file that opens anywhere, offline (issue 23, item 6).

Everything is inside the file: plotly.js inlined (`include_plotlyjs=True`), styles, and a small
script that filters the per-example table. A Content-Security-Policy forbids every request, so
nothing leaves the page even if a value tried. Every text from the data is HTML-escaped: a record
holding `<script>` shows as text and never runs.

Sections: verdict, metric table with 95 % intervals, charts with error bars, paired tests, slices,
the judge (both orders, its biases, its calibration against people), people's votes, the regression suite
of the runs compared (evals/report_doc.py gathers them from wherever they live), searchable examples, provenance.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from tunelab.evals import metrics, stats

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
SCALE = {"rouge_l": 100, "bleu": 100, "exact_match": 100}
COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756")
LABEL_CLASS = {"better": "good", "worse": "bad", "non-inferior": "neutral", "inconclusive": "neutral"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0} th,td{border:1px solid #ddd;padding:.35rem .5rem;
vertical-align:top;text-align:left} th{background:#f5f5f5} td.num{text-align:right;white-space:nowrap}
.verdict{padding:1rem 1.2rem;border-radius:6px;font-size:1.1rem;margin:1rem 0}
.good{background:#e6f4ea;border:1px solid #54A24B} .bad{background:#fdecea;border:1px solid #E45756}
.neutral{background:#eef2f7;border:1px solid #9aa9bd} .muted{color:#666;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-family:inherit} input#search{width:100%;padding:.5rem;font-size:1rem}
"""
SEARCH_JS = """
document.getElementById('search').addEventListener('input', function () {
  var q = this.value.toLowerCase(), n = 0;
  document.querySelectorAll('#examples tbody tr').forEach(function (tr) {
    var hit = tr.textContent.toLowerCase().indexOf(q) !== -1;
    tr.style.display = hit ? '' : 'none'; if (hit) n++;
  });
  document.getElementById('shown').textContent = n;
});
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(v, scale: float = 1, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v * scale:.{digits}f}"


def _ci(ci, scale: float = 1, digits: int = 1) -> str:
    return "" if not ci else f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def _table(headers: list[str], rows: list[list[str]], attrs: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(v, num: bool = False) -> str:
    return f'<td class="num">{_e(v)}</td>' if num else f"<td><pre>{_e(v)}</pre></td>"


def metric_figure(models: list[dict]):
    """Bars per metric (0-100) with 95 % interval error bars, a colour per model."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, m in enumerate(models):
        ys, lo, hi = [], [], []
        for k in metrics.METRICS:
            v, ci = m.get(k), (m.get("ci") or {}).get(k)
            ys.append(None if v is None else v * SCALE[k])
            lo.append(0 if v is None or not ci else max(0.0, (v - ci[0]) * SCALE[k]))
            hi.append(0 if v is None or not ci else max(0.0, (ci[1] - v) * SCALE[k]))
        fig.add_trace(go.Bar(name=m["name"], x=[stats.LABELS[k] for k in metrics.METRICS], y=ys,
                             marker_color=COLORS[i % len(COLORS)],
                             error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}))
    fig.update_layout(barmode="group", yaxis={"range": [0, 105], "title": "score (0-100), 95 % interval"},
                      height=380, margin={"t": 30, "b": 40}, legend={"orientation": "h"})
    return fig


def pairs_figure(pairs: list[dict]):
    """Each paired difference (a - b) with its 95 % interval, against the zero line."""
    import plotly.graph_objects as go

    shown = [p for p in pairs if p.get("ci")]
    labels = [f"{p['a']} - {p['b']} · {stats.LABELS.get(p['metric'], p['metric'])}" for p in shown]
    fig = go.Figure(go.Scatter(
        x=[p["diff"] * 100 for p in shown], y=labels, mode="markers", marker={"size": 10, "color": "#4C78A8"},
        error_x={"type": "data", "symmetric": False, "array": [(p["ci"][1] - p["diff"]) * 100 for p in shown],
                 "arrayminus": [(p["diff"] - p["ci"][0]) * 100 for p in shown]}))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_layout(height=120 + 40 * len(shown), margin={"t": 20, "b": 40, "l": 10},
                      xaxis={"title": "difference (points), 95 % interval"}, yaxis={"automargin": True})
    return fig


def _figures(doc: dict) -> str:
    figs = [metric_figure(doc["models"])]
    if doc.get("pairs"):
        figs.append(pairs_figure(doc["pairs"]))
    # The first chart carries plotly.js itself; the others reuse it.
    return "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
                   for i, f in enumerate(figs))


def _metrics_section(doc: dict) -> str:
    heads = ["model", "examples"] + [f"{stats.LABELS[k]} (95 % interval)" for k in metrics.METRICS] + [
        "tokens/s", "latency (s)"]
    rows = []
    for m in doc["models"]:
        ci = m.get("ci") or {}
        rows.append([_td(m["name"]), _td(m.get("examples"), True)]
                    + [_td(f"{_num(m.get(k), 100, 1)} {_ci(ci.get(k), 100)}", True) for k in metrics.METRICS]
                    + [_td(_num(m.get("tokens_per_s"), 1, 1), True), _td(_num(m.get("latency_s"), 1, 2), True)])
    return _table(heads, rows)


def _pairs_section(pairs: list[dict]) -> str:
    if not pairs:
        return "<p class='muted'>One model: no pairs to test.</p>"
    heads = ["a", "b", "metric", "diff (a - b)", "95 % interval", "p", "Holm p", "test", "min. detectable", "a only / b only"]
    rows = [[_td(p["a"]), _td(p["b"]), _td(stats.LABELS.get(p["metric"], p["metric"])), _td(f"{p['diff']:+.3f}", True),
             _td(_ci(p.get("ci"), 1, 3), True), _td(_num(p.get("p"), 1, 4), True),
             _td(_num(p.get("p_adjusted"), 1, 4), True), _td(p.get("test")), _td(_num(p.get("mde"), 1, 3), True),
             _td(f"{p['a_only']} / {p['b_only']}" if "a_only" in p else "", True)] for p in pairs]
    return _table(heads, rows)


def _slices_section(doc: dict) -> str:
    slices = doc.get("slices") or []
    if not slices:
        return "<p class='muted'>No slices: every example falls in the same group.</p>"
    names = [m["name"] for m in doc["models"]]
    heads = ["column", "value", "examples"] + [f"{n} · ROUGE-L (95 % interval)" for n in names]
    rows = []
    for s in slices:
        cells = [_td(s["column"]), _td(s["value"]), _td(s["n"], True)]
        for n in names:
            m = s["models"].get(n)
            cells.append(_td(f"{_num(m['rouge_l'], 100, 1)} {_ci(m.get('rouge_l_ci'), 100)}" if m else "n/a", True))
        rows.append(cells)
    return "<p class='muted'>Worst slices first.</p>" + _table(heads, rows)


def _generic(value) -> str:
    """Any JSON-like value as nested tables (judge, votes, regression: shapes owned by other modules)."""
    if isinstance(value, dict):
        return _table(["key", "value"], [[_td(k), f"<td>{_generic(v)}</td>"] for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return _table(keys, [[f"<td>{_generic(v.get(k))}</td>" for k in keys] for v in value[:500]])
    if isinstance(value, list):
        return f"<pre>{_e(json.dumps(value, ensure_ascii=False))}</pre>"
    return f"<pre>{_e(value)}</pre>"


def _rate(r: dict | None) -> str:
    """'5 of 6, 83.3 % [43.6, 97.0]' for a rates.rate() dict."""
    if not r or not r.get("n") or r.get("rate") is None:
        return "n/a"
    return f"{r['k']} of {r['n']}, {r['rate'] * 100:.1f} % {_ci(r.get('ci'), 100)}"


def _agreement(ag: dict | None) -> str:
    if not ag:
        return ""
    rows = []
    for label, a in (("all pairs", ag), ("without ties", ag.get("without_ties") or {})):
        rate = {"k": a.get("agree"), "n": a.get("n"), "rate": a.get("rate"), "ci": a.get("ci")}
        rows.append([_td(label), _td(_rate(rate), True),
                     _td(f"{_num(a.get('kappa'), 1, 2)} {_ci(a.get('kappa_ci'), 1, 2)}", True)])
    return (f'<p class="calibration"><strong>Judge calibration</strong>: {_e(ag.get("sentence"))}</p>'
            + _table(["reviewed pairs", "agreement (95 % interval)", "Cohen's kappa (95 % interval)"], rows))


def _counts_table(counts: dict, ci: dict, n: int, names: tuple[str, str]) -> str:
    a, b = names
    labels = {"win": f"{b} preferred", "tie": "tie", "loss": f"{a} preferred"}
    rows = [[_td(labels[k]), _td(counts.get(k, 0), True),
             _td(f"{counts.get(k, 0) / n * 100:.1f} % {_ci((ci or {}).get(k), 100)}" if n else "n/a", True)]
            for k in ("win", "tie", "loss")]
    return _table(["outcome", "pairs", "share (95 % Wilson interval)"], rows)


def _judge_section(j: dict) -> str:
    """The judge's result (both orders), its biases, the prompt version and its calibration against people."""
    if j.get("status") != "completed":
        return f"<p class='muted'>Judge {_e(j.get('judge'))}: {_e(j.get('status'))} {_e(j.get('error') or '')}</p>"
    a, b = j["pair"]
    lb = j.get("length_bias") or {}
    fp = j.get("first_position") or {}
    return (f"<p>{_e(j.get('judge'))} compared <strong>{_e(b)}</strong> with <strong>{_e(a)}</strong> on "
            f"{_e(j.get('n'))} pairs, each asked in both orders (a win counts only when both orders agree).</p>"
            + _counts_table(j["counts"], j.get("ci") or {}, j.get("n") or 0, (a, b))
            + _table(["check", "value"], [
                [_td("position consistency (the two orders agree)"), _td(_rate(j.get("consistency")), True)],
                [_td("first position picked"), _td(f"{_rate(fp)}, p = {_num(fp.get('p'), 1, 4)}", True)],
                [_td("longer answer picked"), _td(f"{_rate(lb)}, p = {_num(lb.get('p'), 1, 4)}", True)],
                [_td("prompt version"), _td(j.get("prompt_id"))]])
            + _agreement(j.get("judge_agreement")))


def _preference_section(pref: dict) -> str:
    """A dpo/orpo/kto run's held-out preference accuracy, base and tuned, each with its Wilson interval."""
    from tunelab.evals import analysis, auto

    if pref.get("error"):
        return f"<p class='muted'>No preference accuracy: {_e(pref['error'])}</p>"
    pref = analysis.preference_intervals(pref)
    ci = pref.get("ci") or {}
    rows = [[_td(label), _td(f"{pref['k'][m]} of {pref['pairs']}", True),
             _td(f"{pref[m] * 100:.1f} % {_ci(ci.get(m), 100)}", True)] for label, m in (("base", "base"),
                                                                                       ("tuned", "tuned"))]
    return (f"<p id='preference'>{_e(auto.preference_verdict(pref)[1])}</p>"
            + _table(["model", "pairs with the chosen answer likelier", "preference accuracy (95 % Wilson interval)"],
                     rows))


def _votes_section(v: dict) -> str:
    """People's blind votes per model pair with intervals, and the judge's agreement with them."""
    parts = [f"<p>{_e(v.get('votes'))} votes from {_e(len(v.get('voters') or []))} reviewers "
             f"({_e(', '.join(v.get('voters') or []))}) on {_e(v.get('items'))} items.</p>"]
    for p in v.get("pairs") or []:
        if not p.get("n"):
            continue
        pref = p.get("preferred") or {}
        parts.append(f"<h3>{_e(p['b'])} vs {_e(p['a'])}</h3>" + _counts_table(p["counts"], p.get("ci"), p["n"],
                                                                               (p["a"], p["b"]))
                     + f"<p class='muted'>{_e(p['b'])} preferred in {_e(_rate(pref))} of decided votes, "
                       f"p = {_num(pref.get('p'), 1, 4)} (exact binomial against 50 %).</p>")
    parts.append(_agreement(v.get("judge_agreement")))
    if v.get("comments"):
        parts.append(_table(["item", "voter", "preferred", "comment"],
                            [[_td(c["item"]), _td(c["voter"]), _td(c["winner"]), _td(c["comment"])]
                             for c in v["comments"]]))
    return "".join(parts)


def _regression_section(docs: list[dict] | dict) -> str:
    """Per run: each task's score base -> tuned with lm-eval's stderr, the paired difference, kept / lost / gained."""
    parts = []
    for d in docs if isinstance(docs, list) else [docs]:
        s = d.get("summary") or {}
        rows = [[_td(t["task"]), _td(t.get("metric")), _td(t.get("n"), True),
                 _td(f"{_num(t.get('base'), 1, 3)} ± {_num((t.get('stderr') or {}).get('base'), 1, 3)}", True),
                 _td(f"{_num(t.get('tuned'), 1, 3)} ± {_num((t.get('stderr') or {}).get('tuned'), 1, 3)}", True),
                 _td(f"{t['diff']:+.3f} {_ci(t.get('ci'), 1, 3)}" if t.get("diff") is not None else "n/a", True),
                 _td(_num(t.get("p_adjusted"), 1, 4), True), _td(t.get("verdict"))] for t in d.get("tasks") or []]
        parts.append(f"<h3>run {_e(d.get('run'))} vs base {_e(d.get('base'))}</h3>"
                     f"<p class='regress-summary'>{_e(s.get('kept', 0))} kept, {_e(s.get('lost', 0))} lost, "
                     f"{_e(s.get('gained', 0))} gained (Holm-adjusted p &lt; 0.05, lm-evaluation-harness)</p>"
                     + _table(["task", "metric", "items", "base ± stderr", "tuned ± stderr",
                               "diff (95 % interval)", "Holm p", "verdict"], rows))
    return "".join(parts)


def _examples_section(doc: dict) -> str:
    names = [m["name"] for m in doc["models"]]
    heads = ["#", "prompt", "reference"] + [f"{n} (ROUGE-L)" for n in names]
    rows = []
    for ex in doc["examples"]:
        cells = [_td(ex["index"], True), _td(ex["prompt"]), _td(ex["reference"])]
        for n in names:
            o = ex["outputs"].get(n)
            cells.append(_td(f"{o['output']}\n({o['rouge_l'] * 100:.1f})" if o else "not evaluated"))
        rows.append(cells)
    total = len(doc["examples"])
    return (f'<input id="search" type="search" placeholder="Search prompts, references and answers" '
            f'aria-label="search examples"><p class="muted"><span id="shown">{total}</span> of {total} examples</p>'
            + _table(heads, rows, 'id="examples"'))


def build(doc: dict) -> str:
    """The whole HTML page for a report document (evaluate.load_report's, plus optional judge/votes/regression)."""
    detail = doc.get("verdict_detail") or {}
    label = detail.get("label")
    verdict_html = (f'<div class="verdict {LABEL_CLASS.get(label, "neutral")}" id="verdict">'
                    f'<strong>{_e(label or "verdict")}</strong>: {_e(doc.get("verdict"))}'
                    + (f'<div class="muted">{_e(detail.get("metric"))}, Holm-adjusted p at alpha {detail.get("alpha")}, '
                       f'non-inferiority margin {detail.get("margin")}</div>' if detail else "") + "</div>")
    parts = [
        f"<h1>Report {_e(doc['report'])}</h1>",
        f"<p class='muted'>{_e(doc['data']['name'])} v{_e(doc['data']['version'])} · {len(doc['examples'])} examples · "
        f"status {_e(doc.get('status'))}</p>",
        verdict_html,
        "<h2>Metrics (95 % intervals)</h2>", _metrics_section(doc),
        "<h2>Charts</h2>", _figures(doc),
        "<h2>Paired differences</h2>", _pairs_section(doc.get("pairs") or []),
        "<h2>Slices</h2>", _slices_section(doc),
    ]
    if doc.get("preference_accuracy"):
        parts += ["<h2>Preference accuracy</h2>", _preference_section(doc["preference_accuracy"])]
    if doc.get("judge"):
        parts += ["<h2>Judge</h2>", _judge_section(doc["judge"])]
    if doc.get("votes"):
        parts += ["<h2>Votes</h2>", _votes_section(doc["votes"])]
    if doc.get("regression"):
        parts += ["<h2>Regression suite</h2>", _regression_section(doc["regression"])]
    parts += ["<h2>Examples</h2>", _examples_section(doc),
              "<h2>Provenance</h2>", _generic(doc.get("provenance") or {})]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>TuneLab report {_e(doc['report'])}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + f"<script>{SEARCH_JS}</script></body></html>")


def export(doc: dict, target: Path) -> Path:
    """Write a report document's HTML page (evals/report_doc.report_document) to target (checked by the caller)."""
    from tunelab.jsonio import write_atomic

    write_atomic(target, build(doc))
    return target
