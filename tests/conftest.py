"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty TuneLab workspace (TUNELAB_HOME) for one test."""
    home = tmp_path / "workspace"
    home.mkdir()
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
