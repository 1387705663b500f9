"""Turn a model's free-form answer into candidate records, rejecting what cannot be read.

Models answer "generate N tasks" in many shapes: numbered lists ("1. ", "1) ", "１．", "第1条"),
bullets, JSON arrays or objects (often inside ```json fences), Alpaca objects, or
"Instruction:/Input:/Output:" blocks (also 指令/输入/输出). `parse` tries the strict shapes first
and falls back to lines. Every piece of text that is not an item comes back as a rejection with
a reason, so nothing the model wrote disappears without a trace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Keys a model may use for each field of an Alpaca record.
KEYS = {
    "instruction": ("instruction", "question", "prompt", "task", "query", "指令", "问题"),
    "input": ("input", "context", "输入"),
    "output": ("output", "answer", "response", "输出", "回答", "答案"),
}
CN_NUM = "一二三四五六七八九十百零〇两"
# "1." "1)" "(1)" "1、" "１．" "第1条" "第一个" "Q1:" — the number is dropped, the text kept.
NUMBERED = re.compile(
    rf"^\s*(?:\*\*)?(?:"
    rf"第\s*[0-9０-９{CN_NUM}]+\s*[条个题點点项]\s*[.:：、，,]?"
    rf"|[(（]?[0-9０-９]{{1,3}}\s*[.)）．、:：]"
    rf"|[Qq][0-9]{{1,3}}\s*[.:：)]"
    rf"|[{CN_NUM}]{{1,3}}\s*[、.．]"
    rf")(?:\*\*)?\s*(?P<text>.*)$"
)
BULLET = re.compile(r"^\s*[-*•·●▪◦‣+]\s+(?P<text>.*)$")
FIELD = re.compile(
    r"^\s*(?:[0-9]+[.)]\s*)?(?:#+\s*)?\**(?P<key>instruction|input|output|question|answer|response"
    r"|指令|输入|输出|问题|回答|答案)\**\s*[:：]\s*(?P<text>.*)$",
    re.IGNORECASE,
)
FIELD_NAMES = {
    "instruction": "instruction", "question": "instruction", "指令": "instruction", "问题": "instruction",
    "input": "input", "输入": "input",
    "output": "output", "answer": "output", "response": "output", "输出": "output", "回答": "output",
    "答案": "output",
}
FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
PREFIX = re.compile(r"^(?:question|instruction|task|q|问题|指令|任务)\s*[:：]\s*", re.IGNORECASE)
QUOTES = {'""', "''", "``", "“”", "「」", "『』"}
NO_INPUT = {"", "<noinput>", "<no input>", "none", "n/a", "无", "无输入"}


@dataclass
class Parsed:
    """What `parse` found: items ({instruction, input, output}) and rejections ({text, reason})."""

    items: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    shape: str = ""  # json | blocks | numbered | bulleted | lines | none

    def reject(self, text: str, reason: str) -> None:
        if text.strip():
            self.rejected.append({"text": text.strip(), "reason": reason})


def clean_text(text: str) -> str:
    """Strip list decoration a model adds around an item: bold marks, quotes, 'Question:'."""
    t = text.strip().strip("*").strip()
    t = PREFIX.sub("", t).strip()
    if len(t) >= 2 and (t[0] + t[-1]) in QUOTES:
        t = t[1:-1].strip()
    return t


def record(instruction: str, input_: str = "", output: str = "") -> dict:
    inp = input_.strip()
    return {
        "instruction": clean_text(instruction),
        "input": "" if inp.lower() in NO_INPUT else inp,
        "output": output.strip(),
    }


def pick(obj: dict, name: str) -> str:
    """The value of field name (instruction/input/output) under any of its usual keys, or ""."""
    for key in KEYS[name]:
        for k, v in obj.items():
            if k.lower() == key and isinstance(v, (str, int, float)):
                return str(v)
    return ""


def _from_json(value, out: Parsed) -> None:
    """Items from a decoded JSON value: list of strings/objects, one object, or {"x": [...]}."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if not pick(value, "instruction") and len(lists) == 1:
            value = lists[0]
        else:
            value = [value]
    if not isinstance(value, list):
        out.reject(json.dumps(value, ensure_ascii=False), "JSON value is neither a list nor an object")
        return
    for v in value:
        if isinstance(v, str):
            out.items.append(record(v))
        elif isinstance(v, dict) and pick(v, "instruction"):
            out.items.append(record(pick(v, "instruction"), pick(v, "input"), pick(v, "output")))
        else:
            out.reject(json.dumps(v, ensure_ascii=False), "JSON element without an instruction")


def _json_candidates(text: str) -> list[str]:
    """Fenced blocks first, then the text itself, then its outermost [...] or {...} span."""
    found = [m.group(1) for m in FENCE.finditer(text)]
    stripped = text.strip()
    found.append(stripped)
    for open_, close in (("[", "]"), ("{", "}")):
        a, b = stripped.find(open_), stripped.rfind(close)
        if 0 <= a < b:
            found.append(stripped[a : b + 1])
    return found


