"""Workspace confinement and the store's versions, exercised through the real CLI process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunelab import workspace as ws
from tunelab.data import schema, store
from tunelab.errors import TuneLabError


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/b", "..", ".", "", "x" * 65, "na me", "ü"])
def test_bad_names_refused(workspace, bad):
    with pytest.raises(TuneLabError, match="invalid"):
        ws.validate_name(bad, "dataset name")


@pytest.mark.parametrize("good", ["alpaca", "a.b-c_1", "x" * 64])
def test_good_names_accepted(workspace, good):
    assert ws.validate_name(good) == good


def test_paths_stay_inside(workspace):
    assert ws.path("datasets", "x").is_relative_to(workspace)
    with pytest.raises(TuneLabError, match="outside the workspace"):
        ws.path("..", "etc")
    with pytest.raises(TuneLabError, match="outside the workspace"):
        ws.output_path("/etc/passwd")
    assert ws.output_path("out.json") == workspace / "exports" / "out.json"


def test_undo_walks_lineage(workspace):
    recs = [{"id": str(i), "instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    store.commit("d", schema.to_table(recs), "import")
    store.edit("d", lambda t: t.slice(0, 2), "drop")
    assert store.manifest("d")["head"] == 2 and store.read("d").num_rows == 2
    back = store.undo("d")
    assert back["version"] == 1 and store.read("d").num_rows == 3
    with pytest.raises(TuneLabError, match="nothing to undo"):
        store.undo("d")
    # the undone version stays on disk and in the lineage
    assert [v["version"] for v in store.manifest("d")["versions"]] == [1, 2]


def test_read_only_workspace_is_one_clear_line(workspace):
    store.commit("d", schema.to_table([{"id": "1", "instruction": "q", "output": "a"}]), "import")
    if os.geteuid() == 0:
        # root ignores permission bits; simulate a full/readonly disk with a file where a dir must go
        target = workspace / "datasets" / "d"
        (target / "v2.parquet").mkdir()  # a directory blocks the rename of the new version
    else:
        os.chmod(workspace / "datasets" / "d", 0o555)
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab", "data", "clean", "d", "--strip", "--json"],
        capture_output=True, text=True, env=dict(os.environ, TUNELAB_HOME=str(workspace)),
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1
    assert store.read("d").num_rows == 1  # no data lost
