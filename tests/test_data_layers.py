"""query.py cut in three, one text module for CJK, one record definition, versioned manifests.

Issue 12 items 3, 4 (records) and 6 (dataset manifests).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest

from tunelab import migrations, text
from tunelab.data import (
    browse,
    clean,
    formats,
    highlight,
    schema,
    search,
    sql,
    stats,
    store,
)
from tunelab.data.schema import to_table
from tunelab.evals import metrics

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*(ROOT / "src/tunelab").rglob("*.py"), *(ROOT / "pages").glob("*.py")]


# ---------------------------------------------------------------- query.py in three


def test_browse_search_and_sql_are_separate_modules(workspace):
    store.commit("ds", to_table([{"id": "a", "instruction": "walking dogs", "output": "ok"}]), "import")
    assert browse.show("ds")["records"][0]["id"] == "a"
    assert [r["id"] for r in search.search("ds", "dog")["records"]] == ["a"]
    assert sql.sql("SELECT count(*) FROM ds")["rows"] == [[1]]
    assert not (ROOT / "src/tunelab/data/query.py").exists()
    # Paging knows nothing of the index, the sandbox nothing of either.
    assert "search" not in browse.__dict__ and "build_index" not in sql.__dict__


# ---------------------------------------------------------------- one text module


def test_cjk_ranges_are_defined_only_in_text_py():
    """No other module spells a CJK range (0x4E00, \\u4e00, 一): they import tunelab.text."""
    pattern = re.compile(r"0x4e00|\\u4e00|\u4e00-", re.I)
    # regress/tasks/utils.py is loaded by lm-eval on its own (no tunelab import), so it spells its range.
    spelled = [str(p.relative_to(ROOT)) for p in SOURCES
               if p.name != "text.py" and "regress/tasks" not in p.as_posix() and pattern.search(p.read_text(encoding="utf-8"))]
    assert spelled == []
    assert clean.CJK_RUN is stats.CJK_RUN is highlight.CJK_RUN is text.CJK_RUN


def test_search_and_metrics_agree_on_every_cjk_boundary():
    """Metrics used to carry its own copy of the ranges: both now answer alike at every edge."""
    edges = [c + d for a, b in text.CJK_RANGES for c in (a, b) for d in (-1, 0, 1)]
    for code in edges:
        ch = chr(code)
        assert metrics.has_cjk(ch) == text.has_cjk(ch) == bool(text.CJK_RUN.fullmatch(ch)), hex(code)
        # metrics' tokens: one per CJK character (after NFKC); search's segments: the character.
        if text.has_cjk(ch):
            assert search.segment(ch).split() == [ch]
            norm = unicodedata.normalize("NFKC", ch)
            if text.CJK_RUN.fullmatch(norm):
                assert metrics.tokenize(f"ab{ch}") == ["ab", *norm]


# ---------------------------------------------------------------- search without the fts extension


def test_search_builds_its_index_without_duckdbs_fts_extension(workspace, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "duckdb_extension_fts", None)  # as if not installed
    store.commit("ds", to_table([{"id": "a", "instruction": "The dogs are running"},
                                 {"id": "b", "instruction": "a cat"}]), "import")
    res = search.search("ds", "runs dog")  # "runs": unseen in the corpus, stemmed at query time
    assert [r["id"] for r in res["records"]] == ["a"]
    assert (search.index_dir("ds") / "index.duckdb").exists()
    assert "warning" not in capsys.readouterr().err
    assert search.search("ds", "the")["total"] == 0  # an English stopword is not indexed


def test_stemmer_and_stopwords_are_those_the_fts_extension_lent():
    """Indexes built while the extension stemmed stay valid: same Porter stems, same 570 words."""
    duckdb = pytest.importorskip("duckdb")
    ext = pytest.importorskip("duckdb_extension_fts")
    path = Path(ext.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "fts.duckdb_extension"
    if not path.exists():
        pytest.skip(f"no fts extension for DuckDB {duckdb.__version__}")
    words = ["running", "runs", "ponies", "caresses", "generalizations", "café", "naïvely", "straßes",
             "работающих", "x86s", "学习", "a's", "summary", "machine", "abilities", "yyyy"]
    with duckdb.connect() as con:
        con.execute(f"LOAD '{path}'")
        stems = [r[0] for r in con.execute(
            "SELECT stem(w, 'porter') FROM unnest(?::VARCHAR[]) WITH ORDINALITY t(w, i) ORDER BY i",
            [words]).fetchall()]
        con.execute("CREATE TABLE probe AS SELECT 0 AS id, '' AS t")
        con.execute("PRAGMA create_fts_index('probe', 'id', 't', stopwords='english')")
        stop = {r[0] for r in con.execute("SELECT sw FROM fts_main_probe.stopwords").fetchall()}
    assert search._stemmer().stemWords(words) == stems
    assert search.STOPWORDS == stop


# ---------------------------------------------------------------- one record definition


def test_record_fields_are_defined_once():
    assert schema.FIELDS == tuple(schema.Record.__annotations__)
    assert schema.SCHEMA.names == list(schema.FIELDS)
    assert set(schema.empty_record()) == set(schema.FIELDS)
    assert tuple(schema.public({})) == schema.PUBLIC_FIELDS
    assert formats.FIELDS is schema.FIELDS
    assert search.INDEXED == (*schema.TEXT_FIELDS, "history")


def _literals_listing_fields(path: Path) -> list[str]:
    """Tuple/list/set literals that spell out the public record fields (six or more of them)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(names & set(schema.FIELDS)) >= len(schema.PUBLIC_FIELDS):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_module_repeats_the_record_field_list():
    repeated = [hit for p in SOURCES if p.name != "schema.py" for hit in _literals_listing_fields(p)]
    assert repeated == []


