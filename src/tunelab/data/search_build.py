"""The build of a search sidecar (data/search.py): tokens, counts and BM25 in Arrow and numpy.

The sidecar it writes is the one search.py reads: index.duckdb (stats, dict, postings sorted by
term then score with an `impacts` view of them, fields, vocab), rows.bin and rows.idx. The tokens are those of the fts
extension's tokenizer, `_tokens` below (lower(strip_accents(text)), every run of characters that
are neither letters nor digits, or dots, a separator), after CJK runs are segmented into
characters plus bigrams; words are stemmed with Porter, stopwords dropped, and BM25 is scored as
the extension's match_bm25 scores it.

How, and why so (bench/index_bench.py, 200k records, 2 shared cores; bench/RESULTS.md): the
earlier build ran the same steps as DuckDB SQL (a tokens table of every word, a join on words, a
GROUP BY per term/field/record, count(DISTINCT), a global ORDER BY) and took 2.8-3.7 times SQLite
FTS5's time; this one about 0.9-1.0 times with both cores free. Each column is tokenised once in
Arrow: a byte table lowers ASCII letters and turns every other ASCII byte that is not a letter or
digit into a space, CJK characters and bigrams are cut on the UTF-8 bytes, the rest is split on
spaces and the tokens of a batch are dictionary-encoded, so everything per distinct token (the
exact SQL tokenizer for tokens with non-ASCII characters, which may split or fold them; the
stemmer; stopwords; the term id) runs once per distinct token of a batch, and per occurrence only
numpy gathers run. Counts per (term, field, record) come from one sort of packed int64 keys per
batch; document frequency and record length fall out of the same pass; the final order (term,
score descending, record) is a stable numpy argsort of one int64 key over postings already in
record order, instead of SQL's sort of every posting. Two worker threads tokenise, count and
sort while the calling thread reads the source, learns the vocabulary (in batch order) and writes.
"""

from __future__ import annotations

import collections
import itertools
import struct
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tunelab.data.browse import fields_sql as _fields_sql
from tunelab.data.browse import sql_str as _sql_str
from tunelab.data.schema import FIELDS, PREFERENCE_FIELDS, TEXT_FIELDS
from tunelab.data.stopwords import ENGLISH as STOPWORDS
from tunelab.text import CJK_RANGES, CJK_RE2, segment

# Indexed text: the text fields (a pair's two answers too) plus the flattened history (earlier
# turns of a conversation).
INDEXED = (*TEXT_FIELDS, "history")
IGNORE = r"(\.|[^\p{L}\p{N}])+"  # the tokenizer keeps letters of every script, not only a-z
BATCH = 65536
_WORKERS = 2  # threads tokenising, counting, sorting, beside the one reading and writing
_FIELD_BITS, _ROW_BITS = 3, 21  # a batch's postings packed as term << 24 | row << 3 | field
assert len(INDEXED) <= 1 << _FIELD_BITS and BATCH <= 1 << _ROW_BITS

# ASCII bytes as the tokenizer sees them: letters lowered, digits kept, any other ASCII byte a
# separator (space). Bytes of non-ASCII characters pass through; the tokens holding them go
# through the SQL tokenizer itself (_tokens), once per distinct token.
_ASCII = bytes(b if b >= 128 or chr(b).isalnum() else 32 for b in range(256)).lower()


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
    other = np.flatnonzero(pc.invert(pc.string_is_ascii(arr)).to_numpy(False))  # cheap: most rows are ASCII
    if not len(other):
        return arr
    other = other[pc.match_substring_regex(arr.take(other), CJK_RE2).to_numpy(False)]
    if not len(other):
        return arr
    mask = np.zeros(len(arr), bool)
    mask[other] = True
    segmented = [segment(v) for v in arr.take(other).to_pylist()]
    return pc.replace_with_mask(arr, pa.array(mask), pa.array(segmented, arr.type))


