"""Model output shown as written: where Streamlit renders Markdown (st.table cells), escape it first.

A model's answer is data, not formatting: `**`, `#`, `[x](y)`, `$...$`, `:red[...]` or `<b>` in an
answer must appear as those characters, not as bold text, a heading, a link, LaTeX or a colour.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones that
# start Markdown, GitHub tables and Streamlit's own directives (`:material/x:`, `:red[...]`, `$...$`).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:=&\"'])")


def md(text: str | None) -> str:
    """text escaped so that Markdown shows every character of it literally."""
    if not text:
        return text or ""
    return _SPECIAL.sub(r"\\\1", str(text))
