"""Browse, search and SQL over dataset versions, with DuckDB in-process over the Parquet files.

Search is BM25 over an index built here in plain DuckDB SQL; DuckDB's fts extension (offline: the
file shipped in duckdb-extension-fts) lends its Porter stem() and English stopword list. The index
of a version lives in a sidecar folder, datasets/<name>/v<N>.search/, built once on first search
into a temporary folder and renamed, then opened read-only so that any number of processes can
search at once (DuckDB allows one writer per file). The sidecar keeps the dictionary and
statistics, BM25 precomputed per (term, field, record) sorted by term then score, a word->stem
vocabulary, and the public records as JSON with byte offsets. Words are split as the extension's
tokenizer splits them, and CJK runs are pre-segmented into characters plus character bigrams, in
the index and in the query: a bigram hit ranks "机器学习" above records that merely share its
characters, and one-character queries still match.

Why an index rather than an ILIKE scan: a scan reads and lower-cases every text column of every
row per query and can only count hits; on 1M records (2 shared cores, bench/RESULTS.md) the
scored scan fallback took 4-18 s per query, pandas str.contains about 4 s. Measured costs shaped
the sidecar: the extension's match_bm25 (and a plain aggregation over term-sorted postings) sums
every posting of a common word — 1.7 s p50, 3.9 s p95 on a Zipf-distributed 1M corpus — so each
query term contributes only its best TOP_PER_TERM postings (exact for one-word queries; `total`
is estimated past EXACT_TOTAL_MAX postings); loading the extension costs ~180 ms (a signature
check of its 11 MB), so query words are stemmed through the stored vocabulary and the extension
is loaded only for an a-z word the corpus never contains; fetching 20 hits scattered over a
Parquet file decodes 20 row groups (130-500 ms), so hits are read by offset from the rows file.
The extension's own create_fts_index took 600-690 s on 1M records (it stems every token and
fills its tables with correlated UPDATEs); the build here stems each distinct word once and
aggregates batch by batch (bench: index build). The index takes about 3-4 times the Parquet file
on disk. If the extension cannot load, search falls back to the scan with a warning on stderr.
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
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from tunelab import workspace
from tunelab.data import store
from tunelab.data.schema import public
from tunelab.errors import TuneLabError

PUBLIC = ("id", "instruction", "input", "output", "system", "history")
# Indexed text: the four fields plus the flattened history (earlier turns of a conversation).
INDEXED = ("instruction", "input", "output", "system", "history")
SEARCH_FIELDS = ("any", "instruction", "input", "output", "system")
# Hiragana/Katakana, CJK ideographs (+ extension A, compatibility), Hangul syllables.
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF))
CJK_RUN = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_RANGES) + "]+")
CJK_RE2 = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in CJK_RANGES) + "]"  # Arrow's RE2
IGNORE = r"(\.|[^\p{L}\p{N}])+"  # the tokenizer keeps letters of every script, not only a-z
BATCH = 65536


@functools.lru_cache(maxsize=1)
def _memory_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache=true")  # version files never change once written
    return con


def _reader() -> duckdb.DuckDBPyConnection:
    """A cursor on one shared in-memory database: a fresh connect() costs 25+ ms, a cursor ~0."""
    return _memory_db().cursor()


@functools.lru_cache(maxsize=8)
def _index_db(path: str, stamp: tuple[int, int]) -> duckdb.DuckDBPyConnection:
    """A read-only connection per index file; stamp (inode, mtime) keys out a rebuilt index."""
    # Insertion order is what _fts_hits reads each term's best postings by (DuckDB's default, pinned).
    return duckdb.connect(path, read_only=True, config={"preserve_insertion_order": True})


def _index_reader(folder: Path) -> duckdb.DuckDBPyConnection:
    path = folder / "index.duckdb"
    st = path.stat()
    return _index_db(str(path), (st.st_ino, st.st_mtime_ns)).cursor()


def _sql_str(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _select(path: Path, where: str = "", order: str = "") -> str:
    cols = ", ".join(PUBLIC)
    return f"SELECT {cols} FROM read_parquet({_sql_str(path)}, file_row_number=true) {where} {order}"


def _records(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> list[dict]:
    cur = con.execute(query, params or [])
    names = [d[0] for d in cur.description]
    return [public(dict(zip(names, row))) for row in cur.fetchall()]


def _total(name: str, version: int) -> int:
    return next(e["records"] for e in store.manifest(name)["versions"] if e["version"] == version)


def show(name: str, offset: int = 0, limit: int = 20, version: int | None = None) -> dict:
    """One page of records.

    Args:
        name: dataset name.
        offset: index of the first record (0-based).
        limit: page size.
        version: dataset version (default: head).

    Returns:
        {"total": int, "records": [public records]}.
    """
    if offset < 0 or limit < 0:
        raise TuneLabError("--offset and --limit must be zero or more")
    version = store.resolve_version(name, version)  # once: a concurrent commit may move the head
    path = store.version_path(name, version)
    # A file_row_number range lets DuckDB skip whole row groups; LIMIT/OFFSET would decode them.
    where = f"WHERE file_row_number >= {int(offset)} AND file_row_number < {int(offset) + int(limit)}"
    with _reader() as con:
        records = _records(con, _select(path, where, "ORDER BY file_row_number"))
    return {"total": _total(name, version), "records": records}


# ---------------------------------------------------------------- segmentation


def _split_run(run: str, for_query: bool) -> str:
    bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
    if for_query and bigrams:  # bigrams are what ranks; unigrams would match almost everything
        return " " + " ".join(bigrams) + " "
    return " " + " ".join(list(run) + bigrams) + " "


def segment(text: str, for_query: bool = False) -> str:
    """Make CJK text searchable by a whitespace tokenizer: characters plus character bigrams.

    Args:
        text: any text; non-CJK parts are left alone.
        for_query: segment a query (bigrams only when a run has two or more characters).

    Returns:
        The text with every CJK run replaced by space-separated tokens.
    """
    if not text:
        return ""
    return CJK_RUN.sub(lambda m: _split_run(m.group(0), for_query), text)


def _segment_column(arr: pa.Array) -> pa.Array:
    """Segment a string column, touching in Python only the rows that hold CJK text."""
    import pyarrow.compute as pc

    arr = pc.fill_null(arr, "")
    has_cjk = pc.match_substring_regex(arr, CJK_RE2)
    if not pc.any(has_cjk).as_py():
        return arr
    segmented = [segment(v) for v in pc.filter(arr, has_cjk).to_pylist()]
    return pc.replace_with_mask(arr, has_cjk, pa.array(segmented, arr.type))


# ---------------------------------------------------------------- full-text index


def fts_extension() -> Path:
    """The fts extension file shipped in the duckdb-extension-fts wheel (no network INSTALL)."""
    import duckdb_extension_fts

    base = Path(duckdb_extension_fts.__file__).parent / "extensions"
    return base / f"v{duckdb.__version__}" / "fts.duckdb_extension"


def _load_fts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"LOAD {_sql_str(fts_extension())}")


@functools.lru_cache(maxsize=1)
def fts_available() -> bool:
    """Whether the fts extension loads in this environment."""
    try:
        with duckdb.connect() as con:
            _load_fts(con)
        return True
    except (ImportError, duckdb.Error):
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
        # On disk: memory stays bounded. Insertion order kept: impacts is stored in ranking order.
        with duckdb.connect(str(tmp / "build.duckdb"), config={"preserve_insertion_order": True}) as con:
            _load_fts(con)  # for stem() and the stopword list only
            # The pragma binds before a script's earlier statements run: its table comes first.
            con.execute("CREATE TABLE probe AS SELECT 0 AS id, '' AS t")
            con.execute(_BUILD_TABLES)
            docs = _fill(con, source, tmp)
            con.execute(f"ATTACH {_sql_str(tmp / 'index.duckdb')} AS out")
            fields = ", ".join(f"({i}, {_sql_str(c)})" for i, c in enumerate(INDEXED))
            con.execute(_INDEX_TABLES.format(docs=int(docs), fields=fields))
            con.execute("DETACH out")
        (tmp / "build.duckdb").unlink()
        with contextlib.suppress(OSError):  # another process renamed the same index in first
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stderr.write(f"search index built in {time.perf_counter() - started:.1f} s\n")
    return target


def _tokens(expr: str) -> str:
    """SQL for the extension's own tokenizer (its `tokenize` macro) applied to expr.

    After the replace only single spaces separate words (every blank is in IGNORE), so a plain
    split on ' ' matches the extension's split on '\\s+'; the empty strings at the ends are dropped
    by the callers.
    """
    return f"string_split(regexp_replace(lower(strip_accents({expr})), '{IGNORE}', ' ', 'g'), ' ')"


# Working tables of a build (in build.duckdb, deleted afterwards). words maps every distinct word
# to its Porter stem once, so stem() runs per vocabulary entry, not per token; termid is NULL
# for stopwords (the extension's English list, read from a one-row index of its own).
_BUILD_TABLES = """
PRAGMA create_fts_index('probe', 'id', 't', stopwords='english');
CREATE TABLE stopwords AS SELECT DISTINCT sw AS word FROM fts_main_probe.stopwords;
CREATE TABLE words (word VARCHAR, term VARCHAR, termid INTEGER);
CREATE TABLE terms (termid INTEGER, term VARCHAR);
CREATE TABLE postings (termid INTEGER, fieldid UTINYINT, rid BIGINT, tf INTEGER, len INTEGER);
CREATE TABLE dfs (termid INTEGER, df BIGINT);
CREATE TABLE lengths (len BIGINT);
"""

# One batch of segmented records (Arrow table `seg`) into postings: tokens, new words stemmed and
# numbered, then tf per (term, field, record) and the record's length over all fields. df is
# counted per batch and summed at the end (batches hold disjoint records).
_BATCH_POSTINGS = """
CREATE OR REPLACE TEMP TABLE tokens AS SELECT * FROM ({tokens}) WHERE word <> '';
CREATE OR REPLACE TEMP TABLE new_words AS
    SELECT word, stem(word, 'porter') AS term, word IN (SELECT word FROM stopwords) AS stop
    FROM (SELECT DISTINCT word FROM tokens) ANTI JOIN words USING (word);
