"""Session-state defaults and the sidebar shared by every page."""

from __future__ import annotations

import streamlit as st

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError

# Every session key lives here, namespaced by page; widget keys double as test handles.
DEFAULTS: dict = {
    "data.dataset": None,
    "data.page": 0,
    "data.query": "",
    "sql.query": "",
    "compare.winner": None,
    "train.model": None,
    "train.data": None,
    "train.run": None,
    "play.history": [],
}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value.copy() if isinstance(value, (list, dict)) else value)


def sidebar() -> None:
    with st.sidebar:
        st.caption(f"Workspace: `{workspace.home()}`")
        active = jobs.running()
        if active:
            st.markdown("**Running jobs**")
            for j in active:
                st.caption(f"{j['kind'][:-1]} `{j['id']}` — {j.get('status')} {j.get('progress', '')}")
        else:
            st.caption("No jobs running.")


def show_error(exc: Exception) -> None:
    """One clear sentence for a user error; the traceback only for real bugs."""
    if isinstance(exc, TuneLabError):
        st.error(str(exc), icon=":material/error:")
    else:
        st.exception(exc)
