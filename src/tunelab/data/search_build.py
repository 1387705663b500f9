"""The build of a search sidecar (data/search.py): tokens, counts and BM25 in Arrow and numpy.

The sidecar it writes is the one search.py reads: index.duckdb (stats, dict, impacts sorted by
term then score, fields, vocab), rows.bin and rows.idx. The tokens are those of the fts
extension's tokenizer, `_tokens` below (lower(strip_accents(text)), every run of characters that
are neither letters nor digits, or dots, a separator), after CJK runs are segmented into
characters plus bigrams; words are stemmed with Porter, stopwords dropped, and BM25 is scored as
the extension's match_bm25 scores it.

How, and why so (bench/index_bench.py, 200k records, 2 shared cores; bench/RESULTS.md): the
earlier build ran the same steps as DuckDB SQL (a tokens table of every word, a join on words, a
GROUP BY per term/field/record, count(DISTINCT), a global ORDER BY) and took 2.8 times SQLite
FTS5's time. Here each column is tokenised once in Arrow: a byte table lowers ASCII letters and
turns every other ASCII byte that is not a letter or digit into a space, then the text is split on
spaces and the tokens of a batch are dictionary-encoded, so everything per distinct token (the
exact SQL tokenizer for tokens with non-ASCII characters, which may split or fold them; the
stemmer; stopwords; the term id) runs once per distinct token of a batch, and per occurrence only
numpy gathers run. Counts per (term, field, record) come from one sort of packed int64 keys per
batch; document frequency and record length fall out of the same pass; the final order (term,
score descending, record) is a stable numpy argsort of one int64 key over postings already in
record order, instead of SQL's sort of every posting.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tunelab.data.browse import fields_sql as _fields_sql
from tunelab.data.browse import sql_str as _sql_str
from tunelab.data.schema import FIELDS, PREFERENCE_FIELDS, TEXT_FIELDS
from tunelab.data.stopwords import ENGLISH as STOPWORDS
from tunelab.text import CJK_RE2, segment

# Indexed text: the text fields (a pair's two answers too) plus the flattened history (earlier
# turns of a conversation).
INDEXED = (*TEXT_FIELDS, "history")
IGNORE = r"(\.|[^\p{L}\p{N}])+"  # the tokenizer keeps letters of every script, not only a-z
BATCH = 65536
_FIELD_BITS, _ROW_BITS = 3, 21  # a batch's postings packed as term << 24 | row << 3 | field
assert len(INDEXED) <= 1 << _FIELD_BITS and BATCH <= 1 << _ROW_BITS

# ASCII bytes as the tokenizer sees them: letters lowered, digits kept, any other ASCII byte a
# separator (space). Bytes of non-ASCII characters pass through; the tokens holding them go
# through the SQL tokenizer itself (_tokens), once per distinct token.
_ASCII = np.full(256, 32, np.uint8)
_ASCII[128:] = np.arange(128, 256)
_ASCII[48:58] = np.arange(48, 58)
_ASCII[97:123] = np.arange(97, 123)
_ASCII[65:91] = np.arange(97, 123)


def _tokens(expr: str) -> str:
    """SQL for the fts extension's tokenizer (its `tokenize` macro), written out, applied to expr.

    After the replace only single spaces separate words (every blank is in IGNORE), so a plain
    split on ' ' matches the extension's split on '\\s+'; the empty strings at the ends are dropped
    by the callers.
    """
    return f"string_split(regexp_replace(lower(strip_accents({expr})), '{IGNORE}', ' ', 'g'), ' ')"


def _segment_column(arr: pa.Array) -> pa.Array:
    """Segment a string column, touching in Python only the rows that hold CJK text."""
    arr = pc.fill_null(arr, "")
    ascii_ = pc.string_is_ascii(arr)  # cheap: most rows skip the CJK regex
    if pc.all(ascii_).as_py():
        return arr
    has_cjk = pc.and_not(pc.match_substring_regex(arr, CJK_RE2), ascii_)
    if not pc.any(has_cjk).as_py():
        return arr
    segmented = [segment(v) for v in pc.filter(arr, has_cjk).to_pylist()]
    return pc.replace_with_mask(arr, has_cjk, pa.array(segmented, arr.type))


def _raw_tokens(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Segmented, ASCII-folded tokens of a column (some may be empty) and each one's row."""
    col = _segment_column(col).cast(pa.large_string())
    offsets = np.frombuffer(col.buffers()[1], "<i8")[col.offset:col.offset + len(col) + 1]
    data = np.frombuffer(col.buffers()[2] or b"", np.uint8)[offsets[0]:offsets[-1]]
    folded = pa.Array.from_buffers(pa.large_string(), len(col),
                                   [None, pa.py_buffer(offsets - offsets[0]), pa.py_buffer(_ASCII[data])])
    split = pc.ascii_split_whitespace(folded)
    return pc.list_flatten(split), pc.list_parent_indices(split).to_numpy()


