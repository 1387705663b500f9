"""Streaming readers for every input format, each yielding normalised records or per-record errors.

A reader yields `(line, item)` pairs: `line` is the 1-based line (JSONL, CSV) or the 0-based index
(JSON array, Parquet, Hugging Face rows); `item` is a record dict in the shape of
`tunelab.data.schema.SCHEMA` (without an id when the source has none) or, for a bad record, a
short reason a beginner can act on ("missing `output`"). Nothing holds more than one record (or
one chunk of a JSON array, one Parquet batch) in memory, so file size does not matter.

Text is decoded with `surrogateescape`: an invalid UTF-8 byte becomes a lone surrogate instead of
aborting the whole file, and the importer reports the record that holds it (see `text_problem`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from tunelab.data import schema
from tunelab.errors import TuneLabError

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "csv", "parquet")
Item = tuple[int, "dict | str"]

BOM = codecs.BOM_UTF8
CHUNK = 1 << 20
MAX_RECORD = 64 << 20  # a single line/element larger than this is reported, not loaded
# A Parquet page is decompressed whole before any cell in it can be looked at, so a page larger than
# this is refused from its header: a 10 KB file can hold a 300 MB cell of repeated text.
MAX_PAGE = 2 * MAX_RECORD
csv.field_size_limit(MAX_RECORD)

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


# --------------------------------------------------------------------------- record normalisers

def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, str):
        return "text"
    return type(v).__name__


def _text(obj: dict, key: str | None, required: bool, coerce: bool) -> str:
    """The text at obj[key]; missing/null is "" unless required."""
    if key is None:
        return ""
    v = obj.get(key)
    if v.__class__ is str:
        return v
    if v is None:
        if required:
            raise BadRecord(f"missing `{key}`")
        return ""
    if coerce and isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise BadRecord(f"`{key}` must be text, not {_kind(v)}")


def _history(obj: dict, key: str | None, from_table: bool) -> list[list[str]]:
    """A list of [user, assistant] pairs (in a table cell, a JSON string of one)."""
    if key is None:
        return []
    v = obj.get(key)
    if v is None or (v == "" and from_table):
        return []
    if isinstance(v, str) and from_table:
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise BadRecord(f"`{key}` is not a list of [user, assistant] pairs (not valid JSON)") from None
    if not isinstance(v, (list, tuple)):
        raise BadRecord(f"`{key}` is not a list of [user, assistant] pairs (got {_kind(v)})")
    pairs = []
    for i, pair in enumerate(v, 1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise BadRecord(f"`{key}` is not a list of [user, assistant] pairs (item {i} is not a pair)")
        if not all(isinstance(s, str) for s in pair):
            raise BadRecord(f"`{key}` is not a list of [user, assistant] pairs (item {i} holds non-text)")
        pairs.append([pair[0], pair[1]])
    return pairs


def _json_text(obj: dict, key: str | None) -> str | None:
    """A JSON-ish column (tools, stored conversations) kept as a JSON string; empty means None."""
    if key is None:
        return None
    v = obj.get(key)
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    raise BadRecord(f"`{key}` must be a JSON string or list, not {_kind(v)}")


def _id(obj: dict, key: str | None) -> str:
    v = obj.get(key) if key else None
    if v is None or isinstance(v, bool):
        return ""
    return v if isinstance(v, str) else str(v) if isinstance(v, int) else ""


def alpaca(obj: Any, cols: Columns) -> dict:
    """An Alpaca record (instruction/input/output[/system/history]) in the store's shape."""
    if not isinstance(obj, dict):
        raise BadRecord(f"expected a JSON object, got {_kind(obj)}")
    c = cols.coerce
    rec = {
        "id": _id(obj, cols.id),
        "instruction": _text(obj, cols.instruction, True, c),
        "input": _text(obj, cols.input, False, c),
        "output": _text(obj, cols.output, True, c),
        "system": _text(obj, cols.system, False, c),
        "history": _history(obj, cols.history, c),
        "conversations": None,
        "tools": _json_text(obj, cols.tools),
    }
    stored = obj.get("conversations")
    if stored is not None:  # our own jsonl/parquet export: the original turns, kept for ShareGPT
        if not isinstance(stored, str):
            raise BadRecord("`conversations` must be a JSON string in an Alpaca record")
        rec["conversations"] = stored
    return rec


def _turn_text(turn: dict, content: Any, n: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(texts)
        raise BadRecord(f"turn {n} holds non-text content (images/audio are not supported)")
    if content is None and turn.get("tool_calls"):
        return ""
    raise BadRecord(f"turn {n} has no text (its content is {_kind(content)})")


def _tool_calls(turn: dict) -> str:
    """OpenAI `tool_calls` as the JSON LLaMA-Factory expects in a function_call turn."""
    calls = []
    for call in turn["tool_calls"]:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        calls.append({"name": fn.get("name"), "arguments": args})
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)


