"""Shared fixtures: every test runs against its own temporary workspace."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $TUNELAB_HOME under tmp_path; returns its path."""
    home = tmp_path / "workspace"
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
