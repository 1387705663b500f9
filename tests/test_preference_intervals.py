"""Preference accuracy (dpo/orpo/kto before/after) carries 95 % Wilson intervals wherever it is shown.

Oracle: statsmodels' own Wilson interval (`proportion_confint(method="wilson")`) on the same counts.
"""

from __future__ import annotations

import re

import pytest
from chat_server import make_report
from statsmodels.stats.proportion import proportion_confint

from tunelab.evals import analysis, auto, evaluate, html_report


def _wilson(k: int, n: int) -> list[float]:
    return list(proportion_confint(k, n, alpha=0.05, method="wilson"))


@pytest.mark.parametrize("base,tuned,n", [(0.5, 0.8333, 6), (0.0, 1.0, 12), (0.35, 0.4, 20), (0.62, 0.58, 50)])
def test_preference_accuracy_intervals_match_statsmodels(base, tuned, n):
    got = analysis.preference_intervals({"base": base, "tuned": tuned, "pairs": n})
    k = {"base": round(base * n), "tuned": round(tuned * n)}
    assert got["k"] == k
    for m in ("base", "tuned"):
        assert got["ci"][m] == pytest.approx(_wilson(k[m], n), abs=1e-9)
        assert got["ci"][m][0] <= got[m] <= got["ci"][m][1] + 1e-4


def test_measured_accuracy_and_its_sentence_carry_the_intervals():
    records = [{"prompt": str(i)} for i in range(6)]
    got = auto.measure_preference("base", "run", records, lambda model, recs: 3 / 6 if model == "base" else 5 / 6)
    assert got["pairs"] == 6 and got["k"] == {"base": 3, "tuned": 5}
    assert got["ci"]["tuned"] == pytest.approx(_wilson(5, 6)) and got["ci"]["base"] == pytest.approx(_wilson(3, 6))
    more, sentence = auto.preference_verdict(got)
    lo, hi = _wilson(5, 6)
    blo, bhi = _wilson(3, 6)
    assert more and sentence == (f"The tuned model prefers the chosen answer more often than its base "
                                 f"(0.83 [{lo:.2f}, {hi:.2f}] vs 0.50 [{blo:.2f}, {bhi:.2f}] of 6 held-out pairs, "
                                 f"95 % Wilson intervals).")
    # An old report.json without "ci" gets them when read.
    assert auto.preference_verdict({"base": 0.5, "tuned": 0.5, "pairs": 6})[1].endswith(
        f"(0.50 [{blo:.2f}, {bhi:.2f}] vs 0.50 [{blo:.2f}, {bhi:.2f}] of 6 held-out pairs, 95 % Wilson intervals).")
    assert analysis.preference_intervals({"error": "no pairs"}) == {"error": "no pairs"}


def test_html_report_shows_preference_accuracy_with_wilson_intervals(workspace):
    doc = evaluate.load_report(make_report(4))
    page = html_report.build(dict(doc, preference_accuracy={"base": 0.25, "tuned": 0.75, "pairs": 8}))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script\b.*?</script>", "", page, flags=re.S)))
    lo, hi = _wilson(6, 8)
    blo, bhi = _wilson(2, 8)
    assert "Preference accuracy" in text
    assert f"6 of 8 75.0 % [{lo * 100:.1f}, {hi * 100:.1f}]" in text
    assert f"2 of 8 25.0 % [{blo * 100:.1f}, {bhi * 100:.1f}]" in text
