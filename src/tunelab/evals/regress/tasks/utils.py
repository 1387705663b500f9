"""Programmatic checks of TuneLab's regression suite, in the spirit of IFEval.

lm-evaluation-harness calls `process_results(doc, results)` for each item (the YAMLs name these
functions with `!function utils.<name>`); each returns {"pass": 1 or 0}. `results[0]` is the model's
answer. Each check reads its parameters from the item (`n`, `word`, `key`), so the JSONL decides.
"""

from __future__ import annotations

import json
import re

BULLET = re.compile(r"^\s*(?:[-*\u2022])\s+\S")  # "- x", "* x", "• x"; numbered lists are not bullets (IFEval)
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")
FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?|\n?\s*```\s*$")


def bullets(text: str, n: int) -> bool:
    """Exactly n bullet lines."""
    return sum(1 for line in text.splitlines() if BULLET.match(line)) == int(n)


def keyword(text: str, word: str) -> bool:
    """The word appears as a whole word (any case)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def json_object(text: str, key: str) -> bool:
    """The whole answer (a ```json fence allowed, as IFEval does) is one JSON object holding key."""
    body = FENCE.sub("", text.strip()).strip()
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and key in value


def under_words(text: str, n: int) -> bool:
    """A non-empty answer of fewer than n words."""
    words = text.split()
    return 0 < len(words) < int(n)


def chinese(text: str) -> bool:
    """Mostly Chinese: at least two Han characters and no fewer Han characters than Latin letters."""
    han = len(CJK.findall(text))
    return han >= 2 and han >= len(LATIN.findall(text))


def _answer(results) -> str:
    return results[0] if results and isinstance(results[0], str) else ""


def check_bullets(doc, results):
    return {"pass": int(bullets(_answer(results), doc["n"]))}


def check_keyword(doc, results):
    return {"pass": int(keyword(_answer(results), doc["word"]))}


def check_json(doc, results):
    return {"pass": int(json_object(_answer(results), doc["key"]))}


def check_short(doc, results):
    return {"pass": int(under_words(_answer(results), doc["n"]))}


def check_chinese(doc, results):
    return {"pass": int(chinese(_answer(results)))}
