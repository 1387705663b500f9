"""One JSON object holding one record (a LLaMA-Factory dataset_info.json is refused: it is imported by name)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import Columns, Item, open_regular
from tunelab.data.formats.kinds import read_rows
from tunelab.data.formats.registry import Format, Probe, register
from tunelab.errors import TuneLabError


def whole_object(path: Path) -> bool:
    """True when the file is one (pretty-printed) JSON object; only tried on small files."""
    return load_object(path) is not None


def load_object(path: Path) -> dict | None:
    """The file as one JSON object, or None (also for files too big to be one)."""
    with open_regular(path) as fh:
        if os.fstat(fh.fileno()).st_size > limits.MAX_RECORD:
            return None
        data = fh.read(limits.MAX_RECORD + 1)
    try:
        obj = json.loads(data.removeprefix(limits.BOM).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def is_dataset_info(path: Path, obj: dict | None = None) -> bool:
    """A LLaMA-Factory dataset_info.json: by name, or an object of entries naming files/hubs."""
    if path.name == "dataset_info.json":
        return True
    obj = obj if obj is not None else load_object(path)
    keys = ("file_name", "hf_hub_url", "ms_hub_url", "script_url", "om_hub_url")
    return bool(obj) and all(isinstance(v, dict) and any(k in v for k in keys) for v in obj.values())


def _read(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
    obj = load_object(path)
    if is_dataset_info(path, obj):
        raise TuneLabError(f"{path.name} is a LLaMA-Factory dataset_info.json; import it by that name")
    return read_rows([obj], kind, cols)


def _sniff(p: Probe) -> bool:
    return p.first == b"{" and whole_object(p.path)


FORMAT = register(Format("object", _read, sniff=_sniff, order=40))
