"""Safe file names for browser uploads (used by `uploads` to stage files and by `importer` to match a
dataset_info.json entry to the staged file it names)."""

from __future__ import annotations

import re

MAX_NAME = 100


def safe_filename(filename: str) -> str:
    """The last path component of filename with anything but `[A-Za-z0-9_.-]` replaced by `_`."""
    base = re.split(r"[\\/]", str(filename))[-1]
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).lstrip(".")[-MAX_NAME:]
    return clean or "upload"
