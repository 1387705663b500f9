"""The one record shape every dataset version holds (Alpaca plus what ShareGPT needs back).

`Record` is the single definition of a record's fields: the Parquet schema, the field lists
(FIELDS, PUBLIC_FIELDS, TEXT_FIELDS, SEARCH_FIELDS) and the empty record all derive from it, so a
new field is added in one place.

A preference pair keeps its prompt in the usual fields (system, history, instruction/input) and
its two answers in `chosen` and `rejected`; `output` holds the chosen answer too, so supervised
training on a pair set learns the chosen answer. A KTO record has one answer in `output` and
`kto_tag` (True = desirable). Versions written before these fields existed lack their columns;
every reader fills them with nulls (`store.read`, `conform`, `browse.fields_sql`).
"""

from __future__ import annotations

from typing import TypedDict

import pyarrow as pa


class PublicRecord(TypedDict):
    """A record as the CLI prints it and search returns it (no NULLs: empty strings and lists).

    A preference or KTO record also carries its PREFERENCE_FIELDS (see public()).
    """

    id: str
    instruction: str
    input: str
    output: str
    system: str
    history: list[list[str]]  # earlier [user, assistant] turns of a conversation


class _Turns(PublicRecord):
    # The original turns as JSON (ShareGPT/OpenAI roles such as function_call or observation),
    # so that export back is lossless; None for records imported from Alpaca-like files.
    conversations: str | None
    tools: str | None


class Preference(TypedDict):
    """A preference pair (`chosen`, `rejected`) or a KTO label; all None on a plain record."""

    chosen: str | None
    rejected: str | None
    kto_tag: bool | None  # True: `output` is a desirable answer, False: an undesirable one


class Record(_Turns, Preference):
    """A record as stored in every dataset version (the preference fields last, so the columns of
    versions written before them keep their places)."""


FIELDS: tuple[str, ...] = tuple(Record.__annotations__)  # in storage order
PUBLIC_FIELDS: tuple[str, ...] = tuple(PublicRecord.__annotations__)
PREFERENCE_FIELDS: tuple[str, ...] = tuple(Preference.__annotations__)
_ARROW_TYPES = {"history": pa.list_(pa.list_(pa.string())), "kto_tag": pa.bool_()}  # others: string
PAIR_FIELDS: tuple[str, ...] = tuple(f for f in PREFERENCE_FIELDS if f not in _ARROW_TYPES)  # texts
# The single-text fields, in the order search, clean and stats walk them.
TEXT_FIELDS: tuple[str, ...] = (*(f for f in PUBLIC_FIELDS if f not in ("id", "history")), *PAIR_FIELDS)
SEARCH_FIELDS: tuple[str, ...] = ("any", *TEXT_FIELDS)  # `data search --field`

SCHEMA = pa.schema([pa.field(f, _ARROW_TYPES.get(f, pa.string())) for f in FIELDS])
COLUMNS = list(FIELDS)


def empty_record() -> Record:
    return {"id": "", "instruction": "", "input": "", "output": "", "system": "",
            "history": [], "conversations": None, "tools": None,
            "chosen": None, "rejected": None, "kto_tag": None}


def to_table(records: list[dict]) -> pa.Table:
    """Records (dicts with any subset of FIELDS) to an Arrow table in SCHEMA."""
    empty = empty_record()
    cols = {c: [r.get(c, empty[c]) for r in records] for c in FIELDS}
    return pa.table(cols, schema=SCHEMA)


def conform(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """A table in SCHEMA: columns it lacks (a version written before they existed) are null."""
    table = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    cols = [table[f].cast(SCHEMA.field(f).type) if f in table.column_names
            else pa.nulls(table.num_rows, SCHEMA.field(f).type) for f in FIELDS]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def kind(record: dict) -> str:
    """"pair", "kto" or "sft": what a record teaches."""
    if record.get("chosen") is not None and record.get("rejected") is not None:
        return "pair"
    return "kto" if record.get("kto_tag") is not None else "sft"


def public(record: dict) -> PublicRecord:
    """The record as the CLI prints it: id, instruction, input, output, system, history, and
    chosen/rejected on a pair, kto_tag on a KTO record (a plain record prints as it always did)."""
    out: dict = {
        "id": record.get("id", ""),
        "instruction": record.get("instruction") or "",
        "input": record.get("input") or "",
        "output": record.get("output") or "",
        "system": record.get("system") or "",
        "history": [list(p) for p in (record.get("history") or [])],
    }
    for f in PREFERENCE_FIELDS:
        if record.get(f) is not None:
            out[f] = record[f]
    return out  # type: ignore[return-value]
