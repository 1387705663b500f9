"""Paired comparison of base and tuned on the same regression items (lm-eval has no paired test).

Each task gives one score per item for each model, matched by lm-eval's `doc_id`. The difference
tuned - base gets a seeded paired bootstrap interval (`scipy.stats.bootstrap(paired=True)`), and a
p-value: McNemar's exact test (`scipy.stats.binomtest` on the discordant counts) for 0/1 scores, a
paired permutation test otherwise. Several tasks at once: Holm-adjusted p-values (statsmodels).
"""

from __future__ import annotations

import math

ALPHA = 0.05
RESAMPLES = 2000


def paired(base: list[float], tuned: list[float], seed: int = 0) -> dict:
    """The paired difference of two score lists over the same items.

    Args:
        base: per-item scores of the base model.
        tuned: per-item scores of the tuned model, in the same item order.
        seed: seeds the bootstrap and the permutation test.
    Returns:
        {"n", "diff", "ci": [lo, hi], "p", "test", "a_only", "b_only", "diff_stderr", "mde"}:
        a_only / b_only count items only base / only tuned passed (0/1 scores; None otherwise);
        mde is the smallest difference this many items detect at alpha 0.05 with power 0.8
        (2.8 x the standard error of the mean difference).
    """
    import numpy as np
    from scipy import stats

    if len(base) != len(tuned):
        raise ValueError("base and tuned need the same items")
    a, b = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    n = len(a)
    if n == 0:
        return {"n": 0, "diff": None, "ci": [None, None], "p": None, "test": None, "a_only": None, "b_only": None,
                "diff_stderr": None, "mde": None}
    d = b - a
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    if n < 2 or np.all(d == d[0]):
        ci = [diff, diff]  # every item moved alike: nothing to resample
    else:
        res = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True,
                              n_resamples=RESAMPLES, confidence_level=1 - ALPHA, method="percentile",
                              random_state=np.random.default_rng(seed))
        ci = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    if binary:
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        k = a_only + b_only
        p = float(stats.binomtest(b_only, k, 0.5).pvalue) if k else 1.0
        test = "mcnemar_exact"
    else:
        a_only = b_only = None
        if np.all(d == 0):
            p = 1.0
        else:
            p = float(stats.permutation_test((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis),
                                             permutation_type="samples", n_resamples=9999,
                                             random_state=np.random.default_rng(seed)).pvalue)
        test = "paired_permutation"
    return {"n": n, "diff": diff, "ci": ci, "p": p, "test": test, "a_only": a_only, "b_only": b_only,
            "diff_stderr": se, "mde": 2.8 * se}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (None stays None)."""
    from statsmodels.stats.multitest import multipletests

    known = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if known:
        adjusted = multipletests([pvalues[i] for i in known], alpha=ALPHA, method="holm")[1]
        for i, p in zip(known, adjusted):
            out[i] = float(p)
    return out


def verdict(diff: float | None, p: float | None, higher_is_better: bool = True) -> str:
    """kept | lost | gained: a task is lost or gained only when the (adjusted) p-value is below 0.05."""
    if diff is None or p is None or p >= ALPHA or diff == 0:
        return "kept"
    return "gained" if (diff > 0) == higher_is_better else "lost"
