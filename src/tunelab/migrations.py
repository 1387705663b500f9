"""Append-only, named migrations for workspace files that carry a `"schema": N` key.

Every kind of workspace file (a job's `status.json`, later a dataset's `manifest.json`, a run's
`output.json`, a report's `results.json`) has a list of migrations, in order. A document's
`schema` is how many of them it has been through (a file written before versions existed has no
key and counts as 0); `migrate(kind, doc)` runs the rest, so code only ever reads documents of the
current shape. Writers stamp the current number with `stamp(kind, doc)`.

A later change that alters a file's shape adds one function at the end of its kind's list with
`@migration(kind, name)`; never edit or reorder an existing one, since files out there were
written at every point in between (the pattern of simonw/llm's `migrations.py`). A document from a
newer TuneLab (a higher schema) is returned as it is: it may hold keys this version ignores.
"""

from __future__ import annotations

from collections.abc import Callable

Migration = Callable[[dict], dict]

_REGISTRY: dict[str, list[tuple[str, Migration]]] = {}


def migration(kind: str, name: str) -> Callable[[Migration], Migration]:
    """Register fn as the next migration of kind's documents (names are unique per kind)."""

    def register(fn: Migration) -> Migration:
        steps = _REGISTRY.setdefault(kind, [])
        if any(n == name for n, _ in steps):
            raise ValueError(f"migration {name!r} of {kind!r} is registered twice")
        steps.append((name, fn))
        return fn

    return register


def version(kind: str) -> int:
    """The current schema number of kind: how many migrations it has."""
    return len(_REGISTRY.get(kind, ()))


def names(kind: str) -> list[str]:
    """kind's migration names, oldest first."""
    return [n for n, _ in _REGISTRY.get(kind, ())]


def migrate(kind: str, doc: dict) -> dict:
    """doc brought to kind's current schema (a new dict when anything changed).

    Args:
        kind: the file kind ("status", ...).
        doc: the document as read from disk; a missing or non-integer `schema` counts as 0.
    Returns:
        The migrated document with `schema` set; doc itself when it is already current or newer.
    """
    steps = _REGISTRY.get(kind, [])
    have = doc.get("schema")
    have = have if isinstance(have, int) and have >= 0 else 0
    if have >= len(steps) and "schema" in doc:
        return doc
    out = dict(doc)
    for _, fn in steps[have:]:
        out = fn(out)
    out["schema"] = max(have, len(steps))
    return out


def stamp(kind: str, doc: dict) -> dict:
    """doc with `schema` set to kind's current number (for writers)."""
    doc["schema"] = version(kind)
    return doc


# ------------------------------------------------------------------ status.json (every job kind)


@migration("status", "one-line-error")
def _status_one_line_error(doc: dict) -> dict:
    """Before schema 1 some jobs stored a whole exception text (several lines) as `error`."""
    err = doc.get("error")
    if isinstance(err, str) and "\n" in err.strip():
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        # A traceback's first line says nothing; its last names the exception.
        doc["error"] = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return doc


# ------------------------------------------------------------------ manifest.json (every dataset)


@migration("manifest", "version-defaults")
def _manifest_version_defaults(doc: dict) -> dict:
    """Before schema 1 nothing stamped the shape: give every version entry parent, params, created.

    Writers always set them, but a hand-made or hand-repaired manifest needs only version, op and
    records to be readable (see data/store.py), and readers then meet a missing key.
    """
    versions = doc.get("versions")
    if isinstance(versions, list):
        doc["versions"] = [dict({"parent": None, "params": {}, "created": None}, **v)
                           if isinstance(v, dict) else v for v in versions]
    return doc


# ------------------------------------------------------------------ output.json (every training run)


@migration("output", "adapter-dir-default")
def _output_adapter_dir(doc: dict) -> dict:
    """Runs from before output.json had a schema wrote only {"base", "method"} (and maybe "step"):
    their weights are the adapter in adapter/ unless the run was a full fine-tune."""
    if doc.get("method") != "full" and not doc.get("model_dir") and not doc.get("adapter_dir"):
        doc["adapter_dir"] = "adapter"
    doc["step"] = doc.get("step") or 0
    return doc


# ------------------------------------------------------------------ config.json (every report)


@migration("report", "meta-default")
def _report_meta_default(doc: dict) -> dict:
    """Reports from before before/after reports existed have no `meta` (where the report came from)."""
    if not isinstance(doc.get("meta"), dict):
        doc["meta"] = {}
    return doc
