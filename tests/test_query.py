"""Browse and full-text search over real Parquet versions with real DuckDB and PyStemmer."""

from __future__ import annotations

import math
import re
import sys

import pytest

from tunelab.data import browse, search, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError

RECORDS = [
    {"id": "en1", "instruction": "Explain machine learning", "output": "Machine learning finds patterns in data."},
    {"id": "en2", "instruction": "Write a poem about dogs", "input": "short", "output": "Dogs run in the park."},
    {"id": "zh1", "instruction": "什么是机器学习？", "output": "机器学习是人工智能的一个分支。"},
    {"id": "zh2", "instruction": "深度学习是什么", "output": "深度学习使用神经网络。", "history": [["你好", "你好！"]]},
    {"id": "zh3", "instruction": "推荐一本书", "output": "我推荐《三体》。", "system": "你是图书管理员"},
    {"id": "en3", "instruction": "Summarise the text", "input": "The cat sat on the mat.", "output": "A cat sat."},
]


@pytest.fixture
def ds(workspace):
    store.commit("ds", to_table(RECORDS), "import")
    return "ds"


def ids(result):
    return [r["id"] for r in result["records"]]


def test_show_pages_and_versions(ds):
    page = browse.show(ds, offset=2, limit=2)
    assert page["total"] == 6
    assert ids(page) == ["zh1", "zh2"]
    assert set(page["records"][0]) == {"id", "instruction", "input", "output", "system", "history"}
    assert page["records"][1]["history"] == [["你好", "你好！"]]
    assert browse.show(ds, offset=100)["records"] == []
    store.commit(ds, to_table(RECORDS[:2]), "edit")
    assert browse.show(ds)["total"] == 2
    assert browse.show(ds, version=1)["total"] == 6


def test_show_refuses_negative_offset(ds):
    with pytest.raises(TuneLabError):
        browse.show(ds, offset=-1)


def test_unknown_dataset_is_a_user_error(workspace):
    with pytest.raises(TuneLabError, match="unknown dataset"):
        browse.show("nope")


def test_english_search_is_ranked_and_stemmed(ds):
    res = search.search(ds, "dog")  # "dogs" in the record: Porter stemming matches it
    assert ids(res)[0] == "en2"
    res = search.search(ds, "machine learning")
    assert ids(res)[0] == "en1" and res["total"] == 1
    assert res["scores"] == sorted(res["scores"], reverse=True)


def test_chinese_query_finds_chinese_records(ds):
    res = search.search(ds, "机器学习")
    assert ids(res)[0] == "zh1"  # the whole phrase (all bigrams) ranks first
    assert "zh2" in ids(res)  # shares the bigram 学习
    assert "en1" not in ids(res)
    assert ids(search.search(ds, "三体")) == ["zh3"]
    assert ids(search.search(ds, "书")) == ["zh3"]  # one character still matches


def test_search_by_field_and_history(ds):
    assert ids(search.search(ds, "图书管理员", field="system")) == ["zh3"]
    assert search.search(ds, "图书管理员", field="output")["total"] == 0
    assert ids(search.search(ds, "你好")) == ["zh2"]  # history turns are searchable under any
    assert ids(search.search(ds, "cat", field="input")) == ["en3"]


def test_search_limit_total_and_no_match(ds):
    res = search.search(ds, "学习", limit=1)
    assert res["total"] == 2 and len(res["records"]) == 1
    assert search.search(ds, "zzzunknownword")["total"] == 0
    with pytest.raises(TuneLabError):
        search.search(ds, "x", field="nope")
    with pytest.raises(TuneLabError):
        search.search(ds, "   ")


def test_index_is_a_sidecar_per_version_and_reused(ds):
    search.search(ds, "dog")
    folder = search.index_dir(ds)
    assert (folder / "index.duckdb").exists() and folder.name == "v1.search"
    mtime = (folder / "index.duckdb").stat().st_mtime_ns
    search.search(ds, "cat")
    assert (folder / "index.duckdb").stat().st_mtime_ns == mtime
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]
    store.commit(ds, to_table(RECORDS[2:3]), "edit")
    assert ids(search.search(ds, "学习")) == ["zh1"]  # the new head has its own index


def test_scan_fallback_finds_the_same_records(ds):
    for q in ("机器学习", "dogs", "图书管理员"):
        assert set(ids(search.search(ds, q, method="scan"))) <= set(ids(search.search(ds, q))) | {"zh2"}
        assert ids(search.search(ds, q, method="scan"))


def test_segment_cjk():
    assert search.segment("学习 abc") == " 学 习 学习  abc"
    assert search.segment("机器学习", for_query=True).split() == ["机器", "器学", "学习"]
    assert search.segment("hello") == "hello"


def test_missing_stemmer_falls_back_with_a_warning(ds, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "Stemmer", None)  # `import Stemmer` raises ImportError
    search.index_available.cache_clear()
    try:
        res = search.search(ds, "机器学习")
    finally:
        search.index_available.cache_clear()
    assert ids(res)[0] == "zh1"
    assert "PyStemmer is not installed" in capsys.readouterr().err
    assert not search.index_dir(ds).exists()