def _turns(raw: Any, key: str, tags: Tags) -> list[dict]:
    """Canonical turns [{"from", "value"}] from ShareGPT or OpenAI turns, roles mapped."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise BadRecord(f"`{key}` is not a list of turns (not valid JSON)") from None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BadRecord(f"`{key}` must be a non-empty list of turns, not {_kind(raw)}")
    turns = []
    for n, turn in enumerate(raw, 1):
        if not isinstance(turn, dict):
            raise BadRecord(f"turn {n} of `{key}` is {_kind(turn)}, expected an object")
        if tags.role:
            role, content = turn.get(tags.role), turn.get(tags.content)
        else:
            role = turn.get("from", turn.get("role"))
            content = turn.get("value", turn.get("content"))
        canon = (tags.roles or ROLE_ALIASES).get(role) if isinstance(role, str) else None
        if canon is None:
            raise BadRecord(f"turn {n} has an unknown role {role!r}")
        if canon == ASSISTANT and turn.get("tool_calls"):  # an OpenAI tool call
            turns.append({"from": FUNCTION, "value": _tool_calls(turn)})
            continue
        turns.append({"from": canon, "value": _turn_text(turn, content, n)})
    return turns


def pairs_of(turns: list[dict]) -> list[list[str]]:
    """Check that turns alternate user side / assistant side and return them as pairs."""
    if not turns:
        raise BadRecord("the conversation has no turns besides the system prompt")
    for n, t in enumerate(turns, 1):
        side = USER_SIDE if n % 2 else ASSISTANT_SIDE
        if t["from"] not in side:
            want = "user (human/observation)" if n % 2 else "assistant (gpt/function_call)"
            if t["from"] == SYSTEM:
                raise BadRecord(f"turn {n} is a `system` turn; only the first turn may be one")
            raise BadRecord(f"turns must alternate user and assistant: turn {n} should be {want}, "
                            f"not `{t['from']}`")
    if len(turns) % 2:
        raise BadRecord("the conversation must end with an assistant turn")
    return [[turns[i]["value"], turns[i + 1]["value"]] for i in range(0, len(turns), 2)]


def conversation(obj: Any, cols: Columns) -> dict:
    """A ShareGPT or OpenAI-messages record: last pair -> instruction/output, earlier -> history."""
    if not isinstance(obj, dict):
        raise BadRecord(f"expected a JSON object, got {_kind(obj)}")
    key = cols.conversations or ("conversations" if "conversations" in obj else "messages")
    if obj.get(key) is None:
        raise BadRecord(f"missing `{key}`")
    turns = _turns(obj[key], key, cols.tags)
    system = _text(obj, cols.system, False, cols.coerce)
    if turns[0]["from"] == SYSTEM:
        system = turns.pop(0)["value"]
    pairs = pairs_of(turns)
    tools = obj.get(cols.tools) if cols.tools else None
    if isinstance(tools, list) and all(isinstance(t, dict) and "function" in t for t in tools):
        tools = [t["function"] for t in tools]  # OpenAI wraps each tool as {"type", "function"}
    return {
        "id": _id(obj, cols.id),
        "instruction": pairs[-1][0],
        "input": "",
        "output": pairs[-1][1],
        "system": system,
        "history": pairs[:-1],
        "conversations": json.dumps(turns, ensure_ascii=False),
        "tools": _json_text({cols.tools: tools}, cols.tools) if cols.tools else None,
    }


def normaliser(kind: str):
    """The record function for a record kind: alpaca, sharegpt, messages or auto (by keys).

    A record holding `chosen`/`rejected` is a preference pair and one holding `kto_tag` (or TRL's
    `label` next to `completion`) a KTO record, whatever the kind (see preference() and kto()).
    `Columns.expect` (data/labels.py decides it from all records of a file) or else the first record
    sets what every record must be: a pair without `rejected` in a pair file is named as bad, not kept
    as a plain record. expect "probe" hands the parsed objects back as they are (labels.py reads them).
    """
    base = {"sharegpt": conversation, "messages": conversation, "alpaca": alpaca}.get(kind, auto_record)
    state = {"expect": None, "label": None, "seen": False}

    def norm(obj: Any, cols: Columns) -> dict:
        if obj.__class__ is not dict or cols.expect == "probe":
            return obj if cols.expect == "probe" else base(obj, cols)
        expect = cols.expect or state["expect"]
        # A null counts as absent: a table's rows (and our own exports) carry every column.
        pair = obj.get(cols.chosen) is not None or obj.get(cols.rejected) is not None
        tagged = obj.get(cols.kto_tag) is not None
        if not state["seen"]:  # the file's first record decides
            state["seen"] = True
            if pair:
                state["expect"] = expect = expect or "pair"
            elif tagged or _unpaired(obj):
                state["expect"] = expect = expect or "kto"
                state["label"] = cols.kto_tag if tagged else "label"
        if expect == "pair" or (expect is None and pair):
            return preference(obj, cols)
        if expect == "kto" or (expect is None and tagged):
            return kto(obj, cols, base, state["label"] or cols.kto_tag)
        return base(obj, cols)

    return norm


def auto_record(obj: Any, cols: Columns) -> dict:
    """Pick the record kind by its keys: instruction -> Alpaca, conversations/messages -> chat."""
    if isinstance(obj, dict) and cols.instruction not in obj:
        if cols.conversations in obj or "conversations" in obj or "messages" in obj:
            return conversation(obj, cols)
        mapped = cols.auto_mapped(obj.keys())
        if mapped.instruction in obj and mapped.output in obj:
            return alpaca(obj, mapped)
        raise BadRecord(f"missing `{cols.instruction}` (or `conversations`/`messages`)")
    return alpaca(obj, cols)


# --------------------------------------------------------------------------- preference records

# An HH-RLHF transcript: "\n\nHuman: ...\n\nAssistant: ..." (the role word, a colon, one space).
_TRANSCRIPT = re.compile(r"\n\n(Human|Assistant):[ ]?")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _unpaired(obj: dict) -> bool:
    """TRL's unpaired preference layout: prompt, completion and a true/false `label`."""
    return obj.get("label").__class__ is bool and "completion" in obj


