"""Issue 11, item 6: SQL bounded — time, memory, rows, limits, now(), ./.tmp, names that differ in case."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from cli_run import one_line_error, tunelab
from pagetest import open_page, texts

from tunelab.data import sql, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
CROSS = "SELECT a.range * b.range AS x FROM range(100000) a, range(100000) b ORDER BY x DESC"


@pytest.fixture
def toy(workspace):
    store.commit("toy", to_table([{"id": str(i), "instruction": f"q{i}", "output": "a"} for i in range(3)]),
                 "import")
    return workspace


# ---------------------------------------------------------------- time


@pytest.mark.parametrize("q", [RUNAWAY, CROSS])
def test_a_runaway_query_stops_at_the_time_limit(toy, q):
    started = time.monotonic()
    with pytest.raises(TuneLabError, match=r"stopped after 1 s, the SQL time limit"):
        sql.sql(q, timeout=1)
    assert time.monotonic() - started < 1 + sql.INTERRUPT_GRACE_S + 2


def test_the_time_limit_comes_from_the_environment_and_is_checked(toy, monkeypatch):
    monkeypatch.setenv("TUNELAB_SQL_TIMEOUT", "0.5")
    with pytest.raises(TuneLabError, match=r"stopped after 0.5 s"):
        sql.sql(RUNAWAY)
    assert sql.sql("SELECT count(*) FROM toy", timeout=30)["rows"] == [[3]]  # the argument wins
    for bad in ("-1", "0", "nan", "soon"):
        monkeypatch.setenv("TUNELAB_SQL_TIMEOUT", bad)
        with pytest.raises(TuneLabError, match="SQL time limit must be between 0 and 86400 seconds"):
            sql.sql("SELECT 1")
    monkeypatch.delenv("TUNELAB_SQL_TIMEOUT")
    assert sql.sql_timeout() == 30


def test_cli_timeout_is_one_line(toy):
    started = time.monotonic()
    err = one_line_error(tunelab(toy, "data", "sql", RUNAWAY, "--timeout", "1"))
    assert "stopped after 1 s" in err and time.monotonic() - started < 60


def test_the_sql_page_stops_a_runaway_query(toy, monkeypatch):
    monkeypatch.setenv("TUNELAB_SQL_TIMEOUT", "1")
    at = open_page("pages/sql.py")
    at.text_area(key="sql.query").input(RUNAWAY).run(timeout=30)
    assert not at.exception
    assert "stopped after 1 s" in texts(at)


# ---------------------------------------------------------------- memory and rows


def test_memory_is_limited_well_below_the_machine(toy, monkeypatch):
    limit = sql.sql("SELECT current_setting('memory_limit')")["rows"][0][0]
    number, unit = limit.split()
    size = float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert size <= min(4 * 2**30, machine / 4) * 1.01
    monkeypatch.setenv("TUNELAB_SQL_MEMORY_LIMIT", "64MB")
    with pytest.raises(TuneLabError, match="Out of Memory"):
        sql.sql("SELECT list(range) FROM range(50000000)")
    monkeypatch.setenv("TUNELAB_SQL_MEMORY_LIMIT", "lots")
    with pytest.raises(TuneLabError, match="TUNELAB_SQL_MEMORY_LIMIT"):
        sql.sql("SELECT 1")


@pytest.mark.parametrize("limit", ["-1", "0", "1000001", "100000000000000000000"])
def test_cli_limit_out_of_range_is_one_line(toy, limit):
    assert "--limit must be between 1 and 1000000" in one_line_error(
        tunelab(toy, "data", "sql", "SELECT 1", "--limit", limit))


def test_the_sql_page_sends_at_most_10000_rows_and_says_when_it_cut(toy):
    at = open_page("pages/sql.py")
    at.text_area(key="sql.query").input("SELECT range AS n FROM range(10000)").run()
    assert len(at.dataframe[0].value) == 10000 and "first 10,000 shown" not in texts(at)
    at.text_area(key="sql.query").input("SELECT range AS n FROM range(2000000)").run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 10000 and "first 10,000 shown" in texts(at)


# ---------------------------------------------------------------- now(), ./.tmp


def test_now_works(toy):
    res = sql.sql("SELECT now() AS t, 1 AS one, [current_timestamp] AS l; -- trailing comment")
    assert res["columns"] == ["t", "one", "l"]
    stamp, one, _ = res["rows"][0]
    assert stamp.startswith(time.strftime("%Y-")) and one == 1
    assert sql.sql("SELECT now()::DATE = current_date AS same")["rows"] == [[True]]
    out = tunelab(toy, "data", "sql", "SELECT now() AS t", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["columns"] == ["t"]


def test_the_current_folders_tmp_is_not_readable(toy, tmp_path, monkeypatch):
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.csv").write_text("token,value\napi,sk-secret\n")
    monkeypatch.chdir(tmp_path)
    for q in ("SELECT * FROM read_csv('.tmp/secret.csv')", f"SELECT * FROM read_csv('{tmp_path}/.tmp/secret.csv')",
              "SELECT * FROM glob('.tmp/*')"):
        with pytest.raises(TuneLabError, match="Permission Error"):
            sql.sql(q)
    out = tunelab(toy, "data", "sql", "SELECT * FROM read_text('.tmp/secret.csv')", cwd=tmp_path)
    assert "sk-secret" not in out.stdout and "Permission Error" in one_line_error(out)


# ---------------------------------------------------------------- Foo and foo


def test_a_name_differing_only_in_case_is_refused_at_import(toy):
    store.commit("Foo", to_table([{"id": "1", "instruction": "q", "output": "a"}]), "import")
    with pytest.raises(TuneLabError, match="'Foo' already exists and 'foo' differs from it only in case"):
        store.commit("foo", to_table([{"id": "1", "instruction": "q", "output": "b"}]), "import")
    assert not (toy / "datasets" / "foo").exists()
    store.commit("Foo", to_table([{"id": "2", "instruction": "q", "output": "c"}]), "import")  # same name: v2
    err = one_line_error(tunelab(toy, "data", "import", str(SAMPLES / "qa.csv"), "--name", "FOO"))
    assert "differs from it only in case" in err
    assert sql.sql("SELECT count(*) FROM foo")["rows"] == [[1]]  # Foo, case-insensitively
    assert sql.sql("SELECT count(*) FROM toy")["rows"] == [[3]]


def test_a_workspace_already_holding_foo_and_Foo_keeps_sql_working(toy):
    """Two such datasets made before the refusal existed: every other table still answers."""
    store.commit("Foo", to_table([{"id": "1", "instruction": "q", "output": "a"}]), "import")
    shutil.copytree(toy / "datasets" / "Foo", toy / "datasets" / "foo")
    assert {d["name"] for d in store.list_datasets()} == {"Foo", "foo", "toy"}
    assert sql.sql("SELECT count(*) FROM toy")["rows"] == [[3]]
    with pytest.raises(TuneLabError, match="Foo, foo differ only in case"):
        sql.sql("SELECT * FROM Foo")
    out = tunelab(toy, "data", "sql", "SELECT count(*) AS n FROM toy", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [[3]]