def _parser_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parser_actions(sub)


def test_cli_and_page_search_fields_come_from_the_schema():
    from tunelab.cli import build_parser

    fields = [a for a in _parser_actions(build_parser()) if a.dest == "field" and a.choices
              and "system" in a.choices]
    assert fields and all(a.choices is schema.SEARCH_FIELDS for a in fields)
    assert "SEARCH_FIELDS" in (ROOT / "pages/data.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------- manifest schema


def test_a_new_manifest_carries_its_schema(workspace):
    store.commit("ds", to_table([{"id": "a"}]), "import")
    on_disk = json.loads((workspace / "datasets" / "ds" / "manifest.json").read_text())
    assert on_disk["schema"] == migrations.version("manifest") >= 1
    assert "version-defaults" in migrations.names("manifest")


def test_an_old_manifest_is_migrated_on_read_and_stamped_on_write(workspace):
    store.commit("ds", to_table([{"id": "a"}]), "import")
    path = workspace / "datasets" / "ds" / "manifest.json"
    # As written before schemas existed, and trimmed by hand to what readers require.
    path.write_text(json.dumps({"head": 1, "versions": [{"version": 1, "op": "import", "records": 1}]}))
    before = path.read_bytes()
    m = store.manifest("ds")
    assert m["schema"] == migrations.version("manifest")
    assert m["versions"][0] == {"version": 1, "op": "import", "records": 1, "parent": None, "params": {},
                                "created": None}
    assert path.read_bytes() == before  # reading never rewrites
    store.commit("ds", to_table([{"id": "b"}]), "edit")
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == migrations.version("manifest")
    assert [v["parent"] for v in on_disk["versions"]] == [None, 1]


def test_a_manifest_from_a_newer_tunelab_keeps_its_schema_and_keys(workspace):
    store.commit("ds", to_table([{"id": "a"}]), "import")
    path = workspace / "datasets" / "ds" / "manifest.json"
    newer = dict(json.loads(path.read_text()), schema=99, future_key="kept")
    path.write_text(json.dumps(newer))
    assert browse.show("ds")["total"] == 1
    store.commit("ds", to_table([{"id": "b"}]), "edit")
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == 99 and on_disk["future_key"] == "kept"