def _search_worker(home: str, out) -> None:
    import os

    os.environ["TUNELAB_HOME"] = home
    from tunelab.data import search as q

    out.put([r["id"] for r in q.search("ds", "机器学习")["records"]])


def test_two_processes_search_a_fresh_dataset_at_once(ds, workspace):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_search_worker, args=(str(workspace), out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert results[0] == results[1] and results[0][0] == "zh1"
    folder = search.index_dir(ds)
    assert (folder / "index.duckdb").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- BM25 against a plain reference

BM25_RECORDS = [
    {"id": "b1", "instruction": "Explain machine learning", "output": "Machine learning learns patterns in the data."},
    {"id": "b2", "instruction": "Write a poem", "input": "dogs run", "output": "The dogs run in the park; a dog runs and runs."},
    {"id": "b3", "instruction": "什么是机器学习？", "output": "机器学习是人工智能的一个分支。"},
    {"id": "b4", "instruction": "深度学习", "output": "深度学习使用神经网络 (neural networks).", "history": [["你好", "你好！"]]},
    {"id": "b5", "instruction": "Recommend a book", "output": "Green tea and a book.", "system": "librarian"},
    {"id": "b6", "instruction": "Summary", "input": "The cat sat on the mat.", "output": "A cat sat; cats sat."},
    {"id": "b7"},
]
# What the index does to these words, written out: the extension's English stopwords among them
# and the Porter stems that differ from the word.
STOP = {"the", "a", "is", "of", "in", "on", "and"}
STEMS = {"cats": "cat", "dogs": "dog", "running": "run", "runs": "run", "learning": "learn", "machine": "machin",
         "learns": "learn", "patterns": "pattern", "networks": "network", "summary": "summari"}
CJK = "\u4e00-\u9fff"


def _ref_terms(text: str, for_query: bool = False) -> list[str]:
    """Lower-case words and numbers; a Chinese run becomes its characters plus bigrams."""
    out = []
    for piece in re.findall(f"[{CJK}]+|[^\\W_{CJK}]+", text.lower()):
        if "\u4e00" <= piece[0] <= "\u9fff":
            bigrams = [piece[i : i + 2] for i in range(len(piece) - 1)]
            out += bigrams if for_query and bigrams else list(piece) + bigrams
        elif piece not in STOP:
            out.append(STEMS.get(piece, piece))
    return out


def _ref_bm25(records: list[dict], query_text: str, field: str) -> list[tuple[str, float]]:
    """Okapi BM25 (k1=1.2, b=0.75), written out: df and length per record over all fields, tf
    per field, fields summed for "any"; hits sorted by score, then record order. The idf is a
    base-10 log, as in the fts extension's match_bm25 (DuckDB's log()): same ranking as ln."""
    fields = ("instruction", "input", "output", "system", "history")
    docs = [{f: _ref_terms(" ".join(sum(r.get("history", []), [])) if f == "history" else r.get(f, ""))
             for f in fields} for r in records]
    n = len(docs)
    lengths = [sum(len(d[f]) for f in fields) for d in docs]
    avgdl = sum(lengths) / n
    df: dict[str, int] = {}
    for d in docs:
        for t in {t for f in fields for t in d[f]}:
            df[t] = df.get(t, 0) + 1
    hits = []
    for rid, d in enumerate(docs):
        score = 0.0
        for t in set(_ref_terms(query_text, for_query=True)):
            idf = math.log10((n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5) + 1)
            for f in fields if field == "any" else (field,):
                tf = d[f].count(t)
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths[rid] / avgdl))
        if score > 0:
            hits.append((-score, rid, records[rid]["id"]))
    return [(i, -s) for s, _, i in sorted(hits)]


BM25_QUERIES = [
    ("machine learning", "any"), ("dog", "any"), ("run", "output"), ("cat", "input"), ("cat sat", "any"),
    ("learning", "instruction"), ("学习", "any"), ("机器学习", "output"), ("你好", "any"), ("book librarian", "any"),
]


def _assert_plain_bm25(text: str, field: str) -> None:
    expected = _ref_bm25(BM25_RECORDS, text, field)
    res = search.search("bm", text, field=field)
    assert expected, text  # every query here has hits
    assert ids(res) == [i for i, _ in expected]
    assert res["scores"] == pytest.approx([s for _, s in expected], abs=2e-4)
    assert res["total"] == len(expected)


@pytest.mark.parametrize("text, field", BM25_QUERIES)
def test_scores_match_a_plain_bm25(workspace, text, field):
    store.commit("bm", to_table(BM25_RECORDS), "import")
    _assert_plain_bm25(text, field)


def test_scores_do_not_depend_on_build_batches(workspace, monkeypatch):
    # The build numbers words and counts df batch by batch: three records per batch here.
    monkeypatch.setattr(search, "BATCH", 3)
    store.commit("bm", to_table(BM25_RECORDS), "import")
    for text, field in BM25_QUERIES:
        _assert_plain_bm25(text, field)


