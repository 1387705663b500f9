"""Run management (train/manage.py): display name, notes, tags, delete, clone, downloads."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

import tiny_model as builder
from cli_run import one_line_error, tunelab
from tunelab import jobs
from tunelab.errors import TuneLabError
from tunelab.train import manage, runs
from tunelab.train.config import TrainConfig


def _run(model: str, **values) -> str:
    cfg = TrainConfig.for_method(values.pop("method", "lora"))
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "cutoff_len": 64, **values})
    return runs.create(cfg)


def test_rename_note_tag_keep_the_id(workspace, tiny_model):
    builder.dataset()
    rid = _run(tiny_model)
    doc = manage.rename(rid, "  first\n try  ")
    assert doc["name"] == "first try" and doc["run"] == rid
    manage.note(rid, "lr too high?")
    manage.tag(rid, add=["baseline", "lora", "baseline"])
    manage.tag(rid, remove=["lora"])
    assert manage.meta(rid) == {"name": "first try", "notes": "lr too high?", "tags": ["baseline"]}
    assert [r["run"] for r in runs.list_runs()] == [rid]  # the id, the folder and the listing are unchanged
    row = manage.list_runs()[0]
    assert row["name"] == "first try" and manage.label(row) == f"first try ({rid}) · queued"
    manage.rename(rid, "")
    assert manage.meta(rid)["name"] is None and manage.label(manage.list_runs()[0]) == f"{rid} · queued"
    with pytest.raises(TuneLabError, match="invalid tag"):
        manage.tag(rid, add=["a b"])
    with pytest.raises(TuneLabError, match="at most 80"):
        manage.rename(rid, "x" * 81)
    with pytest.raises(TuneLabError, match="unknown run"):
        manage.rename("run-nope", "x")
    assert manage.meta(rid)["tags"] == ["baseline"]  # a refused edit changes nothing


def test_delete_refuses_while_running_and_protects_dependents(workspace, tiny_model):
    builder.dataset()
    parent = _run(tiny_model)
    d = runs.run_dir(parent)
    jobs.write_status(d, status="running", pid=os.getpid())  # a live pid: really running
    with pytest.raises(TuneLabError, match="is running: stop it first"):
        manage.delete(parent)
    assert d.exists()
    jobs.write_status(d, status="completed")
    (d / "output.json").write_text(json.dumps({"base": tiny_model, "method": "lora", "adapter_dir": "adapter"}))
    child = _run(tiny_model, init_adapter=parent)
    assert manage.dependents(parent) == [child]
    with pytest.raises(TuneLabError, match=f"{child} start from {parent}"):
        manage.delete(parent)
    assert d.exists()
    jobs.write_status(runs.run_dir(child), status="failed")
    out = manage.delete(child)
    assert out["deleted"] and not (workspace / "runs" / child).exists()
    assert manage.delete(parent)["run"] == parent
    assert runs.list_runs() == [] and not list((workspace / ".trash").iterdir())
    with pytest.raises(TuneLabError, match="unknown run"):
        manage.delete(parent)


def test_form_values_keep_what_the_user_set_not_the_recipe(workspace, tiny_model):
    builder.dataset()
    cfg = TrainConfig.for_method("full")
    cfg.set({"model": tiny_model, "data": "tiny", "max_steps": 7, "lora_r": 4})
    cfg.recipe = {"batch_size": {"value": 8, "why": "sized", "source": "recipe"}}
    cfg.set({"batch_size": 8})
    rid = runs.create(cfg)
    runs.config(rid)  # readable
    v = manage.form_values(rid)
    assert v["method"] == "full" and v["max_steps"] == 7 and v["model"] == tiny_model and v["data"] == "tiny"
    assert v["batch_size"] == TrainConfig().training.batch_size  # the recipe's pick is picked again
    assert v["learning_rate"] == pytest.approx(2e-5) and v["data_version"] is None and v["resume_from"] == ""


def test_download_file_zips_a_folder_once(workspace):
    folder = workspace / "exports" / "merged-x"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    z = manage.download_file(folder)
    assert z == workspace / "exports" / "merged-x.zip"
    with zipfile.ZipFile(z) as f:
        assert sorted(f.namelist()) == ["merged-x/config.json", "merged-x/model.safetensors"]
        assert f.read("merged-x/model.safetensors") == (folder / "model.safetensors").read_bytes()
    stamp = z.stat().st_mtime_ns
    assert manage.download_file(folder) == z and z.stat().st_mtime_ns == stamp  # not rebuilt on every rerun
    gguf = workspace / "exports" / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(2 ** 20))
    assert manage.download_file(gguf) == gguf and manage.size_mb(gguf) == 1.0
    with pytest.raises(TuneLabError, match="outside the workspace"):
        manage.download_file("/etc")


def test_cli_rename_note_tag_delete(workspace, tiny_model):
    builder.dataset()
    rid = _run(tiny_model)
    jobs.write_status(runs.run_dir(rid), status="completed")
    out = json.loads(tunelab(workspace, "runs", "rename", rid, "demo run", "--json").stdout)
    assert out == {"name": "demo run", "notes": "", "tags": [], "run": rid}
    tunelab(workspace, "runs", "note", rid, "for the stakeholders")
    tunelab(workspace, "runs", "tag", rid, "demo", "v1")
    p = tunelab(workspace, "runs", "tag", rid, "v1", "--remove")
    assert p.returncode == 0 and p.stdout.strip() == f"{rid}: demo run [demo] — for the stakeholders"
    assert "not a valid" not in one_line_error(tunelab(workspace, "runs", "tag", rid, "bad tag"))
    assert "unknown run" in one_line_error(tunelab(workspace, "runs", "delete", "run-nope"))
    p = tunelab(workspace, "runs", "delete", rid, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["deleted"] is True
    assert not (workspace / "runs" / rid).exists()
