"""Translations for the dashboard: English source strings mapped to other languages.

Pages write English and wrap it in `ui.i18n.t(...)`; the catalog lives in locales/<lang>.json
(English text -> translation) so translators edit one flat file. Missing entries fall back to
English, and `missing()` lists them so a test can keep the catalog complete.
"""

from __future__ import annotations

import functools
import json
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
