"""The SQL sandbox: one read-only query over every dataset's head, each a table of its name.

DuckDB in-process over the Parquet files, with external access cut and the configuration locked
(only the datasets folder is readable), a time limit, a memory limit and no temporary directory.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import threading

import duckdb

from tunelab import workspace
from tunelab.data import store
from tunelab.data.browse import fields_sql
from tunelab.data.browse import sql_str as _sql_str
from tunelab.data.schema import FIELDS
from tunelab.errors import TuneLabError
from tunelab.jsonio import warn_damaged

SQL_FIELDS = FIELDS  # the columns of each dataset's table
QUERY_WORDS = {"SELECT", "WITH", "FROM", "VALUES", "TABLE", "DESCRIBE", "SHOW", "SUMMARIZE"}
_LEADING = re.compile(r"^(\s|--[^\n]*\n?|/\*.*?\*/|\()*", re.S)  # comments, brackets


def _check_query(query: str) -> None:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        _explain(exc, query)
        raise TuneLabError(_one_line(exc)) from None
    if len(statements) != 1:
        raise TuneLabError(f"only one query is allowed, got {len(statements)} statements")
    # DuckDB parses some PRAGMAs (database_list, ...) into SELECTs, so the first word counts too.
    words = _LEADING.sub("", query).split(None, 1)
    first = words[0].upper() if words else ""
    if statements[0].type != duckdb.StatementType.SELECT or first.rstrip(";(") not in QUERY_WORDS:
        kind = statements[0].type.name if statements[0].type != duckdb.StatementType.SELECT else first
        raise TuneLabError(f"read-only: only SELECT/WITH queries are allowed, not {kind}")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


_MISSING_TABLE = re.compile(r'Table with name "?(.+?)"? does not exist')


def _unquoted(name: str, query: str) -> bool:
    """Whether query names the dataset outside double quotes (where '-' or '.' split the name)."""
    outside = re.sub(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'', " ", query)  # drop quoted names and strings
    return re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w])", outside, re.I) is not None


def _explain(exc: Exception, query: str) -> None:
    """Raise a one-line TuneLabError naming the fix for the two mistakes a dataset name invites.

    A name with '-' or '.' (`alpaca-train`) must be quoted in SQL, or DuckDB reads a subtraction
    or a schema and answers with a bare parser error; a table that does not exist gets the real
    tables listed instead of DuckDB's guess among its own system views.
    """
    names = [d["name"] for d in _tables()]
    special = sorted((n for n in names if not re.fullmatch(r"[A-Za-z_]\w*", n) and _unquoted(n, query)),
                     key=len, reverse=True)
    if special and isinstance(exc, (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)):
        name = special[0]
        raise TuneLabError(f"write the table {name} in double quotes: \"{name}\" (a name with '-' or '.' "
                           "is not a plain SQL identifier)") from None
    missing = _MISSING_TABLE.search(str(exc)) if isinstance(exc, duckdb.CatalogException) else None
    if missing:
        wanted = missing.group(1)
        if wanted in _DAMAGED:  # its file could not be read (the warning above named it)
            raise TuneLabError(f"table {wanted} is unavailable: its file {_DAMAGED[wanted]} is damaged") from None
        names = [n for n in names if n not in _DAMAGED]
        close = difflib.get_close_matches(wanted.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
        tables = ", ".join(_ident(n) for n in names[:30]) + (f" … (+{len(names) - 30})" if len(names) > 30 else "") \
            or "(none)"
        if close:
            guess = _ident(next(n for n in names if n.lower() == close[0]))
            raise TuneLabError(f"there is no table {wanted}; did you mean {guess}? The tables are: {tables}") from None
        raise TuneLabError(f"there is no table {wanted}; the tables are: {tables}") from None


def _ident(name: str) -> str:
    """A dataset name as it must be written in SQL: quoted unless it is a plain identifier."""
    return name if re.fullmatch(r"[A-Za-z_]\w*", name) else f'"{name}"'


# Bounds of one query (the CLI's --timeout, the SQL page and TUNELAB_SQL_* all end up here).
SQL_TIMEOUT_S = 30.0
SQL_MAX_ROWS = 1_000_000  # most rows one query may return (--limit)
# After the interrupt, how long to wait for DuckDB to notice it: a single scalar call (a huge
# repeat()) only checks between chunks, so the caller gets its answer at the deadline regardless.
INTERRUPT_GRACE_S = 2.0
# Column types DuckDB's Python client converts only with pytz installed: returned as text.
_TEXT_TYPES = ("WITH TIME ZONE",)


def sql_timeout(seconds: float | str | None = None) -> float:
    """The statement time limit: seconds if given, else $TUNELAB_SQL_TIMEOUT, else 30 s."""
    value = seconds if seconds is not None else os.environ.get("TUNELAB_SQL_TIMEOUT") or SQL_TIMEOUT_S
    try:
        limit = float(value)
    except (TypeError, ValueError):
        limit = float("nan")
    if not 0 < limit <= 86400:  # also refuses NaN
        raise TuneLabError(f"the SQL time limit must be between 0 and 86400 seconds, got {value!r}")
    return limit


def sql_memory_limit() -> str:
    """DuckDB's memory_limit for a query: $TUNELAB_SQL_MEMORY_LIMIT, else a quarter of RAM, at most 4 GB.

    DuckDB's own default is 80% of the machine, so one query could starve the dashboard and a
    training run; this limit covers DuckDB's buffers (joins, sorts, aggregates), not the memory of
    a single scalar call.
    """
    value = os.environ.get("TUNELAB_SQL_MEMORY_LIMIT")
    if value:
        return value
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return f"{max(256, min(4096, total // 4 >> 20))}MB"


_DAMAGED: dict[str, object] = {}  # dataset -> its head file that could not be read (sandbox())


def sandbox() -> duckdb.DuckDBPyConnection:
    """An in-memory connection where each dataset's head is a view, locked against file access.

    Datasets whose names differ only in case (`Foo`, `foo`: DuckDB identifiers are
    case-insensitive, quoted or not) get no view, and neither does one whose file cannot be read,
    so every other dataset stays queryable; a new name that clashes is refused at import.
    """
    _DAMAGED.clear()
    con = duckdb.connect()
    for d in _tables():
        path = store.version_path(d["name"], d["version"])
        try:  # a missing/damaged file costs only its own table, with one warning naming it
            # A version written before a field existed shows it as NULL (fields_sql).
            con.execute(f'CREATE VIEW "{d["name"]}" AS SELECT {fields_sql(path, SQL_FIELDS)} '
                        f'FROM read_parquet({_sql_str(path)})')
        except (duckdb.Error, ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            warn_damaged(path, _one_line(exc))
            _DAMAGED[d["name"]] = path
    root = workspace.subdir("datasets")
    # Order matters: the allow-list first (views over Parquet need it); no temporary directory
    # (DuckDB lets a query read its temp directory whatever the allow-list, by default ./.tmp of
    # the current folder; without one nothing spills to disk either); a memory limit; only then
    # cut external access (after which the temp directory cannot be set), and lock so the query
    # itself cannot SET anything back.
    con.execute(f"SET allowed_directories=[{_sql_str(str(root) + os.sep)}]")
    con.execute("SET temp_directory=''")
    try:
        con.execute(f"SET memory_limit={_sql_str(sql_memory_limit())}")
    except duckdb.Error as exc:
        con.close()
        raise TuneLabError(f"TUNELAB_SQL_MEMORY_LIMIT is not a memory size DuckDB understands: "
                           f"{_one_line(exc)}") from None
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con


def _tables() -> list[dict]:
    """The datasets that become tables: every readable one whose name no other shares up to case."""
    datasets = store.list_datasets()
    folded: dict[str, int] = {}
    for d in datasets:
        folded[d["name"].lower()] = folded.get(d["name"].lower(), 0) + 1
    return [d for d in datasets if folded[d["name"].lower()] == 1]


def _case_clashes() -> list[str]:
    names = [d["name"] for d in store.list_datasets()]
    return sorted(n for n in names if sum(m.lower() == n.lower() for m in names) > 1)


def _strip_semicolons(query: str) -> str:
    """query without its trailing `;` (a subquery cannot hold one); comments after it may stay."""
    end = len(query)
    for pos, kind in reversed(duckdb.tokenize(query)):  # the tokenizer skips comments
        if kind != duckdb.token_type.operator or query[pos] != ";":
            break
        end = pos
    return query[:end]


def _as_text(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """query, with columns of types the Python client cannot convert (TIMESTAMPTZ...) cast to text.

    `SELECT now()` returns TIMESTAMP WITH TIME ZONE, which DuckDB's Python client converts only
    with pytz installed; as text it reads e.g. `2025-01-01 12:00:00.5+00`.
    """
    rel = con.sql(query)  # binds without running
    types = [str(t) for t in rel.types]
    if not any(marker in t for t in types for marker in _TEXT_TYPES):
        return query
    cols = ", ".join(
        (f"CAST(#{i} AS VARCHAR)" if any(m in t for m in _TEXT_TYPES) else f"#{i}")
        + " AS " + '"' + name.replace('"', '""') + '"'
        for i, (name, t) in enumerate(zip(rel.columns, types), start=1))
    return f"SELECT {cols} FROM (\n{query}\n) AS q"


def sql(query: str, limit: int = 10000, timeout: float | None = None) -> dict:
    """Run one read-only query over the datasets (each is a table of its name).

    Args:
        query: a single SELECT or WITH query.
        limit: most rows returned (1 to SQL_MAX_ROWS).
        timeout: seconds before the query is stopped (default: $TUNELAB_SQL_TIMEOUT or 30).

    Returns:
        {"columns": [str], "rows": [[...]]}.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SQL_MAX_ROWS:
        raise TuneLabError(f"--limit must be between 1 and {SQL_MAX_ROWS}, got {limit}")
    seconds = sql_timeout(timeout)
    _check_query(query)
    statement = _strip_semicolons(query)  # it may become a subquery
    con = sandbox()
    done: dict = {}

    def run() -> None:
        try:
            cur = con.execute(_as_text(con, statement))
            done["columns"] = [d[0] for d in cur.description]
            done["rows"] = [list(r) for r in cur.fetchmany(limit)]
        except BaseException as exc:  # handed to the caller's thread
            done["error"] = exc
        finally:
            con.close()

    # The query runs in a worker so that the caller gets an answer at the deadline even when
    # DuckDB is slow to notice the interrupt (it checks between chunks of work).
    worker = threading.Thread(target=run, name="tunelab-sql", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        with contextlib.suppress(duckdb.Error, RuntimeError):
            con.interrupt()
        worker.join(INTERRUPT_GRACE_S)
    exc = done.get("error")
    if worker.is_alive() or isinstance(exc, duckdb.InterruptException):
        raise TuneLabError(f"the query was stopped after {seconds:g} s, the SQL time limit "
                           "(--timeout S or TUNELAB_SQL_TIMEOUT raise it)")
    if isinstance(exc, duckdb.CatalogException) and _case_clashes():
        raise TuneLabError(f"{_one_line(exc)} (datasets {', '.join(_case_clashes())} differ only in "
                           "case, which SQL cannot tell apart, so they are not tables)") from None
    if isinstance(exc, duckdb.Error):
        _explain(exc, statement)
        raise TuneLabError(_one_line(exc)) from None
    if exc is not None:
        raise exc
    return {"columns": done["columns"], "rows": done["rows"]}
