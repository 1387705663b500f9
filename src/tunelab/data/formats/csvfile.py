"""CSV and TSV tables with a header row; columns mapped by name."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import BadRecord, Columns, Item, checked_columns, open_regular
from tunelab.data.formats.kinds import normaliser
from tunelab.data.formats.registry import Format, register
from tunelab.errors import TuneLabError


class _TooBig(Exception):
    """The CSV record being read passed limits.MAX_RECORD; its lines were skipped."""


class _RecordLines:
    """Text lines for csv.reader, bounded per record: once a record (which may span lines) passes
    limits.MAX_RECORD, raise _TooBig and skip the rest of that line, so no record is ever held whole.

    `n` counts the lines handed out or skipped; the reader calls `next_record()` between records.
    """

    def __init__(self, text: IO[str]):
        self.text, self.n, self.size = text, 0, 0

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        line = self.text.readline(limits.MAX_RECORD + 1)
        if not line:
            raise StopIteration
        self.n += 1
        self.size += len(line)
        if self.size > limits.MAX_RECORD:
            while not line.endswith(("\n", "\r")) and (line := self.text.readline(limits.CHUNK)):
                pass
            self.size = 0
            raise _TooBig
        return line

    def next_record(self) -> None:
        self.size = 0


def read_csv(fh: IO[bytes], cols: Columns, delimiter: str = ",") -> Iterator[Item]:
    """Rows of a CSV/TSV with a header; columns mapped by name (auto-mapped when not given)."""
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = _RecordLines(text)
    reader = csv.reader(lines, delimiter=delimiter)
    too_big = f"record is larger than {limits.MAX_RECORD >> 20} MB"
    try:
        header = next(reader)
    except StopIteration:
        return
    except _TooBig:
        raise TuneLabError(f"the CSV header cannot be read: it is larger than {limits.MAX_RECORD >> 20} MB") from None
    except csv.Error as exc:
        raise TuneLabError(f"the CSV header cannot be read: {exc}") from None
    cols = checked_columns(cols, header)
    norm = normaliser("auto")
    start = lines.n + 1
    while True:
        lines.next_record()
        try:
            row = next(reader)
        except StopIteration:
            return
        except _TooBig:
            yield start, too_big
            start = lines.n + 1
            continue
        except csv.Error as exc:
            yield start, f"malformed CSV: {exc}"
            start = lines.n + 1
            continue
        line, start = start, lines.n + 1
        if not row or row == [""]:
            continue
        if len(row) != len(header):
            yield line, f"row has {len(row)} values but the header has {len(header)} columns"
            continue
        try:
            yield line, norm(dict(zip(header, row)), cols)
        except BadRecord as exc:
            yield line, str(exc)


def _reader(delimiter: str):
    def read(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
        with open_regular(path) as fh:
            yield from read_csv(fh, cols, delimiter)
    return read


CSV = register(Format("csv", _reader(","), suffixes=(".csv",), typed=True, forced=True))
TSV = register(Format("tsv", _reader("\t"), suffixes=(".tsv",), typed=True))
