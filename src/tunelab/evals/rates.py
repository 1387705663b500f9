"""Intervals and agreement for counted outcomes (judge verdicts, stakeholder votes), from statsmodels and scipy.

Counts here are small (20-60 pairs), where a normal-approximation interval misbehaves near 0 and 1:
rates get Wilson score intervals; Cohen's kappa comes from statsmodels with its asymptotic interval.
"""

from __future__ import annotations

import math
import warnings


def _num(x) -> float | None:
    """x as a rounded float; None for NaN (an undefined kappa, an empty rate)."""
    x = float(x)
    return None if math.isnan(x) else round(x, 4)


def wilson(k: int, n: int, alpha: float = 0.05) -> list[float] | None:
    """The 95 % Wilson score interval of k successes in n trials; None when n is 0."""
    if n <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return [round(float(lo), 4), round(float(hi), 4)]


def rate(k: int, n: int) -> dict:
    """{"k", "n", "rate", "ci"}: a share with its Wilson interval (rate and ci None when n is 0)."""
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci": wilson(k, n)}


def binom_p(k: int, n: int, p: float = 0.5) -> float | None:
    """Two-sided exact binomial p-value of k in n against chance p; None when n is 0."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(k, n, p).pvalue)


def kappa(a: list[str], b: list[str], labels: list[str]) -> dict:
    """Cohen's kappa of two raters over the same items, with its 95 % interval (statsmodels).

    Args:
        a, b: each rater's label per item, same length.
        labels: the categories, in a fixed order (the table's rows and columns).
    Returns:
        {"kappa", "ci"}: None where undefined (no items, or both raters used one label only).
    """
    if not a:
        return {"kappa": None, "ci": None}
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    pos = {lab: i for i, lab in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        table[pos[x], pos[y]] += 1
    expected = (table.sum(1) @ table.sum(0)) / table.sum() ** 2
    if expected >= 1:  # both raters always said the same single label: chance agreement is 1, kappa undefined
        return {"kappa": None, "ci": None}
    with warnings.catch_warnings():  # its z-test divides by zero when kappa is exactly 0: we use the interval
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cohens_kappa(table)
    k = _num(res.kappa)
    if k is None:
        return {"kappa": None, "ci": None}
    lo, hi = _num(res.kappa_low), _num(res.kappa_upp)
    return {"kappa": k, "ci": None if lo is None or hi is None else [max(lo, -1.0), min(hi, 1.0)]}


def percent(r: dict) -> str:
    """'78 % [62, 88]' for a rate() result; 'n/a' when it has no items."""
    if not r.get("n") or r.get("rate") is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{round(100 * r['rate'])} % [{round(100 * lo)}, {round(100 * hi)}]"
