"""Streaming readers for every input format, each yielding normalised records or per-record errors.

A reader yields `(line, item)` pairs: `line` is the 1-based line (JSONL, CSV) or the 0-based index
(JSON array, Parquet, Hugging Face rows); `item` is a record dict in the shape of
`tunelab.data.schema.SCHEMA` (without an id when the source has none) or, for a bad record, a
short reason a beginner can act on ("missing `output`"). Nothing holds more than one record (or
one chunk of a JSON array, one Parquet batch) in memory, so file size does not matter.

Text is decoded with `surrogateescape`: an invalid UTF-8 byte becomes a lone surrogate instead of
aborting the whole file, and the importer reports the record that holds it (see `text_problem`).

One module per container format (`jsonl`, `jsonarray`, `jsonobject`, `csvfile`, `parquet`), each
registering a `Format` (name, sniff, read, write) in `registry`; every module of this package is
imported here, so adding a format is adding one file. `records` and `kinds` turn a parsed object
into a record; `base` holds what they share; `limits` the size limits.
"""

from __future__ import annotations

import codecs
import importlib
import os
import pkgutil
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import (  # noqa: F401  (the package's public names)
    ALIASES, ASSISTANT, ASSISTANT_SIDE, FIELDS, FUNCTION, OBSERVATION, ROLE_ALIASES, SYSTEM, USER, USER_SIDE,
    BadRecord, Columns, Item, Lost, Tags, checked_columns, file_kind, open_regular, record_size)
from tunelab.data.formats.jsonl import lines as _lines
from tunelab.data.formats.jsonobject import is_dataset_info, load_object  # noqa: F401
from tunelab.data.formats.kinds import kto, normaliser, preference, read_rows  # noqa: F401
from tunelab.data.formats.pages import oversized_page
from tunelab.data.formats.records import (  # noqa: F401
    alpaca, auto_record, conversation, pairs_of, text_problem, turns_of)
from tunelab.data.formats.registry import REGISTRY, Format, Probe, by_content, by_suffix, register  # noqa: F401
from tunelab.errors import TuneLabError

# Every module of the package is imported, so each format module registers itself.
for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

KINDS = ("alpaca", "sharegpt", "messages")  # record layouts --format may force
# --format choices: auto, a record layout, or a container that --format may force.
FORMATS = ("auto", *KINDS, *sorted(f.name for f in REGISTRY.values() if f.forced))
# The limits, for reading; a test lowers them on `formats.limits`, which every reader reads.
CHUNK, MAX_RECORD, MAX_PAGE, BOM = limits.CHUNK, limits.MAX_RECORD, limits.MAX_PAGE, limits.BOM


_TEXT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".txt")


def oversized_in(path: Path) -> str | None:
    """Why a data file holds a record over the limits (checked in bounded memory), or None.

    Text files (also .gz/.bz2/.xz, whose size on disk says nothing) are scanned line by line: a
    line longer than limits.MAX_RECORD is part of a record longer than that. Parquet files are checked
    by their page headers.
    """
    import bz2
    import gzip
    import lzma

    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    suffix = path.suffix.lower()
    opener = openers.get(suffix)
    inner = Path(path.stem).suffix.lower() if opener else suffix
    if inner in (".parquet", ".pq") and not opener:
        import pyarrow.parquet as pq

        with open_regular(path) as fh:
            try:
                meta = pq.ParquetFile(fh).metadata
            except Exception:
                return None  # not Parquet after all: the loader says so
            for g in range(meta.num_row_groups):
                reason = oversized_page(meta.row_group(g), fh)
                if reason:
                    return reason
        return None
    if inner not in _TEXT_SUFFIXES:
        return None
    with open_regular(path) as raw:
        if not opener and os.fstat(raw.fileno()).st_size <= limits.MAX_RECORD:
            return None
        fh = opener(raw) if opener else raw
        try:
            for _, line in _lines(fh):
                if line is None:
                    return f"a record is larger than {limits.MAX_RECORD >> 20} MB (the limit per record)"
        except (OSError, EOFError, lzma.LZMAError):
            return None  # a broken archive: the loader reports it
    return None


def sniff(path: Path) -> str:
    """The container of a file: jsonl, json (array), object (one JSON object), csv, tsv or parquet."""
    suffix = path.suffix.lower()
    claimed = by_suffix(suffix)
    if claimed is not None:
        return claimed.name
    with open_regular(path) as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise TuneLabError(f"{path.name} is UTF-16 text: save it as UTF-8 and import again")
        fh.seek(0)
        first = _first_char(fh)
    found = by_content(Probe(path, suffix, head, first))
    if found is not None:
        return found.name
    raise TuneLabError(
        f"cannot tell the format of {path.name}: it is not JSON, JSONL, CSV or Parquet "
        f"(give --format, or a .csv/.jsonl/.json/.parquet file)"
    )


def _first_char(fh) -> bytes:
    data = fh.read(limits.CHUNK).removeprefix(limits.BOM)
    while data:
        stripped = data.lstrip()
        if stripped:
            return stripped[:1]
        data = fh.read(limits.CHUNK)
    return b""


def read_file(path: Path, fmt: str = "auto", cols: Columns | None = None) -> tuple[str, Iterator[Item]]:
    """Open path and return (container, items). fmt: one of FORMATS."""
    if fmt not in FORMATS:
        raise TuneLabError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    cols = cols or Columns()
    open_regular(path).close()  # a FIFO or device is refused here, before any reader waits on it
    container = fmt if fmt in REGISTRY else sniff(path)
    if container == "csv" and path.suffix.lower() == ".tsv":
        container = "tsv"
    kind = fmt if fmt in KINDS else "auto"
    chosen = REGISTRY[container]
    if chosen.typed:
        cols = replace(cols, coerce=True)  # typed columns: a number in a text column is fine
    return container, chosen.read(path, kind, cols)
