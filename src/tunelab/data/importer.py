"""`tunelab data import`: files, LLaMA-Factory dataset_info.json, Hugging Face datasets and URLs.

Records stream from a reader in `formats` into Arrow batches of BATCH rows that `store.commit`
writes straight into the new Parquet version, so memory holds one batch whatever the file size.
Importing into an existing name makes a new version holding the imported records (it replaces the
contents; the previous version stays as its parent, so `data undo` brings it back).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote, urlparse

import pyarrow as pa

from tunelab import workspace
from tunelab.data import formats, store
from tunelab.data import labels
from tunelab.data.filenames import safe_filename
from tunelab.data.formats import Columns, Item, Tags
from tunelab.data.schema import COLUMNS, SCHEMA
from tunelab.errors import TuneLabError

BATCH = 10_000
MAX_ERRORS = 1000  # errors listed; every bad record is still counted in `skipped`
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url")
URL_DEADLINE_S = 1800  # a whole URL download, however slowly the server drips; TUNELAB_URL_DEADLINE


def import_path(source: str, name: str | None = None, fmt: str = "auto",
                mapping: dict | None = None) -> dict:
    """Import a file, a dataset_info.json, `hf:OWNER/NAME[:split]` or an http(s) URL.

    Args:
        source: a path, `hf:` reference or URL.
        name: dataset name; defaults to the file's stem (sanitised). Checked before any reading.
        fmt: auto, alpaca, sharegpt, messages, csv or parquet.
        mapping: {field: source column}, e.g. {"instruction": "question", "output": "answer"}.

    Returns:
        {"name", "version", "imported", "skipped", "errors": [{"line", "error"}]}, or for a
        dataset_info.json {"datasets": [that shape, ...], "skipped": [{"name", "reason"}]}.
    """
    source = str(source)
    if name is not None:
        workspace.validate_name(name, "dataset name")
    if fmt not in formats.FORMATS:
        raise TuneLabError(f"unknown format {fmt!r} (use {', '.join(formats.FORMATS)})")
    cols = Columns.from_mapping(mapping)
    if source.startswith("hf:"):
        return _import_hf(source[3:], name, fmt, cols)
    if source.lower().startswith(("http://", "https://")):
        return _import_url(source, name, fmt, cols)
    path = Path(source).expanduser()
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        raise TuneLabError(f"no such file: {source}") from None
    if stat.S_ISDIR(mode):
        raise TuneLabError(f"{source} is a folder, not a file (for a dataset folder use hf:{source})")
    if not stat.S_ISREG(mode):  # a FIFO would block the reader, /dev/zero would never end
        raise TuneLabError(f"{source} is not a regular file (it is {formats.file_kind(mode)})")
    if fmt == "auto" and _is_dataset_info(path):
        if name is not None:
            raise TuneLabError("a dataset_info.json names its datasets itself: leave out the name")
        return import_dataset_info(path)
    return import_file(path, name or default_name(path.name), fmt, cols, source)


def default_name(filename: str) -> str:
    """A valid dataset name from a file name: its stem with other characters replaced by `_`."""
    stem = Path(filename).stem if "." in filename else filename
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:64] or "dataset"


def import_file(path: Path, name: str, fmt: str = "auto", cols: Columns | None = None,
                source: str | None = None) -> dict:
    """Import one local file into dataset `name` (see import_path for the result).

    source is what the user named (a path, URL or dataset_info entry) for the lineage record.
    """
    workspace.validate_name(name, "dataset name")
    cols = labels.decide(path, fmt, cols or Columns())  # pairs / KTO / plain, from every record
    container, items = formats.read_file(path, fmt, cols)
    mapped = {f: getattr(cols, f) for f in formats.FIELDS if getattr(cols, f) not in (f, None)}
    params = {"source": source or str(path), "format": fmt, "container": container, "columns": mapped}
    label = source if source and "://" in source else path.name
    return _commit(name, items, label, params, by_line=container in ("jsonl", "csv", "tsv"))


class _Tally:
    """Counts and the first MAX_ERRORS errors of one import."""

    def __init__(self, by_line: bool):
        self.imported = self.skipped = 0
        self.errors: list[dict] = []
        self.unit = "line" if by_line else "record"

    def bad(self, line: int, reason: str, count: int = 1) -> None:
        self.skipped += count
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "error": reason})

    def nothing(self, label: str) -> TuneLabError:
        """The error for an import that kept no record."""
        if not self.skipped:
            return TuneLabError(f"nothing imported from {label}: it holds no records")
        first = min(self.errors, key=lambda e: e["line"])
        return TuneLabError(f"nothing imported from {label}: {self.skipped} records, all invalid "
                            f"({self.unit} {first['line']}: {first['error']})")


def _commit(name: str, items: Iterable[Item], label: str, params: dict, by_line: bool) -> dict:
    tally = _Tally(by_line)
    batches = _tables(items, tally)
    first = next(batches, None)
    if first is None:  # nothing good: raise before a version is written
        raise tally.nothing(label)
    previous = store.manifest(name)["head"] if store.exists(name) else None
    # commit() records params after the last batch is written, so _counted's counts are final.
    entry = store.commit(name, _counted(itertools.chain([first], batches), tally, params),
                        op="import", params=params)
    result = {"name": name, "version": entry["version"], "imported": tally.imported,
              "skipped": tally.skipped, "errors": sorted(tally.errors, key=lambda e: e["line"])}
    if previous is not None:  # an existing name gets a new version (documented); say so
        result.update(existing=True, previous_version=previous)
    return result


def _counted(tables: Iterator[pa.Table], tally: _Tally, params: dict) -> Iterator[pa.Table]:
    yield from tables
    params.update(imported=tally.imported, skipped=tally.skipped)


def _tables(items: Iterable[Item], tally: _Tally) -> Iterator[pa.Table]:
    """Arrow tables of up to BATCH good records; bad ones go to the tally."""
    rows: list[tuple[int, dict]] = []
    for line, item in items:
        if item.__class__ is str:
            tally.bad(line, item)
            continue
        if item.__class__ is formats.Lost:  # several records lost together (a Parquet row group)
            tally.bad(line, item, item.count)
            continue
        rows.append((line, item))
        if len(rows) >= BATCH:
            table = _table(rows, tally)
            rows = []
            if table.num_rows:
                yield table
    if rows:
        table = _table(rows, tally)
        if table.num_rows:
            yield table


def _table(rows: list[tuple[int, dict]], tally: _Tally) -> pa.Table:
    """Build one batch column by column; only if Arrow refuses it, look for the bad records."""
    try:
        table = _build([r for _, r in rows])
    except (UnicodeEncodeError, pa.ArrowException):
        good = []
        for line, rec in rows:
            reason = formats.text_problem(rec)
            if reason:
                tally.bad(line, reason)
            else:
                good.append(rec)
        table = _build(good)
    tally.imported += table.num_rows
    return table


def _build(recs: list[dict]) -> pa.Table:
    hexes = secrets.token_hex(6 * len(recs))  # one random draw per batch, not per record
    ids = [r["id"] or hexes[12 * i:12 * i + 12] for i, r in enumerate(recs)]
    data = {c: [r.get(c) for r in recs] for c in COLUMNS if c != "id"}  # a plain record has no chosen
    return pa.table({"id": ids, **data}, schema=SCHEMA)


# --------------------------------------------------------------------------- dataset_info.json

class _Skip(Exception):
    """A dataset_info.json entry that is not imported; its message is the reason, `kind` its class."""

    def __init__(self, reason: str, kind: str = "malformed"):
        super().__init__(reason)
        self.kind = kind


def _is_dataset_info(path: Path) -> bool:
    if path.name == "dataset_info.json":
        return True
    return path.suffix.lower() == ".json" and formats.sniff(path) == "object" \
        and formats.is_dataset_info(path)


is_dataset_info_file = _is_dataset_info


def import_dataset_info(path: Path, allowed: dict[str, Path] | None = None) -> dict:
    """Import every entry of a LLaMA-Factory dataset_info.json whose file exists.

    file_name is resolved against the folder holding the dataset_info.json, never the cwd, and must
    stay inside it after following symlinks: `../x`, absolute paths, symlinks out of the folder,
    FIFOs and devices are skipped with the reason. Only the entries named are touched.

    Args:
        path: the dataset_info.json.
        allowed: for browser uploads, {uploaded file name: staged path}: an entry may read only
            these files (matched by the sanitised last component of its file_name), nothing else.

    Returns:
        {"datasets": [import result, ...], "skipped": [{"name", "reason", "kind"}]}.
    """
    info = formats.load_object(path)
    if info is None:
        raise TuneLabError(f"{path} is not a valid dataset_info.json (it must be one JSON object)")
    datasets, skipped = [], []
    base = path.resolve().parent
    for key, entry in info.items():
        try:
            file, fmt, cols = _entry(key, entry, base, allowed)
            datasets.append(import_file(file, key, fmt, cols, f"{path.name}:{key}"))
        except _Skip as exc:
            skipped.append({"name": key, "reason": str(exc), "kind": exc.kind})
        except TuneLabError as exc:
            skipped.append({"name": key, "reason": str(exc), "kind": "invalid"})
    if not datasets and not skipped:
        raise TuneLabError(f"nothing imported from {path.name}: it names no datasets")
    if not datasets:
        first = skipped[0]
        raise TuneLabError(f"nothing imported from {path.name}: {len(skipped)} entries skipped "
                           f"({first['name']}: {first['reason']})")
    return {"datasets": datasets, "skipped": skipped}


def _entry(key: str, entry: object, base: Path,
           allowed: dict[str, Path] | None = None) -> tuple[Path, str, Columns]:
    """The file, record kind and columns of one dataset_info entry, or _Skip with the reason."""
    if not isinstance(entry, dict):
        raise _Skip("malformed entry: expected an object with `file_name`")
    workspace.validate_name(key, "dataset name")
    file_name = entry.get("file_name")
    if file_name is None:
        hub = next((k for k in HUB_KEYS if entry.get(k)), None)
        if hub:
            raise _Skip(f"hub-only dataset, needs network ({hub}: {entry[hub]})", "hub")
        raise _Skip("malformed entry: no `file_name` (nor a hub url)")
    if not isinstance(file_name, str) or not file_name or "\x00" in file_name:
        raise _Skip("malformed entry: `file_name` must be a file name")
    formatting = entry.get("formatting", "alpaca")
    columns, tags = entry.get("columns") or {}, entry.get("tags") or {}
    if formatting not in ("alpaca", "sharegpt"):
        raise _Skip(f"malformed entry: unknown formatting {formatting!r} (alpaca or sharegpt)")
    if not isinstance(columns, dict) or not isinstance(tags, dict):
        raise _Skip("malformed entry: `columns` and `tags` must be objects")
    file = _uploaded(file_name, allowed) if allowed is not None else _inside(file_name, base)
    # "ranking": true makes every record a pair; a mapped kto_tag every record a KTO record.
    expect = "pair" if entry.get("ranking") else "kto" if "kto_tag" in columns else None
    preference = {"chosen": columns.get("chosen", "chosen"), "rejected": columns.get("rejected", "rejected"),
                  "kto_tag": columns.get("kto_tag", "kto_tag"), "expect": expect}
    if formatting == "sharegpt":
        cols = Columns(conversations=columns.get("messages", "conversations"),
                       system=columns.get("system"), tools=columns.get("tools"),
                       tags=Tags.from_llamafactory(tags), **preference)
    else:  # LLaMA-Factory reads history/system/tools only when the entry maps them
        cols = Columns(instruction=columns.get("prompt", "instruction"),
                       input=columns.get("query", "input"), output=columns.get("response", "output"),
                       history=columns.get("history"), system=columns.get("system"),
                       tools=columns.get("tools"), **preference)
    return file, formatting, cols


def _inside(file_name: str, base: Path) -> Path:
    """The regular file file_name names inside base (already resolved), or _Skip saying why not."""
    if os.path.isabs(file_name):
        raise _Skip(f"{file_name} is an absolute path; file_name must name a file next to "
                    f"dataset_info.json", "outside")
    lexical = Path(os.path.normpath(base / file_name))
    if not lexical.is_relative_to(base):
        raise _Skip(f"{file_name} is outside the folder of dataset_info.json", "outside")
    try:
        real = (base / file_name).resolve(strict=True)
    except FileNotFoundError:
        raise _Skip(f"missing file: {file_name} (looked in {base})", "missing") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission error
        raise _Skip(f"{file_name} cannot be opened ({type(exc).__name__})", "unreadable") from None
    if not real.is_relative_to(base):
        raise _Skip(f"{file_name} is a symlink pointing outside the folder of dataset_info.json",
                    "outside")
    mode = real.stat().st_mode
    if stat.S_ISDIR(mode):
        raise _Skip(f"{file_name} is a folder; import its files one by one", "folder")
    if not stat.S_ISREG(mode):
        raise _Skip(f"{file_name} is not a regular file (it is {formats.file_kind(mode)})",
                    "not_regular")
    return real


def _uploaded(file_name: str, allowed: dict[str, Path]) -> Path:
    """The uploaded file an entry of an uploaded dataset_info.json names, or _Skip."""
    staged = allowed.get(safe_filename(file_name))
    if staged is None:
        raise _Skip(f"{file_name} was not uploaded together with dataset_info.json "
                    f"(only the files uploaded with it are read)", "not_uploaded")
    return staged


def summarise(result: dict) -> dict:
    """One summary of an import with several datasets (a dataset_info.json or several uploads).

    Returns:
        {"datasets": n, "imported": records, "skipped_records": n, "new": [names],
         "updated": [{"name", "version", "previous_version"}], "skipped_entries": n,
         "reasons": {kind: [names]}} — the skipped entries grouped by the kind of reason.
    """
    parts = result["datasets"] if "datasets" in result else [result]
    reasons: dict[str, list[str]] = {}
    for s in result.get("skipped", []) if "datasets" in result else []:
        reasons.setdefault(s.get("kind", "invalid"), []).append(s["name"])
    return {
        "datasets": len(parts),
        "imported": sum(d["imported"] for d in parts),
        "skipped_records": sum(d["skipped"] for d in parts),
        "new": [d["name"] for d in parts if not d.get("existing")],
        "updated": [{"name": d["name"], "version": d["version"], "previous_version": d["previous_version"]}
                    for d in parts if d.get("existing")],
        "skipped_entries": sum(len(v) for v in reasons.values()),
        "reasons": reasons,
    }


# --------------------------------------------------------------------------- public sources

def _import_hf(ref: str, name: str | None, fmt: str, cols: Columns) -> dict:
    """`hf:OWNER/NAME[:split]` (or a local dataset folder) through datasets.load_dataset, streamed."""
    split = "train"
    if ":" in ref.rsplit("/", 1)[-1]:
        ref, split = ref.rsplit(":", 1)
    if not ref:
        raise TuneLabError("give a dataset after hf:, e.g. hf:tatsu-lab/alpaca or hf:tatsu-lab/alpaca:train")
    name = name or default_name(Path(ref.rstrip("/")).name + ".x")
    workspace.validate_name(name, "dataset name")
    _check_local_files(ref)
    import datasets  # slow to import; only this path needs it

    try:
        ds = datasets.load_dataset(ref, split=split, streaming=True,
                                   cache_dir=str(workspace.path("cache", "huggingface")))
    except Exception as exc:  # datasets raises many types (offline, unknown split, no files)
        raise TuneLabError(f"cannot load hf:{ref} (split {split}): {_first_line(exc)}") from None
    kind = fmt if fmt in ("alpaca", "sharegpt", "messages") else "auto"
    names = list(ds.column_names or [])
    if names and kind == "auto":
        cols = formats.checked_columns(cols, names)
    items = formats.read_rows(_guarded(ds, ref), kind, replace(cols, coerce=True))
    return _commit(name, items, f"hf:{ref}", {"source": f"hf:{ref}", "split": split, "format": fmt},
                   by_line=False)


def _check_local_files(ref: str) -> None:
    """Refuse a local dataset folder (or file) holding a record over the size limit, before
    `datasets` loads it whole: a small .jsonl.gz can expand to a 300 MB line."""
    local = Path(ref).expanduser()
    try:
        files = [local] if local.is_file() else sorted(local.rglob("*")) if local.is_dir() else []
    except OSError:
        return
    for file in files:
        rel = file.relative_to(local) if file != local else Path(file.name)
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        try:
            reason = formats.oversized_in(file)
        except TuneLabError:  # not a regular file: `datasets` would not read it either
            continue
        if reason:
            raise TuneLabError(f"nothing imported from hf:{ref}: {rel}: {reason}")


def _guarded(rows: Iterable[dict], ref: str) -> Iterator[dict]:
    """Rows of a dataset, each within the record size limit; a failure while streaming becomes one
    clear TuneLabError."""
    try:
        for row in rows:
            if formats.record_size(row) > formats.limits.MAX_RECORD:
                yield formats.Lost(f"record is larger than {formats.limits.MAX_RECORD >> 20} MB")
            else:
                yield row
    except Exception as exc:
        raise TuneLabError(f"reading hf:{ref} failed: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _import_url(url: str, name: str | None, fmt: str, cols: Columns) -> dict:
    """Download an http(s) file into the workspace (streamed to disk), import it, delete it."""
    import httpx

    if "\x00" in url:
        raise TuneLabError("the URL holds a NUL byte; refusing it")
    filename = Path(unquote(urlparse(url).path)).name or "download"
    name = name or default_name(filename)
    workspace.validate_name(name, "dataset name")
    deadline = float(os.environ.get("TUNELAB_URL_DEADLINE") or URL_DEADLINE_S)
    ends = time.monotonic() + deadline
    # Each wait for bytes is bounded by the read timeout, the whole download by the deadline.
    timeout = httpx.Timeout(min(60.0, deadline))
    tmp = workspace.subdir("uploads") / f".download-{secrets.token_hex(4)}{Path(filename).suffix}"
    try:
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    raise TuneLabError(f"download failed: HTTP {resp.status_code} from {url}")
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_bytes():  # as it arrives, so a drip meets the deadline
                        fh.write(chunk)
                        if time.monotonic() > ends:
                            raise TuneLabError(f"download stopped: {url} took longer than {deadline:g} s "
                                               f"(TUNELAB_URL_DEADLINE)")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TuneLabError(f"download failed: {_first_line(exc) or type(exc).__name__} ({url})") from None
        return import_file(tmp, name, fmt, cols, url)
    finally:
        if tmp.exists():
            os.unlink(tmp)


def parse_map(text: str | None) -> dict | None:
    """Parse `instruction=question,output=answer` into {"instruction": "question", ...}."""
    if not text:
        return None
    mapping = {}
    for pair in text.split(","):
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise TuneLabError(f"--map expects FIELD=COLUMN pairs separated by commas, got {pair!r}")
        mapping[field.strip()] = column.strip()
    return mapping