INSERT INTO terms SELECT (SELECT count(*) FROM terms) + row_number() OVER (ORDER BY term) - 1, term
    FROM (SELECT DISTINCT term FROM new_words WHERE NOT stop) ANTI JOIN terms USING (term);
INSERT INTO words SELECT n.word, n.term, CASE WHEN NOT n.stop THEN t.termid END
    FROM new_words n LEFT JOIN terms t USING (term);
CREATE OR REPLACE TEMP TABLE tf AS
    SELECT w.termid, k.fieldid, k.rid, count(*)::INTEGER AS tf
    FROM tokens k JOIN words w USING (word) WHERE w.termid IS NOT NULL GROUP BY ALL;
CREATE OR REPLACE TEMP TABLE lens AS SELECT rid, sum(tf)::INTEGER AS len FROM tf GROUP BY rid;
INSERT INTO postings SELECT tf.*, lens.len FROM tf JOIN lens USING (rid);
INSERT INTO dfs SELECT termid, count(DISTINCT rid) FROM tf GROUP BY termid;
INSERT INTO lengths SELECT sum(len) FROM lens;
"""
_BATCH_TOKENS = " UNION ALL ".join(
    f"SELECT rid, {i}::UTINYINT AS fieldid, unnest({_tokens(c)}) AS word FROM seg"
    for i, c in enumerate(INDEXED))


def _fill(con: duckdb.DuckDBPyConnection, source: Path, folder: Path) -> int:
    """Postings of every record into `con`; public records into rows.bin, byte offsets in rows.idx.

    Returns:
        The number of records.
    """
    docs = offset = 0
    batch_sql = _BATCH_POSTINGS.format(tokens=_BATCH_TOKENS)
    with (duckdb.connect() as src, open(folder / "rows.bin", "wb") as rows,
          open(folder / "rows.idx", "wb") as idx):
        # A second connection streams the source: a query on `con` would cancel the stream.
        # to_json writes each record as _fetch_rows reads it back (public(): no NULL strings).
        reader = src.execute(
            "SELECT file_row_number AS rid, instruction, input, output, system, "
            "array_to_string(flatten(history), ' ') AS history, "
            "to_json({id: id, instruction: coalesce(instruction, ''), input: coalesce(input, ''), "
            "output: coalesce(output, ''), system: coalesce(system, ''), "
            "history: coalesce(history, [])})::VARCHAR AS record "
            f"FROM read_parquet({_sql_str(source)}, file_row_number=true) ORDER BY rid"
        ).to_arrow_reader(BATCH)
        idx.write(struct.pack("<q", 0))
        for batch in reader:
            seg = pa.table({"rid": batch.column("rid"),
                            **{c: _segment_column(batch.column(c)) for c in INDEXED}})
            # Smaller Arrow chunks let DuckDB tokenise on every thread.
            con.register("seg", pa.Table.from_batches(seg.to_batches(max_chunksize=8192)))
            con.execute(batch_sql)
            offset = _append_rows(batch.column("record"), rows, idx, offset)
            docs += batch.num_rows
    return docs


def _append_rows(record: pa.Array, rows, idx, offset: int) -> int:
    """Append JSON texts to rows.bin and their end offsets to rows.idx, from Arrow's buffers."""
    import numpy as np

    record = record.cast(pa.large_string())  # 64-bit offsets, whatever DuckDB sent
    bounds = np.frombuffer(record.buffers()[1], "<i8")[record.offset:record.offset + len(record) + 1]
    rows.write(memoryview(record.buffers()[2])[bounds[0]:bounds[-1]])
    idx.write((bounds[1:] - bounds[0] + offset).astype("<i8").tobytes())
    return offset + int(bounds[-1] - bounds[0])


