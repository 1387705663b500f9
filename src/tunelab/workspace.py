"""Where everything lives: every path TuneLab writes is resolved inside $TUNELAB_HOME."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tunelab.errors import TuneLabError

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_HOME = Path("data") / "workspace"
SUBDIRS = ("datasets", "models", "runs", "reports", "prompts", "generations", "exports", "export-jobs", "uploads",
           "servers", "regressions", "downloads", "playground", "sweeps")


def home() -> Path:
    """The workspace root: $TUNELAB_HOME, or ./data/workspace; created on first use."""
    root = Path(os.environ.get("TUNELAB_HOME") or DEFAULT_HOME).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TuneLabError(f"cannot create the workspace {root}: {exc.strerror}") from None
    return root


def validate_name(name: str, kind: str = "name") -> str:
    """Return name if it is a safe NAME (`[A-Za-z0-9_.-]{1,64}`, not `.`/`..`), else raise."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise TuneLabError(
            f"invalid {kind} {name!r}: use 1-64 letters, digits, '_', '.' or '-' (no slashes)"
        )
    return name


def path(*parts: str) -> Path:
    """A path inside the workspace; refuses anything that would escape it."""
    root = home()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise TuneLabError(f"path {'/'.join(parts)!r} is outside the workspace {root}")
    return target


def discard(d: Path) -> None:
    """Remove a job's or a run's folder: renamed into .trash first (one atomic step, so no reader ever lists a
    half-removed folder), then deleted."""
    trash = path(".trash")
    trash.mkdir(exist_ok=True)
    gone = trash / f"{d.parent.name}-{d.name}-{os.getpid()}-{os.urandom(3).hex()}"
    os.replace(d, gone)
    shutil.rmtree(gone, ignore_errors=True)


def subdir(kind: str) -> Path:
    """One of the workspace's top-level folders (datasets, models, runs, ...), created."""
    if kind not in SUBDIRS:
        raise ValueError(f"unknown workspace folder {kind}")
    d = path(kind)
    d.mkdir(parents=True, exist_ok=True)
    return d


def output_path(user_path: str | os.PathLike) -> Path:
    """Resolve a user-given output path (export target): relative paths land in exports/.

    Absolute paths are accepted only inside the workspace, so nothing is written elsewhere.
    """
    p = Path(user_path).expanduser()
    if not p.is_absolute():
        p = subdir("exports") / p
    p = p.resolve()
    root = home()
    if root not in p.parents:
        raise TuneLabError(f"output path {str(user_path)!r} is outside the workspace {root}")
    return p
