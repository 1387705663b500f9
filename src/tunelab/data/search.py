"""Ranked full-text search (BM25) over dataset versions, with a sidecar index per version.

Search is BM25 over an index that data/search_build.py builds (Arrow, numpy), with Snowball's
Porter stemmer (PyStemmer) and the SMART English stopword list (data/stopwords.py): the very
stemmer and list DuckDB's fts extension used to lend, so indexes built with it stay valid (and
sidecars built before search_build.py read the same). The index of a version
lives in a sidecar folder, datasets/<name>/v<N>.search/, built once on first search into a
temporary folder and renamed, then opened read-only so that any number of processes can search at
once (DuckDB allows one writer per file). The sidecar keeps the dictionary and statistics, BM25
precomputed per (term, field, record) sorted by term then score, word->stem for the words whose
stem differs, and the public records as JSON with byte offsets. Words are split as the fts
extension's tokenizer split them, and CJK runs are pre-segmented into characters plus character bigrams (tunelab.text), in the
index and in the query: a bigram hit ranks "机器学习" above records that merely share its
characters, and one-character queries still match.

Why an index rather than an ILIKE scan: a scan reads and lower-cases every text column of every
row per query and can only count hits; on 1M records (2 shared cores, bench/RESULTS.md) the
scored scan fallback took 4-18 s per query, pandas str.contains about 4 s. Measured costs shaped
the sidecar: the extension's match_bm25 (and a plain aggregation over term-sorted postings) sums
every posting of a common word — 1.7 s p50, 3.9 s p95 on a Zipf-distributed 1M corpus — so each
query term contributes only its best TOP_PER_TERM postings (exact for one-word queries; `total`
is estimated past EXACT_TOTAL_MAX postings); query words are stemmed through the stored vocabulary
and only an a-z word the corpus never contains goes through the stemmer; fetching 20 hits
scattered over a Parquet file decodes 20 row groups (130-500 ms), so hits are read by offset from
the rows file. The extension's own create_fts_index took 600-690 s on 1M records (it stems every
token and fills its tables with correlated UPDATEs); search_build.py handles each distinct token
once per batch and counts with numpy sorts (bench: index build). The sidecar takes about 4 times
the Parquet file on disk (the rows file most of it). If PyStemmer is missing, search falls back to the scan with a warning on stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import struct
import sys
import time
from pathlib import Path

import duckdb

from tunelab.data import search_build, store
from tunelab.data.browse import fields_sql as _fields_sql
from tunelab.data.highlight import parse_query, phrase_pattern
from tunelab.data.browse import reader as _reader
from tunelab.data.browse import select as _select
from tunelab.data.browse import sql_str as _sql_str
from tunelab.data.schema import SEARCH_FIELDS, TEXT_FIELDS, PublicRecord, public
from tunelab.data.stopwords import ENGLISH as STOPWORDS  # noqa: F401 (the list the build drops)
from tunelab.data.search_build import BATCH, IGNORE, INDEXED, _segment_column, _tokens  # noqa: F401
from tunelab.errors import TuneLabError
from tunelab.text import segment


@functools.lru_cache(maxsize=8)
def _index_db(path: str, stamp: tuple[int, int]) -> duckdb.DuckDBPyConnection:
    """A read-only connection per index file; stamp (inode, mtime) keys out a rebuilt index."""
    # Insertion order is what _fts_hits reads each term's best postings by (DuckDB's default, pinned).
    return duckdb.connect(path, read_only=True, config={"preserve_insertion_order": True})


def _index_reader(folder: Path) -> duckdb.DuckDBPyConnection:
    path = folder / "index.duckdb"
    st = path.stat()
    return _index_db(str(path), (st.st_ino, st.st_mtime_ns)).cursor()


def _stemmer():
    """A Porter stemmer (Snowball's, via PyStemmer); a new one per caller: they are not thread-safe."""
    import Stemmer

    return Stemmer.Stemmer("porter")


@functools.lru_cache(maxsize=1)
def index_available() -> bool:
    """Whether the index can be built and queried here (PyStemmer imports)."""
    try:
        _stemmer()
        return True
    except ImportError:
        return False


def index_dir(name: str, version: int | None = None) -> Path:
    """The search sidecar folder of a version: index.duckdb, rows.bin, rows.idx."""
    v = store.resolve_version(name, version)
    return store.version_path(name, v).with_name(f"v{v}.search")


def build_index(name: str, version: int | None = None) -> Path:
    """Build the search sidecar of a version if it does not exist yet; returns its folder."""
    target = index_dir(name, version)
    if (target / "index.duckdb").exists():
        return target
    source = store.version_path(name, version)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}.tmp")
    tmp.mkdir()
    started = time.perf_counter()
    sys.stderr.write(f"building the search index of {name} (once per version)...\n")
    try:
        search_build.build(source, tmp)
        with contextlib.suppress(OSError):  # another process renamed the same index in first
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stderr.write(f"search index built in {time.perf_counter() - started:.1f} s\n")
    return target