def _flag(obj: dict, key: str, coerce: bool) -> bool:
    v = obj.get(key)
    if v.__class__ is bool:
        return v
    if v is None:
        raise BadRecord(f"missing `{key}`")
    if coerce and isinstance(v, int) and v in (0, 1):
        return bool(v)
    if coerce and isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise BadRecord(f"`{key}` must be true or false, not {_kind(v)}")


def _transcript(text: str) -> list[dict] | None:
    """The turns of an HH-RLHF transcript, or None when text is not one."""
    if not text.startswith(("\n\nHuman:", "Human:")) or "\n\nAssistant:" not in text:
        return None
    parts = _TRANSCRIPT.split(text if text.startswith("\n\n") else "\n\n" + text)
    return [{"from": USER if role == "Human" else ASSISTANT, "value": value}
            for role, value in zip(parts[1::2], parts[2::2])]


def _answer(obj: dict, key: str, cols: Columns, transcripts: bool) -> tuple[list[dict] | None, str]:
    """(prompt turns the answer carries or None, answer text) of a `chosen`/`rejected` value.

    The value is a text, one turn ({"from": "gpt", "value": ...}, LLaMA-Factory's ShareGPT ranking
    layout), a list of turns ending with the answer (UltraFeedback-binarized: the earlier turns are
    the prompt) or, when transcripts is set, an HH-RLHF transcript whose last turn is the answer.
    """
    v = obj.get(key)
    if v is None:
        raise BadRecord(f"missing `{key}`")
    turns, text = None, v
    if isinstance(v, str):
        turns = _transcript(v) if transcripts else None
        if turns is not None:
            *turns, last = turns
            if last["from"] != ASSISTANT:
                raise BadRecord(f"the transcript in `{key}` must end with an Assistant turn")
            text = last["value"]
    elif isinstance(v, (dict, list, tuple)):
        *turns, last = _turns([v] if isinstance(v, dict) else v, key, cols.tags)
        if last["from"] != ASSISTANT:
            raise BadRecord(f"the answer in `{key}` must be an assistant turn, not `{last['from']}`")
        text = last["value"]
        turns = turns if isinstance(v, (list, tuple)) and turns else None
    elif cols.coerce and isinstance(v, (int, float)) and not isinstance(v, bool):
        text = str(v)
    else:
        raise BadRecord(f"`{key}` must be text or an assistant turn, not {_kind(v)}")
    if not text.strip():
        raise BadRecord(f"`{key}` is empty")
    return turns, text


def _from_turns(turns: list[dict], answer: str, system: str, where: str) -> dict:
    """The prompt fields of a record whose conversation is turns (ending with the user) + answer."""
    turns = list(turns)
    if turns and turns[0]["from"] == SYSTEM:
        system = turns.pop(0)["value"]
    if not turns or turns[-1]["from"] not in USER_SIDE:
        raise BadRecord(f"{where} must end with a user turn (the answer follows it)")
    full = turns + [{"from": ASSISTANT, "value": answer}]
    pairs = pairs_of(full)
    return {"instruction": pairs[-1][0], "input": "", "output": answer, "system": system,
            "history": pairs[:-1], "conversations": json.dumps(full, ensure_ascii=False)}


