"""Record normalisers: one parsed object (Alpaca, ShareGPT, OpenAI messages) -> a record in the store's shape."""

from __future__ import annotations

import json
from typing import Any

from tunelab.data import schema
from tunelab.data.formats.base import (ASSISTANT, ASSISTANT_SIDE, FUNCTION, ROLE_ALIASES, SYSTEM, USER,
                                       USER_SIDE, BadRecord, Columns, Tags)


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
