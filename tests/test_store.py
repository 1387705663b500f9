"""The versioned store: versions, lineage, undo, and concurrent edits from real processes."""

from __future__ import annotations

import multiprocessing as mp

import pyarrow as pa
import pytest

from tunelab.data import store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError


def recs(n, tag="r"):
    return to_table([{"id": f"{tag}{i}", "instruction": f"q{i}", "output": f"a{i}"} for i in range(n)])


def test_versions_lineage_and_undo(workspace):
    e1 = store.commit("ds", recs(3), "import", {"path": "x.jsonl"})
    assert e1["version"] == 1 and e1["parent"] is None and e1["records"] == 3
    e2 = store.edit("ds", lambda t: t.slice(0, 2), op="clean", params={"dedup": "exact"})
    assert e2["version"] == 2 and e2["parent"] == 1 and e2["op"] == "clean"
    assert store.read("ds").num_rows == 2 and store.read("ds", 1).num_rows == 3
    assert store.list_datasets() == [{"name": "ds", "version": 2, "records": 2}]
    back = store.undo("ds")
    assert back["version"] == 1 and store.read("ds").num_rows == 3
    e3 = store.edit("ds", lambda t: t.slice(0, 1), op="clean")
    assert e3["version"] == 3 and e3["parent"] == 1  # a new branch from the undone-to version
    assert store.undo("ds")["version"] == 1
    with pytest.raises(TuneLabError, match="nothing to undo"):
        store.undo("ds")


def test_files_are_immutable_and_written_atomically(workspace):
    store.commit("ds", recs(2), "import")
    p1 = store.version_path("ds", 1)
    before = p1.read_bytes()
    store.edit("ds", lambda t: t.slice(0, 1), op="clean")
    assert p1.read_bytes() == before
    assert not [p for p in p1.parent.iterdir() if p.name.endswith(".tmp")]


def test_names_are_validated(workspace):
    for bad in ("../x", "/etc", "a/b", "..", "", "x" * 65):
        with pytest.raises(TuneLabError, match="invalid"):
            store.commit(bad, recs(1), "import")
    assert not (workspace.parent / "x").exists()


def test_unknown_dataset(workspace):
    with pytest.raises(TuneLabError, match="unknown dataset"):
        store.edit("nope", lambda t: t, op="clean")
    with pytest.raises(TuneLabError):
        store.read("ds", 9)


def _append_worker(home: str, tag: str, n: int) -> None:
    import os

    os.environ["TUNELAB_HOME"] = home
    from tunelab.data import store as s

    for i in range(n):
        s.edit("shared", lambda t, i=i: pa.concat_tables([t, recs(1, f"{tag}-{i}-")]), op=f"edit-{tag}")


def test_concurrent_edits_from_two_processes_all_land(workspace):
    store.commit("shared", recs(1), "import")
    ctx = mp.get_context("spawn")  # fresh interpreters: real separate processes, no shared state
    procs = [ctx.Process(target=_append_worker, args=(str(workspace), tag, 5)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    m = store.manifest("shared")
    assert [v["version"] for v in m["versions"]] == list(range(1, 12))  # 1 import + 2 x 5 edits
    assert m["head"] == 11
    ids = store.read("shared").column("id").to_pylist()
    assert len(ids) == 11  # every edit applied on top of the previous one: none lost
    assert {i.split("-")[0] for i in ids[1:]} == {"a", "b"}
    parents = [v["parent"] for v in m["versions"][1:]]
    assert parents == list(range(1, 11))  # a straight chain, no two edits from the same parent