# What a query needs. BM25 is precomputed per (term, field, record) as the extension's match_bm25
# scores it with a field filter (k=1.2, b=0.75; df and length per record over all fields) and
# stored sorted by term, then score: a query reads only its terms' row groups (DuckDB keeps
# min/max per row group) and keeps each term's best postings, instead of aggregating every
# posting of a common word (seconds on 1M Zipf-distributed records). vocab maps each word seen to
# its stem so most queries need no extension load (~180 ms, a signature check of its 11 MB).
# DuckDB's log() is base 10, as in match_bm25: scores are 0.43 times the ln-based idf's, same ranks.
_INDEX_TABLES = """
CREATE TABLE out.stats AS SELECT {docs}::BIGINT AS num_docs,
    (SELECT sum(len) FROM lengths) / {docs} AS avgdl;
CREATE TABLE out.dict AS SELECT termid::BIGINT AS termid, term, sum(df)::BIGINT AS df
    FROM terms JOIN dfs USING (termid) GROUP BY ALL;
CREATE TABLE out.impacts AS
SELECT p.termid::BIGINT AS termid, p.fieldid, p.rid,
       CAST(log((st.num_docs - d.df + 0.5) / (d.df + 0.5) + 1)
            * p.tf * 2.2 / (p.tf + 1.2 * (0.25 + 0.75 * p.len / st.avgdl)) AS FLOAT) AS score
FROM postings p JOIN out.dict d USING (termid), out.stats st
ORDER BY p.termid, score DESC, p.rid;
CREATE TABLE out.fields AS SELECT * FROM (VALUES {fields}) t(fieldid, field);
CREATE TABLE out.vocab AS SELECT word, term FROM words;
"""
TOP_PER_TERM = 2000  # candidates kept per query term (exact ranking for one-word queries)
EXACT_TOTAL_MAX = 200_000  # postings counted exactly for `total`; above, it is estimated


