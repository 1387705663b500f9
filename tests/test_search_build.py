"""The search index build (data/search_build.py) against a brute-force BM25 written here.

The oracle tokenises each field's whole text with DuckDB's own SQL functions as the fts extension's
tokenizer macro does (lower(strip_accents(...)), non-letter/digit runs and dots as separators)
after CJK segmentation, stems with PyStemmer, drops the SMART stopwords, and scores BM25 as
match_bm25 does (k=1.2, b=0.75, base-10 log idf; df and record length over all fields), in plain
Python. The build must store the same postings with the same scores (1e-6), in the order queries
read them (term, score descending, record), and rank queries as the oracle does.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import duckdb
import pytest

from tunelab.data import search, search_build, store
from tunelab.data.schema import TEXT_FIELDS, to_table
from tunelab.data.stopwords import ENGLISH
from tunelab.text import segment

pytest.importorskip("Stemmer")

TRICKY = [
    {"id": "t0", "instruction": "Don’t stop—believing! It’s the café’s naïve résumé.", "output": "e\u0301cole ÉCOLE"},
    {"id": "t1", "instruction": "x86_64 v1.2.3 e-mail foo.bar@baz.com", "input": "İstanbul straße ΣΟΦΙΑ σοφία"},
    {"id": "t2", "instruction": "什么是机器学习？", "output": "机器学习是人工智能的一个分支。abc机器def",
     "history": [["你好", "你好！"], ["How are you?", "Running, runs, ran."]]},
    {"id": "t3", "instruction": "日本語のテキストです。がぎぐ", "output": "한국어 텍스트 ＡＢＣ fullwidth ١٢٣ 😀 smile"},
    {"id": "t4", "instruction": "The the THE and of", "output": "", "system": "You are a helpful assistant."},
    {"id": "t5", "instruction": "Pick the better answer", "chosen": "Dogs run in the park.",
     "rejected": "Cats don’t run; they’re sleeping."},
]
WORDS = ("machine learning dog dogs cat cats running runs park data model models the of and a "
         "training trained café 学习 机器 深度 apple apples banana").split()


def corpus(n: int = 240) -> list[dict]:
    rng = random.Random(0)
    out = list(TRICKY)
    for i in range(n):
        rec = {"id": f"r{i}", "instruction": " ".join(rng.choices(WORDS, k=rng.randint(1, 8))),
               "output": " ".join(rng.choices(WORDS, k=rng.randint(0, 25)))}
        if i % 7 == 0:
            rec["history"] = [[" ".join(rng.choices(WORDS, k=3)), "ok"]]
        out.append(rec)
    return out


def oracle(records: list[dict]) -> tuple[dict, dict, dict]:
    """{(term, field, rid): score}, {word: stem}, {term: df}, computed without the build."""
    import Stemmer

    stem = Stemmer.Stemmer("porter").stemWord
    fields = (*TEXT_FIELDS, "history")
    con = duckdb.connect()
    words_of = {}

    def tokens(text: str) -> list[str]:
        text = segment(text)
        if text not in words_of:
            words_of[text] = [w for w in con.execute(
                r"SELECT unnest(string_split(regexp_replace(lower(strip_accents(?)), "
                r"'(\.|[^\p{L}\p{N}])+', ' ', 'g'), ' '))", [text]).fetchall() for w in w if w]
        return words_of[text]

    tf, length, vocab = {}, Counter(), {}
    for rid, rec in enumerate(records):
        for fid, field in enumerate(fields):
            text = (" ".join(t for pair in rec.get("history") or [] for t in pair) if field == "history"
                    else rec.get(field) or "")
            for w in tokens(text):
                vocab[w] = stem(w)
                if w in ENGLISH:
                    continue
                tf[(vocab[w], fid, rid)] = tf.get((vocab[w], fid, rid), 0) + 1
                length[rid] += 1
    n = len(records)
    avgdl = sum(length.values()) / n
    df = Counter(t for t, _ in {(t, rid) for t, _, rid in tf})
    scores = {}
    for (t, fid, rid), f in tf.items():
        idf = math.log10((n - df[t] + 0.5) / (df[t] + 0.5) + 1)
        scores[(t, fid, rid)] = idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * length[rid] / avgdl))
    return scores, vocab, dict(df)


@pytest.fixture
def built(workspace, monkeypatch):
    records = corpus()
    monkeypatch.setattr(search_build, "BATCH", 50)  # several batches: ids, df and offsets across them
    store.commit("ds", to_table(records), "import")
    folder = search.build_index("ds")
    with duckdb.connect(str(folder / "index.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT d.term, i.fieldid, i.rid, i.score FROM impacts i JOIN dict d USING (termid)"
                           ).fetchall()
        order = con.execute("SELECT termid, score, rid FROM impacts").fetchall()  # stored order
        vocab = dict(con.execute("SELECT word, term FROM vocab").fetchall())
        df = dict(con.execute("SELECT term, df FROM dict").fetchall())
        stats = con.execute("SELECT num_docs FROM stats").fetchone()
    return records, rows, order, vocab, df, stats


def test_postings_scores_vocabulary_and_df_equal_the_oracle(built):
    records, rows, _, vocab, df, stats = built
    want, want_vocab, want_df = oracle(records)
    got = {(t, f, r): s for t, f, r, s in rows}
    assert len(rows) == len(got) == len(want)
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) < 1e-6
    # Every word seen whose stem differs, stopwords too (a query takes any other word as its stem).
    assert vocab == {w: s for w, s in want_vocab.items() if w != s}
    assert df == want_df and stats == (len(records),)
    # The tricky records: apostrophes split words, accents fold (が: か), CJK bigrams, full-width
    # letters and Arabic-Indic digits are words.
    assert {"don", "believ", "cafe", "naiv", "resum", "ecol", "istanbul", "σοφια", "straße", "ａｂｃ", "١٢٣",
            "机器", "器学", "かき"} <= df.keys()


def test_postings_are_stored_in_the_order_queries_read_them(built):
    order = built[2]
    keys = [(t, -s, r) for t, s, r in order]
    assert keys == sorted(keys)  # term, score descending, record


@pytest.mark.parametrize("query,field", [("dog", "any"), ("machine learning data", "any"), ("cats run", "output"),
                                         ("机器学习", "any"), ("café résumé", "instruction"), ("the", "any")])
def test_rankings_equal_the_oracle(built, query, field):
    records = built[0]
    want, _, _ = oracle(records)
    import Stemmer

    terms = {Stemmer.Stemmer("porter").stemWord(w) for w in duckdb.sql(
        r"SELECT unnest(string_split(regexp_replace(lower(strip_accents(?)), '(\.|[^\p{L}\p{N}])+', ' ', 'g'), ' '))",
        params=[segment(query, True)]).fetchall() for w in w if w}
    fid = None if field == "any" else (*TEXT_FIELDS, "history").index(field)
    total = Counter()
    for (t, f, rid), s in want.items():
        if t in terms and (fid is None or f == fid):
            total[rid] += s
    expected = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    hits, matches = search._fts_hits("ds", query, field, 20, None)
    assert [r for r, _ in hits] == [r for r, _ in expected]
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(hits, expected))
    assert matches == len(total)


def test_cjk_segmentation_on_bytes_equals_segment():
    """The build finds CJK characters and bigrams on UTF-8 bytes; the query side uses
    tunelab.text.segment: the same tokens, row by row, whatever surrounds the runs."""
    import pyarrow as pa

    from tunelab.text import CJK_RANGES

    rng = random.Random(1)
    alphabet = [*"ab Z9.,-\n’é\u3000。！", *(chr(rng.randint(lo, hi)) for lo, hi in CJK_RANGES for _ in range(6)),
                "😀", "\u0301"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(400)] + ["", "机", "机器学习"]
    tokens, rows = search_build._raw_tokens(pa.array(texts))
    got = [Counter() for _ in texts]
    for token, row in zip(pa.chunked_array(tokens).to_pylist(), rows):
        if token:
            got[row][token] += 1
    fold = {b: chr(b).lower() if chr(b).isalnum() else " " for b in range(128)}
    want = [Counter(t for t in segment(text).translate(fold).split(" ") if t) for text in texts]
    assert got == want


def test_one_record_batches_with_stopword_only_records_equal_the_oracle(workspace, monkeypatch):
    records = [{"id": "s0", "instruction": "the of and"}, *TRICKY, {"id": "s1", "output": "it is"},
               {"id": "s2", "instruction": "dogs running", "output": "the dog"}]
    monkeypatch.setattr(search_build, "BATCH", 1)  # batches that learn no term at all
    store.commit("ds", to_table(records), "import")
    folder = search.build_index("ds")
    with duckdb.connect(str(folder / "index.duckdb"), read_only=True) as con:
        got = {(t, f, r): s for t, f, r, s in con.execute(
            "SELECT d.term, i.fieldid, i.rid, i.score FROM impacts i JOIN dict d USING (termid)").fetchall()}
    want = oracle(records)[0]
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) < 1e-6
