"""The paired comparison behind `reports regress`, against scipy and statsmodels."""

from __future__ import annotations

import numpy as np
from scipy import stats

from tunelab.evals.regress import stats as regress_stats


def test_binary_scores_use_mcnemar_exact_on_the_discordant_items():
    base = [1] * 10 + [0] * 20 + [1] * 5 + [0] * 5
    tuned = [0] * 10 + [1] * 20 + [1] * 5 + [0] * 5  # 10 lost, 20 gained, 10 unchanged
    out = regress_stats.paired(base, tuned, seed=1)
    assert (out["a_only"], out["b_only"], out["n"]) == (10, 20, 40)
    assert out["test"] == "mcnemar_exact"
    assert out["p"] == stats.binomtest(20, 30, 0.5).pvalue
    assert out["diff"] == np.mean(tuned) - np.mean(base) == 0.25
    ref = stats.bootstrap((np.array(base, float), np.array(tuned, float)),
                          lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True, n_resamples=2000,
                          method="percentile", random_state=np.random.default_rng(1)).confidence_interval
    assert out["ci"] == [ref.low, ref.high]
    assert out["ci"][0] < out["diff"] < out["ci"][1]


def test_identical_models_are_kept_and_a_planted_loss_is_lost():
    same = regress_stats.paired([1, 0, 1, 1, 0] * 8, [1, 0, 1, 1, 0] * 8)
    assert (same["diff"], same["p"], same["ci"]) == (0.0, 1.0, [0.0, 0.0])
    assert regress_stats.verdict(same["diff"], same["p"]) == "kept"
    lost = regress_stats.paired([1] * 30, [1] * 5 + [0] * 25)
    assert lost["p"] == stats.binomtest(0, 25, 0.5).pvalue < 1e-6
    assert lost["ci"][0] <= lost["diff"] == -25 / 30 <= lost["ci"][1] < 0
    assert regress_stats.verdict(lost["diff"], lost["p"]) == "lost"
    assert regress_stats.verdict(-lost["diff"], lost["p"]) == "gained"
    assert regress_stats.verdict(lost["diff"], lost["p"], higher_is_better=False) == "gained"


def test_continuous_scores_use_a_paired_permutation_test():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 25)
    tuned = base + 0.05 + rng.normal(0, 0.02, 25)
    out = regress_stats.paired(list(base), list(tuned), seed=3)
    assert out["test"] == "paired_permutation" and out["a_only"] is None
    ref = stats.permutation_test((base, tuned), lambda x, y, axis=-1: np.mean(y - x, axis=axis),
                                 permutation_type="samples", n_resamples=9999,
                                 random_state=np.random.default_rng(3)).pvalue
    assert out["p"] == ref < 0.001
    assert np.isclose(out["diff_stderr"], stats.sem(tuned - base))


def test_holm_matches_statsmodels_and_keeps_missing_values():
    from statsmodels.stats.multitest import multipletests

    ps = [0.01, 0.04, None, 0.03]
    ref = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert regress_stats.holm(ps) == [ref[0], ref[1], None, ref[2]]
