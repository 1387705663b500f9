"""JSON Lines: one record per line (also the answer for an empty file or a `{` file that is not one object)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import BadRecord, Columns, Item, open_regular
from tunelab.data.formats.jsonobject import whole_object
from tunelab.data.formats.kinds import normaliser
from tunelab.data.formats.registry import Format, Probe, register


def lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines of a binary file; an over-long line comes back as None (skipped in chunks)."""
    n = 0
    while True:
        line = fh.readline(limits.MAX_RECORD + 1)
        if not line:
            return
        n += 1
        if len(line) > limits.MAX_RECORD and not line.endswith(b"\n"):
            while (rest := fh.readline(limits.CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield n, None
            continue
        if n == 1 and line.startswith(limits.BOM):
            line = line[len(limits.BOM):]
        yield n, line


def read_jsonl(fh: IO[bytes], kind: str, cols: Columns) -> Iterator[Item]:
    """One JSON record per line; blank lines are ignored."""
    norm = normaliser(kind)
    loads = json.loads
    for n, line in lines(fh):
        if line is None:
            yield n, f"record is larger than {limits.MAX_RECORD >> 20} MB"
            continue
        text = line.decode("utf-8", "surrogateescape")
        if not text.strip():
            continue
        try:
            obj = loads(text)
        except json.JSONDecodeError as exc:
            yield n, f"malformed JSON: {exc.msg} (column {min(exc.pos, len(text.rstrip())) + 1})"
            continue
        except RecursionError:
            yield n, "malformed JSON: nested too deeply"
            continue
        try:
            yield n, norm(obj, cols)
        except BadRecord as exc:
            yield n, str(exc)


def first_line_is_json(path: Path) -> bool:
    with open_regular(path) as fh:
        for _, line in lines(fh):
            if line is None:
                return False
            if line.strip():
                try:
                    return isinstance(json.loads(line.decode("utf-8", "surrogateescape")), dict)
                except (json.JSONDecodeError, RecursionError):
                    return False
    return False


def _sniff(p: Probe) -> bool:
    if p.suffix in (".jsonl", ".ndjson") or p.first == b"":
        return True
    return p.first == b"{" and (first_line_is_json(p.path) or not whole_object(p.path))


def _read(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
    with open_regular(path) as fh:
        yield from read_jsonl(fh, kind, cols)


FORMAT = register(Format("jsonl", _read, sniff=_sniff, order=20))
