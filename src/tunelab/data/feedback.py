"""Ratings as training data: preference pairs and KTO labels, each saved as a new dataset version.

The Playground's thumbs up/down, "write the better answer" and "prefer A over B" all end here, so
the same rating from a script lands in the same shape. A pair record carries `chosen` and
`rejected` (and `output` = chosen, so SFT on the set learns the preferred answer); a KTO record
carries its one answer in `output` and `kto_tag` True (desirable) or False. The version's manifest
params name what produced it: {"kind", "source", "record", "added", "models", "system", "engine"}.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from tunelab.data import store
from tunelab.errors import TuneLabError

OP = "feedback"  # the manifest op of every version a rating adds
KINDS = ("pair", "kto")
DEFAULT_DATASET = "feedback"


def prompt_fields(messages: list[dict]) -> dict:
    """The record fields of a prompt: OpenAI-style messages ending with a user turn.

    The leading system message becomes `system`, earlier user/assistant turns `history`, the last
    user turn `instruction` (the inverse of messages.to_messages for a record without `input`).
    """
    msgs = [m for m in messages if m.get("role") in ("system", "user", "assistant")]
    if not msgs or msgs[-1]["role"] != "user":
        raise TuneLabError("a rating needs the conversation up to the user's question, ending with a user turn")
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs[:-1] if m["role"] != "system"]
    history, user = [], None
    for m in turns:
        if m["role"] == "user":
            user = m["content"]
        elif user is not None:  # an assistant turn answers the user turn before it
            history.append([user, m["content"]])
            user = None
    return {"instruction": msgs[-1]["content"], "input": "", "system": system, "history": history}


def feedback_record(
    prompt_messages: list[dict],
    kind: str,
    chosen: str | None = None,
    rejected: str | None = None,
    answer: str | None = None,
    desirable: bool | None = None,
) -> dict:
    """One pair or KTO record (with a fresh id) for a prompt; refuses a rating that teaches nothing."""
    rec = {"id": uuid.uuid4().hex[:12], **prompt_fields(prompt_messages),
           "chosen": None, "rejected": None, "kto_tag": None}
    if kind == "pair":
        if not (chosen or "").strip() or not (rejected or "").strip():
            raise TuneLabError("a preference pair needs both a chosen and a rejected answer that are not empty")
        if chosen.strip() == rejected.strip():
            raise TuneLabError("the chosen and the rejected answer are the same text, so the pair teaches nothing")
        rec.update(output=chosen, chosen=chosen, rejected=rejected)
    elif kind == "kto":
        if not (answer or "").strip():
            raise TuneLabError("an empty answer cannot be rated")
        if not isinstance(desirable, bool):
            raise TuneLabError("a rating needs desirable set to true (thumbs up) or false (thumbs down)")
        rec.update(output=answer, kto_tag=desirable)
    else:
        raise TuneLabError(f"unknown feedback kind {kind!r}: use pair or kto")
    return rec


def save_feedback(
    dataset: str,
    prompt_messages: list[dict],
    kind: str = "pair",
    chosen: str | None = None,
    rejected: str | None = None,
    answer: str | None = None,
    desirable: bool | None = None,
    lineage: dict | None = None,
    source: str = "",
) -> dict:
    """Append one rating to a dataset as a new version (the dataset is made when missing).

    Args:
        dataset: the dataset to write.
        prompt_messages: what the model saw, OpenAI-style, ending with the user's question.
        kind: "pair" (chosen over rejected) or "kto" (one answer, desirable or not).
        chosen, rejected: the pair's answers (kind "pair").
        answer, desirable: the rated answer and its label (kind "kto").
        lineage: where the answers came from: {"models": [...], "system": ..., "engine": ...};
            stored in the version's manifest params.
        source: what the user did ("thumbs", "better", "prefer"), kept in the params too.
    Returns:
        The new version's manifest entry plus "record" (the new record's id).
    """
    rec = feedback_record(prompt_messages, kind, chosen, rejected, answer, desirable)
    params = {"kind": kind, "source": source, "record": rec["id"], "added": 1, **(lineage or {})}
    entry = store.append_records(dataset, [rec], op=OP, params=params)
    return dict(entry, record=rec["id"])


def _ancestry(m: dict, version: int) -> list[dict]:
    """The version entries from `version` back to the first (undone versions are not in it)."""
    by = {v["version"]: v for v in m["versions"]}
    out, seen = [], set()
    while version in by and version not in seen:
        seen.add(version)
        out.append(by[version])
        version = by[version].get("parent")
    return out


def waiting(trained: Iterable[tuple[str, int]] = ()) -> dict[str, dict]:
    """Ratings not trained on yet, per dataset that holds any.

    A rating waits when the version that added it is in the head's history but in no trained
    version's history. It is counted from the manifests (no data file is read), so a rating a
    later edit removed still counts: a count to act on, not an audit.

    Args:
        trained: (dataset, version) of every preference run (dpo, orpo, kto) so far: the ratings
            in that version's history are used.
    Returns:
        {dataset: {"pairs": n, "kto": n}} for datasets with at least one feedback version.
    """
    trained = list(trained)
    out = {}
    for d in store.list_datasets():
        try:
            m = store.manifest(d["name"])
        except TuneLabError:
            continue
        rated = [v for v in _ancestry(m, m["head"]) if v["op"] == OP]
        if not rated:
            continue
        done = {v["version"] for name, ver in trained if name == d["name"] for v in _ancestry(m, ver)}
        counts = {"pairs": 0, "kto": 0}
        for v in rated:
            if v["version"] not in done:
                params = v.get("params") or {}
                counts["pairs" if params.get("kind") == "pair" else "kto"] += int(params.get("added", 1))
        out[d["name"]] = counts
    return out
