"""Seeded, reproducible train/test split into NAME-train and NAME-test with lineage."""

from __future__ import annotations

import pytest

from tunelab.data import split, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError


@pytest.fixture
def ds(workspace):
    store.commit("sp", to_table([{"id": str(i), "instruction": f"q{i}", "output": f"a{i}"} for i in range(100)]),
                 "import")
    return "sp"


def ids(name):
    return store.read(name).column("id").to_pylist()


def test_fraction_split_is_complete_disjoint_and_has_lineage(ds):
    res = split.split(ds, 0.2)
    assert res["train"]["name"] == "sp-train" and res["test"]["name"] == "sp-test"
    assert res["train"]["records"] == 80 and res["test"]["records"] == 20
    train, test = ids("sp-train"), ids("sp-test")
    assert not set(train) & set(test) and set(train) | set(test) == {str(i) for i in range(100)}
    for part in ("sp-train", "sp-test"):
        entry = store.manifest(part)["versions"][-1]
        assert entry["lineage"] == {"source": "sp", "version": 1} and entry["op"] == "split"
    assert store.manifest(ds)["head"] == 1 and store.read(ds).num_rows == 100  # source unchanged


def test_same_seed_same_split_other_seed_differs(ds):
    split.split(ds, 0.1, seed=7)
    first = ids("sp-test")
    split.split(ds, 0.1, seed=7)
    assert ids("sp-test") == first
    assert store.manifest("sp-test")["head"] == 2  # a re-split is a new version, not an overwrite
    split.split(ds, 0.1, seed=8)
    assert ids("sp-test") != first


def test_absolute_count(ds):
    res = split.split(ds, 30)
    assert res["test"]["records"] == 30 and res["train"]["records"] == 70


@pytest.mark.parametrize("bad", [0, -0.5, 100, 150, 2.5])
def test_bad_sizes_are_refused(ds, bad):
    with pytest.raises(TuneLabError):
        split.split(ds, bad)
    assert not store.exists("sp-train")


def test_too_small_and_too_long_names(workspace):
    store.commit("one", to_table([{"id": "1", "instruction": "q", "output": "a"}]), "import")
    with pytest.raises(TuneLabError, match="at least 2"):
        split.split("one", 0.5)
    long = "x" * 60
    store.commit(long, to_table([{"id": str(i)} for i in range(4)]), "import")
    with pytest.raises(TuneLabError, match="invalid dataset name"):
        split.split(long, 0.5)
