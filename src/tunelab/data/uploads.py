"""Files uploaded in the browser: staged under <workspace>/uploads/<batch>/ with safe names, imported,
then deleted.

Each upload batch gets a fresh folder of its own, so a dataset_info.json uploaded through the
browser can read only the files uploaded together with it: never an earlier upload (which is how
uploading a dataset_info.json used to re-import every earlier upload in the shared staging folder
as a new head version), and never any other file on the server.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Iterable

from tunelab import workspace
from tunelab.data import formats, importer, store
from tunelab.data.filenames import MAX_NAME, safe_filename  # noqa: F401  (uploads.safe_filename)
from tunelab.data.formats import Columns
from tunelab.errors import TuneLabError

INFO = "dataset_info.json"


def stage(files: Iterable[tuple[str, bytes]]) -> dict[str, Path]:
    """Write one batch of uploads into a new folder uploads/<batch>/.

    Returns:
        {safe file name: staged path}, in upload order.
    """
    files = list(files)
    if not files:
        raise TuneLabError("nothing was uploaded")
    names = [safe_filename(f) for f, _ in files]
    for (filename, data), safe in zip(files, names):
        if not data:
            raise TuneLabError(f"the uploaded file {filename!r} is empty")
        if names.count(safe) > 1:
            raise TuneLabError(f"two uploaded files are both named {safe!r}; rename one")
    folder = workspace.subdir("uploads") / f"batch-{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700)
    staged = {}
    for (_, data), safe in zip(files, names):
        target = folder / safe
        with open(target, "xb") as fh:  # x: never follows or replaces anything already there
            fh.write(data)
        staged[safe] = target
    return staged


def save_upload(filename: str, data: bytes) -> Path:
    """Write uploaded bytes to a fresh folder under uploads/ and return the file's path."""
    return stage([(filename, data)])[safe_filename(filename)]


def _info_file(staged: dict[str, Path], fmt: str) -> Path | None:
    """The dataset_info.json among the staged files, if any (at most one)."""
    if fmt != "auto":
        return None
    infos = [p for p in staged.values() if importer.is_dataset_info_file(p)]
    if len(infos) > 1:
        raise TuneLabError(f"upload one dataset_info.json at a time, not {len(infos)}")
    return infos[0] if infos else None


def _targets(staged: dict[str, Path], info: Path | None, name: str | None) -> list[str]:
    if info is not None:
        obj = formats.load_object(info) or {}
        return [k for k in obj if isinstance(k, str)]
    if name:
        return [name]
    return [importer.default_name(p.name) for p in staged.values()]


def import_uploads(files: Iterable[tuple[str, bytes]], name: str | None = None, fmt: str = "auto",
                   mapping: dict | None = None) -> dict:
    """Import files uploaded together; the staged copies are deleted afterwards.

    A dataset_info.json among them imports the entries it names, each reading only a file of this
    upload; other files are each imported as a dataset named by their stem (or `name` for a single
    file). Importing into an existing name adds a new version (`existing` in the result says so:
    ask before calling, see `existing_targets`).

    Args:
        files: (browser file name, bytes) pairs; only each name's sanitised last component is used.
        name: dataset name for a single data file (default: the file's stem).
        fmt: auto, alpaca, sharegpt, messages, csv or parquet.
        mapping: {field: column} for CSV/Parquet.

    Returns:
        One file: importer.import_path's result. A dataset_info.json or several files:
        {"datasets": [...], "skipped": [{"name", "reason", "kind"}], "unused": [file names]}.
    """
    if fmt not in formats.FORMATS:
        raise TuneLabError(f"unknown format {fmt!r} (use {', '.join(formats.FORMATS)})")
    if name:
        workspace.validate_name(name, "dataset name")
    cols = Columns.from_mapping(mapping)
    staged = stage(files)
    try:
        info = _info_file(staged, fmt)
        if info is not None:
            if name:
                raise TuneLabError("a dataset_info.json names its datasets itself: leave out the name")
            others = {k: p for k, p in staged.items() if p != info}
            result = importer.import_dataset_info(info, allowed=others)
            result["unused"] = [k for k in others if not _named(info, k)]
            return result
        if len(staged) == 1:
            (safe, path), = staged.items()
            return importer.import_file(path, name or importer.default_name(safe), fmt, cols, safe)
        if name:
            raise TuneLabError("a dataset name applies to one uploaded file; leave it out for several")
        datasets, skipped = [], []
        for safe, path in staged.items():
            try:
                datasets.append(importer.import_file(path, importer.default_name(safe), fmt, cols, safe))
            except TuneLabError as exc:
                skipped.append({"name": safe, "reason": str(exc), "kind": "invalid"})
        if not datasets:
            first = skipped[0]
            raise TuneLabError(f"nothing imported from {len(skipped)} uploaded files "
                               f"({first['name']}: {first['reason']})")
        return {"datasets": datasets, "skipped": skipped, "unused": []}
    finally:
        shutil.rmtree(next(iter(staged.values())).parent, ignore_errors=True)


def _named(info: Path, safe: str) -> bool:
    """Whether some entry of the dataset_info.json names the uploaded file `safe`."""
    obj = formats.load_object(info) or {}
    return any(isinstance(e, dict) and isinstance(e.get("file_name"), str)
               and safe_filename(e["file_name"]) == safe for e in obj.values())


def import_upload(filename: str, data: bytes, name: str | None = None, fmt: str = "auto",
                  mapping: dict | None = None) -> dict:
    """Import one uploaded file (see import_uploads; kept for the Data page's single upload)."""
    return import_uploads([(filename, data)], name or None, fmt, mapping)


def existing_targets(files: Iterable[tuple[str, bytes]], name: str | None = None,
                     fmt: str = "auto") -> list[dict]:
    """The datasets that importing these uploads would add a version to (nothing is written).

    Returns:
        [{"name", "version", "records"}] of each existing dataset the import would change, so the
        page can ask before importing.
    """
    files = list(files)
    staged = stage(files)
    try:
        names = _targets(staged, _info_file(staged, fmt), name or None)
    finally:
        shutil.rmtree(next(iter(staged.values())).parent, ignore_errors=True)
    found = []
    for n in names:
        if n and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", n) and store.exists(n):
            head = store.manifest(n)["head"]
            entry = next((v for v in store.manifest(n)["versions"] if v["version"] == head), {})
            found.append({"name": n, "version": head, "records": entry.get("records")})
    return found
