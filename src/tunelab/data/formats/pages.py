"""Parquet page headers, read without decompressing a page: how big is each page once decompressed?

Why not pyarrow: pyarrow (26) exposes the footer's column-chunk metadata (`total_uncompressed_size`,
offsets) but not the page headers, and the footer is written separately from the headers the
decompressor trusts: a crafted file can state a small chunk in its footer and a 300 MB page in its
header. The page index (OffsetIndex) is not exposed either, and it holds compressed sizes only. So
the headers (Thrift compact structs) are parsed here; only the two i32 sizes are kept.
"""

from __future__ import annotations

from typing import IO

from tunelab.data.formats import limits


def oversized_page(row_group, fh: IO[bytes]) -> str | None:
    """Why a row group cannot be read safely (a page over limits.MAX_PAGE uncompressed), or None.

    Reads only the page headers (Thrift compact structs) of each column chunk; a header that cannot
    be parsed leaves the decision to pyarrow, whose errors are caught as a corrupt row group.
    """
    for j in range(row_group.num_columns):
        col = row_group.column(j)
        begin = col.dictionary_page_offset if col.has_dictionary_page and col.dictionary_page_offset \
            else col.data_page_offset
        pos, end = begin, begin + col.total_compressed_size
        while pos < end:
            try:
                header_len, size, compressed = _page_header(fh, pos)
            except (ValueError, IndexError, OSError, RecursionError):
                break
            if size > limits.MAX_PAGE:
                return (f"a page of column `{col.path_in_schema}` holds {size >> 20} MB uncompressed, "
                        f"over the {limits.MAX_PAGE >> 20} MB page limit (records are limited to "
                        f"{limits.MAX_RECORD >> 20} MB)")
            if compressed < 0 or size < 0:
                break
            pos += header_len + compressed
    return None


def _page_header(fh: IO[bytes], pos: int) -> tuple[int, int, int]:
    """(header length, uncompressed size, compressed size) of the Parquet page header at pos."""
    for want in (4096, 1 << 20, 16 << 20):  # statistics can make a header long
        fh.seek(pos)
        buf = fh.read(want)
        try:
            fields: dict[int, int] = {}
            end = _skip_struct(buf, 0, 0, fields)
            return end, fields[2], fields[3]
        except IndexError:
            if len(buf) < want:  # the whole rest of the file was read: truly truncated
                raise
    raise ValueError("page header too long")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise ValueError("bad varint")


def _skip_struct(buf: bytes, pos: int, depth: int, top: dict | None = None) -> int:
    """Skip a Thrift compact struct; record the top level's i32 fields into `top`."""
    if depth > 32:
        raise ValueError("page header nested too deeply")
    field = 0
    while True:
        b = buf[pos]
        pos += 1
        if b == 0:
            return pos
        delta, kind = b >> 4, b & 0x0F
        if delta:
            field += delta
        else:
            raw, pos = _varint(buf, pos)
            field = (raw >> 1) ^ -(raw & 1)
        if top is not None and kind == 5:
            raw, pos = _varint(buf, pos)
            top[field] = (raw >> 1) ^ -(raw & 1)
            continue
        pos = _skip_value(buf, pos, kind, depth, in_field=True)


def _skip_value(buf: bytes, pos: int, kind: int, depth: int, in_field: bool = False) -> int:
    if kind in (1, 2):  # booleans: in a field header the type is the value; in a list, one byte
        return pos if in_field else pos + 1
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(buf, pos)[1]
    if kind == 7:
        return pos + 8
    if kind == 8:
        n, pos = _varint(buf, pos)
        return pos + n
    if kind in (9, 10):
        b = buf[pos]
        pos += 1
        n, elem = b >> 4, b & 0x0F
        if n == 15:
            n, pos = _varint(buf, pos)
        for _ in range(n):
            pos = _skip_value(buf, pos, elem, depth + 1)
        return pos
    if kind == 11:
        n, pos = _varint(buf, pos)
        if not n:
            return pos
        kv = buf[pos]
        pos += 1
        for _ in range(n):
            pos = _skip_value(buf, pos, kv >> 4, depth + 1)
            pos = _skip_value(buf, pos, kv & 0x0F, depth + 1)
        return pos
    if kind == 12:
        return _skip_struct(buf, pos, depth + 1)
    raise ValueError(f"unknown Thrift type {kind}")
