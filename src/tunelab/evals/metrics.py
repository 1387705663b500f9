"""Text-overlap metrics from the field's libraries (rouge-score, sacrebleu), Chinese included.

rouge-score's default tokenizer keeps only ASCII letters and digits, so a Chinese answer scores 0
against any reference; we give it a tokenizer that splits CJK text into single characters (the
usual convention for Chinese ROUGE) and keeps other words whole. BLEU uses sacrebleu's own "zh"
tokenizer whenever a reference holds CJK text. `evaluate.load` is not used: it fetches metric
scripts from a hub and fails offline.
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

from tunelab.text import CJK_CLASS, has_cjk

METRICS = ("rouge_l", "bleu", "exact_match")

# A CJK character (kana, ideograph, hangul: no spaces between words) or a run of other letters/digits.
_TOKEN_RE = re.compile(rf"[{CJK_CLASS}]|[^\W_{CJK_CLASS}]+")
_PUNCT = set(string.punctuation) | {"，", "。", "！", "？", "；", "：", "、", "“", "”", "‘", "’", "（", "）", "《", "》"}


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, with each CJK character a token of its own."""
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text or "").lower())


class _Tokenizer:
    """The `tokenize()` object rouge-score expects."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())


@lru_cache(maxsize=2)
def _bleu(tokenizer: str):
    from sacrebleu.metrics import BLEU

    # effective_order: a short sentence without 4-grams is not scored 0 for that alone.
    return BLEU(tokenize=tokenizer, effective_order=True)


def _bleu_tokenizer(references: list[str]) -> str:
    return "zh" if any(has_cjk(r) for r in references) else "13a"


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 in [0, 1]."""
    if not tokenize(prediction) or not tokenize(reference):
        return 0.0
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU in [0, 1] (sacrebleu, "zh" tokenizer for Chinese references)."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    score = _bleu(_bleu_tokenizer([reference])).sentence_score(prediction, [reference]).score
    return min(score / 100.0, 1.0)


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU in [0, 1]: n-gram counts pooled over all examples (the standard aggregate)."""
    if not predictions:
        return 0.0
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=_bleu_tokenizer(references))
    return min(metric.corpus_score(predictions, [references]).score / 100.0, 1.0)


def normalize(text: str) -> str:
    """Lower case, NFKC, punctuation dropped, whitespace collapsed (SQuAD-style)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(normalize(prediction) == normalize(reference))


def score(prediction: str, reference: str) -> dict[str, float]:
    """Every per-example metric for one answer: {"rouge_l", "bleu", "exact_match"}."""
    return {
        "rouge_l": rouge_l(prediction, reference),
        "bleu": bleu(prediction, reference),
        "exact_match": exact_match(prediction, reference),
    }


def bleu_stats(predictions: list[str], references: list[str]) -> tuple[list[list[int]], str]:
    """Per-example BLEU sufficient statistics (lengths, n-gram matches and totals) and the tokenizer used.

    Summing rows of any subset and passing the sum to `bleu_from_stats` gives that subset's corpus
    BLEU, which is what the bootstrap and permutation tests of `evals.stats` resample. sacrebleu's
    own significance tests (sacrebleu.significance) work from these same statistics.
    """
    from sacrebleu.metrics import BLEU

    tok = _bleu_tokenizer(references)
    return BLEU(tokenize=tok)._extract_corpus_statistics(predictions, [references]), tok


@lru_cache(maxsize=2)
def _corpus_bleu_metric(tokenizer: str):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenizer)


def bleu_from_stats(summed, tokenizer: str = "13a") -> float:
    """Corpus BLEU in [0, 1] from summed `bleu_stats` rows (the same number `corpus_bleu` gives)."""
    return min(_corpus_bleu_metric(tokenizer)._compute_score_from_stats(list(summed)).score / 100.0, 1.0)
