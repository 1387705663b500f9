"""evals.stats against scipy/statsmodels as oracles, and on real ROUGE-L scores of real answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from tunelab.evals import metrics, stats

# Real reference answers and three sets of real answers to score against them with ROUGE-L: a good
# model (close paraphrases), a deliberately worse one (the first word or two only, then filler).
REFERENCES = [
    "The sky looks blue because air scatters short blue wavelengths of sunlight more than red ones.",
    "Paris is the capital of France and its largest city.",
    "Water boils at 100 degrees Celsius at sea level.",
    "A haiku is a Japanese poem of three lines with five, seven and five syllables.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The Pacific is the largest and deepest ocean on Earth.",
    "An atom has a nucleus of protons and neutrons surrounded by electrons.",
    "Shakespeare wrote Hamlet around the year 1600.",
    "The heart pumps blood through the body's arteries and veins.",
    "Mount Everest is the highest mountain above sea level.",
    "A prime number has exactly two divisors: one and itself.",
    "The moon orbits the Earth about once every 27 days.",
    "Rain forms when water vapour condenses into droplets that grow heavy and fall.",
    "The Great Wall of China was built over many centuries to protect against invasions.",
    "Bees make honey from the nectar of flowers.",
    "Light travels at about 300,000 kilometres per second in a vacuum.",
    "Iron rusts when it reacts with oxygen and water.",
    "The Amazon is the largest rainforest in the world.",
    "A triangle's angles always add up to 180 degrees.",
    "Penguins are birds that cannot fly but swim very well.",
    "The human skeleton of an adult has 206 bones.",
    "Gold is a dense, soft and shiny metal.",
    "The Nile is one of the longest rivers on Earth.",
    "Earthquakes happen when tectonic plates suddenly slip past each other.",
    "DNA carries the genetic instructions of living things.",
    "北京是中国的首都。",
    "水在零度时结冰。",
    "太阳从东方升起。",
    "猫是一种常见的宠物。",
    "长城是中国古代的防御工程。",
]


def _good(ref: str) -> str:
    words = ref.split()
    if len(words) == 1:  # Chinese: drop the final punctuation only
        return ref.rstrip("。")
    return " ".join(words[:-1]) + " indeed."


def _worse(ref: str) -> str:
    words = ref.split()
    if len(words) == 1:
        return ref[:2] + "是的，我不知道。"
    return " ".join(words[:2]) + " is something I am not sure about at all."


def _rouge(answers: list[str]) -> list[float]:
    return [metrics.rouge_l(a, r) for a, r in zip(answers, REFERENCES)]


def test_wilson_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 10), (3, 10), (7, 7), (31, 40)]:
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert stats.wilson(k, n) == pytest.approx([lo, hi])
    assert stats.wilson(0, 0) is None
    # exact match's interval is Wilson's
    assert stats.metric_ci("exact_match", [1, 0, 1, 1, 0]) == pytest.approx(stats.wilson(3, 5))


def test_mean_ci_is_scipys_seeded_bootstrap():
    x = np.array(_rouge([_good(r) for r in REFERENCES]))
    got = stats.mean_ci(x, seed=7)
    res = sps.bootstrap((x,), np.mean, n_resamples=stats.N_RESAMPLES, method="BCa",
                        rng=np.random.default_rng(7))
    assert got == pytest.approx([res.confidence_interval.low, res.confidence_interval.high])
    assert got[0] < x.mean() < got[1]
    assert stats.mean_ci(x, seed=7) == got  # seeded: the same interval every time
    assert stats.mean_ci([0.5, 0.5, 0.5]) == [0.5, 0.5]
    assert stats.mean_ci([0.5]) is None
    assert stats.N_RESAMPLES >= 1000


def test_mcnemar_matches_statsmodels_exact():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(3)
    a = (rng.random(60) < 0.7).astype(float)
    b = (rng.random(60) < 0.4).astype(float)
    got = stats.mcnemar(a, b)
    table = [[np.sum((a == 1) & (b == 1)), np.sum((a == 1) & (b == 0))],
             [np.sum((a == 0) & (b == 1)), np.sum((a == 0) & (b == 0))]]
    assert got["p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert (got["a_only"], got["b_only"]) == (table[0][1], table[1][0])
    assert got["test"] == "exact McNemar" and got["diff"] == pytest.approx(a.mean() - b.mean())


def test_holm_matches_statsmodels_and_never_lowers_p():
    from statsmodels.stats.multitest import multipletests

    ps = [0.01, 0.04, 0.03, 0.5]
    adj = stats.holm(ps)
    assert adj == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert all(q >= p for p, q in zip(ps, adj))


def test_mde_is_about_2_8_sd_over_sqrt_n_and_needed_examples_detect_the_effect():
    sd, n = 0.4, 300
    assert stats.power_mde(sd, n) == pytest.approx(2.8 * sd / math.sqrt(n), rel=0.02)
    needed = stats.examples_needed(sd, 0.05)
    assert stats.power_mde(sd, needed) <= 0.05 < stats.power_mde(sd, needed - 1)
    from statsmodels.stats.power import TTestPower

    assert TTestPower().power(effect_size=0.05 / sd, nobs=needed, alpha=0.05) >= 0.8
    assert stats.power_mde(0.0, 20) == 0.0 and stats.examples_needed(0.0, 0.05) is None


def test_paired_permutation_p_agrees_with_the_paired_t_test():
    good, worse = _rouge([_good(r) for r in REFERENCES]), _rouge([_worse(r) for r in REFERENCES])
    noisy = [g - 0.02 + 0.1 * math.sin(i) for i, g in enumerate(good)]
    got = stats.paired_mean(good, noisy)
    t = sps.ttest_rel(good, noisy)
    assert got["p"] == pytest.approx(t.pvalue, abs=0.05)
    assert got["ci"][0] < got["diff"] < got["ci"][1]
    assert stats.paired_mean(good, worse)["diff"] == pytest.approx(np.mean(good) - np.mean(worse))


def test_identical_models_p_above_half_and_planted_better_model_p_below_001():
    """Real ROUGE-L of real answers: the same answers twice, and a good model against a worse one."""
    good = [_good(r) for r in REFERENCES]
    worse = [_worse(r) for r in REFERENCES]
    scores = {name: {"rouge_l": _rouge(ans), "exact_match": [metrics.exact_match(a, r) for a, r in zip(ans, REFERENCES)]}
              for name, ans in (("base", worse), ("copy", list(worse)), ("tuned", good))}
    out = stats.compare(["base", "copy", "tuned"], scores)
    pair = {(p["a"], p["b"], p["metric"]): p for p in out["pairs"]}
    same = pair[("copy", "base", "rouge_l")]
    assert same["p"] > 0.5 and same["p_adjusted"] > 0.5 and same["diff"] == 0.0
    better = pair[("tuned", "base", "rouge_l")]
    assert better["p"] < 0.01 and better["p_adjusted"] < 0.01 and better["diff"] > 0.3
    assert better["ci"][0] > 0 and better["mde"] is not None
    # the planted model's win is a "better" verdict; identical models are not
    v = stats.verdict(out["pairs"], "tuned", "base")
    assert v["label"] == "better" and v["sentence"].startswith("tuned beats base on ROUGE-L by +")
    assert f"{len(REFERENCES)} examples" in v["sentence"]
    assert stats.verdict(out["pairs"], "copy", "base")["label"] != "better"
    assert stats.verdict(out["pairs"], "base", "tuned")["label"] == "worse"
    assert out["ci"]["tuned"]["rouge_l"][0] < np.mean(scores["tuned"]["rouge_l"]) < out["ci"]["tuned"]["rouge_l"][1]


def test_inconclusive_verdict_says_how_many_examples_would_detect_the_effect():
    ref = REFERENCES[:8]
    a = [metrics.rouge_l(_good(r), r) for r in ref]
    b = [x + (0.1 if i % 2 else -0.08) for i, x in enumerate(a)]
    out = stats.compare(["base", "tuned"], {"base": {"rouge_l": a}, "tuned": {"rouge_l": b}})
    v = stats.verdict(out["pairs"], "tuned", "base")
    assert v["label"] == "inconclusive" and v["needed"] > 8
    assert v["sentence"].startswith("No detectable difference between tuned and base on ROUGE-L on 8 examples")
    assert f"about {v['needed']} would detect +0.05" in v["sentence"]


def test_corpus_bleu_interval_and_paired_test_use_corpus_bleu():
    good = [_good(r) for r in REFERENCES]
    worse = [_worse(r) for r in REFERENCES]
    sg, tok = metrics.bleu_stats(good, REFERENCES)
    sw, _ = metrics.bleu_stats(worse, REFERENCES)

    def score(v):
        return metrics.bleu_from_stats(v, tok)

    assert score(np.sum(sg, axis=0)) == pytest.approx(metrics.corpus_bleu(good, REFERENCES))
    ci = stats.corpus_ci(np.array(sg), score)
    assert ci[0] < metrics.corpus_bleu(good, REFERENCES) < ci[1]
    res = stats.paired_corpus(np.array(sg), np.array(sw), score)
    assert res["diff"] == pytest.approx(metrics.corpus_bleu(good, REFERENCES) - metrics.corpus_bleu(worse, REFERENCES))
    assert res["p"] < 0.01 and res["ci"][0] > 0
    same = stats.paired_corpus(np.array(sw), np.array(sw), score)
    assert same["p"] == 1.0 and same["diff"] == 0.0


def test_slices_worst_first_with_intervals_by_language_length_and_record_columns(workspace):
    """Slices of a real dataset's examples (load_examples), scored with real ROUGE-L of real answers."""
    from tunelab.data import schema, store
    from tunelab.evals import analysis, evaluate

    recs = [{"id": f"r{i}", "instruction": f"Question {i}?", "output": ref, "kto_tag": i % 2 == 0}
            for i, ref in enumerate(REFERENCES)]
    store.commit("mixed", schema.to_table(recs), "import")
    _, items = evaluate.load_examples("mixed")
    assert items[0]["tags"] == {"kto_tag": True}
    items = {it["index"]: it for it in items}
    # the model answers English well and Chinese badly: the Chinese slice must come first
    answers = [_good(r) if " " in r else _worse(r) for r in REFERENCES]
    rows = {i: {"index": i, "output": a, **metrics.score(a, r)} for i, (a, r) in enumerate(zip(answers, REFERENCES))}
    out = analysis.slices(["m"], {"m": rows}, items, "mixed", "m")
    assert out[0]["column"] == "language" and out[0]["value"] == "Chinese" and out[0]["n"] == 5
    chinese = out[0]["models"]["m"]
    assert chinese["rouge_l"] == pytest.approx(np.mean([rows[i]["rouge_l"] for i in range(25, 30)]), abs=1e-6)
    lo, hi = chinese["rouge_l_ci"]
    assert lo <= chinese["rouge_l"] <= hi
    means = [s["models"]["m"]["rouge_l"] for s in out]
    assert means == sorted(means)  # worst first
    assert {(s["column"], s["value"]) for s in out} >= {("kto_tag", "True"), ("kto_tag", "False"),
                                                        ("language", "other")}
    assert "source" not in {s["column"] for s in out}  # one dataset: no slice of one value
