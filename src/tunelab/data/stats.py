"""Dataset statistics: counts, exact duplicates, empty fields and token lengths per record.

Token lengths are measured on the chat-formatted record (system + history + instruction/input +
output, through the model's chat template) with the very code training encodes with
(data/messages.py), because that is what training truncates. The data layer does not load models:
callers pass a tokenizer (models.tokens.token_counter(MODEL) loads one by name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from tunelab.data import messages as chat
from tunelab.data import store
from tunelab.data.schema import PAIR_FIELDS, PREFERENCE_FIELDS, TEXT_FIELDS
from tunelab.text import CJK_RUN

CUTOFFS = (256, 512, 1024, 2048)
TOKEN_BATCH = 1000
_SPACE = re.compile(r"\s+")


@dataclass
class TokenCounter:
    """Counts tokens of chat-formatted records; `name` says which tokenizer was used.

    `records`, when set, counts whole records exactly as training does; otherwise each record is
    formatted with `format` and the texts counted with `count`.
    """

    name: str
    count: Callable[[list[str]], list[int]]
    format: Callable[[list[list[dict]]], list[str]]
    records: Callable[[list[dict]], list[int]] | None = None


def _plain_format(convs: list[list[dict]]) -> list[str]:
    return ["\n".join(f"{m['role']}: {m['content']}" for m in conv) for conv in convs]


def _rough_count(texts: list[str]) -> list[int]:
    """Whitespace words plus one per CJK character (CJK has no spaces between words)."""
    out = []
    for t in texts:
        cjk = sum(len(run) for run in CJK_RUN.findall(t))
        out.append(len(CJK_RUN.sub(" ", t).split()) + cjk)
    return out


def rough_counter(reason: str = "") -> TokenCounter:
    """The fallback counter: words + CJK characters, formatted as plain `role: content` lines."""
    name = "whitespace+cjk-chars" + (f" (fallback: {reason})" if reason else "")
    return TokenCounter(name, _rough_count, _plain_format)


def hf_counter(tok, name: str = "") -> TokenCounter:
    """A counter over a Hugging Face tokenizer: with a chat template, exactly training's count."""

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    has_template = bool(getattr(tok, "chat_template", None))
    return TokenCounter(name or getattr(tok, "name_or_path", "") or type(tok).__name__, count, _plain_format,
                        (lambda rows: chat.token_lengths(tok, rows)) if has_template else None)


def token_counter(tokenizer=None, reason: str = "no tokenizer given") -> TokenCounter:
    """A TokenCounter for a ready tokenizer (Hugging Face or TokenCounter); the rough count without one.

    Args:
        tokenizer: a Hugging Face tokenizer or a TokenCounter; None falls back to counting words.
        reason: shown in the fallback counter's name.
    """
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    if tokenizer is not None:
        return hf_counter(tokenizer)
    return rough_counter(reason)


def token_lengths(table: pa.Table, counter: TokenCounter) -> list[int]:
    """Token count of every record (chat-formatted), tokenised in batches."""
    lengths: list[int] = []
    for batch in table.to_batches(TOKEN_BATCH):
        rows = batch.to_pylist()
        if counter.records is not None:
            lengths += counter.records(rows)
        else:
            lengths += counter.count(counter.format([chat.to_messages(r, with_output=True) for r in rows]))
    return lengths


def _norm(text) -> str:
    return _SPACE.sub(" ", str(text or "")).strip().casefold()


def exact_key(record: dict) -> str:
    """Normalised content (whitespace collapsed, case folded) of every field that trains.

    A pair's rejected answer and a KTO label count too: two pairs that share the prompt and the
    chosen answer but not the rejected one are different pairs.
    """
    history = "\x1e".join("\x1d".join(_norm(t) for t in pair) for pair in record.get("history") or [])
    parts = [_norm(record.get(f)) for f in ("system", "instruction", "input", "output")]
    tag = record.get("kto_tag")
    extra = [_norm(record.get("rejected")), "" if tag is None else str(tag)] \
        if record.get("rejected") is not None or tag is not None else []
    return "\x1f".join(parts + [history] + extra)


def duplicate_rows(table: pa.Table) -> list[int]:
    """Row indices of records that repeat an earlier record (exact after normalisation)."""
    seen: set[str] = set()
    dups = []
    fields = ["system", "instruction", "input", "output", "history",
              *(f for f in PREFERENCE_FIELDS if f != "chosen")]  # chosen is the output
    rows = table.select([f for f in fields if f in table.column_names]).to_pylist()
    for i, rec in enumerate(rows):
        key = exact_key(rec)
        if key in seen:
            dups.append(i)
        seen.add(key)
    return dups


