"""Uncertainty for evaluation numbers: intervals, paired tests, power and one verdict per report.

Every figure comes from scipy or statsmodels; this module only chooses the test and shapes the
result. The conventions (see issue 23):
- a 95 % interval for every metric: Wilson for a proportion (exact match), otherwise a seeded BCa
  bootstrap over the examples (N_RESAMPLES resamples) of the very statistic the report shows, so
  corpus BLEU gets an interval of corpus BLEU, not of sentence BLEU;
- two models on the same examples are compared *paired*: the difference's interval is a paired
  bootstrap (the same resampled examples for both), its p-value a paired permutation test (the two
  answers of an example swapped at random); exact match uses the exact McNemar test
  (`binomtest` on the discordant counts `a_only`, `b_only`);
- several pairs x metrics at once: Holm-adjusted p-values (statsmodels `multipletests`);
- the minimum detectable effect at alpha 0.05 and power 0.8 (about 2.8 * sd(d) / sqrt(n)) and the
  examples needed for a given effect, both from statsmodels' paired t-test power;
- one verdict per report: better, worse, non-inferior or inconclusive, with the margin used.

A pair's `diff` is always `a - b` (a positive diff means a scored higher).
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
POWER = 0.8
N_RESAMPLES = 2000
N_PERMUTATIONS = 9999
# A corpus statistic (BLEU) is rescored from scratch for every resample (sacrebleu, ~20 us each):
# fewer draws keep a 4-model report's analysis near a second; 1999 still resolves p < 0.001.
N_CORPUS_RESAMPLES, N_CORPUS_PERMUTATIONS = 1000, 1999
SEED = 0
# Metrics whose per-example values are 0/1: Wilson interval and exact McNemar.
BINARY = frozenset({"exact_match"})
LABELS = {"rouge_l": "ROUGE-L", "bleu": "BLEU", "exact_match": "exact match"}
# How much worse the challenger may be and still count as non-inferior, and the effect a
# "would detect" sentence sizes the evaluation for (both in the metric's own 0-1 units).
MARGIN = {"rouge_l": 0.02, "bleu": 0.02, "exact_match": 0.05}
EFFECT = {"rouge_l": 0.05, "bleu": 0.05, "exact_match": 0.10}
VERDICTS = ("better", "worse", "non-inferior", "inconclusive")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pair(lo: float, hi: float) -> list[float] | None:
    """[lo, hi] as plain floats, or None when the resampling could not bound it (never NaN in JSON)."""
    lo, hi = float(lo), float(hi)
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def wilson(successes: int, n: int) -> list[float] | None:
    """95 % Wilson score interval of a proportion (scipy `binomtest(...).proportion_ci`)."""
    from scipy.stats import binomtest

    if n < 1:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return _pair(ci.low, ci.high)


def _bootstrap(data: tuple, statistic: Callable, seed: int, vectorized: bool, paired: bool = False,
               n_resamples: int = N_RESAMPLES):
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        # BCa warns (and gives nan) on a degenerate resample distribution; we fall back below.
        warnings.simplefilter("ignore")
        res = bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                        method="BCa", vectorized=vectorized, paired=paired, rng=_rng(seed))
        ci = res.confidence_interval
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            res = bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                            method="percentile", vectorized=vectorized, paired=paired, rng=_rng(seed))
    return res


def mean_ci(values: Sequence[float], seed: int = SEED) -> list[float] | None:
    """95 % seeded bootstrap (BCa) interval of a mean over examples; None under two examples."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    if np.ptp(x) == 0:  # every example the same: nothing to resample
        return _pair(x[0], x[0])
    ci = _bootstrap((x,), np.mean, seed, vectorized=True).confidence_interval
    return _pair(ci.low, ci.high)


def _corpus_scores(stats: np.ndarray, idx: np.ndarray, score: Callable[[np.ndarray], float]) -> np.ndarray:
    """score() of the summed statistics of each row of example indices idx (shape (..., n)) -> shape (...)."""
    summed = stats[np.asarray(idx, dtype=int)].sum(axis=-2)
    flat = summed.reshape(-1, summed.shape[-1])
    return np.array([score(row) for row in flat], dtype=float).reshape(summed.shape[:-1])


