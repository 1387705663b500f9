"""Search index build: TuneLab's build_index vs an SQLite FTS5 index over the same records, same run.

    .venv/bin/python bench/index_bench.py [--records 1000000] [--queries 50] [--rounds 2] [--tokenize porter]

Generates N Alpaca records (data_bench's Zipf vocabulary, 5% Chinese) and imports them into a
temporary workspace (not timed). Then, alternately for `rounds` rounds (the machine is shared, each
side keeps its best): TuneLab's search.build_index over the imported version (reads the Parquet
file, stems, writes the BM25 sidecar), and python's sqlite3 building an on-disk
`fts5(instruction, input, output)` table from the same records, already in memory as Python
lists, inserted in one transaction (so the baseline is spared reading any file). Ratio:
TuneLab ÷ FTS5 build seconds (target ≤ 1.0x). Then query p95 over the same queries: TuneLab's
search.search (BM25, whole-phrase check over the best 1000, 20 records returned) and FTS5's
`MATCH 'w1 OR w2' ORDER BY rank LIMIT 20` returning the same 20 rows' text.
--tokenize picks FTS5's tokenizer: unicode61 (FTS5's default, no stemming) or porter (stems as
TuneLab does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import peak_rss_mb, record, row  # noqa: E402
from data_bench import _p95, generate, queries  # noqa: E402


def load_columns(src: Path) -> list[tuple[str, str, str]]:
    import json

    with open(src, encoding="utf-8") as fh:
        return [(r["instruction"], r["input"], r["output"]) for r in map(json.loads, fh)]


def tunelab_build(name: str) -> float:
    from tunelab.data import search

    shutil.rmtree(search.index_dir(name), ignore_errors=True)
    t = time.perf_counter()
    search.build_index(name)
    return time.perf_counter() - t


def fts5_build(path: Path, rows: list[tuple[str, str, str]], tokenize: str) -> float:
    path.unlink(missing_ok=True)
    t = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute(f"CREATE VIRTUAL TABLE docs USING fts5(instruction, input, output, tokenize='{tokenize}')")
    with con:  # one transaction
        con.executemany("INSERT INTO docs (instruction, input, output) VALUES (?, ?, ?)", rows)
    con.close()
    return time.perf_counter() - t


def fts5_query(q: str) -> str:
    """Any of the query's words, each quoted (FTS5 ANDs bare words; TuneLab ranks any of them)."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in q.split())


def query_p95(name: str, db: Path, qs: list[str]) -> tuple[float, float]:
    from tunelab.data import search

    ours, theirs = [], []
    con = sqlite3.connect(db)
    for q in qs:
        t = time.perf_counter()
        search.search(name, q, limit=20)
        ours.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        con.execute("SELECT instruction, input, output FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT 20",
                    [fts5_query(q)]).fetchall()
        theirs.append(1000 * (time.perf_counter() - t))
    con.close()
    return _p95(ours), _p95(theirs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokenize", default="unicode61", choices=("unicode61", "porter"))
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    a = ap.parse_args()
    load0 = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="tunelab-index-bench-") as tmp:
        tmp_path = Path(tmp)
        os.environ["TUNELAB_HOME"] = str(tmp_path / "ws")
        from tunelab.data.importer import import_path

        src = tmp_path / "alpaca.jsonl"
        print(f"generating and importing {a.records:,} records ...", file=sys.stderr)
        vocab = generate(src, a.records)
        assert import_path(str(src), "bench")["imported"] == a.records
        rows = load_columns(src)
        db = tmp_path / "fts5.sqlite"
        ours = theirs = float("inf")
        for _ in range(a.rounds):
            ours = min(ours, tunelab_build("bench"))
            theirs = min(theirs, fts5_build(db, rows, a.tokenize))
            print(f"build: TuneLab {ours:.2f} s, FTS5 {theirs:.2f} s (best so far)", file=sys.stderr)
        q_ours, q_theirs = query_p95("bench", db, queries(vocab, a.queries))
        rss = peak_rss_mb()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows_out = [
        row(f"index build, {a.records:,} records (baseline: SQLite FTS5 {a.tokenize})", ours, theirs, "s",
            "≤ 1.0x FTS5's time", higher_is_better=False),
        row(f"query p95, {a.queries} queries (baseline: FTS5 MATCH any word, rank, 20 rows)", q_ours, q_theirs,
            "ms", "", higher_is_better=False),
    ]
    notes = (f"TuneLab ÷ FTS5 build time: {ours / theirs:.2f}x (ratio column: FTS5 ÷ TuneLab, > 1 TuneLab "
             f"faster). Best of {a.rounds} alternating rounds; peak RSS of the process {rss:.0f} MiB; "
             f"load average at the start {load0}, at the end {load}.")
    if a.no_write:
        print(rows_out, notes, sep="\n")
    else:
        record("index", rows_out, notes)


if __name__ == "__main__":
    main()