class _Vocab:
    """Words, stems and term ids, grown batch by batch; every step once per distinct token."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        import Stemmer

        self.con = con
        self.stemmer = Stemmer.Stemmer("porter")
        self.words: dict[str, str] = {}  # every word seen -> its stem (stopwords too: the query side)
        self.terms: dict[str, int] = {}  # stem of a non-stopword -> term id
        self.raw: dict[str, int] = {}  # raw token -> index into self.ids (its term ids)
        self.ids: list[tuple[int, ...]] = []

    def _words_of(self, raws: list[str]) -> list[list[str]]:
        """The tokenizer's words of raw tokens: ASCII ones are words already (or empty)."""
        out = [[r] if r.isascii() else [] for r in raws]
        other = [i for i, r in enumerate(raws) if not r.isascii()]
        if other:
            self.con.register("raw_tokens", pa.table({"i": pa.array(other, pa.int64()),
                                                      "w": pa.array([raws[i] for i in other], pa.string())}))
            for i, w in self.con.execute(f"SELECT i, unnest({_tokens('w')}) FROM raw_tokens").fetchall():
                out[i].append(w)
        return [[w for w in ws if w] for ws in out]

    def add(self, raws: list[str]) -> None:
        """Learn the raw tokens not seen before; new terms numbered in term order, batch by batch."""
        new = [r for r in dict.fromkeys(raws) if r not in self.raw]
        if not new:
            return
        split = self._words_of(new)
        fresh = [w for w in dict.fromkeys(w for ws in split for w in ws) if w not in self.words]
        self.words.update(zip(fresh, self.stemmer.stemWords(fresh)))
        for term in sorted({self.words[w] for w in fresh if w not in STOPWORDS} - self.terms.keys()):
            self.terms[term] = len(self.terms)
        for r, ws in zip(new, split):
            self.raw[r] = len(self.ids)
            self.ids.append(tuple(self.terms[self.words[w]] for w in ws if w not in STOPWORDS))

    def term_ids(self, dictionary: list[str], indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Term id of each token (-1: none), or with `repeat`, when a token holds several words."""
        self.add(dictionary)
        ids = [self.ids[self.raw[r]] for r in dictionary]
        counts = np.fromiter(map(len, ids), np.int64, len(ids))
        if counts.max(initial=0) <= 1:
            lut = np.fromiter((t[0] if t else -1 for t in ids), np.int64, len(ids))
            return lut[indices], None
        flat = np.fromiter((t for ts in ids for t in ts), np.int64, int(counts.sum()))
        starts = np.cumsum(counts) - counts
        repeat = counts[indices]  # every token becomes its words (none for stopwords)
        first = np.repeat(starts[indices], repeat)
        within = np.arange(len(first)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        return flat[first + within], repeat


class _Postings:
    """(term, field, record, tf) of every batch, record lengths and document frequencies."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.lengths: list[np.ndarray] = []
        self.df = np.zeros(0, np.int64)

    def add(self, term: np.ndarray, row: np.ndarray, field: np.ndarray, base: int, rows: int) -> None:
        keep = term >= 0
        key = (term[keep] << (_ROW_BITS + _FIELD_BITS)) | (row[keep] << _FIELD_BITS) | field[keep]
        key.sort()
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
        key = key[starts]
        tf = np.diff(np.append(starts, int(keep.sum())))
        self.parts.append((key, tf.astype(np.int32), base))
        self.lengths.append(np.bincount((key >> _FIELD_BITS) & ((1 << _ROW_BITS) - 1), weights=tf,
                                        minlength=rows).astype(np.int64))
        doc = key >> _FIELD_BITS  # (term, record): df counts records, whatever the field
        terms = doc[np.concatenate(([True], doc[1:] != doc[:-1]))] >> _ROW_BITS
        df = np.bincount(terms)
        if len(df) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(len(df) - len(self.df), np.int64)])
        self.df[:len(df)] += df

    def impacts(self, docs: int) -> tuple[pa.Table, float]:
        """Every posting with its BM25 score, sorted by term, score descending, record; and avgdl."""
        self.parts.append((np.zeros(0, np.int64), np.zeros(0, np.int32), 0))  # none when no records
        term = np.concatenate([k >> (_ROW_BITS + _FIELD_BITS) for k, _, _ in self.parts])
        row = np.concatenate([((k >> _FIELD_BITS) & ((1 << _ROW_BITS) - 1)) + b for k, _, b in self.parts])
        field = np.concatenate([(k & ((1 << _FIELD_BITS) - 1)).astype(np.uint8) for k, _, _ in self.parts])
        tf = np.concatenate([t for _, t, _ in self.parts])
        self.parts.clear()
        length = np.concatenate([np.zeros(0, np.int64), *self.lengths])
        avgdl = int(length.sum()) / docs if docs else float("nan")
        # As match_bm25 (k=1.2, b=0.75; base-10 log, as DuckDB's log()), in the same order of
        # operations, in double, then stored as FLOAT.
        idf = np.log10((docs - self.df + 0.5) / (self.df + 0.5) + 1)
        score = (idf[term] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length[row] / avgdl))).astype(np.float32)
        # Positive floats order as their bits: one key, term then score descending; the stable
        # sort keeps record order (postings are in record order per term) for equal scores.
        key = (term << 31) | (0x7FFFFFFF - score.view(np.int32)).astype(np.int64)
        order = np.argsort(key, kind="stable")
        del key
        return pa.table({"termid": term[order], "fieldid": field[order], "rid": row[order],
                         "score": score[order]}), avgdl