def corpus_ci(stats: np.ndarray, score: Callable[[np.ndarray], float], seed: int = SEED) -> list[float] | None:
    """95 % seeded bootstrap interval of a corpus statistic (e.g. corpus BLEU) over examples.

    Args:
        stats: an (n, k) array of per-example sufficient statistics (BLEU's n-gram counts and lengths).
        score: the corpus score of the summed statistics (a length-k vector).
    """
    stats = np.asarray(stats, dtype=float)
    if len(stats) < 2:
        return None
    ci = _bootstrap((np.arange(len(stats)),), lambda i, axis=-1: _corpus_scores(stats, i, score), seed,
                    vectorized=True, n_resamples=N_CORPUS_RESAMPLES).confidence_interval
    return _pair(ci.low, ci.high)


def metric_ci(metric: str, values: Sequence[float], seed: int = SEED) -> list[float] | None:
    """The interval a metric gets: Wilson for a 0/1 metric, else a bootstrap of the mean."""
    if metric in BINARY:
        return wilson(int(round(sum(values))), len(values))
    return mean_ci(values, seed)


def power_mde(sd: float, n: int) -> float | None:
    """Minimum detectable effect (two-sided alpha 0.05, power 0.8) of a paired comparison.

    Args:
        sd: standard deviation of the per-example differences.
        n: number of paired examples.
    Returns:
        About 2.8 * sd / sqrt(n) (the paired t-test's exact figure from statsmodels), 0 when the
        differences never vary, None under two examples.
    """
    from statsmodels.stats.power import TTestPower

    if n < 2 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER, alternative="two-sided")
    return float(es * sd)


def examples_needed(sd: float, effect: float) -> int | None:
    """Paired examples needed to detect `effect` (alpha 0.05, power 0.8), given the sd of the differences."""
    from statsmodels.stats.power import TTestPower

    if not sd or not math.isfinite(sd) or effect <= 0:
        return None
    n = TTestPower().solve_power(effect_size=effect / sd, nobs=None, alpha=ALPHA, power=POWER,
                                 alternative="two-sided")
    return int(math.ceil(float(np.atleast_1d(n)[0])))


def _result(diff: float, ci, p: float, test: str, sd: float, n: int, **extra) -> dict:
    return {"diff": float(diff), "ci": ci, "p": float(min(max(p, 0.0), 1.0)), "test": test,
            "mde": power_mde(sd, n), "sd": float(sd), "n": int(n), **extra}


def paired_mean(a: Sequence[float], b: Sequence[float], seed: int = SEED) -> dict:
    """Paired comparison of two models' per-example scores on the same examples (a - b).

    Returns:
        {"diff", "ci" (paired bootstrap of the mean difference), "p" (paired permutation test),
         "test", "mde", "sd" (of the differences), "n"}.
    """
    from scipy.stats import permutation_test

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired scores differ in length: {x.size} vs {y.size}")
    d = x - y
    n = d.size
    sd = float(np.std(d, ddof=1)) if n > 1 else 0.0
    if n < 2:
        return _result(d.mean() if n else 0.0, None, 1.0, "paired permutation", sd, n)
    if np.ptp(d) == 0:
        ci = _pair(d[0], d[0])
    else:
        ci = _bootstrap((x, y), lambda u, v, axis=-1: np.mean(u - v, axis=axis), seed, vectorized=True,
                        paired=True).confidence_interval
        ci = _pair(ci.low, ci.high)
    p = 1.0
    if np.any(d != 0):
        p = permutation_test((x, y), lambda u, v, axis=-1: np.mean(u, axis=axis) - np.mean(v, axis=axis),
                             permutation_type="samples", vectorized=True, n_resamples=N_PERMUTATIONS,
                             alternative="two-sided", rng=_rng(seed)).pvalue
    return _result(d.mean(), ci, p, "paired permutation", sd, n)


