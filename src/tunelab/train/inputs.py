"""Run inputs that name files: confined to the run's own folder, checked before a run folder exists."""

from __future__ import annotations

import re

from tunelab.errors import TuneLabError

RESUME_RE = re.compile(r"^step-[0-9]{1,9}$")


def check_resume_from(value: str | None) -> str:
    """resume_from as given when it is "", "last" or "step-N" (one of the run's own checkpoints), else one line.

    An absolute path or `..` would load a checkpoint from outside the workspace
    (`run_dir / "checkpoints" / resume_from` follows an absolute path), so neither is ever accepted.
    """
    value = value or ""
    if value in ("", "last") or RESUME_RE.match(value):
        return value
    raise TuneLabError(f"resume_from {value!r} is not 'last' or a checkpoint name such as step-20: a run resumes "
                       "only from its own checkpoints")