TOP_PER_TERM = 2000  # candidates kept per query term (exact ranking for one-word queries)
EXACT_TOTAL_MAX = 200_000  # postings counted exactly for `total`; above, it is estimated


_STEMMABLE = re.compile(r"[a-z]+")


def _query_terms(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[int, int]]:
    """(termid, df) of the query's stemmed words that occur in the index."""
    words = con.execute(
        f"SELECT w.word, v.term FROM (SELECT DISTINCT unnest({_tokens('?')}) AS word) w "
        "LEFT JOIN vocab v USING (word) WHERE w.word <> ''", [segment(query, True)]).fetchall()
    terms = {t for _, t in words if t}
    # vocab holds the corpus words whose stem differs. Only a-z words can stem differently;
    # anything else (CJK, digits) is its own term.
    unseen = [w for w, t in words if not t and _STEMMABLE.fullmatch(w)]
    terms |= {w for w, t in words if not t and not _STEMMABLE.fullmatch(w)}
    if unseen:  # its own stem, or a new form of a known one ("runs" where only "running" occurs)
        terms |= set(_stemmer().stemWords(unseen))
    if not terms:
        return []
    return con.execute("SELECT termid, df FROM dict WHERE term IN (SELECT unnest(?::VARCHAR[]))",
                       [sorted(terms)]).fetchall()


def _fts_hits(name: str, query: str, field: str, limit: int, version: int | None) -> tuple[list, int]:
    """Top hits by BM25: each term's best postings, summed per record (fields add up for "any")."""
    folder = build_index(name, version)
    with _index_reader(folder) as con:
        terms = _query_terms(con, query)
        if not terms:
            return [], 0
        field_filter = ""
        if field != "any":
            fid = con.execute("SELECT fieldid FROM fields WHERE field = ?", [field]).fetchone()
            field_filter = f"AND fieldid = {int(fid[0])}"
        # Each term's first postings in stored order are its best (impacts is written sorted by
        # term, score descending, then row, so ties go to the earlier record and two builds agree);
        # a LIMIT without ORDER BY stops there instead of top-N sorting every posting of a common
        # word: p95 14 ms vs 41 ms with ORDER BY score DESC, rid on 1M records. Literal ids let
        # each scan skip other terms' row groups.
        per_term = " UNION ALL ".join(
            f"(SELECT rid, score FROM impacts WHERE termid = {int(t)} {field_filter} "
            f"LIMIT {max(TOP_PER_TERM, 2 * limit)})" for t, _ in terms)
        rows = con.execute(f"SELECT rid, sum(score) AS s FROM ({per_term}) GROUP BY rid "
                           "ORDER BY s DESC, rid LIMIT ?", [limit]).fetchall()
        total = _match_count(con, terms, field_filter) if rows else 0
    return [(int(r[0]), float(r[1])) for r in rows], total


def _match_count(con: duckdb.DuckDBPyConnection, terms: list[tuple[int, int]], field_filter: str) -> int:
    """How many records contain any query term: exact, or estimated when that would be slow."""
    if len(terms) == 1 and not field_filter:
        return int(terms[0][1])
    if sum(df for _, df in terms) <= EXACT_TOTAL_MAX:
        ids = ", ".join(str(int(t)) for t, _ in terms)
        return int(con.execute(f"SELECT count(DISTINCT rid) FROM impacts WHERE termid IN ({ids}) "
                               f"{field_filter}").fetchone()[0])
    n = con.execute("SELECT num_docs FROM stats").fetchone()[0]
    miss = 1.0
    for _, df in terms:  # terms taken as independent: P(record has none of them)
        miss *= 1 - df / n
    return round(n * (1 - miss))


def _scan_hits(name: str, query: str, field: str, limit: int, version: int | None) -> tuple[list, int]:
    """The fallback: score = how many query terms each record contains (case-insensitive)."""
    terms = [t for t in segment(query.lower(), True).split() if t][:32]
    if not terms:
        return [], 0
    cols = [*TEXT_FIELDS, "array_to_string(flatten(history), ' ')"]
    text = f"lower({field})"
    if field == "any":
        text = " || ' ' || ".join(f"lower(coalesce({c}, ''))" for c in cols)
    score = " + ".join("CAST(contains(txt, ?) AS INTEGER)" for _ in terms)
    path = store.version_path(name, version)
    q = (
        f"SELECT rid, score, count(*) OVER () FROM (SELECT file_row_number AS rid, {score} AS score FROM "
        f"(SELECT file_row_number, {text} AS txt FROM (SELECT file_row_number, {_fields_sql(path)} "
        f"FROM read_parquet({_sql_str(path)}, file_row_number=true)))) "
        "WHERE score > 0 ORDER BY score DESC, rid LIMIT ?"
    )
    with _reader() as con:
        rows = con.execute(q, [*terms, limit]).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows], (rows[0][2] if rows else 0)


