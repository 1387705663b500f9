"""Small file helpers shared by every store: atomic writes, tolerant JSONL reads, file locks (filelock)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def finite(obj: Any) -> Any:
    """obj with every NaN or infinite float replaced by None (JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """The one JSON encoder for documents TuneLab prints or writes: valid JSON, NaN/inf as null."""
    kw.setdefault("ensure_ascii", False)
    kw.setdefault("default", str)
    return json.dumps(finite(obj), allow_nan=False, **kw)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, dumps(obj, indent=2))


_WARNED: set[str] = set()


def warn_damaged(path: Path, problem: str) -> None:
    """Say once per process, in one line on stderr, that a damaged file is skipped; the rest keeps working."""
    key = str(path)  # one line per file, whatever else is wrong with it
    if key not in _WARNED:
        _WARNED.add(key)
        sys.stderr.write(f"warning: skipping damaged file {path}: {problem}\n")


def read_json_tolerant(path: Path, default: Any = None) -> Any:
    """read_json for state files one damaged copy must not break: an unreadable file warns and reads as default."""
    try:
        return read_json(path, default)
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        warn_damaged(path, _first_line(exc))
        return default


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one line; a single write() of a short line is atomic enough for readers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Read every complete line; a half-written last line (a writer mid-append) is skipped.

    A damaged line (not JSON, not an object, not UTF-8) is skipped with one warning naming the file.
    """
    rows: list[dict] = []
    bad = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    row = None
                if isinstance(row, dict):
                    rows.append(row)
                elif line.strip():
                    bad += 1
    except FileNotFoundError:
        pass
    if bad:
        warn_damaged(path, f"{bad} line(s) are not JSON objects")
    return rows


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held on path for the duration of the block (cross-process).

    filelock's FileLock (flock on POSIX, msvcrt on Windows); a new FileLock per call, so two blocks
    on the same path in one process exclude each other as two processes do.
    """
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path), thread_local=False, poll_interval=0.01):
        yield
