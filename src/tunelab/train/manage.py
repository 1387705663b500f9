"""Run management: a display name, notes and tags per run, deleting a run, cloning its config, downloads.

A run's id never changes (other runs, reports and exports refer to it); its display name, notes
and tags live beside it in runs/<id>/meta.json, written atomically under the folder's own lock.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path

from tunelab import jobs, workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, read_json, warn_damaged, write_json
from tunelab.models import run_output
from tunelab.train import runs
from tunelab.train.config import TrainConfig, user_keys

META = "meta.json"
NAME_CHARS = 80
NOTES_CHARS = 5000
TAG_RE = re.compile(r"^[\w.+-]{1,32}$")  # \w: letters of any script, so a Chinese tag works too


def meta(run_id: str) -> dict:
    """{"name", "notes", "tags"} of a run (name None until renamed)."""
    doc = read_json(runs.run_dir(run_id) / META) or {}
    return {"name": doc.get("name") or None, "notes": doc.get("notes") or "", "tags": list(doc.get("tags") or [])}


def _update(run_id: str, **fields) -> dict:
    d = runs.run_dir(run_id)
    with locked(d / ".meta.lock"):
        doc = {**meta(run_id), **fields}
        write_json(d / META, doc)
    return dict(doc, run=run_id)


def rename(run_id: str, name: str) -> dict:
    """Give a run a display name (its id stays); an empty name goes back to the id.

    Returns:
        The run's meta with its id: {"run", "name", "notes", "tags"}.
    """
    name = " ".join(str(name or "").split())  # one line: newlines and runs of spaces collapse
    if len(name) > NAME_CHARS:
        raise TuneLabError(f"a run name has at most {NAME_CHARS} characters, got {len(name)}")
    return _update(run_id, name=name or None)


def note(run_id: str, text: str) -> dict:
    """Replace a run's notes (free text; empty clears them)."""
    text = str(text or "").strip()
    if len(text) > NOTES_CHARS:
        raise TuneLabError(f"run notes have at most {NOTES_CHARS} characters, got {len(text)}")
    return _update(run_id, notes=text)


def tag(run_id: str, add: list[str] | tuple = (), remove: list[str] | tuple = ()) -> dict:
    """Add and remove tags (1-32 letters, digits, '_', '.', '+' or '-'); tags stay unique and in order."""
    for t in add:
        if not isinstance(t, str) or not TAG_RE.match(t):
            raise TuneLabError(f"invalid tag {t!r}: use 1-32 letters, digits, '_', '.', '+' or '-'")
    tags = [t for t in meta(run_id)["tags"] if t not in set(remove)]
    tags += [t for t in dict.fromkeys(add) if t not in tags]
    return _update(run_id, tags=tags)


def set_tags(run_id: str, tags: list[str]) -> dict:
    """Replace all of a run's tags."""
    current = meta(run_id)["tags"]
    tag(run_id, add=tags)  # validates before anything is removed
    return tag(run_id, remove=[t for t in current if t not in tags])


def dependents(run_id: str) -> list[str]:
    """Runs that start from this run (as their model or their init adapter): they need its weights."""
    out = []
    for r in jobs.list_jobs("runs"):
        if r["id"] == run_id:
            continue
        try:
            cfg = runs.config(r["id"])
        except TuneLabError as exc:  # a damaged config.yaml: say so, and check the other runs
            warn_damaged(runs.run_dir(r["id"]) / "config.yaml", str(exc))
            continue
        if run_id in (cfg.model.model, cfg.method.init_adapter):
            out.append(r["id"])
    return out


def delete(run_id: str, force: bool = False) -> dict:
    """Delete a run's folder (weights, checkpoints, metrics, log); refused while it is queued or running.

    Args:
        run_id: the run.
        force: delete even when other runs start from it (they can no longer load their base).
    Returns:
        {"run", "deleted": True, "freed_mb"}.
    """
    d = runs.run_dir(run_id)
    st = runs.status(run_id)
    status = st.get("status")
    never_launched = status == "queued" and not st.get("pid") and time.time() - st.get("created", 0) > 60
    if status in jobs.ACTIVE and not never_launched:
        raise TuneLabError(f"{run_id} is {status}: stop it first (`tunelab runs stop {run_id}`)")
    children = dependents(run_id)
    if children and not force:
        raise TuneLabError(f"{', '.join(children)} start from {run_id}; delete them first or pass --force")
    size = _size(d)
    workspace.discard(d)
    return {"run": run_id, "deleted": True, "freed_mb": round(size / 2**20, 1)}


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def list_runs() -> list[dict]:
    """Every run (runs.list_runs, newest first) with its name, notes and tags."""
    out = []
    for r in runs.list_runs():
        try:
            out.append({**r, **meta(r["run"])})
        except TuneLabError:  # deleted between the listing and the read
            continue
    return out


def label(row: dict) -> str:
    """How a picker shows a run: its name (or id) and its status now."""
    name = row.get("name")
    who = f"{name} ({row['run']})" if name else row["run"]
    return f"{who} · {row.get('status') or 'queued'}"


def adapter_runs() -> list[str]:
    """Runs with a saved adapter (LoRA / P-tuning), newest first: what a new run can start from."""
    out = []
    for r in runs.list_runs():
        doc = run_output.read(jobs.job_dir("runs", r["run"]))
        if doc and doc.get("adapter_dir"):
            out.append(r["run"])
    return out


def form_values(run_id: str) -> dict:
    """A run's settings as flat form values, for a new run like it.

    What the auto recipe picked for that run's data is left out (the recipe picks again for the new
    form); what the user set, the model, the dataset and the method are kept. No resume, no pinned version.
    """
    d = runs.run_dir(run_id)
    from tunelab.train import validate

    doc = validate.load_yaml((d / "config.yaml").read_bytes(), where=f"{run_id}'s config.yaml")
    cfg = TrainConfig.from_dict(doc)
    mine = user_keys(doc) | {"model", "data", "method"}
    defaults = TrainConfig.for_method(cfg.method.method).flat()
    values = {k: (v if k in mine else defaults[k]) for k, v in cfg.flat().items()}
    values.update(resume_from="", data_version=None)
    return values


def download_file(path: str | Path) -> Path:
    """A file to download for an export: a file as is; a folder zipped once beside it as NAME.zip.

    The zip is rebuilt only when a file in the folder is newer than it, and written to a temporary
    name first, so two sessions asking at once never serve a half-written zip.
    """
    p = Path(path)
    root = workspace.home()
    if root not in p.resolve().parents:
        raise TuneLabError(f"{path} is outside the workspace {root}")
    if p.is_file():
        return p
    if not p.is_dir():
        raise TuneLabError(f"export {p.name} no longer exists")
    out = p.with_name(p.name + ".zip")
    files = sorted(f for f in p.rglob("*") if f.is_file())
    newest = max((f.stat().st_mtime for f in files), default=0)
    if out.exists() and out.stat().st_mtime >= newest:
        return out
    # Two sessions of one dashboard share its pid: a random part keeps their temporary zips apart.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    # Weights barely compress: store them, compress only the small text files.
    with zipfile.ZipFile(tmp, "w") as z:
        for f in files:
            kind = zipfile.ZIP_STORED if f.suffix in (".safetensors", ".gguf", ".bin") else zipfile.ZIP_DEFLATED
            z.write(f, Path(p.name) / f.relative_to(p), compress_type=kind)
    os.replace(tmp, out)
    return out


def size_mb(path: str | Path) -> float:
    """A file's or folder's size in MB (2**20 bytes)."""
    return round(_size(Path(path)) / 2**20, 1)
