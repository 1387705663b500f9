"""The `tunelab` command as a shell citizen: a reader that leaves early is not an error."""

from __future__ import annotations

import io
import sys

from tunelab.cli import main


class _GoneReader(io.TextIOBase):
    """stdout of `tunelab ... | head -1` once head has exited: every write raises EPIPE."""

    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_leaves_early_is_not_an_error(workspace, monkeypatch, capsys):
    """BrokenPipeError is an OSError: the file-system branch used to catch it first and print
    "error: file system error on: Broken pipe" with exit 1."""
    monkeypatch.setattr(sys, "stdout", _GoneReader())
    assert main(["data", "list", "--json"]) == 0
    assert "error" not in capsys.readouterr().err
