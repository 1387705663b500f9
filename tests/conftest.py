"""Shared fixtures: every test gets its own empty workspace; converted models are shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Converting a shipped GGUF model takes 20-50 s: convert once per machine, not once per test.
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fresh_data_caches():
    """Clear st.cache_data between tests: its keys are (dataset, version), and every test has its
    own workspace holding a different `toy` v1 — one dashboard process only ever has one workspace."""
    yield
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty TUNELAB_HOME for one test."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A folder with a 2-layer random Llama plus SmolLM2's tokenizer and chat template (loads in ~1 s).

    For tests that need the real code paths (templates, padding, streaming, serving) but not good text.
    """
    import tiny_model as builder

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    return str(builder.build(path, width=64, tied=False, max_positions=1024, init_range=0.5))
