"""Files uploaded in the browser: saved under <workspace>/uploads/ with a safe name, then imported."""

from __future__ import annotations

import re
from pathlib import Path

from tunelab import workspace
from tunelab.data.importer import import_path
from tunelab.errors import TuneLabError

MAX_NAME = 100


def safe_filename(filename: str) -> str:
    """The last path component of filename with anything but `[A-Za-z0-9_.-]` replaced by `_`."""
    base = re.split(r"[\\/]", str(filename))[-1]
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).lstrip(".")[-MAX_NAME:]
    return clean or "upload"


def save_upload(filename: str, data: bytes) -> Path:
    """Write uploaded bytes to uploads/<safe name> (replacing an earlier upload of that name)."""
    target = workspace.subdir("uploads") / safe_filename(filename)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def import_upload(filename: str, data: bytes, name: str | None = None, fmt: str = "auto",
                  mapping: dict | None = None) -> dict:
    """Save an upload and import it (see importer.import_path for the result's shape).

    Args:
        filename: the name the browser gave; only its sanitised last component is used.
        data: the file's bytes.
        name: dataset name (default: the file's stem).
        fmt: auto, alpaca, sharegpt, messages, csv or parquet.
        mapping: {field: column} for CSV/Parquet.

    Returns:
        The import result.
    """
    if not data:
        raise TuneLabError(f"the uploaded file {filename!r} is empty")
    return import_path(str(save_upload(filename, data)), name or None, fmt, mapping)
