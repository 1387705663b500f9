"""Parquet files, row group by row group, refusing pages and rows over the limits before reading them."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterator

from tunelab.data.formats import limits
from tunelab.data.formats.base import Columns, Item, Lost, checked_columns, open_regular
from tunelab.data.formats.kinds import read_rows
from tunelab.data.formats.pages import oversized_page
from tunelab.data.formats.registry import Format, Probe, register
from tunelab.errors import TuneLabError


def read_parquet(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
    """Rows of a Parquet file, row group by row group, one record batch at a time.

    A row group that cannot be read (a corrupt page) or that holds a page over limits.MAX_PAGE is reported
    as lost and the other row groups are kept; a row over limits.MAX_RECORD is reported, not loaded.
    """
    import pyarrow.parquet as pq

    fh = open_regular(path)
    try:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise TuneLabError(f"{path.name} is not a readable Parquet file ({exc})") from None
        cols = checked_columns(cols, pf.schema_arrow.names) if kind == "auto" else cols
        yield from read_rows(_parquet_rows(pf, fh), kind, cols)
    finally:
        fh.close()


def _parquet_rows(pf, fh: IO[bytes]) -> Iterator[Any]:
    """Rows (dicts) of every readable row group; Lost items for the rest, in row order."""
    meta, start = pf.metadata, 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        big = oversized_page(meta.row_group(g), fh)
        if big:
            yield Lost.of(f"rows {start}-{start + rows - 1} not read: {big}", rows)
            start += rows
            continue
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=1000, row_groups=[g], use_threads=False):
                over = row_sizes(batch) > limits.MAX_RECORD
                if not over.any():
                    yield from batch.to_pylist()
                else:
                    for i, too_big in enumerate(over.tolist()):
                        yield (Lost(f"record is larger than {limits.MAX_RECORD >> 20} MB") if too_big
                               else batch.slice(i, 1).to_pylist()[0])
                done += batch.num_rows
        except Exception as exc:  # a corrupt page: ArrowInvalid, OSError (bad compressed data)...
            lost = rows - done
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            yield Lost.of(f"rows {start + done}-{start + rows - 1} not read: row group {g} is "
                          f"corrupt ({first})", lost)
        start += rows


def row_sizes(batch) -> "Any":
    """Bytes of text per row of an Arrow record batch (strings and binaries, nested ones too)."""
    import numpy as np

    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        total += _sizes(column)
    return total


def _sizes(arr) -> "Any":
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t):
        return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = _sizes(arr.flatten())
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=child, minlength=len(arr)).astype(np.int64)
    if pa.types.is_struct(t):
        out = np.zeros(len(arr), dtype=np.int64)
        for child in arr.flatten():
            out += _sizes(child)
        return out
    return np.full(len(arr), 8, dtype=np.int64)


def _sniff(p: Probe) -> bool:
    return p.head == b"PAR1"


FORMAT = register(Format("parquet", read_parquet, suffixes=(".parquet", ".pq"), sniff=_sniff, typed=True,
                         forced=True, order=10))
