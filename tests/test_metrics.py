"""Metrics on known pairs: identical, disjoint, partial overlap, Chinese."""

import pytest

from tunelab.evals import metrics


@pytest.mark.parametrize("text", ["The cat sat on the mat.", "我喜欢吃苹果和香蕉。", "x"])
def test_identical_scores_one(text):
    s = metrics.score(text, text)
    assert s == pytest.approx({"rouge_l": 1.0, "bleu": 1.0, "exact_match": 1.0})


def test_disjoint_scores_zero():
    s = metrics.score("alpha beta gamma delta", "one two three four")
    assert s == {"rouge_l": 0.0, "bleu": 0.0, "exact_match": 0.0}
    assert metrics.score("我喜欢苹果", "他们去北京")["rouge_l"] == 0.0


def test_chinese_overlap_scores_above_zero():
    pred, ref = "我喜欢吃苹果", "我喜欢吃香蕉"
    # rouge-score's own tokenizer drops every non-ASCII character: this is the bug we avoid.
    from rouge_score import rouge_scorer

    assert rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure == 0.0
    assert metrics.rouge_l(pred, ref) == pytest.approx(4 / 6)  # LCS 我喜欢吃 over 6 characters
    assert 0.0 < metrics.bleu(pred, ref) < 1.0
    assert metrics.exact_match(pred, ref) == 0.0


def test_partial_overlap_between_zero_and_one():
    s = metrics.score("the cat sat on a mat", "the cat sat on the mat")
    assert 0.5 < s["rouge_l"] < 1.0 and 0.0 < s["bleu"] < 1.0


def test_exact_match_normalises_case_punctuation_and_space():
    assert metrics.exact_match("  Paris. ", "paris") == 1.0
    assert metrics.exact_match("北京。", "北京") == 1.0
    assert metrics.exact_match("Paris", "London") == 0.0


def test_mixed_tokenizer_and_empty_text():
    assert metrics.tokenize("GPU 训练 fast!") == ["gpu", "训", "练", "fast"]
    assert metrics.score("", "reference") == {"rouge_l": 0.0, "bleu": 0.0, "exact_match": 0.0}


def test_corpus_bleu_pools_examples():
    assert metrics.corpus_bleu(["a b c d", "e f g h"], ["a b c d", "e f g h"]) == pytest.approx(1.0)
    assert metrics.corpus_bleu(["我喜欢吃苹果"], ["我喜欢吃香蕉"]) > 0.0
