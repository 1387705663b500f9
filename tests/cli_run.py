"""Running the real `tunelab` command from a test, and reading its one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def tunelab(home: Path, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m tunelab ARGS` with TUNELAB_HOME=home, offline, from home's parent unless cwd is given."""
    full = {**os.environ, "TUNELAB_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})}  # env may go online
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True,
                          env=full, cwd=cwd or home.parent, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failed command's single `error: ...` line (asserts there is exactly one and no traceback)."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]
