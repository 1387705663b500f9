"""A JSON array of records, decoded element by element over a sliding window."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import IO, Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import BadRecord, Columns, Item, open_regular
from tunelab.data.formats.kinds import normaliser
from tunelab.data.formats.registry import Format, Probe, register
from tunelab.errors import TuneLabError

# Strings (unrolled for speed on long ones), brackets and commas: enough to find where a
# malformed array element ends without parsing it.
_SCAN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"')
_WS = re.compile(r"\s*")


class _Window:
    """A sliding text window over a binary file, decoded as UTF-8 chunk by chunk."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf, self.pos, self.eof = "", 0, False
        self.more(first=True)

    def more(self, first: bool = False) -> bool:
        """Append the next chunk (as big as the window, so a huge element takes few reads)."""
        if self.eof:
            return False
        if self.pos:
            self.buf, self.pos = self.buf[self.pos:], 0
        data = self.fh.read(max(limits.CHUNK, len(self.buf)))
        if first and data.startswith(limits.BOM):
            data = data[len(limits.BOM):]
        self.buf += self.decoder.decode(data, final=not data)
        self.eof = not data
        return True

    def peek(self) -> str:
        """The next non-space character ("" at end of file), skipping whitespace."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def element_end(self) -> int | None:
        """Where the element at pos ends (before its `,` or the array's `]`), or None if unseen.

        Mismatched brackets are recovered like an HTML parser does: a closer pops openers until
        its own, so one broken record cannot swallow the records after it.
        """
        stack: list[str] = []
        for m in _SCAN.finditer(self.buf, self.pos):
            tok = m.group()
            if tok in "[{":
                stack.append("]" if tok == "[" else "}")
            elif tok in "]}":
                if tok not in stack:  # closes something outside this element: the array itself
                    return m.start()
                while stack.pop() != tok:
                    pass
                if not stack:
                    return m.end()
            elif tok == ",":
                if not stack:
                    return m.start()
            elif tok == '"':  # a string still open at the end of the window
                return None
        return None


def read_json_array(fh: IO[bytes], kind: str, cols: Columns) -> Iterator[Item]:
    """Elements of a top-level JSON array, decoded one by one with raw_decode over chunks."""
    norm = normaliser(kind)
    decode = json.JSONDecoder().raw_decode
    w = _Window(fh)
    if w.peek() != "[":
        raise TuneLabError("expected a JSON array of records")
    w.pos += 1
    index = 0
    while True:
        c = w.peek()
        if c == "]":
            return
        if c == "":
            yield index, "the file ends before the closing `]` of the array"
            return
        try:
            obj, end = decode(w.buf, w.pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            end = w.element_end()
            if end is None:  # the element runs past the window: read more and retry
                if len(w.buf) - w.pos <= limits.MAX_RECORD and w.more():
                    continue
                yield index, "malformed JSON: cannot find where this record ends; the rest was not read"
                return
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            w.pos = max(end, w.pos + 1)  # always move on, even past a lone stray `}`
            yield index, f"malformed JSON: {msg}"
        else:
            near_end = end == len(w.buf) or (not isinstance(obj, (dict, list, str)) and len(w.buf) - end < 64)
            if near_end and not w.eof:  # a number or literal may continue in the next chunk
                w.more()
                continue
            w.pos = end
            try:
                yield index, norm(obj, cols)
            except BadRecord as exc:
                yield index, str(exc)
        index += 1
        if w.peek() == ",":
            w.pos += 1


def _read(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
    with open_regular(path) as fh:
        yield from read_json_array(fh, kind, cols)


def _sniff(p: Probe) -> bool:
    return p.first == b"["


FORMAT = register(Format("json", _read, sniff=_sniff, order=30))
