"""Helpers for AppTest page tests: open a page through app.py, gather the text it shows."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 60  # generous: the test machine is shared; a page normally runs in well under a second


def open_page(page: str | None) -> AppTest:
    """Run app.py, switch to page (None: the default Home page) and check it ran cleanly."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions and alerts, one element per line."""
    kinds = ("markdown", "caption", "success", "error", "warning", "info")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def html(at: AppTest) -> str:
    """The bodies of every st.html element."""
    return " ".join(h.proto.body for h in at.get("html"))
