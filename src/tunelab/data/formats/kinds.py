"""Preference records (chosen/rejected pairs, KTO) and `normaliser`, which decides each file's record kind."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Iterable, Iterator

from tunelab.data.formats.base import ASSISTANT, SYSTEM, USER, USER_SIDE, BadRecord, Columns, Item, Lost
from tunelab.data.formats.records import (_id, _json_text, _kind, _text, _turns, alpaca, auto_record,
                                          conversation, pairs_of)


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
