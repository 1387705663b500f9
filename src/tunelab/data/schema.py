"""The one record shape every dataset version holds (Alpaca plus what ShareGPT needs back).

`Record` is the single definition of a record's fields: the Parquet schema, the field lists
(FIELDS, PUBLIC_FIELDS, TEXT_FIELDS, SEARCH_FIELDS) and the empty record all derive from it, so a
new field is added in one place.
"""

from __future__ import annotations

from typing import TypedDict

import pyarrow as pa


class PublicRecord(TypedDict):
    """A record as the CLI prints it and search returns it (no NULLs: empty strings and lists)."""

    id: str
    instruction: str
    input: str
    output: str
    system: str
    history: list[list[str]]  # earlier [user, assistant] turns of a conversation


class Record(PublicRecord):
    """A record as stored in every dataset version."""

    # The original turns as JSON (ShareGPT/OpenAI roles such as function_call or observation),
    # so that export back is lossless; None for records imported from Alpaca-like files.
    conversations: str | None
    tools: str | None


FIELDS: tuple[str, ...] = tuple(Record.__annotations__)  # in storage order
PUBLIC_FIELDS: tuple[str, ...] = tuple(PublicRecord.__annotations__)
# The single-text fields, in the order search, clean and stats walk them.
TEXT_FIELDS: tuple[str, ...] = tuple(f for f in PUBLIC_FIELDS if f not in ("id", "history"))
SEARCH_FIELDS: tuple[str, ...] = ("any", *TEXT_FIELDS)  # `data search --field`

_ARROW_TYPES = {"history": pa.list_(pa.list_(pa.string()))}  # every other field is a string
SCHEMA = pa.schema([pa.field(f, _ARROW_TYPES.get(f, pa.string())) for f in FIELDS])
COLUMNS = list(FIELDS)


def empty_record() -> Record:
    return {"id": "", "instruction": "", "input": "", "output": "", "system": "",
            "history": [], "conversations": None, "tools": None}


def to_table(records: list[dict]) -> pa.Table:
    """Records (dicts with any subset of FIELDS) to an Arrow table in SCHEMA."""
    empty = empty_record()
    cols = {c: [r.get(c, empty[c]) for r in records] for c in FIELDS}
    return pa.table(cols, schema=SCHEMA)


def public(record: dict) -> PublicRecord:
    """The record as the CLI prints it: id, instruction, input, output, system, history."""
    return {
        "id": record.get("id", ""),
        "instruction": record.get("instruction") or "",
        "input": record.get("input") or "",
        "output": record.get("output") or "",
        "system": record.get("system") or "",
        "history": [list(p) for p in (record.get("history") or [])],
    }
