"""Paging through a dataset version: DuckDB in-process over its Parquet file.

The shared in-memory DuckDB database and the SQL helpers here are also what search (its scan
fallback and hit fetching) reads Parquet through.
"""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb

from tunelab.data import store
from tunelab.data.schema import FIELDS, PREFERENCE_FIELDS, PUBLIC_FIELDS, SCHEMA, PublicRecord, public
from tunelab.errors import TuneLabError


@functools.lru_cache(maxsize=1)
def _memory_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache=true")  # version files never change once written
    return con


def reader() -> duckdb.DuckDBPyConnection:
    """A cursor on one shared in-memory database: a fresh connect() costs 25+ ms, a cursor ~0."""
    return _memory_db().cursor()


def sql_str(value: str | Path) -> str:
    """value as a quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


@functools.lru_cache(maxsize=256)
def _columns(path: str, stamp: tuple[int, int]) -> frozenset[str]:
    import pyarrow.parquet as pq

    return frozenset(pq.read_schema(path).names)


def fields_sql(path: Path, fields: tuple[str, ...] = FIELDS) -> str:
    """A select list of fields from a version file; a field an older version lacks reads as NULL."""
    try:
        st = Path(path).stat()
        have = _columns(str(path), (st.st_ino, st.st_mtime_ns))
    except OSError:
        have = frozenset(FIELDS)  # let DuckDB name the problem with the file
    return ", ".join(f if f in have else f"NULL::{_sql_type(f)} AS {f}" for f in fields)


def _sql_type(field: str) -> str:
    return "BOOLEAN" if SCHEMA.field(field).type == "bool" else "VARCHAR"


def select(path: Path, where: str = "", order: str = "") -> str:
    """SQL reading the public fields (and preference fields) of a version file, with
    file_row_number available."""
    cols = fields_sql(path, (*PUBLIC_FIELDS, *PREFERENCE_FIELDS))
    return f"SELECT {cols} FROM read_parquet({sql_str(path)}, file_row_number=true) {where} {order}"


def records(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> list[PublicRecord]:
    """Rows of a query over public fields, as public records."""
    cur = con.execute(query, params or [])
    names = [d[0] for d in cur.description]
    return [public(dict(zip(names, row))) for row in cur.fetchall()]


def _total(name: str, version: int) -> int:
    return next(e["records"] for e in store.manifest(name)["versions"] if e["version"] == version)


def show(name: str, offset: int = 0, limit: int = 20, version: int | None = None) -> dict:
    """One page of records.

    Args:
        name: dataset name.
        offset: index of the first record (0-based).
        limit: page size.
        version: dataset version (default: head).

    Returns:
        {"total": int, "records": [public records]}.
    """
    if offset < 0 or limit < 0:
        raise TuneLabError("--offset and --limit must be zero or more")
    version = store.resolve_version(name, version)  # once: a concurrent commit may move the head
    path = store.version_path(name, version)
    # A file_row_number range lets DuckDB skip whole row groups; LIMIT/OFFSET would decode them.
    where = f"WHERE file_row_number >= {int(offset)} AND file_row_number < {int(offset) + int(limit)}"
    with reader() as con:
        page = records(con, select(path, where, "ORDER BY file_row_number"))
    return {"total": _total(name, version), "records": page}