def parse_json(text: str) -> Parsed | None:
    """Parse text as JSON (fenced or bare); None when no JSON value is in it."""
    for cand in _json_candidates(text):
        try:
            value = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, (list, dict)):
            out = Parsed(shape="json")
            _from_json(value, out)
            rest = text.replace(cand, "").replace("```json", "").replace("```", "").strip()
            out.reject(rest, "not an item: text outside the JSON value")
            return out
    return None


def parse_blocks(text: str) -> Parsed | None:
    """Parse "Instruction:/Input:/Output:" blocks; None when there is no such field line."""
    lines = text.splitlines()
    names = {FIELD_NAMES[m["key"].lower()] for m in map(FIELD.match, lines) if m}
    if "instruction" not in names or names == {"instruction"}:  # bare "Question: X" lines are list items
        return None
    out, current, key, loose = Parsed(shape="blocks"), None, None, []
    for line in lines:
        m = FIELD.match(line)
        if m:
            name = FIELD_NAMES[m["key"].lower()]
            if name == "instruction" or current is None:
                if current:
                    out.items.append(record(current["instruction"], current["input"], current["output"]))
                current = {"instruction": "", "input": "", "output": ""}
            key = name
            current[key] = m["text"]
        elif current is not None and key and line.strip() and not set(line.strip()) <= set("#-=*"):
            current[key] = f"{current[key]}\n{line.strip()}".strip()
        elif current is None:
            loose.append(line)
    if current:
        out.items.append(record(current["instruction"], current["input"], current["output"]))
    out.reject("\n".join(loose), "not an item: text before the first Instruction:")
    missing = [it for it in out.items if not it["instruction"]]
    for it in missing:
        out.reject(it["output"] or it["input"], "block without an instruction")
    out.items = [it for it in out.items if it["instruction"]]
    return out


def _list_items(lines: list[str], pattern: re.Pattern) -> tuple[list[str], list[str]]:
    """Split lines into (items, commentary chunks): runs of non-item lines between/around items."""
    items: list[str] = []
    chunks: list[list[str]] = [[]]
    for line in lines:
        m = pattern.match(line)
        if m:
            items.append(m["text"])
            if chunks[-1]:
                chunks.append([])
        elif items and not chunks[-1] and line[:1] in (" ", "\t") and line.strip():
            items[-1] = f"{items[-1]} {line.strip()}"  # an indented continuation of the item
        elif line.strip():
            chunks[-1].append(line.strip())
    return items, ["\n".join(c) for c in chunks if c]


def parse_list(text: str) -> Parsed | None:
    """Parse a numbered or bulleted list; None when fewer than two lines look like items."""
    lines = text.splitlines()
    for shape, pattern in (("numbered", NUMBERED), ("bulleted", BULLET)):
        items, chunks = _list_items(lines, pattern)
        if len(items) >= 2 or (items and not chunks):
            out = Parsed(shape=shape)
            for it in items:
                if not clean_text(it):
                    out.reject(it or "(empty)", "empty list item")
                elif clean_text(it).endswith((":", "：")):
                    out.reject(it, "not an item: an introduction (ends with ':')")
                else:
                    out.items.append(record(it))
            for chunk in chunks:
                out.reject(chunk, "not an item: commentary around the list")
            return out
    return None


def parse_lines(text: str) -> Parsed:
    """Last resort: lines that read like a question or a task (end in ? . ! 。) are items.

    Needs two such lines: a lone sentence ("I'm ready to help. What's next?") is chatter, not a list.
    """
    out = Parsed(shape="lines")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    items = [ln for ln in lines if ln.endswith(("?", "？", ".", "。", "!", "！"))]
    if len(items) < 2:
        out.shape = "none"
        for line in lines:
            out.reject(line, "not a list item, JSON value or Instruction: block")
        return out
    for line in lines:
        if line in items:
            out.items.append(record(line))
        else:
            out.reject(line, "not a list item, JSON value or Instruction: block")
    return out


def parse(text: str) -> Parsed:
    """Parse one model answer into items and rejections (each with a reason).

    Args:
        text: the raw model output.

    Returns:
        Parsed: items as {instruction, input, output} and rejections as {text, reason}.
    """
    if not text or not text.strip():
        out = Parsed(shape="none")
        out.rejected.append({"text": "", "reason": "the model returned nothing"})
        return out
    for parser in (parse_json, parse_blocks, parse_list):
        got = parser(text)
        if got is not None and got.items:
            return got
    return parse_lines(text)


def parse_answer(text: str) -> str:
    """The answer text of a second-call output: fences and a leading 'Answer:' removed."""
    t = text.strip()
    m = FENCE.search(t)
    if m and t.startswith("```"):
        t = m.group(1).strip()
    return re.sub(r"^(?:answer|output|response|回答|答案|输出)\s*[:：]\s*", "", t, flags=re.IGNORECASE).strip()
