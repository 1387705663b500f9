"""Deliberate caches for the pages: loaded models live in st.cache_resource, at most two at a time."""

from __future__ import annotations

import streamlit as st

from tunelab.models import generation


@st.cache_resource(max_entries=2, show_spinner=False)
def backend(spec: str):
    """A loaded generation backend, shared by every session (never mutated by a page)."""
    return generation.get_backend(spec)