POOL = 1000  # best BM25 hits checked for the whole phrase (the Data page pages through the top 1000)


def _texts(rec: dict, field: str) -> str:
    """The text of a record a phrase is looked for in: one field, or every text and history turn."""
    if field != "any":
        return rec.get(field) or ""
    turns = [t or "" for pair in rec.get("history") or [] for t in pair]
    return "\n".join([*(rec.get(f) or "" for f in TEXT_FIELDS), *turns])


def search(
    name: str, query: str, field: str = "any", limit: int = 20, version: int | None = None,
    method: str = "auto",
) -> dict:
    """Ranked full-text search (BM25) over one field or all of them; whole-phrase matches first.

    Among the best POOL hits by BM25, records that hold the whole query as written (case aside,
    Latin words whole, any spacing) come first, then those that only share words or CJK bigrams
    with it. A part of the query in double quotes must be in every hit. Checking the phrase on
    the BM25 candidates, not on every record, keeps a query on 1M records in milliseconds (a
    regex scan of the Parquet file took 2 s per query at 200k records); `exact_complete` says
    whether every match was a candidate, so that `exact` is the full count.

    Args:
        name: dataset name.
        query: words to look for; Chinese/Japanese/Korean text is matched by character bigrams;
            "a quoted phrase" must appear as written.
        field: "any", "instruction", "input", "output" or "system".
        limit: how many hits to return, best first.
        version: dataset version (default: head).
        method: "auto" (BM25, or the scan without PyStemmer), "fts" (BM25) or "scan".

    Returns:
        {"total": matches, "exact": how many hold the whole phrase, "exact_complete": bool,
         "records": [public records], "scores": [float per record]}.
    """
    if field not in SEARCH_FIELDS:
        raise TuneLabError(f"unknown field {field!r}: use one of {', '.join(SEARCH_FIELDS)}")
    if not query.replace('"', " ").strip():
        raise TuneLabError("the search query is empty")
    if method == "auto":
        method = "fts" if index_available() else "scan"
        if method == "scan":
            sys.stderr.write("warning: PyStemmer is not installed, so search has no index; "
                             "using an unindexed scan\n")
    version = store.resolve_version(name, version)  # hits and records from the same version
    limit = int(limit)
    phrase, required = parse_query(query)
    finder = _fts_hits if method == "fts" else _scan_hits
    hits, total = finder(name, phrase, field, max(limit, POOL), version)
    records = _fetch(name, [h[0] for h in hits], version)
    whole = re.compile(phrase_pattern(phrase), re.IGNORECASE)
    needed = [re.compile(phrase_pattern(p), re.IGNORECASE) for p in required]
    exact, related = [], []
    for (_, score), rec in zip(hits, records):
        text = _texts(rec, field)
        if all(n.search(text) for n in needed):
            (exact if whole.search(text) else related).append((rec, score))
    complete = total <= len(hits)
    if required:  # only the candidates that hold every quoted phrase are hits (a floor if not complete)
        total = len(exact) + len(related)
    shown = (exact + related)[:limit]
    return {"total": int(total), "exact": len(exact), "exact_complete": complete,
            "records": [r for r, _ in shown], "scores": [round(s, 4) for _, s in shown]}


def _fetch(name: str, rids: list[int], version: int | None) -> list[PublicRecord]:
    """Records at the given row numbers, in that order (from the sidecar's rows when built)."""
    if not rids:
        return []
    folder = index_dir(name, version)
    if (folder / "index.duckdb").exists():
        return _fetch_rows(folder, rids)
    # Without a sidecar: one Parquet scan that skips the row groups holding none of the rows.
    where = f"WHERE file_row_number IN ({', '.join(str(int(r)) for r in rids)})"
    path = store.version_path(name, version)
    with _reader() as con:
        cur = con.execute(_select(path, where).replace("SELECT ", "SELECT file_row_number, ", 1))
        names = [d[0] for d in cur.description]
        by_rid = {row[0]: public(dict(zip(names[1:], row[1:]))) for row in cur.fetchall()}
    return [by_rid[r] for r in rids if r in by_rid]


def _fetch_rows(folder: Path, rids: list[int]) -> list[PublicRecord]:
    """Random access by offset: a few seeks instead of decoding a row group per hit."""
    out = []
    with open(folder / "rows.idx", "rb") as idx, open(folder / "rows.bin", "rb") as rows:
        for rid in rids:
            idx.seek(8 * int(rid))
            start, end = struct.unpack("<qq", idx.read(16))
            rows.seek(start)
            out.append(public(json.loads(rows.read(end - start))))
    return out