def paired_corpus(stats_a: np.ndarray, stats_b: np.ndarray, score: Callable[[np.ndarray], float],
                  seed: int = SEED) -> dict:
    """Paired comparison of a corpus statistic (e.g. corpus BLEU) of two models on the same examples (a - b).

    Args:
        stats_a, stats_b: (n, k) per-example sufficient statistics of each model's answers.
        score: the corpus score of summed statistics.
    Returns:
        paired_mean's shape. The interval resamples the same examples for both models; the p-value
        comes from a permutation test that swaps the two models' answers of each example at random;
        sd is the bootstrap standard error times sqrt(n) (what a per-example sd would be), so mde and
        examples_needed read the same as for a mean.
    """
    from scipy.stats import permutation_test

    sa, sb = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    n = len(sa)
    both = np.concatenate([sa, sb])  # row k < n: a's answer to example k; row n + k: b's

    def delta(i, axis=-1):
        return _corpus_scores(sa, i, score) - _corpus_scores(sb, i, score)

    diff = float(delta(np.arange(n)))
    if n < 2:
        return _result(diff, None, 1.0, "paired bootstrap + permutation", 0.0, n)
    res = _bootstrap((np.arange(n),), delta, seed, vectorized=True, n_resamples=N_CORPUS_RESAMPLES)
    sd = float(res.standard_error) * math.sqrt(n)
    p = 1.0
    if not np.array_equal(sa, sb):
        p = permutation_test(
            (np.arange(n), np.arange(n) + n),
            lambda u, v, axis=-1: _corpus_scores(both, u, score) - _corpus_scores(both, v, score),
            permutation_type="samples", vectorized=True, n_resamples=N_CORPUS_PERMUTATIONS, alternative="two-sided",
            rng=_rng(seed)).pvalue
    ci = res.confidence_interval
    return _result(diff, _pair(ci.low, ci.high), p, "paired bootstrap + permutation", sd, n)


