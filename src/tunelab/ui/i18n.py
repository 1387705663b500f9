"""`t()` for pages: the session's language, chosen in the sidebar and remembered in the URL."""

from __future__ import annotations

import streamlit as st

from tunelab import i18n


def lang() -> str:
    if "lang" not in st.session_state:
        # Remembered across refreshes in the URL (?lang=zh); otherwise follow the browser.
        st.session_state["lang"] = i18n.from_locale(st.query_params.get("lang") or _browser_locale())
    return st.session_state["lang"]


def _browser_locale() -> str | None:
    try:
        return st.context.locale
    except Exception:  # AppTest and older runtimes have no browser context
        return None


def t(text: str, **fmt) -> str:
    """text translated into the session's language."""
    return i18n.translate(text, lang(), **fmt)


def tn(singular: str, plural: str, n: int, **fmt) -> str:
    """t() of the English form that fits n (1: singular, else plural); {n} is filled in too.

    Each form has its own catalogue entry, so a language without plurals maps both to one text.
    """
    return t(singular if n == 1 else plural, n=n, **fmt)


def t_error(message: str) -> str:
    """A user error's message (str(TuneLabError), a job's recorded error) in the session's language."""
    return i18n.translate_error(message, lang())


def language_switch() -> None:
    """The sidebar language picker; the choice is kept in the URL so a refresh keeps it."""
    current = lang()
    # Every run, not only on a switch: moving to another page drops the URL's query, and the
    # language must survive a refresh there too (and be part of any link copied from it).
    if st.query_params.get("lang") != current:
        st.query_params["lang"] = current
    st.session_state["ui.lang"] = current
    st.selectbox(t("Language"), list(i18n.LANGS), format_func=i18n.LANGS.get, key="ui.lang",
                 on_change=_switch)


def _switch() -> None:
    # A callback runs before the script, so the whole page renders in the new language.
    choice = st.session_state["ui.lang"]
    st.session_state["lang"] = choice
    st.query_params["lang"] = choice