_STEMMABLE = re.compile(r"[a-z]+")


def _query_terms(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[int, int]]:
    """(termid, df) of the query's stemmed words that occur in the index."""
    words = con.execute(
        f"SELECT w.word, v.term FROM (SELECT DISTINCT unnest({_tokens('?')}) AS word) w "
        "LEFT JOIN vocab v USING (word) WHERE w.word <> ''", [segment(query, True)]).fetchall()
    terms = {t for _, t in words if t}
    # Only a-z words can stem differently; anything else (CJK, digits) is its own term.
    unseen = [w for w, t in words if not t and _STEMMABLE.fullmatch(w)]
    terms |= {w for w, t in words if not t and not _STEMMABLE.fullmatch(w)}
    if unseen:  # a new form of a known stem ("runs" where only "running" occurs) still matches
        _load_fts(con)
        stems = con.execute("SELECT DISTINCT stem(unnest(?::VARCHAR[]), 'porter')", [unseen]).fetchall()
        terms |= {r[0] for r in stems}
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
    cols = ["instruction", "input", "output", "system", "array_to_string(flatten(history), ' ')"]
    text = f"lower({field})"
    if field == "any":
        text = " || ' ' || ".join(f"lower(coalesce({c}, ''))" for c in cols)
    score = " + ".join("CAST(contains(txt, ?) AS INTEGER)" for _ in terms)
    path = store.version_path(name, version)
    q = (
        f"SELECT rid, score, count(*) OVER () FROM (SELECT file_row_number AS rid, {score} AS score FROM "
        f"(SELECT file_row_number, {text} AS txt FROM read_parquet({_sql_str(path)}, file_row_number=true))) "
        "WHERE score > 0 ORDER BY score DESC, rid LIMIT ?"
    )
    with _reader() as con:
        rows = con.execute(q, [*terms, limit]).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows], (rows[0][2] if rows else 0)


