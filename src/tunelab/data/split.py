"""Seeded train/test split of a dataset into two new datasets, NAME-train and NAME-test."""

from __future__ import annotations

import random

from tunelab import workspace
from tunelab.data import store
from tunelab.errors import TuneLabError


def test_count(total: int, test_size: float) -> int:
    """How many records go to test: a fraction (0 < f < 1) of total, or an absolute count (>= 1)."""
    if test_size <= 0:
        raise TuneLabError("--test-size must be a fraction between 0 and 1 or a count of at least 1")
    if test_size < 1:
        n = round(total * test_size)
    elif float(test_size).is_integer():
        n = int(test_size)
    else:
        raise TuneLabError(f"--test-size {test_size} is neither a fraction below 1 nor a whole count")
    if total < 2:
        raise TuneLabError(f"cannot split {total} record(s): need at least 2")
    if n >= total:
        raise TuneLabError(f"--test-size {test_size} leaves no training records out of {total}")
    return max(1, n)


def split(name: str, test_size: float, seed: int = 42) -> dict:
    """Shuffle with a seed and write NAME-train and NAME-test; NAME itself is unchanged.

    Args:
        name: dataset to split (its head version).
        test_size: a fraction (0 < f < 1) or an absolute count of test records (>= 1).
        seed: the shuffle seed; the same seed and data give the same split.

    Returns:
        {"train": {"name", "records"}, "test": {"name", "records"}}.
    """
    targets = {part: workspace.validate_name(f"{name}-{part}", "dataset name") for part in ("train", "test")}
    version = store.resolve_version(name)
    table = store.read(name, version)
    n_test = test_count(table.num_rows, test_size)
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    test_rows, train_rows = sorted(order[:n_test]), sorted(order[n_test:])  # keep the source order
    lineage = {"source": name, "version": version}
    params = {"test_size": test_size, "seed": seed}
    out = {}
    for part, rows in (("train", train_rows), ("test", test_rows)):
        target = targets[part]
        entry = store.commit(target, table.take(rows), "split", dict(params, part=part), lineage=lineage)
        out[part] = {"name": target, "records": entry["records"], "version": entry["version"]}
    return out
