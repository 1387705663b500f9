"""The SQL page through AppTest: example queries, results, refused statements as one-line errors."""

from __future__ import annotations

import json

import pytest
from pagetest import open_page, texts

from tunelab.data.importer import import_path


@pytest.fixture
def dataset(workspace):
    recs = [{"instruction": f"q{i}", "input": "", "output": "x" * i} for i in range(12)]
    recs.append({"instruction": "q1", "input": "", "output": "again", "history": [["hi", "hello"]]})
    path = workspace.parent / "toy-set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return import_path(str(path))["name"]


def test_query_shows_a_table(dataset):
    at = open_page("pages/sql.py")
    at.text_area(key="sql.query").input('SELECT count(*) AS n FROM "toy-set"').run()
    assert not at.exception
    assert at.dataframe[0].value["n"].tolist() == [13]


def test_example_buttons_fill_the_editor(dataset):
    at = open_page("pages/sql.py")
    at.button(key="sql.example_duplicates").click().run()
    assert "GROUP BY" in at.text_area(key="sql.query").value
    assert at.dataframe[0].value.to_dict("records") == [{"instruction": "q1", "copies": 2}]
    at.button(key="sql.example_records").click().run()
    assert at.dataframe[0].value["earlier_turns"].tolist() == [1]
    at.button(key="sql.example_longest").click().run()
    assert at.dataframe[0].value["output_chars"].iloc[0] == 11
    at.button(key="sql.example_count").click().run()
    assert at.dataframe[0].value.to_dict("records") == [{"dataset": "toy-set", "records": 13}]
    assert not at.exception


@pytest.mark.parametrize("statement", [
    'DELETE FROM "toy-set"',
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT 1; SELECT 2",
    "SELEC nonsense",
])
def test_refused_statement_is_one_line(dataset, statement):
    at = open_page("pages/sql.py")
    at.text_area(key="sql.query").input(statement).run()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert not at.dataframe


def test_says_it_is_read_only(dataset):
    assert "Read-only" in texts(open_page("pages/sql.py"))


@pytest.fixture
def two_tables(dataset, workspace):
    path = workspace.parent / "plain.jsonl"
    path.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    import_path(str(path))
    return dataset


def test_unquoted_dashed_name_suggests_the_quoted_one(two_tables):
    from tunelab.data.sql import sql
    from tunelab.errors import TuneLabError

    with pytest.raises(TuneLabError) as err:
        sql("SELECT count(*) FROM toy-set")
    assert str(err.value).startswith('write the table toy-set in double quotes: "toy-set"')
    assert "Parser Error" not in str(err.value)
    # quoted, the same name runs; a string holding it is not mistaken for a table
    assert sql('SELECT count(*) FROM "toy-set" WHERE output <> \'toy-set\'')["rows"] == [[13]]


def test_missing_table_lists_the_real_tables(two_tables):
    from tunelab.data.sql import sql
    from tunelab.errors import TuneLabError

    with pytest.raises(TuneLabError) as err:
        sql("SELECT * FROM toy_set")
    assert str(err.value) == 'there is no table toy_set; did you mean "toy-set"? The tables are: plain, "toy-set"'
    with pytest.raises(TuneLabError) as err:
        sql("SELECT * FROM nothing_like_it")
    assert str(err.value) == 'there is no table nothing_like_it; the tables are: plain, "toy-set"'
    assert "pg_" not in str(err.value)


def test_sql_page_shows_the_suggestion_in_one_line(two_tables):
    at = open_page("pages/sql.py")
    at.text_area(key="sql.query").input("SELECT * FROM toy-set").run()
    assert not at.exception and len(at.error) == 1
    assert 'double quotes: "toy-set"' in at.error[0].value and "\n" not in at.error[0].value


def test_sql_suggestions_read_in_chinese(two_tables):
    from tunelab import i18n
    from tunelab.data.sql import sql
    from tunelab.errors import TuneLabError

    with pytest.raises(TuneLabError) as err:
        sql("SELECT * FROM toy-set")
    assert i18n.translate_error(str(err.value), "zh").startswith('请把表名 toy-set 写在双引号里："toy-set"')
    with pytest.raises(TuneLabError) as err:
        sql("SELECT * FROM toy_set")
    assert i18n.translate_error(str(err.value), "zh") == '没有名为 toy_set 的表；您是不是要用 "toy-set"？现有的表：plain, "toy-set"'