def _percentile(sorted_vals: list[int], q: float) -> int:
    if not sorted_vals:
        return 0
    return sorted_vals[min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1))))]


def _histogram(values: list[int], bins: int = 40) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    top = max(values) + 1
    width = max(1, -(-top // bins))
    counts = [0] * (-(-top // width))
    for v in values:
        counts[v // width] += 1
    return {"edges": [i * width for i in range(len(counts) + 1)], "counts": counts}


def table_stats(table: pa.Table, counter: TokenCounter) -> dict:
    """Statistics of an Arrow table in the dataset schema (see stats() for the keys)."""
    import pyarrow.compute as pc

    n = table.num_rows
    empty = {f: int(pc.sum(pc.equal(pc.utf8_trim_whitespace(pc.fill_null(table[f], "")), "")).as_py() or 0)
             for f in TEXT_FIELDS if f not in PAIR_FIELDS}  # a plain record has no chosen/rejected
    lengths = token_lengths(table, counter)
    ordered = sorted(lengths)
    dups = duplicate_rows(table)
    ids = table["id"].to_pylist()
    return {
        "records": n,
        "duplicates": len(dups),
        "empty_output": empty["output"],
        "tokens": {"p50": _percentile(ordered, 0.5), "p95": _percentile(ordered, 0.95),
                   "max": ordered[-1] if ordered else 0,
                   "mean": round(sum(ordered) / n, 1) if n else 0},
        "truncated": {str(c): round(sum(1 for v in lengths if v > c) / n, 4) if n else 0.0 for c in CUTOFFS},
        "tokenizer": counter.name,
        "empty": empty,
        "with_history": int(sum(1 for h in table["history"].to_pylist() if h)),
        "with_system": n - empty["system"],
        "histogram": _histogram(lengths),
        "duplicate_ids": [ids[i] for i in dups[:50]],
        "longest_ids": [ids[i] for i in sorted(range(n), key=lambda i: -lengths[i])[:10]],
        "preference": preference_stats(table, counter),
    }


def _spread(values: list[int]) -> dict:
    ordered = sorted(values)
    return {"p50": _percentile(ordered, 0.5), "p95": _percentile(ordered, 0.95),
            "max": ordered[-1] if ordered else 0,
            "mean": round(sum(ordered) / len(ordered), 1) if ordered else 0}


def preference_stats(table: pa.Table, counter: TokenCounter) -> dict:
    """Pairs and KTO records of a table, and the token lengths of the pairs' two answers.

    Returns:
        {"pairs", "kto_desirable", "kto_undesirable", "chosen_tokens": {"p50", "p95", "max",
         "mean"}, "rejected_tokens": {...}, "chosen_longer": share of pairs whose chosen answer
         has more tokens (a preference set that mostly rewards length teaches length)}.
    """
    import pyarrow.compute as pc

    pairs = table.filter(pc.and_(pc.is_valid(table["chosen"]), pc.is_valid(table["rejected"])))
    tags = pc.drop_null(pc.if_else(pc.is_valid(table["chosen"]), None, table["kto_tag"])).to_pylist()
    chosen = counter.count(pairs["chosen"].to_pylist()) if pairs.num_rows else []
    rejected = counter.count(pairs["rejected"].to_pylist()) if pairs.num_rows else []
    longer = sum(1 for c, r in zip(chosen, rejected) if c > r)
    return {"pairs": pairs.num_rows, "kto_desirable": sum(tags), "kto_undesirable": len(tags) - sum(tags),
            "chosen_tokens": _spread(chosen), "rejected_tokens": _spread(rejected),
            "chosen_longer": round(longer / pairs.num_rows, 4) if pairs.num_rows else 0.0}


def stats(name: str, version: int | None = None, tokenizer=None) -> dict:
    """Statistics of a dataset version.

    Args:
        name: dataset name.
        version: dataset version (default: head).
        tokenizer: a ready tokenizer or TokenCounter (models.tokens.token_counter(MODEL) loads a
            model's); None counts words.

    Returns:
        {"records", "duplicates", "empty_output", "tokens": {"p50", "p95", "max", "mean"},
         "truncated": {"256": fraction, ...}, "tokenizer", "empty": {field: count},
         "with_history", "with_system", "histogram": {"edges", "counts"}, "duplicate_ids",
         "longest_ids", "preference": {"pairs", "kto_desirable", "kto_undesirable",
         "chosen_tokens", "rejected_tokens", "chosen_longer"}, "name", "version"}.
    """
    table = store.read(name, version)
    out = table_stats(table, token_counter(tokenizer))
    return {"name": name, "version": store.resolve_version(name, version), **out}
