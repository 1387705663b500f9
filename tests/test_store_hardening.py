"""Issue 11, item 5: no lost or corrupted versions.

Undo racing edits, exports aimed into the store, files a kill -9 leaves behind, a damaged manifest:
each through the real store API or the real `tunelab` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from cli_run import one_line_error, tunelab

from tunelab.data import browse, export, sql, store
from tunelab.data.schema import to_table
from tunelab.errors import TuneLabError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def recs(n: int, tag: str = "r") -> pa.Table:
    return to_table([{"id": f"{tag}{i}", "instruction": f"q{tag}{i}", "output": f"a{i}"} for i in range(n)])


# ---------------------------------------------------------------- undo vs edits


def test_an_undo_issued_during_an_edit_lands_after_it(workspace):
    """The reproduction: `data undo` while `data clean` transforms the head used to be lost."""
    store.commit("ds", recs(3), "import")
    store.edit("ds", lambda t: t.slice(0, 2), op="clean")  # v2, the head
    undone: dict = {}
    undoer = threading.Thread(target=lambda: undone.setdefault("entry", store.undo("ds")))

    def slow_clean(table: pa.Table) -> pa.Table:
        undoer.start()
        deadline = time.time() + 1.0
        # With one lock the undo waits for this edit; without it, it moves the head under us.
        while time.time() < deadline and store.manifest("ds")["head"] == 2:
            time.sleep(0.02)
        return table.slice(0, 1)

    edited = store.edit("ds", slow_clean, op="clean")
    undoer.join(30)
    assert edited["version"] == 3 and edited["parent"] == 2
    assert undone["entry"]["version"] == 2  # the undo took back the clean...
    m = store.manifest("ds")
    assert m["head"] == 2 and store.read("ds").num_rows == 2  # ...and it stays taken back


def test_undo_and_edits_racing_in_a_loop_keep_a_consistent_history(workspace):
    """Two editors and an undoer hammer one dataset; afterwards the manifest tells one story."""
    store.commit("ds", recs(1, "base"), "import")
    edits: list[dict] = []
    undos: list[dict] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def editor(tag: str) -> None:
        try:
            for i in range(25):
                rid = f"{tag}{i}"
                edits.append(store.edit("ds", lambda t, rid=rid: pa.concat_tables([t, recs(1, rid)]),
                                        op=f"edit-{tag}", params={"added": rid}))
        except BaseException as exc:
            errors.append(exc)

    def undoer() -> None:
        while not stop.is_set():
            try:
                undos.append(store.undo("ds"))
            except TuneLabError as exc:  # at v1: nothing to undo, a refusal that changes nothing
                assert "nothing to undo" in str(exc)
            time.sleep(0.002)

    threads = [threading.Thread(target=editor, args=(tag,)) for tag in ("a", "b")]
    undo_thread = threading.Thread(target=undoer)
    for th in [*threads, undo_thread]:
        th.start()
    for th in threads:
        th.join(120)
    stop.set()
    undo_thread.join(30)
    assert not errors, errors
    assert len(edits) == 50 and undos, "the loop exercised both edits and undos"

    m = store.manifest("ds")
    by_version = {v["version"]: v for v in m["versions"]}
    # Every edit is present as the version it reported, numbered without gaps or repeats.
    assert sorted(by_version) == list(range(1, 52)) and len(m["versions"]) == 51
    for e in edits:
        assert by_version[e["version"]]["parent"] == e["parent"]
    # Every version holds its parent's records plus the one its edit added (applied on its parent).
    for v in m["versions"][1:]:
        ids = store.read("ds", v["version"]).column("id").to_pylist()
        assert ids == store.read("ds", v["parent"]).column("id").to_pylist() + [v["params"]["added"] + "0"]
    # The head chain is linear back to v1, and every undo counted: each edit moved the head one
    # version deeper, each successful undo one back, so the head's depth is edits - undos. A lost
    # undo (the edit committed on the version the undo had just left) leaves it deeper.
    chain, v = [], m["head"]
    while v:
        chain.append(v)
        v = by_version[v]["parent"]
    assert chain[-1] == 1 and len(set(chain)) == len(chain)
    assert len(chain) - 1 == len(edits) - len(undos)
    assert store.read("ds").num_rows == len(chain)


# ---------------------------------------------------------------- export into the store


def test_export_refuses_every_target_inside_the_store(workspace):
    store.commit("x", recs(2), "import")
    store.commit("y", recs(3), "import")
    manifest = workspace / "datasets" / "y" / "manifest.json"
    before = manifest.read_bytes()
    (workspace / "exports").mkdir(exist_ok=True)
    (workspace / "exports" / "link").symlink_to(workspace / "datasets" / "y")
    targets = ["../datasets/y/manifest.json", str(manifest), "../datasets/y/v1.parquet", "../datasets/z.json",
               "../runs/r1/status.json", "../reports/r.json", "../models/registry.json", "../uploads/u.json",
               "../prompts/p.json", "../export-jobs/j.json", "../cache/c.json", "../.hidden/h.json",
               "link/manifest.json"]
    for out in targets:
        with pytest.raises(TuneLabError, match="where TuneLab keeps its own files"):
            export.export("x", out)
    with pytest.raises(TuneLabError, match="where TuneLab keeps its own files"):
        export.export("x", "../datasets/y", "llamafactory")
    assert manifest.read_bytes() == before and not (workspace / "datasets" / "z.json").exists()
    # Exports elsewhere in the workspace still work; overwriting one only with force (issue 22).
    assert export.export("x", "x.json")["records"] == 2
    with pytest.raises(TuneLabError, match="already exists: pass --force"):
        export.export("x", "x.json")
    assert export.export("x", "x.json", force=True)["records"] == 2
    assert export.export("x", str(workspace / "shared" / "x.jsonl"), "jsonl")["records"] == 2


def test_cli_export_over_a_manifest_is_one_line_and_breaks_nothing(workspace):
    """The reproduction: `data export x ../datasets/y/manifest.json` broke every data command."""
    store.commit("x", recs(2), "import")
    store.commit("y", recs(3), "import")
    err = one_line_error(tunelab(workspace, "data", "export", "x", "../datasets/y/manifest.json"))
    assert "datasets/" in err
    listed = tunelab(workspace, "data", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["datasets"] == [{"name": "x", "version": 1, "records": 2},
                                                     {"name": "y", "version": 1, "records": 3}]


# ---------------------------------------------------------------- kill -9 leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_orphan_tmp_files_are_swept_on_the_next_write_but_a_live_writers_are_kept(workspace):
    store.commit("ds", recs(2), "import")
    d = workspace / "datasets" / "ds"
    dead, ns = _dead_pid(), time.time_ns()
    orphans = [d / f".v2.parquet.{dead}.{ns}.tmp", d / f".v1.search.{dead}.{ns}.tmp"]
    orphans[0].write_bytes(b"PAR1 half a file")
    orphans[1].mkdir()
    (orphans[1] / "build.duckdb").write_bytes(b"x" * 1000)
    old = d / ".manifest.json.k3j9x_.tmp"  # no pid in the name: stale once untouched for long
    old.write_text("{")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    live = [d / f".v7.parquet.{os.getpid()}.{ns}.tmp", d / ".manifest.json.fresh1.tmp"]
    for p in live:
        p.write_bytes(b"being written")
    store.edit("ds", lambda t: t.slice(0, 1), op="clean")
    assert [p.exists() for p in orphans + [old]] == [False, False, False]
    assert all(p.exists() for p in live)  # a concurrent writer is not harmed
    assert store.read("ds").num_rows == 1


def test_a_kill_9_during_import_leaves_nothing_after_the_next_import(workspace, tmp_path):
    big = tmp_path / "big.jsonl"
    row = {"instruction": "Question " + "w " * 200, "output": "Answer " + "v " * 200}
    big.write_text("\n".join(json.dumps(dict(row, id=f"r{i}")) for i in range(60_000)) + "\n")
    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "tunelab", "data", "import", str(big), "--name", "big"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = workspace / "datasets" / "big"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(d.glob(".*.tmp")):
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the import finished before a temporary file could be seen")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(d.glob(".*.tmp"))  # the kill left half a version behind
    done = tunelab(workspace, "data", "import", str(SAMPLES / "qa.csv"), "--name", "big", "--json")
    assert done.returncode == 0, done.stderr
    assert not list(d.glob(".*.tmp"))
    assert store.read("big").num_rows == json.loads(done.stdout)["imported"]


def test_an_orphan_export_tmp_is_swept_by_the_next_export(workspace):
    store.commit("x", recs(2), "import")
    orphan = workspace / "exports" / f".x.json.{_dead_pid()}.ab12cd34.tmp"
    mine = workspace / "exports" / ".notes.txt.tmp"  # not an export's: left alone
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text("user file")
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_text("[{")
    export.export("x", "x.json")
    assert not orphan.exists() and mine.exists()


# ---------------------------------------------------------------- a damaged manifest


@pytest.mark.parametrize("damage", [b'{"name": "bad", "head": 1, "vers', b"\xff\xfe garbage", b"[]",
                                    b'{"name": "bad", "head": 5, "versions": []}'])
def test_a_damaged_manifest_names_its_dataset_and_the_others_stay_usable(workspace, damage):
    store.commit("good", recs(2), "import")
    store.commit("bad", recs(3), "import")
    (workspace / "datasets" / "bad" / "manifest.json").write_bytes(damage)
    assert store.list_datasets() == [{"name": "good", "version": 1, "records": 2}]
    [broken] = store.unreadable()
    assert broken["name"] == "bad" and "dataset 'bad' cannot be read" in broken["error"]
    for call in (lambda: store.manifest("bad"), lambda: store.read("bad"),
                 lambda: store.edit("bad", lambda t: t, op="clean"), lambda: store.undo("bad"),
                 lambda: store.commit("bad", recs(1), "import"), lambda: browse.show("bad")):
        with pytest.raises(TuneLabError, match="dataset 'bad' cannot be read"):
            call()
    assert sql.sql("SELECT count(*) FROM good")["rows"] == [[2]]
    store.edit("good", lambda t: t.slice(0, 1), op="clean")  # writes to the others go on
    store.delete("bad")  # and the damaged one can be removed
    assert store.unreadable() == []


def test_cli_with_a_damaged_manifest(workspace):
    store.commit("good", recs(2), "import")
    store.commit("bad", recs(3), "import")
    (workspace / "datasets" / "bad" / "manifest.json").write_text('{"name": "bad", "head": 1, "vers')
    listed = tunelab(workspace, "data", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    out = json.loads(listed.stdout)
    assert out["datasets"] == [{"name": "good", "version": 1, "records": 2}]
    assert [b["name"] for b in out["unreadable"]] == ["bad"]
    warning = listed.stderr.strip().splitlines()
    assert len(warning) == 1 and "dataset 'bad' cannot be read" in warning[0]
    sql = tunelab(workspace, "data", "sql", "SELECT count(*) AS n FROM good", "--json")
    assert sql.returncode == 0, sql.stderr
    assert json.loads(sql.stdout)["rows"] == [[2]]
    assert "dataset 'bad' cannot be read" in one_line_error(tunelab(workspace, "data", "show", "bad"))