def search(
    name: str, query: str, field: str = "any", limit: int = 20, version: int | None = None,
    method: str = "auto",
) -> dict:
    """Ranked full-text search (BM25) over one field or all of them.

    Args:
        name: dataset name.
        query: words to look for; Chinese/Japanese/Korean text is matched by character bigrams.
        field: "any", "instruction", "input", "output" or "system".
        limit: how many hits to return, best first.
        version: dataset version (default: head).
        method: "auto" (BM25, or the scan if fts cannot load), "fts" or "scan".

    Returns:
        {"total": matches, "records": [public records], "scores": [float per record]}.
    """
    if field not in SEARCH_FIELDS:
        raise TuneLabError(f"unknown field {field!r}: use one of {', '.join(SEARCH_FIELDS)}")
    if not query.strip():
        raise TuneLabError("the search query is empty")
    if method == "auto":
        method = "fts" if fts_available() else "scan"
        if method == "scan":
            sys.stderr.write("warning: DuckDB's fts extension did not load; using an unindexed scan\n")
    version = store.resolve_version(name, version)  # hits and records from the same version
    finder = _fts_hits if method == "fts" else _scan_hits
    hits, total = finder(name, query, field, int(limit), version)
    return {"total": int(total), "records": _fetch(name, [h[0] for h in hits], version),
            "scores": [round(h[1], 4) for h in hits]}


def _fetch(name: str, rids: list[int], version: int | None) -> list[dict]:
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


def _fetch_rows(folder: Path, rids: list[int]) -> list[dict]:
    """Random access by offset: a few seeks instead of decoding a row group per hit."""
    out = []
    with open(folder / "rows.idx", "rb") as idx, open(folder / "rows.bin", "rb") as rows:
        for rid in rids:
            idx.seek(8 * int(rid))
            start, end = struct.unpack("<qq", idx.read(16))
            rows.seek(start)
            out.append(json.loads(rows.read(end - start)))
    return out


# ---------------------------------------------------------------- SQL sandbox


QUERY_WORDS = {"SELECT", "WITH", "FROM", "VALUES", "TABLE", "DESCRIBE", "SHOW", "SUMMARIZE"}
_LEADING = re.compile(r"^(\s|--[^\n]*\n?|/\*.*?\*/|\()*", re.S)  # comments, brackets


def _check_query(query: str) -> None:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
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


def sandbox() -> duckdb.DuckDBPyConnection:
    """An in-memory connection where each dataset's head is a view, locked against file access.

    Datasets whose names differ only in case (`Foo`, `foo`: DuckDB identifiers are
    case-insensitive, quoted or not) get no view, and neither does one whose file cannot be read,
    so every other dataset stays queryable; a new name that clashes is refused at import.
    """
    con = duckdb.connect()
    for d in _tables():
        path = store.version_path(d["name"], d["version"])
        with contextlib.suppress(duckdb.Error):  # a missing/damaged file costs only its own table
            con.execute(f'CREATE VIEW "{d["name"]}" AS SELECT * FROM read_parquet({_sql_str(path)})')
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
        raise TuneLabError(_one_line(exc)) from None
    if exc is not None:
        raise exc
    return {"columns": done["columns"], "rows": done["rows"]}
