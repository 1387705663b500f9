"""The one guard for every file a user asks TuneLab to write: exports, report files, curves CSVs.

`data export`, `reports export`, `runs curves --csv` and `export RUN OUT` (adapter, merged, GGUF,
Ollama) all resolve their OUT here (`target`) and write through `staged`:
- inside the workspace (relative paths land in exports/), never in TuneLab's own folders (datasets/,
  runs/, reports/, models/ and the model cache, ...: `STATE_DIRS`), a hidden folder, or onto a file at
  the workspace root (state files); a symlink that leads there is followed first, so it is refused too;
- never over an existing file or folder unless the caller passes force (`--force`);
- under a temporary name in the same folder, renamed over the target at the end: a reader never
  sees half a file, a killed export leaves only a temp name, and an existing target that shares
  its inode with a run's checkpoint (published adapters are hard links) is replaced, never written
  through.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError

# Workspace folders that hold TuneLab's own state; "cache" is the Hugging Face datasets cache.
STATE_DIRS = frozenset(workspace.SUBDIRS) - {"exports"} | {"cache"}


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def target(out: str | os.PathLike, force: bool = False) -> Path:
    """The resolved path for a user's OUT, or one line saying why it is refused.

    Args:
        out: the path given (relative: under the workspace's exports/).
        force: replace an existing file or folder there.
    """
    p = workspace.output_path(out)  # inside the workspace, symlinks resolved
    out = str(out)
    root = workspace.home()
    parts = p.relative_to(root).parts
    top = parts[0] if parts else "."
    cache = os.environ.get("TUNELAB_MODEL_CACHE")
    if top in STATE_DIRS or top.startswith(".") or (cache and _inside(p, Path(cache).expanduser().resolve())):
        raise TuneLabError(f"cannot export to {out!r}: it lies in {top}/, where TuneLab keeps its own "
                           "files; give a name under exports/ (any relative path) instead")
    if len(parts) == 1 and (p.is_file() or p.suffix):
        raise TuneLabError(f"cannot export to {out!r}: files at the workspace root are TuneLab's own; give a "
                           "name under exports/ (any relative path) instead")
    if (p.exists() or p.is_symlink()) and not force:
        raise TuneLabError(f"{p} already exists: pass --force to replace it, or give another name")
    return p


@contextlib.contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """A temporary path next to dest (nothing created there yet); whatever the body leaves at it,
    a file or a folder, replaces dest by rename at the end. On an error it is removed and dest is untouched."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    old = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
    try:
        yield tmp
        if not tmp.exists():
            raise TuneLabError(f"nothing was written for {dest}")
        if dest.is_dir() and not dest.is_symlink():
            os.replace(dest, old)  # a folder cannot be renamed over: move it aside first
        os.replace(tmp, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        _remove(tmp)
        raise
    finally:
        _remove(old)


@contextlib.contextmanager
def write_file(dest: Path, binary: bool = False) -> Iterator[IO]:
    """A file opened for streaming writes under a temporary name, renamed over dest at the end."""
    if dest.is_dir():
        raise TuneLabError(f"{dest} is a folder; give a file name to write to")
    with staged(dest) as tmp, open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
        yield fh


def write_text(dest: Path, text: str) -> Path:
    """Write text to dest through a temporary name; returns dest."""
    with write_file(dest) as fh:
        fh.write(text)
    return dest


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _sweep(dest: Path) -> None:
    """Temp names an export killed here left behind (their writer's pid is gone)."""
    for p in dest.parent.glob(f".{dest.name}.*.tmp"):
        try:
            pid = int(p.name[len(dest.name) + 2:].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not jobs.pid_alive(pid):
            _remove(p)