def _prompt(obj: dict, cols: Columns, answer: str, carried: list[dict] | None) -> dict:
    """The prompt fields (system, history, instruction/input; output = answer) of a preference or
    KTO record, from turns an answer carried, a conversation, or Alpaca/`prompt` fields."""
    c = cols.coerce
    system = _text(obj, cols.system, False, c)
    if carried is not None:
        return _from_turns(carried, answer, system, "the conversation before the answer")
    key = cols.conversations or next((k for k in ("conversations", "messages") if k in obj), None)
    if cols.instruction not in obj and key and obj.get(key) is not None:
        return _from_turns(_turns(obj[key], key, cols.tags), answer, system, f"`{key}`")
    mapped = cols if cols.instruction in obj else cols.auto_mapped(obj.keys())
    if mapped.instruction not in obj:
        raise BadRecord(f"missing the prompt: `{cols.instruction}`, `prompt` or `conversations`")
    prompt = obj[mapped.instruction]
    if isinstance(prompt, (list, tuple)):  # TRL's conversational layout: the prompt as messages
        return _from_turns(_turns(prompt, mapped.instruction, cols.tags), answer, system,
                           f"`{mapped.instruction}`")
    rec = alpaca(obj, replace(mapped, output=None, tools=None))
    rec["output"] = answer
    return rec


def preference(obj: Any, cols: Columns) -> dict:
    """A preference pair in any of the layouts listed in _answer, plus `prompt`/`instruction` and
    ShareGPT `conversations` prompts; chosen and rejected must differ and share their prompt."""
    if not isinstance(obj, dict):
        raise BadRecord(f"expected a JSON object, got {_kind(obj)}")
    for key in (cols.chosen, cols.rejected):
        if obj.get(key) is None:
            raise BadRecord(f"missing `{key}`" + ("" if key in obj else " (a preference pair needs "
                                                  f"both `{cols.chosen}` and `{cols.rejected}`)"))
    # A text answer is an HH-RLHF transcript only in a record without a prompt of its own.
    transcripts = not any(k in obj for k in (cols.instruction, "prompt", "conversations", "messages",
                                             cols.conversations))
    chosen_turns, chosen = _answer(obj, cols.chosen, cols, transcripts)
    rejected_turns, rejected = _answer(obj, cols.rejected, cols, transcripts)
    if chosen_turns != rejected_turns:
        raise BadRecord(f"`{cols.chosen}` and `{cols.rejected}` continue different conversations "
                        "(their turns before the answer differ)")
    if chosen == rejected:
        raise BadRecord(f"`{cols.chosen}` and `{cols.rejected}` are the same answer")
    if obj.get(cols.kto_tag) is not None:
        raise BadRecord(f"a record is a pair or a KTO record, not both (it has `{cols.kto_tag}`)")
    rec = _prompt(obj, cols, chosen, chosen_turns)
    tools = obj.get(cols.tools) if cols.tools else None
    rec.update(id=_id(obj, cols.id), chosen=chosen, rejected=rejected, kto_tag=None,
               tools=_json_text({cols.tools: tools}, cols.tools) if cols.tools else None)
    if "conversations" not in rec:
        rec["conversations"] = None
    return rec


def kto(obj: dict, cols: Columns, base, key: str) -> dict:
    """A KTO record: one answer (`output` or the last assistant turn) and the label at key
    (`kto_tag`, or TRL's `label`), true for a desirable answer, false for an undesirable one."""
    tag = _flag(obj, key, cols.coerce)
    prompt = obj.get(cols.instruction, obj.get("prompt"))
    if isinstance(prompt, (list, tuple)) and "completion" in obj:  # TRL conversational, unpaired
        turns, answer = _answer(obj, "completion", cols, False)
        rec = _prompt(obj, cols, answer, turns)
        rec.update(id=_id(obj, cols.id), tools=None)
    else:
        rec = base(obj, cols)
    rec.update(chosen=None, rejected=None, kto_tag=tag)
    return rec


def text_problem(rec: dict) -> str | None:
    """Why a record's text cannot be stored (invalid UTF-8 / lone surrogates), or None."""
    for k in (*schema.TEXT_FIELDS, "tools", "conversations"):
        v = rec.get(k)
        if v:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                return _surrogate_reason(k, v[exc.start])
    for pair in rec.get("history") or ():
        for s in pair:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as exc:
                return _surrogate_reason("history", s[exc.start])
    return None


def _surrogate_reason(key: str, ch: str) -> str:
    if 0xDC80 <= ord(ch) <= 0xDCFF:  # what surrogateescape makes of an undecodable byte
        return f"invalid UTF-8 in `{key}` (byte 0x{ord(ch) - 0xDC00:02x})"
    return f"`{key}` holds an unpaired surrogate escape (\\u{ord(ch):04x})"


# --------------------------------------------------------------------------- container readers

