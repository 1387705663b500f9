"""Was a report's data trained on? A run's evaluation rows checked against its training rows.

A "test" score means nothing on rows the model learned: splitting `dates` into `dates-train` and
`dates-test` and then training on `dates` itself puts every test row in the training data. So
before a report of a run is believed, its rows are compared with the rows the run trained on
(and, through `init_adapter`, the runs it continued):
- by content: a row's prompt (its messages: system, history, instruction and input), whitespace-
  normalised and hashed. The reference is left out on purpose: a test prompt trained with a
  corrected answer (the fix-the-data loop) has still been seen, so it tests nothing;
- by lineage: when the evaluation data descends from a dataset the run trained on (a split's
  manifest entry names its source), a row whose record id the run trained on counts too, so an
  edited copy of a trained row is still caught.
The before/after report (evals/auto.py) then refuses the "test" label and falls back to the
run's own held-out split (`guard`); a report made by hand keeps its data and carries the overlap
(evaluate.create_report). Either way the report JSON holds
    "leakage": {"overlap", "n", "data", "version", "source", "trained_on", "lineage", "fallback", "runs"}.
This module reads config.yaml as plain YAML and output.json through the models layer, like auto.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import yaml

from tunelab import jobs
from tunelab.data import store
from tunelab.data.messages import to_messages
from tunelab.errors import TuneLabError
from tunelab.models import run_output

MAX_DEPTH = 8  # runs continued from runs (init_adapter), followed this far back


def _norm(text) -> str:
    return " ".join(str(text or "").split())


def content_key(messages: list[dict]) -> str:
    """The hash of what a row asks: its prompt turns, whitespace-normalised."""
    doc = [[m.get("role"), _norm(m.get("content"))] for m in messages]
    return hashlib.sha256(json.dumps(doc, ensure_ascii=False).encode("utf-8")).hexdigest()


def record_key(rec: dict) -> str | None:
    """content_key of a dataset record (the same messages evaluation and training build from it).

    A record kept as stored turns (`conversations`, JSON text) is keyed by them; a record with no
    prompt text at all has no key (None), so empty prompts never count as one another's copies.
    """
    msgs = to_messages(rec)
    if rec.get("conversations"):
        msgs = msgs + [{"role": "conversations", "content": rec["conversations"]}]
    if not any(_norm(m.get("content")) for m in msgs):
        return None
    return content_key(msgs)


def config(run_dir: Path) -> dict:
    """A run's config.yaml as plain YAML ({} when unreadable)."""
    try:
        doc = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def holdout_indices(n: int, share: float, seed: int) -> list[int]:
    """The positions a run holds out for evaluation: the same draw as train/sft.load_records."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return sorted(idx[: max(1, int(n * share))])


def held_out_source(conf: dict) -> dict | None:
    """The eval split a run carved out of its own records (test_data's shape), or None when it held none out."""
    d, t = conf.get("data") or {}, conf.get("training") or {}
    data, share = d.get("data") or "", float(d.get("eval_split") or 0)
    if not data or share <= 0 or d.get("eval_data") or not store.exists(data):
        return None
    version = store.resolve_version(data, d.get("data_version"))
    entry = next(v for v in store.manifest(data)["versions"] if v["version"] == version)
    n = int(entry.get("records") or store.read(data, version).num_rows)
    if d.get("max_records"):
        n = min(n, int(d["max_records"]))
    return {"source": "held-out split", "data": data, "version": version,
            "indices": holdout_indices(n, share, int(t.get("seed", 42)))}


def trained(run_dir: Path, depth: int = 0) -> tuple[list[dict], list[dict]]:
    """(records a run trained on, [{"run", "name", "version"}] they came from), continued runs included."""
    run_dir = Path(run_dir)
    conf = config(run_dir)
    d = conf.get("data") or {}
    out = run_output.read(run_dir) or {}
    lin = out.get("lineage") or {}
    name = lin.get("data") or d.get("data")
    records, sources = [], []
    if name and store.exists(name):
        version = store.resolve_version(name, lin.get("data_version") or d.get("data_version"))
        rows = store.read(name, version).to_pylist()[: d.get("max_records") or None]
        held = held_out_source(conf)
        if held is not None:  # what the run held out it did not train on
            out_idx = set(held["indices"])
            rows = [r for i, r in enumerate(rows) if i not in out_idx]
        records += rows
        sources.append({"run": run_dir.name, "name": name, "version": version})
    init = lin.get("init_adapter") or (conf.get("model") or {}).get("init_adapter")
    if init and depth < MAX_DEPTH:
        try:
            parent = jobs.job_dir("runs", str(init))
        except TuneLabError:
            parent = None
        if parent is not None and (parent / "config.yaml").exists():
            more, more_sources = trained(parent, depth + 1)
            records += more
            sources += more_sources
    return records, sources


def _ancestors(name: str, version: int) -> list[tuple[str, int]]:
    """(dataset, version) pairs a dataset version descends from: its own history and the splits' sources."""
    out, todo, seen = [], [(name, version)], set()
    while todo and len(seen) < 200:
        cur = todo.pop()
        if cur in seen or not store.exists(cur[0]):
            continue
        seen.add(cur)
        out.append(cur)
        try:
            by = {v["version"]: v for v in store.manifest(cur[0])["versions"]}
        except TuneLabError:
            continue
        entry = by.get(cur[1])
        if not entry:
            continue
        if entry.get("parent"):
            todo.append((cur[0], entry["parent"]))
        src = entry.get("lineage") or {}
        if src.get("source") and src.get("version"):
            todo.append((src["source"], int(src["version"])))
    return out


def lineage_link(data: str, version: int, sources: list[dict]) -> str | None:
    """One sentence when data@version descends from a dataset the run trained on, else None."""
    trained_names = {s["name"] for s in sources}
    for name, v in _ancestors(data, version):
        if name in trained_names:
            if name == data:
                return f"{data} is the dataset the run trained on"
            return f"{data} v{version} was made from {name} v{v}, which the run trained on"
    return None


def check(run_dir: Path, records: list[dict], data: str, version: int) -> dict | None:
    """How many of records (rows of data@version) the run trained on.

    Returns:
        {"overlap", "n", "data", "version", "trained_on": ["NAME vN", ...], "lineage": sentence or None,
         "rows": [positions in records that were trained on]}, or None when the run's training data
        cannot be read (a run without a config, a deleted dataset).
    """
    train, sources = trained(run_dir)
    if not sources:
        return None
    keys = {record_key(r) for r in train} - {None}
    link = lineage_link(data, version, sources)
    ids = {r.get("id") for r in train if r.get("id")} if link else set()
    rows = [i for i, r in enumerate(records) if record_key(r) in keys or (r.get("id") and r.get("id") in ids)]
    return {"overlap": len(rows), "n": len(records), "data": data, "version": version,
            "trained_on": [f"{s['name']} v{s['version']}" for s in sources], "lineage": link, "rows": rows}


def source_records(src: dict) -> list[dict]:
    """The records a test_data choice names (its indices, or all)."""
    recs = store.read(src["data"], src["version"]).to_pylist()
    if src.get("indices") is not None:
        recs = [recs[i] for i in src["indices"] if i < len(recs)]
    return recs


def sentence(leak: dict) -> str:
    """'x of n rows of DATA were trained on ...': what a report says, in red, about its data."""
    out = (f"{leak['overlap']} of {leak['n']} rows of {leak['data']} v{leak['version']} were trained on "
           f"({', '.join(leak.get('trained_on') or [])})")
    if leak.get("lineage"):
        out += f": {leak['lineage']}"
    if leak.get("fallback"):
        out += f". It is not a test set: the report uses {leak['fallback']} instead"
    elif leak.get("source") in ("test split", "eval data"):
        out += ". It is not a test set"
    return out + "."


def guard(run_dir: Path, src: dict) -> tuple[dict | None, dict | None]:
    """A run's test data with trained rows refused: (the source to evaluate or None, the leakage or None).

    When test_data's choice holds rows the run trained on, the run's own held-out split is used
    instead (less any row trained on through a duplicate); a run that held nothing out is scored
    on the chosen data's unseen rows; with none left, (None, leakage): no report.
    """
    leak = check(run_dir, source_records(src), src["data"], src["version"])
    if not leak or not leak["overlap"]:
        return src, None
    leak = dict(leak, source=src["source"], fallback=None)
    held = held_out_source(config(run_dir))
    same = held is not None and (held["data"], held["version"], held["indices"]) == (
        src["data"], src["version"], src.get("indices"))
    if held is not None and not same:
        again = check(run_dir, source_records(held), held["data"], held["version"]) or {"rows": []}
        bad = set(again["rows"])
        pick = dict(held, indices=[i for k, i in enumerate(held["indices"]) if k not in bad])
    else:
        bad = set(leak["rows"])
        positions = src["indices"] if src.get("indices") is not None else range(leak["n"])
        pick = dict(src, source=f"unseen rows of {src['data']}",
                    indices=[i for k, i in enumerate(positions) if k not in bad])
    if not pick["indices"]:
        return None, leak
    leak["fallback"] = f"{pick['source']} of {pick['data']} v{pick['version']} ({len(pick['indices'])} rows)"
    return pick, leak


def check_report(model_refs: list[dict], data: str, version: int, limit: int | None) -> dict | None:
    """The overlap of a report's data with the training data of each run among its models.

    Args:
        model_refs: the report's [{"name", "ref"}] (a run's ref has kind "run" and its folder as path).
        data, version, limit: the rows the report evaluates (the first limit of data@version).
    Returns:
        The largest overlap (check's shape plus "run", "source": "chosen data", "fallback": None and
        "runs": {run: {"overlap", "n"}}), or None when no run in it trained on any of the rows.
    """
    runs = [m for m in model_refs if (m.get("ref") or {}).get("kind") == "run"]
    if not runs:
        return None
    table = store.read(data, version)
    records = (table.slice(0, limit) if limit else table).to_pylist()
    found = {}
    for m in runs:
        leak = check(Path(m["ref"]["path"]), records, data, version)
        if leak and leak["overlap"]:
            found[m["name"]] = leak
    if not found:
        return None
    worst = max(found, key=lambda k: found[k]["overlap"])
    return dict(found[worst], run=worst, source="chosen data", fallback=None,
                runs={k: {"overlap": v["overlap"], "n": v["n"]} for k, v in found.items()})
