"""Seed examples for generation: a dataset NAME, an Alpaca JSON/JSONL file, or self-instruct's
seed_tasks.jsonl layout ({"instruction", "instances": [{"input", "output"}], "is_classification"}).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import workspace
from tunelab.data import formats, store
from tunelab.errors import TuneLabError
from tunelab.synth import parse


@dataclass
class Seeds:
    """Seed records and where they came from (for lineage)."""

    records: list[dict]
    source: str  # dataset name or file path
    version: int | None = None  # dataset version; None for a file
    errors: list[dict] = field(default_factory=list)  # [{"line", "error"}] skipped seed lines


def _self_instruct(obj: dict) -> list[dict]:
    """One seed task as records: one per instance, or the bare instruction when it has none."""
    instances = obj.get("instances") or [{}]
    return [
        {
            "instruction": str(obj.get("instruction") or ""),
            "input": str(inst.get("input") or ""),
            "output": str(inst.get("output") or ""),
            "is_classification": bool(obj.get("is_classification")),
        }
        for inst in instances
        if isinstance(inst, dict)
    ]


def _json_objects(path: Path) -> list[tuple[int, object]]:
    """(line or index, value) for a JSON array file or a JSONL file; bad lines as exceptions."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text)))
        except json.JSONDecodeError as exc:
            raise TuneLabError(f"{path.name} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    out: list[tuple[int, object]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                out.append((n, ValueError(f"not JSON: {exc.msg}")))
    return out


def _json_seed(obj: object) -> list[dict]:
    """Records from one JSON seed: self-instruct task or Alpaca object (output optional)."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if "instances" in obj:
        return _self_instruct(obj)
    rec = parse.record(parse.pick(obj, "instruction"), parse.pick(obj, "input"), parse.pick(obj, "output"))
    if not rec["instruction"]:
        raise ValueError("missing `instruction`")
    return [rec]


def _read_file(path: Path) -> tuple[list[dict], list[dict]]:
    records, errors = [], []
    if path.suffix.lower() in (".json", ".jsonl"):
        # Own reader: a seed needs only an instruction, while Alpaca import requires an output.
        for line, obj in _json_objects(path):
            try:
                if isinstance(obj, Exception):
                    raise obj
                records.extend(_json_seed(obj))
            except ValueError as exc:
                errors.append({"line": line, "error": str(exc)})
        return records, errors
    _, items = formats.read_file(path)
    for line, item in items:
        if isinstance(item, dict):
            records.append(item)
        else:
            errors.append({"line": line, "error": str(item)})
    return records, errors


def load(source: str) -> Seeds:
    """Load seeds from a dataset NAME or a file path.

    Args:
        source: a dataset name in the workspace, or a path to an Alpaca JSON/JSONL file or a
            self-instruct seed_tasks.jsonl.

    Returns:
        Seeds with records ({instruction, input, output, ...}) that have an instruction.
    """
    path = Path(source).expanduser()
    if path.is_file():
        records, errors = _read_file(path)
        seeds = Seeds(records, str(path.resolve()), None, errors)
    elif workspace.NAME_RE.match(source) and source not in (".", "..") and store.exists(source):
        version = store.resolve_version(source)
        seeds = Seeds(store.read(source, version).to_pylist(), source, version)
    else:
        raise TuneLabError(f"no seed dataset or file {source!r} (give a dataset name or a path)")
    seeds.records = [r for r in seeds.records if str(r.get("instruction") or "").strip()]
    if not seeds.records:
        raise TuneLabError(f"{source} holds no seed examples with an instruction")
    return seeds