def _lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines of a binary file; an over-long line comes back as None (skipped in chunks)."""
    n = 0
    while True:
        line = fh.readline(MAX_RECORD + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_RECORD and not line.endswith(b"\n"):
            while (rest := fh.readline(CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield n, None
            continue
        if n == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        yield n, line


def read_jsonl(fh: IO[bytes], kind: str, cols: Columns) -> Iterator[Item]:
    """One JSON record per line; blank lines are ignored."""
    norm = normaliser(kind)
    loads = json.loads
    for n, line in _lines(fh):
        if line is None:
            yield n, f"record is larger than {MAX_RECORD >> 20} MB"
            continue
        text = line.decode("utf-8", "surrogateescape")
        if not text.strip():
            continue
        try:
            obj = loads(text)
        except json.JSONDecodeError as exc:
            yield n, f"malformed JSON: {exc.msg} (column {min(exc.pos, len(text.rstrip())) + 1})"
            continue
        except RecursionError:
            yield n, "malformed JSON: nested too deeply"
            continue
        try:
            yield n, norm(obj, cols)
        except BadRecord as exc:
            yield n, str(exc)


# Strings (unrolled for speed on long ones), brackets and commas: enough to find where a
# malformed array element ends without parsing it.
_SCAN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"')
_WS = re.compile(r"\s*")


class _Window:
    """A sliding text window over a binary file, decoded as UTF-8 chunk by chunk."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf, self.pos, self.eof = "", 0, False
        self.more(first=True)

    def more(self, first: bool = False) -> bool:
        """Append the next chunk (as big as the window, so a huge element takes few reads)."""
        if self.eof:
            return False
        if self.pos:
            self.buf, self.pos = self.buf[self.pos:], 0
        data = self.fh.read(max(CHUNK, len(self.buf)))
        if first and data.startswith(BOM):
            data = data[len(BOM):]
        self.buf += self.decoder.decode(data, final=not data)
        self.eof = not data
        return True

    def peek(self) -> str:
        """The next non-space character ("" at end of file), skipping whitespace."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def element_end(self) -> int | None:
        """Where the element at pos ends (before its `,` or the array's `]`), or None if unseen.

        Mismatched brackets are recovered like an HTML parser does: a closer pops openers until
        its own, so one broken record cannot swallow the records after it.
        """
        stack: list[str] = []
        for m in _SCAN.finditer(self.buf, self.pos):
            tok = m.group()
            if tok in "[{":
                stack.append("]" if tok == "[" else "}")
            elif tok in "]}":
                if tok not in stack:  # closes something outside this element: the array itself
                    return m.start()
                while stack.pop() != tok:
                    pass
                if not stack:
                    return m.end()
            elif tok == ",":
                if not stack:
                    return m.start()
            elif tok == '"':  # a string still open at the end of the window
                return None
        return None


def read_json_array(fh: IO[bytes], kind: str, cols: Columns) -> Iterator[Item]:
    """Elements of a top-level JSON array, decoded one by one with raw_decode over chunks."""
    norm = normaliser(kind)
    decode = json.JSONDecoder().raw_decode
    w = _Window(fh)
    if w.peek() != "[":
        raise TuneLabError("expected a JSON array of records")
    w.pos += 1
    index = 0
    while True:
        c = w.peek()
        if c == "]":
            return
        if c == "":
            yield index, "the file ends before the closing `]` of the array"
            return
        try:
            obj, end = decode(w.buf, w.pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            end = w.element_end()
            if end is None:  # the element runs past the window: read more and retry
                if len(w.buf) - w.pos <= MAX_RECORD and w.more():
                    continue
                yield index, "malformed JSON: cannot find where this record ends; the rest was not read"
                return
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            w.pos = max(end, w.pos + 1)  # always move on, even past a lone stray `}`
            yield index, f"malformed JSON: {msg}"
        else:
            near_end = end == len(w.buf) or (not isinstance(obj, (dict, list, str)) and len(w.buf) - end < 64)
            if near_end and not w.eof:  # a number or literal may continue in the next chunk
                w.more()
                continue
            w.pos = end
            try:
                yield index, norm(obj, cols)
            except BadRecord as exc:
                yield index, str(exc)
        index += 1
        if w.peek() == ",":
            w.pos += 1


class _TooBig(Exception):
    """The CSV record being read passed MAX_RECORD; its lines were skipped."""


class _RecordLines:
    """Text lines for csv.reader, bounded per record: once a record (which may span lines) passes
    MAX_RECORD, raise _TooBig and skip the rest of that line, so no record is ever held whole.

    `n` counts the lines handed out or skipped; the reader calls `next_record()` between records.
    """

    def __init__(self, text: IO[str]):
        self.text, self.n, self.size = text, 0, 0

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_RECORD + 1)
        if not line:
            raise StopIteration
        self.n += 1
        self.size += len(line)
        if self.size > MAX_RECORD:
            while not line.endswith(("\n", "\r")) and (line := self.text.readline(CHUNK)):
                pass
            self.size = 0
            raise _TooBig
        return line

    def next_record(self) -> None:
        self.size = 0


def read_csv(fh: IO[bytes], cols: Columns, delimiter: str = ",") -> Iterator[Item]:
    """Rows of a CSV/TSV with a header; columns mapped by name (auto-mapped when not given)."""
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = _RecordLines(text)
    reader = csv.reader(lines, delimiter=delimiter)
    too_big = f"record is larger than {MAX_RECORD >> 20} MB"
    try:
        header = next(reader)
    except StopIteration:
        return
    except _TooBig:
        raise TuneLabError(f"the CSV header cannot be read: it is larger than {MAX_RECORD >> 20} MB") from None
    except csv.Error as exc:
        raise TuneLabError(f"the CSV header cannot be read: {exc}") from None
    cols = checked_columns(cols, header)
    norm = normaliser("auto")
    start = lines.n + 1
    while True:
        lines.next_record()
        try:
            row = next(reader)
        except StopIteration:
            return
        except _TooBig:
            yield start, too_big
            start = lines.n + 1
            continue
        except csv.Error as exc:
            yield start, f"malformed CSV: {exc}"
            start = lines.n + 1
            continue
        line, start = start, lines.n + 1
        if not row or row == [""]:
            continue
        if len(row) != len(header):
            yield line, f"row has {len(row)} values but the header has {len(header)} columns"
            continue
        try:
            yield line, norm(dict(zip(header, row)), cols)
        except BadRecord as exc:
            yield line, str(exc)


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


def read_parquet(path: Path, kind: str, cols: Columns) -> Iterator[Item]:
    """Rows of a Parquet file, row group by row group, one record batch at a time.

    A row group that cannot be read (a corrupt page) or that holds a page over MAX_PAGE is reported
    as lost and the other row groups are kept; a row over MAX_RECORD is reported, not loaded.
    """
    import pyarrow.parquet as pq

    fh = open_regular(path)
    try:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise TuneLabError(f"{path.name} is not a readable Parquet file ({exc})") from None
        cols = checked_columns(cols, pf.schema_arrow.names) if kind == "auto" else cols
        yield from read_rows(_parquet_rows(pf, fh), kind, cols)
    finally:
        fh.close()


def _parquet_rows(pf, fh: IO[bytes]) -> Iterator[Any]:
    """Rows (dicts) of every readable row group; Lost items for the rest, in row order."""
    meta, start = pf.metadata, 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        big = oversized_page(meta.row_group(g), fh)
        if big:
            yield Lost.of(f"rows {start}-{start + rows - 1} not read: {big}", rows)
            start += rows
            continue
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=1000, row_groups=[g], use_threads=False):
                over = row_sizes(batch) > MAX_RECORD
                if not over.any():
                    yield from batch.to_pylist()
                else:
                    for i, too_big in enumerate(over.tolist()):
                        yield (Lost(f"record is larger than {MAX_RECORD >> 20} MB") if too_big
                               else batch.slice(i, 1).to_pylist()[0])
                done += batch.num_rows
        except Exception as exc:  # a corrupt page: ArrowInvalid, OSError (bad compressed data)...
            lost = rows - done
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            yield Lost.of(f"rows {start + done}-{start + rows - 1} not read: row group {g} is "
                          f"corrupt ({first})", lost)
        start += rows


def row_sizes(batch) -> "Any":
    """Bytes of text per row of an Arrow record batch (strings and binaries, nested ones too)."""
    import numpy as np

    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        total += _sizes(column)
    return total


def _sizes(arr) -> "Any":
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t):
        return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = _sizes(arr.flatten())
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=child, minlength=len(arr)).astype(np.int64)
    if pa.types.is_struct(t):
        out = np.zeros(len(arr), dtype=np.int64)
        for child in arr.flatten():
            out += _sizes(child)
        return out
    return np.full(len(arr), 8, dtype=np.int64)


def oversized_page(row_group, fh: IO[bytes]) -> str | None:
    """Why a row group cannot be read safely (a page over MAX_PAGE uncompressed), or None.

    Reads only the page headers (Thrift compact structs) of each column chunk; a header that cannot
    be parsed leaves the decision to pyarrow, whose errors are caught as a corrupt row group.
    """
    for j in range(row_group.num_columns):
        col = row_group.column(j)
        begin = col.dictionary_page_offset if col.has_dictionary_page and col.dictionary_page_offset \
            else col.data_page_offset
        pos, end = begin, begin + col.total_compressed_size
        while pos < end:
            try:
                header_len, size, compressed = _page_header(fh, pos)
            except (ValueError, IndexError, OSError, RecursionError):
                break
            if size > MAX_PAGE:
                return (f"a page of column `{col.path_in_schema}` holds {size >> 20} MB uncompressed, "
                        f"over the {MAX_PAGE >> 20} MB page limit (records are limited to "
                        f"{MAX_RECORD >> 20} MB)")
            if compressed < 0 or size < 0:
                break
            pos += header_len + compressed
    return None


def _page_header(fh: IO[bytes], pos: int) -> tuple[int, int, int]:
    """(header length, uncompressed size, compressed size) of the Parquet page header at pos."""
    for want in (4096, 1 << 20, 16 << 20):  # statistics can make a header long
        fh.seek(pos)
        buf = fh.read(want)
        try:
            fields: dict[int, int] = {}
            end = _skip_struct(buf, 0, 0, fields)
            return end, fields[2], fields[3]
        except IndexError:
            if len(buf) < want:  # the whole rest of the file was read: truly truncated
                raise
    raise ValueError("page header too long")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise ValueError("bad varint")


def _skip_struct(buf: bytes, pos: int, depth: int, top: dict | None = None) -> int:
    """Skip a Thrift compact struct; record the top level's i32 fields into `top`."""
    if depth > 32:
        raise ValueError("page header nested too deeply")
    field = 0
    while True:
        b = buf[pos]
        pos += 1
        if b == 0:
            return pos
        delta, kind = b >> 4, b & 0x0F
        if delta:
            field += delta
        else:
            raw, pos = _varint(buf, pos)
            field = (raw >> 1) ^ -(raw & 1)
        if top is not None and kind == 5:
            raw, pos = _varint(buf, pos)
            top[field] = (raw >> 1) ^ -(raw & 1)
            continue
        pos = _skip_value(buf, pos, kind, depth, in_field=True)


def _skip_value(buf: bytes, pos: int, kind: int, depth: int, in_field: bool = False) -> int:
    if kind in (1, 2):  # booleans: in a field header the type is the value; in a list, one byte
        return pos if in_field else pos + 1
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(buf, pos)[1]
    if kind == 7:
        return pos + 8
    if kind == 8:
        n, pos = _varint(buf, pos)
        return pos + n
    if kind in (9, 10):
        b = buf[pos]
        pos += 1
        n, elem = b >> 4, b & 0x0F
        if n == 15:
            n, pos = _varint(buf, pos)
        for _ in range(n):
            pos = _skip_value(buf, pos, elem, depth + 1)
        return pos
    if kind == 11:
        n, pos = _varint(buf, pos)
        if not n:
            return pos
        kv = buf[pos]
        pos += 1
        for _ in range(n):
            pos = _skip_value(buf, pos, kv >> 4, depth + 1)
            pos = _skip_value(buf, pos, kv & 0x0F, depth + 1)
        return pos
    if kind == 12:
        return _skip_struct(buf, pos, depth + 1)
    raise ValueError(f"unknown Thrift type {kind}")


def read_rows(rows: Iterable[Any], kind: str, cols: Columns) -> Iterator[Item]:
    """Records from already-parsed rows (Parquet, Hugging Face datasets), numbered from 0."""
    norm = normaliser(kind)
    i = 0
    for row in rows:
        if row.__class__ is Lost:  # records the reader could not read; they take `count` indexes
            yield i, row
            i += row.count
            continue
        try:
            yield i, norm(row, cols)
        except BadRecord as exc:
            yield i, str(exc)
        i += 1


def record_size(obj: Any) -> int:
    """Characters of text in an already-parsed row (strings inside lists and objects too)."""
    if obj.__class__ in (str, bytes):
        return len(obj)
    if isinstance(obj, dict):
        return sum(record_size(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(record_size(v) for v in obj)
    return 8


_TEXT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".txt")


def oversized_in(path: Path) -> str | None:
    """Why a data file holds a record over the limits (checked in bounded memory), or None.

    Text files (also .gz/.bz2/.xz, whose size on disk says nothing) are scanned line by line: a
    line longer than MAX_RECORD is part of a record longer than that. Parquet files are checked
    by their page headers.
    """
    import bz2
    import gzip
    import lzma

    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    suffix = path.suffix.lower()
    opener = openers.get(suffix)
    inner = Path(path.stem).suffix.lower() if opener else suffix
    if inner in (".parquet", ".pq") and not opener:
        import pyarrow.parquet as pq

        with open_regular(path) as fh:
            try:
                meta = pq.ParquetFile(fh).metadata
            except Exception:
                return None  # not Parquet after all: the loader says so
            for g in range(meta.num_row_groups):
                reason = oversized_page(meta.row_group(g), fh)
                if reason:
                    return reason
        return None
    if inner not in _TEXT_SUFFIXES:
        return None
    with open_regular(path) as raw:
        if not opener and os.fstat(raw.fileno()).st_size <= MAX_RECORD:
            return None
        fh = opener(raw) if opener else raw
        try:
            for _, line in _lines(fh):
                if line is None:
                    return f"a record is larger than {MAX_RECORD >> 20} MB (the limit per record)"
        except (OSError, EOFError, lzma.LZMAError):
            return None  # a broken archive: the loader reports it
    return None


# --------------------------------------------------------------------------- detection

def sniff(path: Path) -> str:
    """The container of a file: jsonl, json (array), object (one JSON object), csv, tsv or parquet."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    with open_regular(path) as fh:
        head = fh.read(4)
        if head == b"PAR1":
            return "parquet"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise TuneLabError(f"{path.name} is UTF-16 text: save it as UTF-8 and import again")
        fh.seek(0)
        first = _first_char(fh)
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if first == b"[":
            return "json"
        if first == b"{":
            return "jsonl" if _first_line_is_json(path) or not _whole_object(path) else "object"
    if first == b"":
        return "jsonl"  # an empty file: nothing to read, reported as such
    raise TuneLabError(
        f"cannot tell the format of {path.name}: it is not JSON, JSONL, CSV or Parquet "
        f"(give --format, or a .csv/.jsonl/.json/.parquet file)"
    )


def _first_char(fh: IO[bytes]) -> bytes:
    data = fh.read(CHUNK).removeprefix(BOM)
    while data:
        stripped = data.lstrip()
        if stripped:
            return stripped[:1]
        data = fh.read(CHUNK)
    return b""


def _first_line_is_json(path: Path) -> bool:
    with open_regular(path) as fh:
        for _, line in _lines(fh):
            if line is None:
                return False
            if line.strip():
                try:
                    return isinstance(json.loads(line.decode("utf-8", "surrogateescape")), dict)
                except (json.JSONDecodeError, RecursionError):
                    return False
    return False


def _whole_object(path: Path) -> bool:
    """True when the file is one (pretty-printed) JSON object; only tried on small files."""
    return load_object(path) is not None


def load_object(path: Path) -> dict | None:
    """The file as one JSON object, or None (also for files too big to be one)."""
    with open_regular(path) as fh:
        if os.fstat(fh.fileno()).st_size > MAX_RECORD:
            return None
        data = fh.read(MAX_RECORD + 1)
    try:
        obj = json.loads(data.removeprefix(BOM).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def is_dataset_info(path: Path, obj: dict | None = None) -> bool:
    """A LLaMA-Factory dataset_info.json: by name, or an object of entries naming files/hubs."""
    if path.name == "dataset_info.json":
        return True
    obj = obj if obj is not None else load_object(path)
    keys = ("file_name", "hf_hub_url", "ms_hub_url", "script_url", "om_hub_url")
    return bool(obj) and all(isinstance(v, dict) and any(k in v for k in keys) for v in obj.values())


def read_file(path: Path, fmt: str = "auto", cols: Columns | None = None) -> tuple[str, Iterator[Item]]:
    """Open path and return (container, items). fmt: one of FORMATS."""
    if fmt not in FORMATS:
        raise TuneLabError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    cols = cols or Columns()
    open_regular(path).close()  # a FIFO or device is refused here, before any reader waits on it
    container = {"csv": "csv", "parquet": "parquet"}.get(fmt) or sniff(path)
    if container == "csv" and path.suffix.lower() == ".tsv":
        container = "tsv"
    kind = fmt if fmt in ("alpaca", "sharegpt", "messages") else "auto"
    if container in ("csv", "tsv", "parquet"):
        cols = replace(cols, coerce=True)  # typed columns: a number in a text column is fine
    if container == "parquet":
        return container, read_parquet(path, kind, cols)
    if container == "object":
        obj = load_object(path)
        if is_dataset_info(path, obj):
            raise TuneLabError(f"{path.name} is a LLaMA-Factory dataset_info.json; import it by that name")
        return container, read_rows([obj], kind, cols)
    return container, _opened(path, container, kind, cols)


def _opened(path: Path, container: str, kind: str, cols: Columns) -> Iterator[Item]:
    with open_regular(path) as fh:
        if container in ("csv", "tsv"):
            yield from read_csv(fh, cols, "\t" if container == "tsv" else ",")
        elif container == "json":
            yield from read_json_array(fh, kind, cols)
        else:
            yield from read_jsonl(fh, kind, cols)


# --------------------------------------------------------------------------- export helpers

def turns_of(record: dict) -> list[dict]:
    """The record's conversation as canonical ShareGPT turns (system not included).

    The stored original turns are used when they still say what the fields say; after an edit
    (cleaning, redaction) the turns are rebuilt from the fields so the edit is not undone.
    """
    stored = record.get("conversations")
    if stored:
        try:
            turns = json.loads(stored)
            if _same(pairs_of(turns), record):
                return turns
        except (json.JSONDecodeError, BadRecord, TypeError, KeyError):
            pass
    turns = []
    for user, assistant in record.get("history") or []:
        turns += [{"from": USER, "value": user}, {"from": ASSISTANT, "value": assistant}]
    prompt = "\n".join(p for p in (record.get("instruction") or "", record.get("input") or "") if p)
    return turns + [{"from": USER, "value": prompt}, {"from": ASSISTANT, "value": record.get("output") or ""}]


def _same(pairs: list[list[str]], record: dict) -> bool:
    history = [list(p) for p in record.get("history") or []]
    return (not record.get("input") and pairs[-1] == [record.get("instruction"), record.get("output")]
            and pairs[:-1] == history)
