"""Versioned dataset store: one immutable Parquet file per version plus a manifest (lineage).

Layout: datasets/<name>/manifest.json (with a "schema" number, read through migrations.py),
datasets/<name>/v<N>.parquet. Every head change (commit, edit, append, undo, delete) runs under one
per-dataset file lock, datasets/<name>/.lock, and an edit holds it from reading the head to writing
the new version: two processes editing at once both land, and an undo racing an edit lands before
or after it, never in between (with a second lock for edits, an undo that ran while `data clean`
was transforming the head was silently lost when the clean then committed on top of the undone
version). `undo` moves the head back to the parent; undone versions stay on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tunelab import jobs, migrations, workspace
from tunelab.data.schema import SCHEMA, conform
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, write_json

# Small row groups let DuckDB skip to a page (`data show --offset`) or fetch rows by number
# without decoding the whole file: on 1M records a page took 330 ms with pyarrow's default
# 1M-row groups, 15 ms with 16k rows; 4k rows halves the decoding again at the same file size.
ROW_GROUP_ROWS = 4096
# A `*.tmp` whose name carries no writer pid is taken for an orphan once untouched this long
# (a live writer streams into its file, so its mtime keeps moving).
STALE_TMP_S = 600

_held = threading.local()  # dataset folders whose lock this thread holds (the lock is re-entrant)


def _dir(name: str) -> Path:
    return workspace.subdir("datasets") / workspace.validate_name(name, "dataset name")


def exists(name: str) -> bool:
    return (_dir(name) / "manifest.json").exists()


@contextlib.contextmanager
def _head_lock(d: Path) -> Iterator[None]:
    """The one lock every head change of a dataset takes; re-entrant within a thread.

    flock conflicts between two open files even in one process, so without the re-entry check
    edit() -> commit() would wait on itself.
    """
    held = _held.__dict__.setdefault("dirs", set())
    if d in held:
        yield
        return
    d.mkdir(parents=True, exist_ok=True)
    with locked(d / ".lock"):
        held.add(d)
        try:
            yield
        finally:
            held.discard(d)


def _load(name: str, d: Path) -> dict | None:
    """The manifest, None when the dataset does not exist; a damaged one is one line naming it."""
    path = d / "manifest.json"
    try:
        m = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise _damaged(name, path, " ".join(str(exc).split())) from None
    if isinstance(m, dict):  # an older manifest is read in today's shape (migrations.py)
        m = migrations.migrate("manifest", m)
    problem = _manifest_problem(m)
    if problem:
        raise _damaged(name, path, problem)
    m.setdefault("name", name)
    return m


def _damaged(name: str, path: Path, why: str) -> TuneLabError:
    return TuneLabError(f"dataset {name!r} cannot be read: {path} is damaged ({why}); restore the "
                        f"file or remove the dataset with `tunelab data delete {name}`")


def _manifest_problem(m) -> str | None:
    if not isinstance(m, dict) or not isinstance(m.get("versions"), list) or not m["versions"]:
        return "not a manifest object with a list of versions"
    numbers = set()
    for v in m["versions"]:
        if (not isinstance(v, dict) or type(v.get("version")) is not int
                or type(v.get("records")) is not int or not isinstance(v.get("op"), str)):
            return "a version entry lacks its number, op or record count"
        numbers.add(v["version"])
    if m.get("head") not in numbers:
        return f"its head {m.get('head')!r} is not one of its versions"
    return None


def manifest(name: str) -> dict:
    """The dataset's manifest: {"schema", "name", "head", "versions": [{version, parent, op, params, ...}]}.

    `schema` counts the manifest migrations applied (migrations.py): a manifest written before
    it existed reads as schema 0 and is migrated on every read, and stamped when next written.
    """
    m = _load(name, _dir(name))
    if m is None:
        raise TuneLabError(f"unknown dataset {name!r} (see `tunelab data list`)")
    return m


def _scan() -> tuple[list[dict], list[dict]]:
    good, broken = [], []
    for d in sorted(workspace.subdir("datasets").iterdir()):
        if not d.is_dir() or not workspace.NAME_RE.match(d.name) or d.name.startswith("."):
            continue  # lock files, temporary folders, stray files
        try:
            m = _load(d.name, d)
        except TuneLabError as exc:
            broken.append({"name": d.name, "error": str(exc)})
            continue
        if m:
            head = _entry(m, m["head"])
            good.append({"name": d.name, "version": m["head"], "records": head["records"]})
    return good, broken


def list_datasets() -> list[dict]:
    """Every readable dataset with its head version and record count (see unreadable())."""
    return _scan()[0]


def unreadable() -> list[dict]:
    """Datasets whose manifest cannot be read: [{"name", "error"}] (every other one stays usable)."""
    return _scan()[1]


def _entry(m: dict, version: int) -> dict:
    for v in m["versions"]:
        if v["version"] == version:
            return v
    raise TuneLabError(f"dataset {m['name']!r} has no version {version}")


def resolve_version(name: str, version: int | None = None) -> int:
    m = manifest(name)
    return m["head"] if version is None else _entry(m, int(version))["version"]


def version_path(name: str, version: int | None = None) -> Path:
    """The Parquet file of a version (default: head)."""
    return _dir(name) / f"v{resolve_version(name, version)}.parquet"


def read(name: str, version: int | None = None) -> pa.Table:
    return pq.read_table(version_path(name, version), schema=SCHEMA)


def sweep_tmp(folder: Path, prefix: str = ".") -> list[str]:
    """Remove the `.*.tmp` files and folders a killed writer left in folder; returns their names.

    A name that carries its writer's pid (`.<target>.<pid>.<n>.tmp`, as written here, by export
    and by the search index build) is an orphan once that process is gone; any other only after
    STALE_TMP_S untouched. A live writer's file is never removed. prefix narrows the sweep (an
    export folder may hold the user's own files).
    """
    removed = []
    try:
        entries = [p for p in folder.glob(".*.tmp") if p.name.startswith(prefix)]
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        parts = p.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 5 and parts[-3].isdigit() else None
        try:
            stale = not jobs.pid_alive(pid) if pid else now - p.lstat().st_mtime > STALE_TMP_S
            if not stale:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p.name)
        except OSError:
            continue  # gone already, or not ours to remove: the next write tries again
    return removed


def _write_file(target: Path, batches: Iterable[pa.Table]) -> int:
    """Stream tables into target via a temporary name and rename; returns the row count."""
    # The pid in the name lets sweep_tmp tell a killed writer's leftover from a live one.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            for t in batches:
                if t.num_rows:
                    # conform: a table built before the preference fields existed gets them as nulls
                    writer.write_table(conform(t), row_group_size=ROW_GROUP_ROWS)
                    rows += t.num_rows
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _check_new_name(name: str) -> None:
    """Refuse a new dataset whose name differs from an existing one only in case.

    SQL identifiers are case-insensitive in DuckDB (quoted or not), so `Foo` and `foo` cannot both
    be tables of the SQL page; refusing the second name keeps every query working.
    """
    root = workspace.subdir("datasets")
    for d in root.iterdir():
        if d.name != name and d.name.lower() == name.lower() and (d / "manifest.json").exists():
            raise TuneLabError(f"dataset {d.name!r} already exists and {name!r} differs from it only "
                               "in case, which SQL cannot tell apart: choose another name")


def commit(
    name: str,
    batches: Iterable[pa.Table] | pa.Table,
    op: str,
    params: dict | None = None,
    parent: int | None = None,
    lineage: dict | None = None,
) -> dict:
    """Write a new version from batches and make it the head. Returns its manifest entry.

    parent defaults to the current head (None for a new dataset).
    """
    d = _dir(name)
    if not (d / "manifest.json").exists():
        # Creating: one lock over the datasets folder so `Foo` and `foo` cannot both slip in.
        with locked(workspace.subdir("datasets") / ".create.lock"):
            _check_new_name(name)
            d.mkdir(parents=True, exist_ok=True)
    if isinstance(batches, pa.Table):
        batches = [batches]
    with _head_lock(d):
        sweep_tmp(d)
        m = _load(name, d) or migrations.stamp("manifest", {"name": name, "head": 0, "versions": []})
        version = max([v["version"] for v in m["versions"]], default=0) + 1
        rows = _write_file(d / f"v{version}.parquet", batches)
        entry = {
            "version": version,
            "parent": parent if parent is not None else (m["head"] or None),
            "op": op,
            "params": params or {},
            "records": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if lineage:
            entry["lineage"] = lineage
        m["versions"].append(entry)
        m["head"] = version
        write_json(d / "manifest.json", m)
    return entry


def edit(name: str, fn: Callable[[pa.Table], pa.Table], op: str, params: dict | None = None) -> dict:
    """Read the head, apply fn, commit the result — all under the dataset lock.

    Holding the lock across read-transform-write means two concurrent edits serialise: the second
    applies on top of the first instead of silently discarding it; an undo waits for the edit too.
    """
    d = _dir(name)
    if not exists(name):
        raise TuneLabError(f"unknown dataset {name!r} (see `tunelab data list`)")
    with _head_lock(d):
        head = manifest(name)["head"]
        table = read(name, head)
        result = fn(table)
        return commit(name, result, op, params, parent=head)


def undo(name: str) -> dict:
    """Move the head back to its parent version; the undone version stays on disk."""
    d = _dir(name)
    if not exists(name):
        raise TuneLabError(f"unknown dataset {name!r} (see `tunelab data list`)")
    with _head_lock(d):
        m = manifest(name)
        parent = _entry(m, m["head"]).get("parent")
        if not parent:
            raise TuneLabError(f"dataset {name!r} is at its first version; nothing to undo")
        m["head"] = parent
        write_json(d / "manifest.json", m)
    return _entry(m, parent)


def users(name: str) -> list[str]:
    """The queued or running jobs that read or write the dataset ("run r-1", "report rep-2")."""
    from tunelab import jobs

    out = []
    for j in jobs.active_jobs():
        named = [j.get("data"), j.get("into")]
        if any(name in str(v).replace(" ", "").split(",") for v in named if v):
            out.append(f"{jobs.KIND_LABELS.get(j['kind'], j['kind'])} {j.get('id')}")
    return out


def delete(name: str) -> None:
    """Remove a dataset and all its versions (a damaged one too); refused while a job uses it."""
    d = _dir(name)
    if not d.exists():
        raise TuneLabError(f"unknown dataset {name!r}")
    busy = users(name)
    if busy:
        raise TuneLabError(f"dataset {name!r} is in use by {', '.join(busy)}: stop it or let it finish first")
    with _head_lock(d):  # after any edit in flight, not under it
        shutil.rmtree(d)


def append_records(
    name: str, records: list[dict], op: str, params: dict | None = None, lineage: dict | None = None
) -> dict:
    """Add records to a dataset as a new version (creating the dataset if needed).

    Used by the Playground ("save as training record") and Generate ("accept"). Ids are
    assigned here when missing.
    """
    from tunelab.data.schema import to_table
    import uuid

    recs = [dict(r, id=r.get("id") or uuid.uuid4().hex[:12]) for r in records]
    new = to_table(recs)
    if not exists(name):
        return commit(name, new, op, params, lineage=lineage)
    d = _dir(name)
    with _head_lock(d):
        head = manifest(name)["head"]
        table = pa.concat_tables([read(name, head), new])
        return commit(name, table, op, params, parent=head, lineage=lineage)
