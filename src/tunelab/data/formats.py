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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from tunelab.errors import TuneLabError

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "csv", "parquet")
Item = tuple[int, "dict | str"]

BOM = codecs.BOM_UTF8
CHUNK = 1 << 20
MAX_RECORD = 64 << 20  # a single line/element larger than this is reported, not loaded
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
FIELDS = ("id", "instruction", "input", "output", "system", "history", "conversations", "tools")


class BadRecord(ValueError):
    """A record that cannot be imported; its message is the reason shown to the user."""


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
    """

    id: str | None = "id"
    instruction: str | None = "instruction"
    input: str | None = "input"
    output: str | None = "output"
    system: str | None = "system"
    history: str | None = "history"
    conversations: str | None = None
    tools: str | None = "tools"
    coerce: bool = False
    tags: Tags = field(default_factory=Tags)

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
    """The record function for a record kind: alpaca, sharegpt, messages or auto (by keys)."""
    if kind in ("sharegpt", "messages"):
        return conversation
    if kind == "alpaca":
        return alpaca
    return auto_record


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


def text_problem(rec: dict) -> str | None:
    """Why a record's text cannot be stored (invalid UTF-8 / lone surrogates), or None."""
    for k in ("instruction", "input", "output", "system", "tools", "conversations"):
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


def read_csv(fh: IO[bytes], cols: Columns, delimiter: str = ",") -> Iterator[Item]:
    """Rows of a CSV/TSV with a header; columns mapped by name (auto-mapped when not given)."""
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise TuneLabError(f"the CSV header cannot be read: {exc}") from None
    cols = checked_columns(cols, header)
    norm = normaliser("auto")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"malformed CSV: {exc}"
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
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
    """Rows of a Parquet file, one record batch at a time."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise TuneLabError(f"{path.name} is not a readable Parquet file ({exc})") from None
    cols = checked_columns(cols, pf.schema_arrow.names) if kind == "auto" else cols
    yield from read_rows((row for b in pf.iter_batches(batch_size=10_000) for row in b.to_pylist()),
                         kind, cols)


def read_rows(rows: Iterable[Any], kind: str, cols: Columns) -> Iterator[Item]:
    """Records from already-parsed rows (Parquet, Hugging Face datasets), numbered from 0."""
    norm = normaliser(kind)
    for i, row in enumerate(rows):
        try:
            yield i, norm(row, cols)
        except BadRecord as exc:
            yield i, str(exc)


# --------------------------------------------------------------------------- detection

def sniff(path: Path) -> str:
    """The container of a file: jsonl, json (array), object (one JSON object), csv, tsv or parquet."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    with open(path, "rb") as fh:
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
    with open(path, "rb") as fh:
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
    if path.stat().st_size > MAX_RECORD:
        return None
    try:
        obj = json.loads(path.read_bytes().removeprefix(BOM).decode("utf-8"))
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
    with open(path, "rb") as fh:
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