def build(source: Path, folder: Path) -> None:
    """Write the sidecar of the Parquet version `source` into `folder` (index.duckdb, rows.*)."""
    with duckdb.connect() as con:
        vocab, postings = _Vocab(con), _Postings()
        docs = _fill(source, folder, vocab, postings)
        impacts, avgdl = postings.impacts(docs)
        terms = sorted(vocab.terms, key=vocab.terms.__getitem__)
        dictionary = pa.table({"termid": pa.array(np.arange(len(terms)), pa.int64()),  # noqa: F841
                               "term": pa.array(terms, pa.string()), "df": pa.array(postings.df, pa.int64())})
        words = pa.table({"word": pa.array(list(vocab.words), pa.string()),  # noqa: F841
                          "term": pa.array(list(vocab.words.values()), pa.string())})
        fields = ", ".join(f"({i}, {_sql_str(c)})" for i, c in enumerate(INDEXED))
        con.execute(f"ATTACH {_sql_str(folder / 'index.duckdb')} AS out")
        con.execute(f"""
            CREATE TABLE out.stats AS SELECT {int(docs)}::BIGINT AS num_docs, {avgdl if docs else 'NULL'}::DOUBLE AS avgdl;
            CREATE TABLE out.dict AS SELECT * FROM dictionary;
            CREATE TABLE out.impacts AS SELECT termid::BIGINT AS termid, fieldid::UTINYINT AS fieldid,
                rid::BIGINT AS rid, score FROM impacts;
            CREATE TABLE out.fields AS SELECT * FROM (VALUES {fields}) t(fieldid, field);
            CREATE TABLE out.vocab AS SELECT * FROM words;
        """)
        con.execute("DETACH out")


def _fill(source: Path, folder: Path, vocab: _Vocab, postings: _Postings) -> int:
    """Postings of every record; public records into rows.bin, byte offsets in rows.idx.

    Returns:
        The number of records.
    """
    docs = offset = 0
    text = ", ".join(TEXT_FIELDS)
    # The preference fields stay NULL on a plain record: _fetch_rows reads rows back through public().
    record = ", ".join(["id: id", *(f"{f}: coalesce({f}, '')" for f in TEXT_FIELDS
                                    if f not in PREFERENCE_FIELDS),
                        "history: coalesce(history, [])", *(f"{f}: {f}" for f in PREFERENCE_FIELDS)])
    with (duckdb.connect() as src, ThreadPoolExecutor(2) as pool,
          open(folder / "rows.bin", "wb") as rows, open(folder / "rows.idx", "wb") as idx):
        # to_json writes each record as _fetch_rows reads it back (public(): no NULL strings).
        reader = src.execute(
            f"SELECT file_row_number AS rid, {text}, array_to_string(flatten(history), ' ') AS history, "
            f"to_json({{{record}}})::VARCHAR AS record "
            f"FROM (SELECT file_row_number, {_fields_sql(source, FIELDS)} "
            f"FROM read_parquet({_sql_str(source)}, file_row_number=true)) ORDER BY rid"
        ).to_arrow_reader(BATCH)
        idx.write(struct.pack("<q", 0))
        for batch in reader:
            per_field = list(pool.map(_raw_tokens, (batch.column(c) for c in INDEXED)))
            tokens = pa.chunked_array([t for t, _ in per_field], pa.large_string())
            encoded = pc.dictionary_encode(tokens).combine_chunks()
            term, repeat = vocab.term_ids(encoded.dictionary.to_pylist(), encoded.indices.to_numpy())
            row = np.concatenate([r for _, r in per_field]).astype(np.int64)
            field = np.repeat(np.arange(len(INDEXED), dtype=np.int64), [len(r) for _, r in per_field])
            if repeat is not None:
                row, field = np.repeat(row, repeat), np.repeat(field, repeat)
            postings.add(term, row, field, docs, batch.num_rows)
            offset = _append_rows(batch.column("record"), rows, idx, offset)
            docs += batch.num_rows
    return docs


def _append_rows(record: pa.Array, rows, idx, offset: int) -> int:
    """Append JSON texts to rows.bin and their end offsets to rows.idx, from Arrow's buffers."""
    record = record.cast(pa.large_string())  # 64-bit offsets, whatever DuckDB sent
    bounds = np.frombuffer(record.buffers()[1], "<i8")[record.offset:record.offset + len(record) + 1]
    rows.write(memoryview(record.buffers()[2])[bounds[0]:bounds[-1]])
    idx.write((bounds[1:] - bounds[0] + offset).astype("<i8").tobytes())
    return offset + int(bounds[-1] - bounds[0])
