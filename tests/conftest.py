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


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty TUNELAB_HOME for one test."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    return home
