"""The SQL page/command: one read-only query over the datasets; every escape is refused."""

from __future__ import annotations

import pytest

from tunelab.data import sql, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError


@pytest.fixture
def two(workspace, tmp_path):
    store.commit("a", to_table([{"id": "1", "instruction": "hi", "output": "x"},
                                {"id": "2", "instruction": "yo", "output": "y"}]), "import")
    store.commit("b.v2", to_table([{"id": "1", "instruction": "hi", "output": "z"}]), "import")
    outside = tmp_path / "outside.parquet"
    import pyarrow.parquet as pq

    pq.write_table(to_table([{"id": "secret"}]), outside)
    return outside


def test_select_and_join_across_datasets(two):
    res = sql.sql('SELECT a.id, a.output, b.output AS other FROM a JOIN "b.v2" b USING (id)')
    assert res == {"columns": ["id", "output", "other"], "rows": [["1", "x", "z"]]}
    res = sql.sql("WITH t AS (SELECT count(*) AS n FROM a) SELECT n FROM t")
    assert res["rows"] == [[2]]
    assert sql.sql("SELECT id FROM a ORDER BY id", limit=1)["rows"] == [["1"]]


ESCAPES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "ATTACH '/tmp/x.duckdb' AS x",
    "COPY a TO '/tmp/leak.csv'",
    "INSTALL httpfs",
    "LOAD fts",
    "SET enable_external_access=true",
    "PRAGMA database_list",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO a VALUES ('x')",
    "DROP VIEW a",
    "UPDATE a SET id = 'x'",
    "DELETE FROM a",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP VIEW a",
    "EXPLAIN SELECT 1",
    "CALL pragma_version()",
    "SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
    "EXPORT DATABASE '/tmp/dump'",
    "DETACH memory",
    "VACUUM",
    "SELECT current_setting('lock_configuration') FROM (SELECT set_config('x', 1))",
]


@pytest.mark.parametrize("q", ESCAPES)
def test_escapes_are_refused_with_one_line(two, q):
    with pytest.raises(TuneLabError) as exc:
        sql.sql(q)
    assert "\n" not in str(exc.value) and str(exc.value)


def test_parquet_outside_datasets_is_refused(two):
    with pytest.raises(TuneLabError, match="(?i)permission|access"):
        sql.sql(f"SELECT * FROM read_parquet('{two}')")


def test_statement_kinds_named_in_refusal(two):
    with pytest.raises(TuneLabError, match="only SELECT"):
        sql.sql("INSERT INTO a VALUES ('x')")
    with pytest.raises(TuneLabError, match="only one query"):
        sql.sql("SELECT 1; SELECT 2")


def test_duckdb_errors_become_one_line(two):
    with pytest.raises(TuneLabError, match="nosuch") as exc:
        sql.sql("SELECT *\nFROM nosuch")
    assert "\n" not in str(exc.value)
    with pytest.raises(TuneLabError):
        sql.sql("SELEC 1")


def test_data_is_unchanged_after_attempts(two):
    for q in ESCAPES:
        with pytest.raises(TuneLabError):
            sql.sql(q)
    assert sql.sql("SELECT count(*) FROM a")["rows"] == [[2]]
    assert store.manifest("a")["head"] == 1
