"""Mark the words of a search query inside a record's text, for showing search hits.

Search ranks with BM25 over stemmed words and CJK character bigrams (see search.py), so a hit may
not contain the query verbatim: "models" finds "modeling", "机器学习" finds "机器". Highlighting
mirrors that loosely — a crudely de-suffixed Latin word in its common suffixed forms, and every
CJK bigram of the query — so the reader sees why a record matched.
"""

from __future__ import annotations

import html
import re

from tunelab.text import CJK_RUN

# Crude English suffixes; the index uses the Porter stemmer, this only has to point at the word.
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
_MIN_ROOT = 3
_SUFFIX_RE = "(?:" + "|".join(_SUFFIXES + ("er", "ers", "e")) + ")?"


def terms(query: str) -> list[str]:
    """The patterns to mark for a query: Latin word roots and CJK runs plus their bigrams."""
    out: list[str] = []
    for word in re.findall(r"\w+", query.casefold()):
        for run in CJK_RUN.findall(word):
            out.append(run)
            out += [run[i : i + 2] for i in range(len(run) - 1)]
        latin = CJK_RUN.sub(" ", word).split()
        out += [_root(w) for w in latin]
    return sorted(set(out), key=lambda t: (-len(t), t))


def _root(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_ROOT:
            return word[: -len(suffix)]
    return word


def spans(text: str, query: str) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) character spans of text that match the query's terms.

    Args:
        text: the text to search in.
        query: the search query as the user typed it.

    Returns:
        Non-overlapping spans, in order; empty when nothing matches.
    """
    found: list[tuple[int, int]] = []
    for term in terms(query):
        if CJK_RUN.fullmatch(term):
            pattern = re.escape(term)
        else:
            # Whole words only, in any of the suffixed forms: "model" marks "modeling", not "modem".
            pattern = r"(?<!\w)" + re.escape(term) + _SUFFIX_RE + r"(?!\w)"
        found += [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def to_html(text: str, query: str = "") -> str:
    """The text HTML-escaped, with each match wrapped in <mark>; safe to render as HTML."""
    out, pos = [], 0
    for start, end in spans(text, query) if query.strip() else []:
        out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def count(text: str, query: str) -> int:
    """How many separate matches of the query the text holds."""
    return len(spans(text, query)) if query.strip() else 0
