"""Scripts written without spaces between words (CJK), and how search, clean, stats, highlight and
the evaluation metrics cut such text into tokens: the ranges are defined once, here.

Depends on nothing in TuneLab, so every layer (data, evals, synth) may import it.
"""

from __future__ import annotations

import re

# Hiragana/Katakana, CJK ideographs (+ extension A, compatibility), Hangul syllables.
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF))
# The ranges as the inside of a Python regex character class, to build other patterns from.
CJK_CLASS = "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_RANGES)
CJK_CHAR = re.compile(f"[{CJK_CLASS}]")
CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
# The same class in RE2 syntax, for Arrow's pyarrow.compute regex functions.
CJK_RE2 = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in CJK_RANGES) + "]"


def has_cjk(text: str | None) -> bool:
    """Whether text holds any CJK character."""
    return bool(CJK_CHAR.search(text or ""))


def _split_run(run: str, for_query: bool) -> str:
    bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
    if for_query and bigrams:  # bigrams are what ranks; unigrams would match almost everything
        return " " + " ".join(bigrams) + " "
    return " " + " ".join(list(run) + bigrams) + " "


def segment(text: str, for_query: bool = False) -> str:
    """Make CJK text searchable by a whitespace tokenizer: characters plus character bigrams.

    Args:
        text: any text; non-CJK parts are left alone.
        for_query: segment a query (bigrams only when a run has two or more characters).

    Returns:
        The text with every CJK run replaced by space-separated tokens.
    """
    if not text:
        return ""
    return CJK_RUN.sub(lambda m: _split_run(m.group(0), for_query), text)
