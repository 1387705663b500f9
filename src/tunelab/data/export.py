"""`tunelab data export`: a dataset version as Alpaca, JSONL, ShareGPT, Parquet or a LLaMA-Factory folder.

Records stream from the version's Parquet file batch by batch into a temporary file that is
renamed over the target, so a large export holds one batch in memory and never leaves half a file.
The target goes through tunelab.outputs, the guard every writer shares: never in a folder where
TuneLab keeps its own state (datasets/, runs/, ...: an export over `datasets/<name>/manifest.json`
used to break every data command), never over an existing file unless --force.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tunelab import outputs
from tunelab.data import store
from tunelab.data.formats import ASSISTANT, turns_of
from tunelab.data.schema import FIELDS, SCHEMA, conform, kind
from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json, write_json

FORMATS = ("alpaca", "jsonl", "sharegpt", "parquet", "llamafactory")
# Workspace folders that hold TuneLab's own state; "cache" is the Hugging Face datasets cache.
STATE_DIRS = outputs.STATE_DIRS
_atomic = outputs.write_file  # a temporary name, renamed over the target at the end (one guard: tunelab.outputs)
BATCH = 10_000
# LLaMA-Factory's dataset_info.json description of the files written here.
ALPACA_INFO = {"formatting": "alpaca", "columns": {
    "prompt": "instruction", "query": "input", "response": "output",
    "system": "system", "history": "history"}}
SHAREGPT_INFO = {"formatting": "sharegpt", "columns": {
    "messages": "conversations", "system": "system", "tools": "tools"}, "tags": {
    "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
    "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}}
# A pair set is a `"ranking": true` entry whose answers are `chosen` and `rejected`; a KTO set maps
# its label column as `kto_tag` (LLaMA-Factory's layouts, which its importer reads back).
PAIR_COLUMNS = {"chosen": "chosen", "rejected": "rejected"}
ALPACA_PAIR_INFO = {"formatting": "alpaca", "ranking": True, "columns": {
    "prompt": "instruction", "query": "input", **PAIR_COLUMNS, "system": "system", "history": "history"}}


def export(name: str, out: str, fmt: str = "alpaca", version: int | None = None, force: bool = False) -> dict:
    """Write a dataset version to out (relative paths land in the workspace's exports/).

    Args:
        name: dataset name.
        out: output file (a folder for llamafactory); must resolve inside the workspace.
        fmt: alpaca, jsonl, sharegpt, parquet or llamafactory.
        version: the version to export (default: head).
        force: replace an existing file at out (a llamafactory folder may exist: its <name>.json may not).

    Returns:
        {"name", "version", "format", "path", "records"}.
    """
    if fmt not in FORMATS:
        raise TuneLabError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})")
    v = store.resolve_version(name, version)
    src = store.version_path(name, v)
    # tunelab.outputs: never into TuneLab's own folders, never over an existing file unless force.
    target = outputs.target(out, force or fmt == "llamafactory")
    if fmt == "llamafactory":
        p = target / f"{name}.json"
        if p.exists() and not force:
            raise TuneLabError(f"{p} already exists: pass --force to replace it, or give another name")
        records, target = _llamafactory(name, src, target)
    elif fmt == "parquet":
        records = _write_parquet(target, src)
    else:
        records = _write_json(target, src, fmt)
    return {"name": name, "version": v, "format": fmt, "path": str(target), "records": records}


def _rows(src: Path) -> Iterator[dict]:
    for batch in pq.ParquetFile(src).iter_batches(batch_size=BATCH):
        yield from conform(batch).to_pylist()  # an older version lacks the preference fields


def _write_parquet(target: Path, src: Path) -> int:
    """The version file as it is, or, for a version written before a field existed, in SCHEMA."""
    pf = pq.ParquetFile(src)
    if pf.schema_arrow.names == list(FIELDS):
        with _atomic(target, binary=True) as fh, open(src, "rb") as srcfh:
            shutil.copyfileobj(srcfh, fh)
        return pf.metadata.num_rows
    with _atomic(target, binary=True) as fh, pq.ParquetWriter(fh, SCHEMA, compression="zstd") as writer:
        for batch in pf.iter_batches(batch_size=BATCH):
            writer.write_table(conform(batch), row_group_size=store.ROW_GROUP_ROWS)
    return pf.metadata.num_rows


def _preference(r: dict, rec: dict) -> dict:
    """rec with a pair's chosen/rejected or a KTO record's kto_tag (a plain record unchanged)."""
    if kind(r) == "pair":
        rec.update(chosen=r["chosen"], rejected=r["rejected"])
    elif kind(r) == "kto":
        rec["kto_tag"] = r["kto_tag"]
    return rec


def alpaca_record(r: dict, full: bool = False) -> dict:
    """{instruction, input, output[, system, history]}; full keeps empty system/history too.

    A pair adds chosen and rejected (LLaMA-Factory's Alpaca ranking layout), a KTO record kto_tag.
    """
    rec = {"instruction": r["instruction"] or "", "input": r["input"] or "", "output": r["output"] or ""}
    if full or r["system"]:
        rec["system"] = r["system"] or ""
    if full or r["history"]:
        rec["history"] = [list(p) for p in r["history"] or []]
    return _preference(r, rec)


def jsonl_record(r: dict) -> dict:
    """Every stored field, so that a JSONL export imports back to the same records."""
    rec = {"id": r["id"], **alpaca_record(r, full=True)}
    for key in ("conversations", "tools"):
        if r[key] is not None:
            rec[key] = r[key]
    return rec


def sharegpt_record(r: dict) -> dict:
    """LLaMA-Factory's ShareGPT layout; the original turns (function_call, observation...) kept.

    A pair is its ranking layout: the turns up to the prompt, then chosen and rejected as turns;
    a KTO record adds kto_tag.
    """
    turns = turns_of(r)
    if kind(r) != "pair":
        return _preference(r, {"conversations": turns, "system": r["system"] or "", "tools": r["tools"] or ""})
    return {"conversations": turns[:-1], "chosen": {"from": ASSISTANT, "value": r["chosen"]},
            "rejected": {"from": ASSISTANT, "value": r["rejected"]}, "system": r["system"] or "",
            "tools": r["tools"] or ""}


def _write_json(target: Path, src: Path, fmt: str) -> int:
    """A JSON array (alpaca, sharegpt) or JSON lines (jsonl), streamed."""
    shape = {"alpaca": alpaca_record, "sharegpt": sharegpt_record, "jsonl": jsonl_record}[fmt]
    n = 0
    with _atomic(target) as fh:
        if fmt != "jsonl":
            fh.write("[")
        for r in _rows(src):
            text = json.dumps(shape(r), ensure_ascii=False)
            if fmt == "jsonl":
                fh.write(text + "\n")
            else:
                fh.write(("\n" if n == 0 else ",\n") + text)
            n += 1
        if fmt != "jsonl":
            fh.write("\n]\n")
    return n


def _llamafactory(name: str, src: Path, folder: Path) -> tuple[int, Path]:
    """A folder LLaMA-Factory reads: <name>.json plus a dataset_info.json entry named <name>.

    ShareGPT layout when any record carries turns or tools (so tool calls survive), else Alpaca
    with every record holding system and history (one consistent set of columns for `datasets`).
    Preference pairs are a `"ranking": true` entry, KTO records map `kto_tag`; LLaMA-Factory reads
    one kind per dataset, so a dataset that mixes kinds is refused. An existing dataset_info.json
    in the folder keeps its other entries.
    """
    if folder.exists() and not folder.is_dir():
        raise TuneLabError(f"{folder} is a file; llamafactory export needs a folder")
    counts = kinds(src)
    held = {k: n for k, n in counts.items() if n}
    if len(held) > 1:
        mix = ", ".join(f"{n} {k}" for k, n in held.items())
        raise TuneLabError(f"dataset {name!r} mixes record kinds ({mix}) and LLaMA-Factory reads one kind "
                           "per dataset: export it as jsonl, or keep one kind in it first")
    folder.mkdir(parents=True, exist_ok=True)
    chat = _has_turns(src)
    n = 0
    with _atomic(folder / f"{name}.json") as fh:
        fh.write("[")
        for r in _rows(src):
            rec = sharegpt_record(r) if chat else alpaca_record(r, full=True)
            fh.write(("\n" if n == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
            n += 1
        fh.write("\n]\n")
    info_path = folder / "dataset_info.json"
    info = read_json(info_path, {}) if info_path.exists() else {}
    if not isinstance(info, dict):
        raise TuneLabError(f"{info_path} exists but is not a dataset_info.json object")
    entry = {"file_name": f"{name}.json", **(SHAREGPT_INFO if chat else ALPACA_INFO)}
    if counts["pair"]:
        entry = ({"file_name": f"{name}.json", "ranking": True, **SHAREGPT_INFO,
                  "columns": {**SHAREGPT_INFO["columns"], **PAIR_COLUMNS}} if chat
                 else {"file_name": f"{name}.json", **ALPACA_PAIR_INFO})
    elif counts["kto"]:
        entry["columns"] = {**entry["columns"], "kto_tag": "kto_tag"}
    info[name] = entry
    write_json(info_path, info)
    return n, folder


def kinds(src: Path) -> dict[str, int]:
    """{"sft", "pair", "kto"}: how many records of each kind a version file holds."""
    counts = {"sft": 0, "pair": 0, "kto": 0}
    pf = pq.ParquetFile(src)
    if "chosen" not in pf.schema_arrow.names:  # written before preference records existed
        counts["sft"] = pf.metadata.num_rows
        return counts
    for batch in pf.iter_batches(batch_size=BATCH, columns=["chosen", "rejected", "kto_tag"]):
        pair = pc.and_(pc.is_valid(batch.column(0)), pc.is_valid(batch.column(1)))
        tagged = pc.and_(pc.invert(pair), pc.is_valid(batch.column(2)))
        counts["pair"] += pc.sum(pair).as_py() or 0
        counts["kto"] += pc.sum(tagged).as_py() or 0
        counts["sft"] += len(batch) - (pc.sum(pair).as_py() or 0) - (pc.sum(tagged).as_py() or 0)
    return counts


def _has_turns(src: Path) -> bool:
    pf = pq.ParquetFile(src)
    for batch in pf.iter_batches(batch_size=BATCH, columns=["conversations", "tools"]):
        if batch.column(0).null_count < len(batch) or batch.column(1).null_count < len(batch):
            return True
    return False

