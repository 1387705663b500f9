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
