"""The one record shape every dataset version holds (Alpaca plus what ShareGPT needs back)."""

from __future__ import annotations

import pyarrow as pa

# history is a list of [user, assistant] pairs; `conversations` keeps the original turns as JSON
# (ShareGPT/OpenAI roles such as function_call or observation) so export back is lossless.
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("instruction", pa.string()),
        pa.field("input", pa.string()),
        pa.field("output", pa.string()),
        pa.field("system", pa.string()),
        pa.field("history", pa.list_(pa.list_(pa.string()))),
        pa.field("conversations", pa.string()),
        pa.field("tools", pa.string()),
    ]
)
COLUMNS = [f.name for f in SCHEMA]
TEXT_FIELDS = ("instruction", "input", "output", "system")


def empty_record() -> dict:
    return {"id": "", "instruction": "", "input": "", "output": "", "system": "",
            "history": [], "conversations": None, "tools": None}


def to_table(records: list[dict]) -> pa.Table:
    """Records (dicts with any subset of COLUMNS) to an Arrow table in SCHEMA."""
    cols = {c: [r.get(c, empty_record()[c]) for r in records] for c in COLUMNS}
    return pa.table(cols, schema=SCHEMA)


def public(record: dict) -> dict:
    """The record as the CLI prints it: id, instruction, input, output, system, history."""
    return {
        "id": record.get("id", ""),
        "instruction": record.get("instruction") or "",
        "input": record.get("input") or "",
        "output": record.get("output") or "",
        "system": record.get("system") or "",
        "history": [list(p) for p in (record.get("history") or [])],
    }