def _cjk_tokens(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CJK characters and bigrams of UTF-8 text (as tunelab.text.segment makes them), found on
    the bytes: every CJK range is 3-byte UTF-8. Returns the tokens' bytes, their offsets and
    rows; the characters are blanked in `data`, so the rest of the text splits as before."""
    lead = np.flatnonzero(data[:-2] >= 0xE0)
    lead = lead[data[lead] < 0xF0]  # lead bytes of 3-byte characters
    code = ((data[lead].astype(np.int32) & 0x0F) << 12) | ((data[lead + 1].astype(np.int32) & 0x3F) << 6) \
        | (data[lead + 2].astype(np.int32) & 0x3F)
    cjk = np.zeros(len(lead), bool)
    for lo, hi in CJK_RANGES:
        cjk |= (code >= lo) & (code <= hi)
    char = lead[cjk]
    if not len(char):
        return np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64)
    row = np.searchsorted(offsets, char, side="right") - 1
    follows = (char[1:] == char[:-1] + 3) & (row[1:] == row[:-1])  # next character of the same run
    pair = char[:-1][follows]
    unigram = (char[:, None] + np.arange(3)).ravel()
    tokens = np.concatenate([data[unigram], data[(pair[:, None] + np.arange(6)).ravel()]])
    starts = np.concatenate([np.arange(0, 3 * len(char), 3), 3 * len(char) + np.arange(0, 6 * len(pair) + 1, 6)])
    data[unigram] = 32
    return tokens, starts, np.concatenate([row, row[:-1][follows]])


def _raw_tokens(col: pa.Array) -> tuple[list[pa.Array], np.ndarray]:
    """ASCII-folded tokens of a column, CJK segmented (some tokens may be empty), and each one's row."""
    col = pc.fill_null(col, "")
    if col.type not in (pa.string(), pa.large_string()):
        col = col.cast(pa.large_string())
    width = "<i4" if col.type == pa.string() else "<i8"
    offsets = np.frombuffer(col.buffers()[1], width)[col.offset:col.offset + len(col) + 1].astype(np.int64)
    data = np.frombuffer(bytearray(memoryview(col.buffers()[2] or b"")[offsets[0]:offsets[-1]]).translate(_ASCII),
                         np.uint8)
    offsets -= offsets[0]
    out, rows = [], []
    if len(data) > 2:
        cjk, starts, row = _cjk_tokens(data, offsets)
        out.append(pa.Array.from_buffers(pa.large_string(), len(starts) - 1,
                                         [None, pa.py_buffer(starts), pa.py_buffer(cjk)]))
        rows.append(row)
    folded = pa.Array.from_buffers(pa.large_string(), len(col), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    split = pc.ascii_split_whitespace(folded)
    out.append(pc.list_flatten(split))
    rows.append(pc.list_parent_indices(split).to_numpy())
    return out, np.concatenate(rows).astype(np.int64)


def _tokenise(batch: pa.RecordBatch) -> tuple[pa.Array, np.ndarray, list[np.ndarray]]:
    """A batch's raw tokens, dictionary-encoded (distinct tokens, index of each), and each
    token's row << _FIELD_BITS | field (per field, in token order)."""
    tokens, where = [], []
    for field, c in enumerate(INDEXED):
        flat, row = _raw_tokens(batch.column(c))
        row <<= _FIELD_BITS
        row |= field
        tokens += flat
        where.append(row)
    encoded = pc.dictionary_encode(pa.chunked_array(tokens, pa.large_string())).combine_chunks()
    return encoded.dictionary, encoded.indices.to_numpy(), where


class _Vocab:
    """Raw tokens, words, stems and term ids, grown batch by batch, in Arrow: each distinct raw
    token and word is looked at once (a hash lookup per batch), only new words are stemmed."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        import Stemmer

        self.con = con
        self.stemmer = Stemmer.Stemmer("porter")
        self.stop = pa.array(sorted(STOPWORDS), pa.large_string())
        self.raw = pa.array([], pa.large_string())  # raw tokens seen
        self.raw_ids = np.zeros(0, np.int64)  # each one's term id (-1: none, -2: several, in multi)
        self.multi: dict[int, np.ndarray] = {}
        self.words = pa.array([], pa.large_string())  # every word seen (stopwords too: the query side)
        self.stems = pa.array([], pa.large_string())  # its stem
        self.word_ids = np.zeros(0, np.int64)  # the stem's term id (-1: a stopword)
        self.terms = pa.array([], pa.large_string())  # stems of non-stopwords, by term id

    def _words_of(self, raws: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """The tokenizer's words of raw tokens and the raw token each comes from: an ASCII token is
        a word already (or empty); others go through the SQL tokenizer."""
        ascii_ = pc.string_is_ascii(raws)
        keep = np.flatnonzero(pc.and_(ascii_, pc.greater(pc.binary_length(raws), 0)).to_numpy(False))
        words, owner = [raws.take(keep)], [keep]
        other = np.flatnonzero(pc.invert(ascii_).to_numpy(False))
        if len(other):
            self.con.register("raw_tokens", pa.table({"i": other, "w": raws.take(other)}))
            split = self.con.execute(f"SELECT i, w FROM (SELECT i, unnest({_tokens('w')}) AS w "
                                     "FROM raw_tokens) WHERE w <> ''").to_arrow_table()
            words.append(split.column("w").combine_chunks().cast(pa.large_string()))
            owner.append(split.column("i").to_numpy())
        return pa.concat_arrays(words), np.concatenate(owner)

    def _word_ids(self, words: pa.Array) -> np.ndarray:
        """Term id of each word (-1: a stopword), learning the new ones: only they are stemmed;
        one lookup in the words seen and one in the terms, the others in this batch's new ones."""
        pos = pc.fill_null(pc.index_in(words, value_set=self.words), -1).to_numpy()
        ids = np.full(len(words), -1, np.int64)
        known = pos >= 0
        ids[known] = self.word_ids[pos[known]]
        if known.all():
            return ids
        missing = pc.filter(words, pa.array(~known))
        new = pc.unique(missing)
        # Every Porter rule rewrites an a-z ending: other words (CJK, digits) are their own stem.
        latin = pc.match_substring_regex(new, "[a-z]$")
        stems = pc.replace_with_mask(new, latin, pa.array(self.stemmer.stemWords(
            pc.filter(new, latin).to_pylist()), pa.large_string()))
        stop = pc.is_in(new, value_set=self.stop)
        fresh = pc.unique(pc.filter(stems, pc.invert(stop)))  # the new words' terms
        fresh_ids = pc.fill_null(pc.index_in(fresh, value_set=self.terms), -1).to_numpy().astype(np.int64)
        unseen = np.flatnonzero(fresh_ids < 0)
        # New terms numbered in term order, batch by batch.
        candidates = pc.take(fresh, pa.array(unseen, pa.int64()))
        order = pc.sort_indices(candidates).to_numpy()
        fresh_ids[unseen[order]] = len(self.terms) + np.arange(len(unseen))
        self.terms = pa.concat_arrays([self.terms, pc.take(candidates, pa.array(order)).cast(pa.large_string())])
        new_ids = np.append(fresh_ids, -1)[pc.fill_null(pc.index_in(stems, value_set=fresh), -1).to_numpy()]
        new_ids[stop.to_numpy(False)] = -1
        ids[~known] = new_ids[pc.index_in(missing, value_set=new).to_numpy(False)]
        self.words = pa.concat_arrays([self.words, new])
        self.stems = pa.concat_arrays([self.stems, stems])
        self.word_ids = np.concatenate([self.word_ids, new_ids])
        return ids

    def _learn(self, raws: pa.Array) -> None:
        words, owner = self._words_of(raws)
        ids = self._word_ids(words)
        owner, ids = owner[ids >= 0], ids[ids >= 0]
        count = np.bincount(owner, minlength=len(raws))
        out = np.full(len(raws), -1, np.int64)
        out[owner[count[owner] == 1]] = ids[count[owner] == 1]
        if (count > 1).any():  # "don’t": a raw token of several words (rare)
            order = np.argsort(owner, kind="stable")
            owner, ids = owner[order], ids[order]
            for r in np.flatnonzero(count > 1):
                self.multi[len(self.raw_ids) + int(r)] = ids[owner == r]
            out[count > 1] = -2
        self.raw = pa.concat_arrays([self.raw, raws])
        self.raw_ids = np.concatenate([self.raw_ids, out])

    def term_ids(self, dictionary: pa.Array, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Term id of each token (-1: none), or with `repeat`, when a token holds several words."""
        dictionary = dictionary.cast(pa.large_string())
        pos = pc.index_in(dictionary, value_set=self.raw)
        new = pc.is_null(pos)
        pos = pc.fill_null(pos, -1).to_numpy().astype(np.int64)
        if (pos < 0).any():  # learnt in dictionary order, appended to self.raw
            pos[pos < 0] = len(self.raw) + np.arange(int((pos < 0).sum()))
            self._learn(pc.filter(dictionary, new))
        lut = self.raw_ids[pos]
        if not (lut == -2).any():
            return lut[indices], None
        several = np.flatnonzero(lut == -2)
        counts = (lut >= 0).astype(np.int64)
        counts[several] = [len(self.multi[int(pos[d])]) for d in several]
        flat = np.full(int(counts.sum()), -1, np.int64)
        starts = np.cumsum(counts) - counts
        single = lut >= 0
        flat[starts[single]] = lut[single]
        for d in several:
            flat[starts[d]:starts[d] + counts[d]] = self.multi[int(pos[d])]
        repeat = counts[indices]  # every token becomes its words (none for stopwords)
        first = np.repeat(starts[indices], repeat)
        within = np.arange(len(first)) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        return flat[first + within], repeat


def _count(term: np.ndarray, where: list[np.ndarray], base: int, rows: int) -> tuple:
    """One batch's postings from its tokens' term ids (-1: none) and row << _FIELD_BITS | field:
    (term, row, field) keys sorted, tf of each, each row's length, and df per term id."""
    key = np.left_shift(term, _ROW_BITS + _FIELD_BITS, out=term)
    start = 0
    for part in where:  # no concatenated copy
        key[start:start + len(part)] |= part
        start += len(part)
    key.sort()
    key = key[np.searchsorted(key, 0):]  # tokens without a term (stopwords) sort first
    doc = key >> _FIELD_BITS  # (term, record)
    lengths = np.bincount(doc & ((1 << _ROW_BITS) - 1), minlength=rows)
    change = np.empty(len(key), bool)
    change[:1] = True
    np.not_equal(key[1:], key[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    tf = np.diff(starts, append=len(key)).astype(np.int32)
    np.not_equal(doc[1:], doc[:-1], out=change[1:])  # df counts records, whatever the field
    return key[starts], tf, base, lengths, np.bincount(doc[change] >> _ROW_BITS)


class _Postings:
    """(term, field, record, tf) of every batch, record lengths and document frequencies; each
    batch counted by a worker (_count)."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool
        self.counting: list = []
        self.parts: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.lengths: list[np.ndarray] = []
        self.df = np.zeros(0, np.int64)

    def add(self, term: np.ndarray, where: list[np.ndarray], base: int, rows: int) -> None:
        self.counting.append(self.pool.submit(_count, term, where, base, rows))

    def finish(self) -> None:
        for future in self.counting:
            key, tf, base, lengths, df = future.result()
            self.parts.append((key, tf, base))
            self.lengths.append(lengths)
            if len(df) > len(self.df):
                self.df = np.concatenate([self.df, np.zeros(len(df) - len(self.df), np.int64)])
            self.df[:len(df)] += df
        self.counting.clear()

    def impacts(self, docs: int, pieces: int = 8) -> tuple[Iterator[pa.Table], float]:
        """Every posting with its BM25 score, sorted by term, score descending, record, in pieces
        (consecutive term ranges) that the workers score and sort while the caller writes the
        previous one; and avgdl."""
        length = np.concatenate([np.zeros(0, np.int64), *self.lengths])
        avgdl = int(length.sum()) / docs if docs else float("nan")
        # As match_bm25 (k=1.2, b=0.75; base-10 log, as DuckDB's log()), in the same order of
        # operations, in double, then stored as FLOAT.
        idf = np.log10((docs - self.df + 0.5) / (self.df + 0.5) + 1)
        shift = _ROW_BITS + _FIELD_BITS

        def piece(terms: tuple[int, int]) -> pa.Table:
            parts = []
            for key, tf, base in self.parts:  # each batch's postings are sorted by term
                a, b = np.searchsorted(key, [terms[0] << shift, terms[1] << shift])
                parts.append((key[a:b], tf[a:b], base))
            key = np.concatenate([np.zeros(0, np.int64), *(k for k, _, _ in parts)])
            tf = np.concatenate([np.zeros(0, np.int32), *(t for _, t, _ in parts)])
            row = np.concatenate([np.zeros(0, np.int64),
                                  *(((k >> _FIELD_BITS) & ((1 << _ROW_BITS) - 1)) + b for k, _, b in parts)])
            term = key >> shift
            score = (idf[term] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length[row] / avgdl))).astype(np.float32)
            # Positive floats order as their bits: one key, term then score descending; the stable
            # sort keeps record order (postings are in record order per term) for equal scores.
            order = np.argsort((term << 31) | (0x7FFFFFFF - score.view(np.int32)).astype(np.int64), kind="stable")
            where = (row << _FIELD_BITS) | (key & ((1 << _FIELD_BITS) - 1))  # rid << 3 | field
            return pa.table({"termid": term[order].astype(np.int32),
                             "ridfield": where[order].astype(np.int32 if docs < 1 << 28 else np.int64),
                             "score": score[order]})

        cum = np.cumsum(self.df)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, pieces) / pieces) if len(cum) else []
        bounds = sorted({0, len(self.df), *map(int, cuts)})
        ranges = list(zip(bounds[:-1], bounds[1:])) or [(0, 0)]
        return self.pool.map(piece, ranges), avgdl


def build(source: Path, folder: Path) -> None:
    """Write the sidecar of the Parquet version `source` into `folder` (index.duckdb, rows.*)."""
    with duckdb.connect() as con, ThreadPoolExecutor(_WORKERS) as pool:
        vocab, postings = _Vocab(con), _Postings(pool)
        docs = _fill(source, folder, vocab, postings, pool)
        postings.finish()
        pieces, avgdl = postings.impacts(docs)  # the workers start on the first pieces
        # One DuckDB thread: the pieces come sorted from the workers, and on 2 shared cores a
        # second writer thread made the 8 inserts slower (1.7-2.0 s vs 1.1 s for 11M postings).
        con.execute("SET threads = 1")
        con.execute(f"ATTACH {_sql_str(folder / 'index.duckdb')} AS out")
        con.register("dictionary", pa.table({"termid": np.arange(len(vocab.terms)), "term": vocab.terms,
                                             "df": np.pad(postings.df, (0, len(vocab.terms) - len(postings.df)))}))
        # Only words that stem to something else: the query side takes any other word as its own
        # term (an a-z word through the same stemmer), so the rest would be a third of the writing.
        changed = pc.not_equal(vocab.words, vocab.stems)
        con.register("words", pa.table({"word": pc.filter(vocab.words, changed),
                                        "term": pc.filter(vocab.stems, changed)}))
        fields = ", ".join(f"({i}, {_sql_str(c)})" for i, c in enumerate(INDEXED))
        con.execute(f"""
            CREATE TABLE out.stats AS SELECT {int(docs)}::BIGINT AS num_docs, {avgdl if docs else 'NULL'}::DOUBLE AS avgdl;
            CREATE TABLE out.dict AS SELECT termid, term::VARCHAR AS term, df FROM dictionary;
            CREATE TABLE out.fields AS SELECT * FROM (VALUES {fields}) t(fieldid, field);
            CREATE TABLE out.vocab AS SELECT word::VARCHAR AS word, term::VARCHAR AS term FROM words;
        """)
        # Three columns, record and field packed in one (a quarter less to write than four); the
        # view gives queries the columns they read, in stored order.
        con.execute(f"CREATE TABLE out.postings (termid INTEGER, ridfield {'INTEGER' if docs < 1 << 28 else 'BIGINT'}, "
                    "score FLOAT)")
        for piece in pieces:  # in term order: DuckDB keeps insertion order
            con.register("piece", piece)
            con.execute("INSERT INTO out.postings SELECT * FROM piece")
        postings.parts.clear()
        con.execute("DETACH out")
    with duckdb.connect(str(folder / "index.duckdb")) as out:  # the view binds names in its own file
        out.execute(f"CREATE VIEW impacts AS SELECT termid, (ridfield & {(1 << _FIELD_BITS) - 1})::UTINYINT "
                    f"AS fieldid, ridfield >> {_FIELD_BITS} AS rid, score FROM postings")


def _fill(source: Path, folder: Path, vocab: _Vocab, postings: _Postings, pool: ThreadPoolExecutor) -> int:
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
    with (duckdb.connect() as src, open(folder / "rows.bin", "wb") as rows, open(folder / "rows.idx", "wb") as idx):
        # to_json writes each record as _fetch_rows reads it back (public(): no NULL strings).
        # In file order without an ORDER BY (DuckDB keeps insertion order; checked per batch), so
        # batches stream while the previous one is counted.
        reader = src.execute(
            f"SELECT file_row_number AS rid, {text}, array_to_string(flatten(history), ' ') AS history, "
            f"to_json({{{record}}})::VARCHAR AS record "
            f"FROM (SELECT file_row_number, {_fields_sql(source, FIELDS)} "
            f"FROM read_parquet({_sql_str(source)}, file_row_number=true))"
        ).to_arrow_reader(BATCH)
        idx.write(struct.pack("<q", 0))
        pending: collections.deque = collections.deque()
        for batch in itertools.chain(reader, [None]):
            if batch is not None:  # tokenised by workers while this thread counts earlier batches
                if not np.array_equal(batch.column("rid").to_numpy(), np.arange(docs, docs + batch.num_rows)):
                    raise RuntimeError("the source rows came out of file order")
                offset = _append_rows(batch.column("record"), rows, idx, offset)
                pending.append((pool.submit(_tokenise, batch), docs, batch.num_rows))
                docs += batch.num_rows
            while pending and (batch is None or len(pending) > _WORKERS):
                future, base, n = pending.popleft()
                dictionary, indices, where = future.result()
                term, repeat = vocab.term_ids(dictionary, indices)
                if repeat is not None:
                    where = [np.repeat(np.concatenate(where), repeat)]
                postings.add(term, where, base, n)
    return docs


def _append_rows(record: pa.Array, rows, idx, offset: int) -> int:
    """Append JSON texts to rows.bin and their end offsets to rows.idx, from Arrow's buffers."""
    if record.type not in (pa.string(), pa.large_string()):
        record = record.cast(pa.large_string())
    width = "<i4" if record.type == pa.string() else "<i8"
    bounds = np.frombuffer(record.buffers()[1], width)[record.offset:record.offset + len(record) + 1].astype(np.int64)
    rows.write(memoryview(record.buffers()[2])[bounds[0]:bounds[-1]])
    idx.write((bounds[1:] - bounds[0] + offset).astype("<i8").tobytes())
    return offset + int(bounds[-1] - bounds[0])
