"""Mark the words of a search query inside a record's text, for showing search hits.

Search ranks the whole phrase first, then BM25 over stemmed words and CJK character bigrams (see
search.py), so a hit may not contain the query verbatim: "models" finds "modeling". Highlighting
marks what a reader would call the match: the whole phrase (and every "quoted" part) as written;
each Latin word that is not a stopword, in its common suffixed forms; and in CJK text the query's
words (cut by jieba) only where they stand as words of the text too, so 日心说 does not mark the
心说 inside 地心说, and one-character words such as 的 are not marked unless they are the query.
"""

from __future__ import annotations

import functools
import html
import re

from tunelab.data.stopwords import ENGLISH as STOPWORDS
from tunelab.text import CJK_CHAR, CJK_RUN

# Crude English suffixes; the index uses the Porter stemmer, this only has to point at the word.
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
_MIN_ROOT = 3
_SUFFIX_RE = "(?:" + "|".join(_SUFFIXES + ("er", "ers", "e")) + ")?"
_QUOTED = re.compile(r'"([^"]+)"')


def parse_query(query: str) -> tuple[str, list[str]]:
    """(the phrase: the query's words without quotes, the quoted phrases every hit must contain)."""
    required = [" ".join(q.split()) for q in _QUOTED.findall(query) if q.strip()]
    return " ".join(query.replace('"', " ").split()), required


def phrase_pattern(phrase: str) -> str:
    """A regex (Python and RE2 alike) for phrase as written, any run of spaces between its words;
    a Latin end must fall on a word boundary. Case is the caller's (flag or (?i))."""
    start = r"\b" if re.match(r"\w", phrase) and not CJK_CHAR.match(phrase) else ""
    end = r"\b" if re.search(r"\w$", phrase) and not CJK_CHAR.match(phrase[-1]) else ""
    return start + r"\s+".join(re.escape(w) for w in phrase.split()) + end


@functools.lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary build talks on stderr otherwise
    return jieba


def _cjk_words(run: str) -> list[str]:
    """A query's CJK run as words: the run itself plus its jieba words of two or more characters."""
    if len(run) == 1:
        return [run]
    return [run] + [w for w in _jieba().lcut(run) if len(w) > 1 and w != run]


def _boundaries(text: str) -> set[int]:
    """Offsets in text where a jieba word starts or ends (inside CJK runs) plus every run's ends."""
    out: set[int] = set()
    for m in CJK_RUN.finditer(text):
        out |= {m.start(), m.end()}
        for _, start, end in _jieba().tokenize(m.group(0)):
            out |= {m.start() + start, m.start() + end}
    return out


def terms(query: str) -> list[str]:
    """The Latin word roots of a query marked on their own (outside quotes; no stopwords), longest first."""
    free = _QUOTED.sub(" ", query).replace('"', " ")
    out = [_root(w) for w in re.findall(r"\w+", CJK_RUN.sub(" ", free.casefold())) if w not in STOPWORDS]
    return sorted(set(out), key=lambda t: (-len(t), t))


def _root(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_ROOT:
            return word[: -len(suffix)]
    return word


def spans(text: str, query: str) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) character spans of text that match the query.

    Args:
        text: the text to search in.
        query: the search query as the user typed it.

    Returns:
        Non-overlapping spans, in order; empty when nothing matches.
    """
    phrase, required = parse_query(query)
    found: list[tuple[int, int]] = []
    for p in {phrase, *required} - {""}:
        found += [m.span() for m in re.finditer(phrase_pattern(p), text, flags=re.IGNORECASE)]
    for term in terms(query):
        # Whole words only, in any of the suffixed forms: "model" marks "modeling", not "modem".
        pattern = r"(?<!\w)" + re.escape(term) + _SUFFIX_RE + r"(?!\w)"
        found += [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]
    runs = CJK_RUN.findall(_QUOTED.sub(" ", query))  # a quoted part is marked only as a whole
    if runs and CJK_RUN.search(text):
        edges = None
        for run in runs:
            for i, word in enumerate(_cjk_words(run)):
                for m in re.finditer(re.escape(word), text):
                    if i == 0:  # the query's whole run: wherever it stands
                        found.append(m.span())
                        continue
                    edges = _boundaries(text) if edges is None else edges
                    if m.start() in edges and m.end() in edges:
                        found.append(m.span())
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
