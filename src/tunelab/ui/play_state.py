"""The Playground's memory: its conversation survives a browser refresh, and it opens on the best run.

A refresh starts a new Streamlit session, so session state alone loses the chat. Each conversation gets
an id kept in the URL (`?chat=ID`) and is written to `playground/ID.json` in the workspace after every
change; a session that opens with that id reads it back. Which run the page opens on: the latest
completed run with the best before/after report (one that beat its base, by the largest gain in
ROUGE-L), not simply the newest.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path

import streamlit as st

from tunelab import workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import dumps, read_json_tolerant, write_atomic

FOLDER = "playground"
_ID = re.compile(r"[0-9a-f]{16}")


def _path(chat_id: str) -> Path:
    return workspace.subdir(FOLDER) / f"{chat_id}.json"


def restore() -> None:
    """Once per session: take the conversation named by ?chat=ID (a refresh or a shared link), else a new id."""
    if "play.chat_id" in st.session_state:
        return
    chat_id = st.query_params.get("chat") or ""
    doc = read_json_tolerant(_path(chat_id)) if _ID.fullmatch(chat_id) else None
    if isinstance(doc, dict) and isinstance(doc.get("log"), list):
        st.session_state["play.history"] = [ex for ex in doc["log"] if isinstance(ex, dict) and "user" in ex]
        if isinstance(doc.get("system"), str) and "play.system" not in st.session_state:
            st.session_state["play.system"] = doc["system"]
        st.session_state["play.saved"] = dumps(doc)
    else:
        chat_id = secrets.token_hex(8)
    st.session_state["play.chat_id"] = chat_id


def save(log: list[dict], system: str) -> None:
    """Write the conversation when it changed (answers still being written wait for the next save)."""
    chat_id = st.session_state.get("play.chat_id")
    if not chat_id:
        return
    if not log:  # cleared (or never started): nothing to bring back
        st.query_params.pop("chat", None)
        if st.session_state.pop("play.saved", None) is not None:
            with contextlib.suppress(OSError):
                _path(chat_id).unlink()
        return
    doc = {"log": [ex for ex in log if ex.get("replies") or ex.get("errors")], "system": system or ""}
    text = dumps(doc)
    if st.session_state.get("play.saved") != text:
        write_atomic(_path(chat_id), text)
        st.session_state["play.saved"] = text
    if st.query_params.get("chat") != chat_id:
        st.query_params["chat"] = chat_id


def _rank(run_id: str, newest_first: int) -> tuple:
    """How good a run's before/after report is: beat its base, then its ROUGE-L gain, then how new it is."""
    from tunelab.evals import auto

    try:
        s = auto.summary(run_id) or {}
    except (TuneLabError, OSError, ValueError, KeyError):
        s = {}
    base, tuned = s.get("base") or {}, s.get("tuned") or {}
    scored = s.get("status") == "completed" and base.get("rouge_l") is not None and tuned.get("rouge_l") is not None
    gain = tuned["rouge_l"] - base["rouge_l"] if scored else 0.0
    return (s.get("beat_base") is True, scored, gain, -newest_first)


def best_run(done: list[str]) -> str:
    """Of completed runs (newest first), the one the Playground opens on."""
    return max(enumerate(done), key=lambda p: _rank(p[1], p[0]))[1]
