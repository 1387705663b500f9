"""Translations for the dashboard: English source strings mapped to other languages.

Pages write English and wrap it in `ui.i18n.t(...)`; the catalog lives in locales/<lang>.json
(English text -> translation) so translators edit one flat file. Missing entries fall back to
English, and `missing()` lists them so a test can keep the catalog complete. User errors, raised in
English by core code, are translated when shown by `translate_error()` (locales/<lang>_errors.json).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

LANGS = {"en": "English", "zh": "中文"}
DEFAULT_LANG = "en"
_DIR = Path(__file__).parent / "locales"
_seen: set[str] = set()


@functools.cache
def catalog(lang: str) -> dict[str, str]:
    if lang == "en":
        return {}
    path = _DIR / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def translate(text: str, lang: str, **fmt) -> str:
    """text in lang (English when untranslated), then str.format(**fmt) if fmt is given."""
    _seen.add(text)
    out = catalog(lang).get(text, text) if lang in LANGS else text
    return out.format(**fmt) if fmt else out


def from_locale(locale: str | None) -> str:
    """The UI language for a browser locale such as 'zh-CN' or 'en-US'."""
    code = (locale or "").split("-")[0].split("_")[0].lower()
    return code if code in LANGS else DEFAULT_LANG


def missing(lang: str) -> list[str]:
    """Strings used so far in this process that lang has no translation for."""
    return sorted(s for s in _seen if s not in catalog(lang))


# User errors (TuneLabError) are raised in English from many sites, mostly as f-strings. Instead of
# rewriting every raise site, locales/<lang>_errors.json maps each site's message *template* (the
# f-string's source, placeholders written as their expressions: "unknown run {run_id!r} ...") to a
# translation with the same placeholders; a message is matched against the templates at display time
# and its captured values are put into the translation ("values" translates the few placeholders that
# hold a fixed English word, such as {kind}: "dataset name"). tests/test_i18n.py walks the source with
# ast and fails when a raise site has no entry, so the source is never parsed at run time.

def translate_error(message: str, lang: str) -> str:
    """A user-error message in lang; English unchanged when no template matches.

    Args:
        message: str(exc) of a TuneLabError, or a job's recorded error.
        lang: a code from LANGS.

    Returns:
        The translated message with the English message's values (names, numbers, paths) kept.
    """
    if lang == "en" or not message:
        return message
    patterns, values = _error_catalog(lang)
    for _, pattern, placeholders, translation in patterns:
        m = pattern.fullmatch(message)
        if m is None:
            continue
        got = dict(zip(placeholders, m.groups()))
        out = []
        for text, ph in translation:
            out.append(text)
            if ph is not None:
                value = got.get(ph, ph)
                # A fixed word ("dataset name") has its own entry; any other value may be a nested user
                # error ("... skipped (x: unknown format 'y')"), translated in turn or kept as it is.
                out.append(values[ph].get(value, value) if ph in values else translate_error(value, lang))
        return "".join(out)
    return message


@functools.cache
def _error_catalog(lang: str) -> tuple[list, dict[str, dict[str, str]]]:
    """(literal length, compiled pattern, placeholders, translation parts) longest first, and value words."""
    path = _DIR / f"{lang}_errors.json"
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    values = doc.get("values", {})
    patterns = []
    for english, translated in doc.get("templates", {}).items():
        parts = template_parts(english)
        regex, groups = [], {}
        for text, ph in parts:
            regex.append(re.escape(text))
            if ph in groups:  # the same value twice: it must be the same text
                regex.append(f"(?P=g{groups[ph]})")
            elif ph is not None:
                groups[ph] = len(groups)
                # Known words first, so "invalid {kind} {name!r}" splits "dataset name 'x'" after "name".
                known = "".join(re.escape(w) + "|" for w in sorted(values.get(ph, ()), key=len, reverse=True))
                regex.append(f"(?P<g{groups[ph]}>{known}.*?)")
        literal = sum(len(text) for text, _ in parts)
        if not literal:  # "{exc}" alone has nothing to translate and would match every message
            continue
        patterns.append((literal, re.compile("".join(regex), re.DOTALL), list(groups), template_parts(translated)))
    # The most specific template wins: "unknown dataset {name!r} (see ...)" before "unknown dataset {name!r}".
    patterns.sort(key=lambda p: -p[0])
    return patterns, values


def template_parts(template: str) -> list[tuple[str, str | None]]:
    """Split an f-string-style template into (literal text, following placeholder or None) pairs.

    `{{`/`}}` are literal braces; a placeholder is kept whole with its braces (`{', '.join(FORMATS)}`),
    skipping braces and quotes inside the expression.
    """
    parts, text, i = [], [], 0
    while i < len(template):
        c = template[i]
        if c in "{}" and template.startswith(c * 2, i):
            text.append(c)
            i += 2
        elif c == "{":
            end = _closing_brace(template, i)
            parts.append(("".join(text), template[i:end + 1]))
            text, i = [], end + 1
        else:
            text.append(c)
            i += 1
    parts.append(("".join(text), None))
    return parts


def _closing_brace(template: str, start: int) -> int:
    depth, quote = 0, None
    for j in range(start, len(template)):
        c = template[j]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if not depth:
                return j
    raise ValueError(f"unclosed placeholder in error template {template!r}")