def test_indexed_rows_read_back_as_show_prints_them(workspace):
    tricky = {"id": None, "instruction": 'He said "hi" \\ back', "input": "line\nbreak\ttab \u2028 😀",
              "output": "café ＡＢＣ", "history": [["q \"1\"", "a\\1"], ["", "中文"]]}
    store.commit("rows", to_table([*RECORDS, tricky, {"id": "empty"}]), "import")
    folder = search.build_index("rows")
    n = len(RECORDS) + 2
    assert search._fetch_rows(folder, list(range(n))) == browse.show("rows", limit=n)["records"]
    assert sorted(p.name for p in folder.iterdir()) == ["index.duckdb", "rows.bin", "rows.idx"]


@pytest.mark.parametrize("batch", [7, 64])
def test_ties_at_the_per_term_cut_go_to_the_earlier_records(workspace, monkeypatch, batch):
    # 40 records with the same words score the same: the cut keeps each term's first postings by row.
    monkeypatch.setattr(search, "TOP_PER_TERM", 4)
    monkeypatch.setattr(search, "BATCH", batch)
    store.commit("ties", to_table([{"id": f"t{i}", "instruction": "apple pie", "output": "warm"} for i in range(40)]),
                 "import")
    for text in ("apple", "apple pie", "pie warm apple"):
        hits = search.search("ties", text, limit=3)
        assert ids(hits) == ["t0", "t1", "t2"] and len(set(hits["scores"])) == 1
        assert hits["total"] == 40


# ---------------------------------------------------------------- exact phrase first (issue #15)

PHRASES = [
    *[{"id": f"p{i}", "instruction": f"第{i}题：光合作用需要什么？", "output": "阳光、水和二氧化碳。"} for i in range(6)],
    *[{"id": f"c{i}", "instruction": "两家公司的合作有什么作用？", "output": "合作可以发挥协同作用，作用很大，合作共赢。"}
      for i in range(8)],
    {"id": "geo", "instruction": "地心说是谁提出的？", "output": "托勒密提出了地心说。"},
    {"id": "helio", "instruction": "哥白尼提出了什么学说？", "output": "哥白尼提出了日心说，推翻了地心说。"},
    {"id": "en", "instruction": "What is the capital of France?", "output": "Paris is the capital of France."},
    {"id": "en2", "instruction": "Capital letters", "output": "Use a capital letter at the start of a sentence."},
]


@pytest.fixture
def phrases(workspace):
    store.commit("ph", to_table(PHRASES), "import")
    return "ph"


def test_exact_phrase_ranks_first_and_is_counted(phrases):
    res = search.search(phrases, "光合作用", limit=20)
    # 6 hold the phrase; the 8 that only share its bigrams (合作, 作用, many times over) come after
    assert res["exact"] == 6 and res["total"] == 14
    assert sorted(ids(res)[:6]) == [f"p{i}" for i in range(6)]
    assert set(ids(res)[6:]) == {f"c{i}" for i in range(8)}
    assert search.search(phrases, "光合作用", limit=3)["exact"] == 6  # counted beyond the page


def test_cjk_phrase_inside_another_word_is_not_exact(phrases):
    res = search.search(phrases, "日心说")
    assert res["exact"] == 1 and ids(res)[0] == "helio"
    assert "geo" in ids(res)  # shares the bigram 心说: related, after the exact match


def test_quoted_phrase_must_be_in_every_hit(phrases):
    res = search.search(phrases, '"协同作用" 公司')
    assert sorted(ids(res)) == [f"c{i}" for i in range(8)] and res["total"] == 8
    res = search.search(phrases, '"capital of France"')
    assert ids(res) == ["en"] and res["total"] == res["exact"] == 1  # not "capital letter"


def test_english_phrase_first_then_related(phrases):
    res = search.search(phrases, "the capital of France")
    assert ids(res) == ["en", "en2"] and res["exact"] == 1 and res["total"] == 2


def test_shipped_chinese_sample_ranks_exact_matches_first(workspace):
    import json
    from pathlib import Path

    from tunelab.data.importer import import_path

    sample = Path(__file__).resolve().parents[1] / "data/samples/alpaca_mixed.jsonl"
    name = import_path(str(sample))["name"]
    res = search.search(name, "首都", limit=50)
    holding = [r for r in store.read(name).to_pylist()
               if any("首都" in (r.get(f) or "") for f in ("instruction", "input", "output", "system"))]
    assert res["exact"] == len(holding) > 3
    assert all("首都" in r["instruction"] + r["input"] + r["output"] for r in res["records"][:res["exact"]])
    assert json.dumps(res["records"][res["exact"]:], ensure_ascii=False).count("首都") == 0


def test_exact_count_past_the_candidate_pool_is_a_floor(phrases, monkeypatch):
    assert search.search(phrases, "光合作用")["exact_complete"] is True
    monkeypatch.setattr(search, "POOL", 4)
    res = search.search(phrases, "光合作用", limit=2)
    # only the best 4 BM25 hits are checked for the phrase: the count says so
    assert res["exact_complete"] is False and res["total"] == 14 and 1 <= res["exact"] <= 4
    assert len(res["records"]) == 2
