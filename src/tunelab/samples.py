"""`python -m tunelab.samples`: import the shipped sample data into an empty workspace (`make run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from tunelab.data import store
from tunelab.data.importer import import_dataset_info
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def import_samples(force: bool = False) -> dict | None:
    """Import data/samples/dataset_info.json unless the workspace already has datasets.

    Returns:
        The dataset_info import result, or None when nothing was done.
    """
    if store.list_datasets() and not force:
        return None
    return import_dataset_info(SAMPLES / "dataset_info.json")


def main() -> int:
    try:
        result = import_samples()
    except TuneLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is None:
        print("the workspace already has datasets; sample data not imported")
        return 0
    for d in result["datasets"]:
        print(f"imported {d['name']}: {d['imported']} records ({d['skipped']} bad lines reported)")
    for s in result["skipped"]:
        print(f"skipped {s['name']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