def mcnemar(a: Sequence[float], b: Sequence[float], seed: int = SEED) -> dict:
    """Exact McNemar test of two models' 0/1 scores on the same examples (a - b).

    Returns:
        paired_mean's shape with "test": "exact McNemar", "a_only" (examples only a got right) and
        "b_only"; p is the two-sided binomial test of a_only among the discordant examples.
    """
    from scipy.stats import binomtest

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = paired_mean(x, y, seed)
    a_only, b_only = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return dict(out, p=float(p), test="exact McNemar", a_only=a_only, b_only=b_only)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels), in the given order."""
    from statsmodels.stats.multitest import multipletests

    if not len(pvalues):
        return []
    return [float(p) for p in multipletests(list(pvalues), alpha=ALPHA, method="holm")[1]]


def compare(models: list[str], scores: dict[str, dict[str, Sequence[float]]],
            corpus: dict[str, dict[str, np.ndarray]] | None = None,
            corpus_score: dict[str, Callable[[np.ndarray], float]] | None = None, seed: int = SEED) -> dict:
    """Intervals for every model and metric, and paired tests for every pair of models.

    Args:
        models: model names in report order; pairs are (later, earlier): a = the later model.
        scores: {model: {metric: per-example scores}}, every model on the same examples in the same order.
        corpus: {model: {metric: (n, k) per-example statistics}} for a metric that is a corpus score
            rather than a mean of per-example scores (corpus BLEU), scored by corpus_score[metric].
    Returns:
        {"ci": {model: {metric: [lo, hi] or None}},
         "pairs": [{"a", "b", "metric", "diff", "ci", "p", "p_adjusted", "test", "mde", "sd", "n",
                    ("a_only", "b_only" for exact match)}]}.
    """
    corpus, corpus_score = corpus or {}, corpus_score or {}
    ci: dict[str, dict] = {}
    for m in models:
        ci[m] = {}
        for metric, values in scores.get(m, {}).items():
            st = corpus.get(m, {}).get(metric)
            ci[m][metric] = (corpus_ci(st, corpus_score[metric], seed) if st is not None
                             else metric_ci(metric, values, seed))
    pairs = []
    for i, j in combinations(range(len(models)), 2):
        a, b = models[j], models[i]
        for metric in scores.get(a, {}):
            if metric not in scores.get(b, {}):
                continue
            x, y = scores[a][metric], scores[b][metric]
            sa, sb = corpus.get(a, {}).get(metric), corpus.get(b, {}).get(metric)
            if sa is not None and sb is not None:
                res = paired_corpus(sa, sb, corpus_score[metric], seed)
            elif metric in BINARY:
                res = mcnemar(x, y, seed)
            else:
                res = paired_mean(x, y, seed)
            pairs.append({"a": a, "b": b, "metric": metric, **res})
    for pair, adj in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_adjusted"] = adj
    return {"ci": ci, "pairs": pairs}


def _signed(v: float) -> str:
    return f"{v:+.2f}"


def _ci_text(ci) -> str:
    return f"[{_signed(ci[0])}, {_signed(ci[1])}]" if ci else "[n/a]"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def headline_pair(models: list[str], means: dict[str, float | None], metric: str) -> tuple[str, str] | None:
    """The pair a report's verdict is about: with two models, (second, first) — the challenger (e.g.
    the tuned run) against the reference (its base); with more, the best by `metric` against the runner-up."""
    if len(models) < 2:
        return None
    if len(models) == 2:
        return models[1], models[0]
    ranked = sorted((m for m in models if means.get(m) is not None), key=lambda m: -means[m])
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def verdict(pairs: list[dict], a: str, b: str, metric: str = "rouge_l", margin: float | None = None,
            effect: float | None = None) -> dict:
    """One verdict on a against b by one metric, from a `compare` pair (Holm-adjusted p).

    Returns:
        {"label": better|worse|non-inferior|inconclusive, "sentence", "a", "b", "metric", "diff",
         "ci", "p", "p_adjusted", "n", "margin", "alpha", "effect", "needed" (examples to detect
         effect, for an inconclusive verdict)}.
    """
    margin = MARGIN.get(metric, 0.02) if margin is None else margin
    effect = EFFECT.get(metric, 0.05) if effect is None else effect
    label_m = LABELS.get(metric, metric)
    pair = next((p for p in pairs if p["metric"] == metric and {p["a"], p["b"]} == {a, b}), None)
    base = {"a": a, "b": b, "metric": metric, "margin": margin, "alpha": ALPHA, "effect": effect}
    if pair is None or pair["n"] < 2:
        n = pair["n"] if pair else 0
        return dict(base, label="inconclusive", diff=None, ci=None, p=None, p_adjusted=None, n=n, needed=None,
                    sentence=f"Too few examples ({n}) to compare {a} with {b}.")
    if pair["a"] != a:  # stored the other way round: flip it
        pair = dict(pair, a=a, b=b, diff=-pair["diff"], ci=[-pair["ci"][1], -pair["ci"][0]] if pair["ci"] else None)
    diff, ci, p, n = pair["diff"], pair["ci"], pair["p_adjusted"], pair["n"]
    core = f"{_signed(diff)} {_ci_text(ci)}, {_p_text(p)}"
    stat = f"{core}, {n} examples"
    needed = None
    if p < ALPHA and diff > 0:
        label, sentence = "better", f"{a} beats {b} on {label_m} by {stat}."
    elif p < ALPHA and diff < 0:
        label, sentence = "worse", f"{a} is worse than {b} on {label_m}: {stat}."
    elif ci is not None and ci[0] > -margin:
        label = "non-inferior"
        sentence = (f"{a} is not worse than {b} on {label_m} by more than the margin of {margin:.2f} "
                    f"({stat}), but not detectably better.")
    else:
        label = "inconclusive"
        needed = examples_needed(pair["sd"], effect)
        more = f"; about {needed} would detect {_signed(effect)}" if needed else ""
        sentence = f"No detectable difference between {a} and {b} on {label_m} on {n} examples ({core}){more}."
    return dict(base, label=label, sentence=sentence, diff=diff, ci=ci, p=pair["p"], p_adjusted=p, n=n,
                needed=needed)
