"""Pickers that stay true to disk and to the URL: job status polling and ?param= selections."""

from __future__ import annotations

import streamlit as st

from tunelab import jobs

POLL_S = 2.0  # how often a picker re-reads its jobs' status.json while one of them is active


def changed(kind: str, shown: dict[str, str | None]) -> bool:
    """Whether the jobs of a kind on disk differ from those a picker shows (a status, a new or a removed job)."""
    now = {j["id"]: j.get("status") for j in jobs.list_jobs(kind)}
    return now != shown


def _poll(kind: str, shown: dict[str, str | None]) -> None:
    if changed(kind, shown):
        st.rerun()  # the whole page: the picker's labels and the view below are rebuilt from disk


def watch(kind: str, shown: dict[str, str | None], key: str, every: float = POLL_S) -> None:
    """While any job a picker lists is queued or running, poll their folders and rerun the page on a change.

    Args:
        kind: the jobs' folder (reports, generations...).
        shown: {job id: status} as the picker labelled them in this run.
        key: a name for the polling fragment, unique on the page.
        every: seconds between polls.
    """
    if not any(s in jobs.ACTIVE for s in shown.values()):
        return
    # A fragment defined per run: once nothing listed is active the next page run simply does not poll.
    st.fragment(_poll, run_every=every, key=key)(kind, dict(shown))


def choose(param: str, key: str, options: list, default) -> None:
    """Set session key to a valid option: this session's choice, else the URL's ?param=, else default."""
    if st.session_state.get(key) in options:
        return
    from_url = st.query_params.get(param)
    st.session_state[key] = from_url if from_url in options else default


def remember(param: str, value) -> None:
    """Put the selection in the URL (?param=value), so a refresh or a shared link opens it again."""
    if value is None:
        st.query_params.pop(param, None)
    elif st.query_params.get(param) != str(value):
        st.query_params[param] = str(value)
