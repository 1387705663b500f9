"""Dataset statistics: counts, exact duplicates, empty fields and token lengths per record.

Token lengths are measured on the chat-formatted record (system + history + instruction/input +
output, through the model's chat template) because that is what training truncates.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from tunelab.data import store
from tunelab.data.query import CJK_RUN
from tunelab.data.schema import TEXT_FIELDS

DEFAULT_MODEL = "smollm2-135m-instruct"
CUTOFFS = (256, 512, 1024, 2048)
TOKEN_BATCH = 1000
_SPACE = re.compile(r"\s+")


@dataclass
class TokenCounter:
    """Counts tokens of chat-formatted records; `name` says which tokenizer was used."""

    name: str
    count: Callable[[list[str]], list[int]]
    format: Callable[[list[list[dict]]], list[str]]


def messages(record: dict) -> list[dict]:
    """A record as chat messages: system, history pairs, then the user turn and the answer."""
    msgs = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for pair in record.get("history") or []:
        user, assistant = (list(pair) + ["", ""])[:2]
        msgs += [{"role": "user", "content": user or ""}, {"role": "assistant", "content": assistant or ""}]
    prompt = "\n".join(p for p in (record.get("instruction") or "", record.get("input") or "") if p)
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.get("output") or ""}]
    return msgs


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
    """A counter over a Hugging Face tokenizer, using its chat template when it has one."""

    def fmt(convs: list[list[dict]]) -> list[str]:
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(convs, tokenize=False)
        return _plain_format(convs)

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    return TokenCounter(name or getattr(tok, "name_or_path", "") or type(tok).__name__, count, fmt)


def token_counter(model: str | None = None, tokenizer=None) -> TokenCounter:
    """The counter for a model (default: the shipped SmolLM2), falling back to a rough count.

    Args:
        model: a model name (registry, folder, .gguf, run id); None for the default.
        tokenizer: a ready tokenizer (Hugging Face or TokenCounter) instead of loading one.

    Returns:
        A TokenCounter; its name says which tokenizer, or why the fallback is used.
    """
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    if tokenizer is not None:
        return hf_counter(tokenizer)
    try:
        from tunelab.models.loading import load_tokenizer

        return hf_counter(load_tokenizer(model or DEFAULT_MODEL), model or DEFAULT_MODEL)
    except Exception as exc:  # any failure to load must still give stats, with the reason shown
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        sys.stderr.write(f"warning: tokenizer of {model or DEFAULT_MODEL} not available ({reason}); "
                         "counting words\n")
        return rough_counter(reason)


def token_lengths(table: pa.Table, counter: TokenCounter) -> list[int]:
    """Token count of every record (chat-formatted), tokenised in batches."""
    lengths: list[int] = []
    for batch in table.to_batches(TOKEN_BATCH):
        rows = batch.to_pylist()
        lengths += counter.count(counter.format([messages(r) for r in rows]))
    return lengths


def _norm(text) -> str:
    return _SPACE.sub(" ", str(text or "")).strip().casefold()


def exact_key(record: dict) -> str:
    """Normalised content (whitespace collapsed, case folded) of every field that trains."""
    history = "\x1e".join("\x1d".join(_norm(t) for t in pair) for pair in record.get("history") or [])
    parts = [_norm(record.get(f)) for f in ("system", "instruction", "input", "output")]
    return "\x1f".join(parts + [history])


def duplicate_rows(table: pa.Table) -> list[int]:
    """Row indices of records that repeat an earlier record (exact after normalisation)."""
    seen: set[str] = set()
    dups = []
    rows = table.select(["system", "instruction", "input", "output", "history"]).to_pylist()
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
             for f in TEXT_FIELDS}
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
    }


def stats(name: str, model: str | None = None, version: int | None = None, tokenizer=None) -> dict:
    """Statistics of a dataset version.

    Args:
        name: dataset name.
        model: whose tokenizer counts tokens (default: the shipped SmolLM2).
        version: dataset version (default: head).
        tokenizer: a ready tokenizer or TokenCounter (skips loading `model`'s).

    Returns:
        {"records", "duplicates", "empty_output", "tokens": {"p50", "p95", "max", "mean"},
         "truncated": {"256": fraction, ...}, "tokenizer", "empty": {field: count},
         "with_history", "with_system", "histogram": {"edges", "counts"}, "duplicate_ids",
         "longest_ids", "name", "version"}.
    """
    table = store.read(name, version)
    out = table_stats(table, token_counter(model, tokenizer))
    return {"name": name, "version": store.resolve_version(name, version), **out}
