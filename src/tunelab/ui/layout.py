"""Session-state defaults and the sidebar shared by every page."""

from __future__ import annotations

import streamlit as st

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError
from tunelab.ui.i18n import language_switch, t, t_error

# Every session key lives here, namespaced by page; widget keys double as test handles.
DEFAULTS: dict = {
    "data.dataset": None,
    "data.version": None,
    "data.page": 1,
    "data.page_size": 20,
    "data.record": 0,
    "data.query": "",
    "data.field": "any",
    "data.upload_name": "",
    "data.upload_format": "auto",
    "data.upload_map": "",
    "data.clean_dedup": "no",
    "data.clean_strip": False,
    "data.clean_drop_empty": False,
    "data.clean_redact": False,
    "data.clean_redact_exclude": "",  # keywords/regexes, one per line: records holding one stay as written
    "data.clean_redact_skip": [],  # ids of records the user chose to leave as written
    "data.clean_keep_near": [],  # ids of near duplicates the user chose to keep
    "data.clean_max_tokens": 0,
    "data.split_test": 0.1,
    "data.split_seed": 42,
    "data.export_format": "alpaca",
    "stats.dataset": None,
    "stats.version": None,
    "stats.model": None,
    "sql.query": "",
    "compare.winner": None,
    "train.model": None,
    "train.data": None,
    "train.run": None,
    "play.history": [],
    "play.engine": "auto",
    "gen.batch": None,
}


def from_url(key: str, param: str, convert=str) -> None:
    """Take a session key's value from the URL (?param=...) whenever the URL holds one this session did not write.

    A refresh starts a new session, so the page comes back to what the link says; after that the widgets own
    the value and to_url() writes it back. Not only on the session's first run: a first run can start before
    the browser's query string is known, and a later run must still honour the link.
    """
    seen = st.session_state.setdefault("ui.url_seen", {})
    value = st.query_params.get(param)
    if value is None or (seen.get(param) == value and key in st.session_state):
        return
    seen[param] = value
    try:
        st.session_state[key] = convert(value)
    except ValueError:
        pass  # a hand-edited link: the page's default stands


def to_url(**params) -> None:
    """Keep the page's selections in the URL so a refresh or a shared link shows the same thing."""
    seen = st.session_state.setdefault("ui.url_seen", {})
    for param, value in params.items():
        text = "" if value is None else str(value)
        seen[param] = text
        if st.query_params.get(param) != text:
            st.query_params[param] = text


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value.copy() if isinstance(value, (list, dict)) else value)


JOBS_POLL_S = 2.0  # how often the sidebar re-reads the jobs' status.json files


def sidebar() -> None:
    with st.sidebar:
        language_switch()
        st.caption(f"{t('Workspace')}: `{workspace.home()}`")
        running_jobs()


@st.fragment(run_every=JOBS_POLL_S)
def running_jobs() -> None:
    """The active jobs, re-read from disk every JOBS_POLL_S: a finished job leaves without a reload."""
    active = jobs.active_jobs()
    if not active:
        st.caption(t("No jobs running."))
        return
    st.markdown(f"**{t('Running jobs')}** ({len(active)})")
    for j in active:
        kind = t(jobs.KIND_LABELS.get(j["kind"], j["kind"]))
        progress = f" {j['progress']}" if j.get("progress") else ""
        where = f" · {j['url']}" if j.get("url") else ""  # a server: where it answers
        st.caption(f"{kind} `{j['id']}` — {t(j.get('status') or 'queued')}{progress}{where}")


def show_error(exc: Exception) -> None:
    """One clear sentence for a user error; the traceback only for real bugs."""
    if isinstance(exc, TuneLabError):
        st.error(t_error(str(exc)), icon=":material/error:")
    else:
        st.exception(exc)
