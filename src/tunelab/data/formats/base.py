"""What every format shares: record roles and columns, errors, opening a file safely."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Iterable

from tunelab.data import schema
from tunelab.errors import TuneLabError

Item = tuple[int, "dict | str"]

# Canonical ShareGPT roles (LLaMA-Factory's default tags) and the names other tools use for them.
USER, ASSISTANT, FUNCTION, OBSERVATION, SYSTEM = "human", "gpt", "function_call", "observation", "system"
ROLE_ALIASES = {
    "human": USER, "user": USER,
    "gpt": ASSISTANT, "assistant": ASSISTANT, "model": ASSISTANT, "bot": ASSISTANT, "chatgpt": ASSISTANT,
    "function_call": FUNCTION, "tool_call": FUNCTION,
    "observation": OBSERVATION, "tool": OBSERVATION, "function": OBSERVATION,
    "system": SYSTEM,
}
USER_SIDE, ASSISTANT_SIDE = (USER, OBSERVATION), (ASSISTANT, FUNCTION)

# Column names recognised without a mapping in tables (CSV, Parquet, Hugging Face) and JSON.
ALIASES = {
    "instruction": ("instruction", "prompt", "question", "query"),
    "output": ("output", "response", "answer", "completion", "target"),
    "input": ("input", "context"),
    "system": ("system", "system_prompt"),
}
FIELDS = schema.FIELDS  # the record fields a column mapping may name


class BadRecord(ValueError):
    """A record that cannot be imported; its message is the reason shown to the user."""


class Lost(str):
    """The reason for `count` records lost together (an unreadable Parquet row group), as one item."""

    count: int = 1

    @classmethod
    def of(cls, reason: str, count: int) -> "Lost":
        lost = cls(reason)
        lost.count = count
        return lost


# --------------------------------------------------------------------------- opening files

def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def open_regular(path: Path) -> IO[bytes]:
    """Open path for reading only if it is a regular file (else one TuneLabError, never a hang).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; the check is on
    the opened descriptor, so a file swapped in after a check elsewhere is still caught here.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TuneLabError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise TuneLabError(f"{path} is not a regular file (it is a folder)") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TuneLabError(f"{path} is not a regular file (it is {file_kind(mode)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class Tags:
    """How turns of a conversation are spelled (LLaMA-Factory `tags`); None means accept the usual ones."""

    role: str | None = None
    content: str | None = None
    roles: dict[str, str] | None = None  # source role name -> canonical role

    @classmethod
    def from_llamafactory(cls, tags: dict | None, messages_key: str = "conversations") -> "Tags":
        """Tags from a dataset_info.json entry, with LLaMA-Factory's defaults for missing ones."""
        t = tags or {}
        roles = {
            t.get("user_tag", "human"): USER,
            t.get("assistant_tag", "gpt"): ASSISTANT,
            t.get("observation_tag", "observation"): OBSERVATION,
            t.get("function_tag", "function_call"): FUNCTION,
            t.get("system_tag", "system"): SYSTEM,
        }
        return cls(t.get("role_tag", "from"), t.get("content_tag", "value"), roles)


@dataclass(frozen=True)
class Columns:
    """Which source key feeds each record field; None means the field is not read.

    `conversations` is the key holding ShareGPT/OpenAI turns; None lets a record use either
    `conversations` or `messages`. `coerce` turns numbers into text (tables hold typed columns).
    `expect` is what every record must be: "pair" (a LLaMA-Factory `"ranking": true` entry),
    "kto" (an entry mapping `kto_tag`) or None (each record by its keys).
    """

    id: str | None = "id"
    instruction: str | None = "instruction"
    input: str | None = "input"
    output: str | None = "output"
    system: str | None = "system"
    history: str | None = "history"
    conversations: str | None = None
    tools: str | None = "tools"
    chosen: str | None = "chosen"
    rejected: str | None = "rejected"
    kto_tag: str | None = "kto_tag"
    coerce: bool = False
    tags: Tags = field(default_factory=Tags)
    expect: str | None = None

    @classmethod
    def from_mapping(cls, mapping: dict | None) -> "Columns":
        """Columns from a user mapping {field: source column}, e.g. {"output": "answer"}."""
        mapping = dict(mapping or {})
        if "messages" in mapping:
            mapping["conversations"] = mapping.pop("messages")
        unknown = sorted(set(mapping) - set(FIELDS))
        if unknown:
            raise TuneLabError(
                f"unknown field `{unknown[0]}` in the column mapping (use {', '.join(FIELDS)})"
            )
        return cls(**mapping)

    def auto_mapped(self, keys: Iterable[str]) -> "Columns":
        """Fill instruction/output/input/system from common column names when absent from keys."""
        keys = list(keys)
        lower = {k.lower(): k for k in keys}
        changes = {}
        for target, names in ALIASES.items():
            if getattr(self, target) != target or target in keys:
                continue  # mapped explicitly (or not read), or present under its own name
            found = next((lower[n] for n in names if n in lower), None)
            if found is not None and found not in changes.values():
                changes[target] = found
        if changes.get("input") is not None and changes.get("input") == changes.get("instruction"):
            changes.pop("input")
        return replace(self, **changes)


def checked_columns(cols: Columns, names: list[str]) -> Columns:
    """Auto-map a table's columns and check that the mapped ones exist (one clear error if not)."""
    if cols.conversations and cols.conversations in names:
        return cols
    if "conversations" in names or "messages" in names:
        return cols
    if cols.chosen in names and cols.rejected in names:  # pairs: each record names its own gaps
        return cols.auto_mapped(names)
    cols = cols.auto_mapped(names)
    for target in ("instruction", "output"):
        src = getattr(cols, target)
        if src not in names:
            raise TuneLabError(
                f"no column for `{target}` (looked for `{src}`; columns are "
                f"{', '.join(n if n.isprintable() else repr(n) for n in names)}): "
                f"give a mapping such as {target}=<column>"
            )
    return cols


def record_size(obj: Any) -> int:
    """Characters of text in an already-parsed row (strings inside lists and objects too)."""
    if obj.__class__ in (str, bytes):
        return len(obj)
    if isinstance(obj, dict):
        return sum(record_size(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(record_size(v) for v in obj)
    return 8
