"""One output-path guard for every writer (issue 22, item 3): reports export, runs curves --csv,
export RUN (adapter, merged, GGUF, Ollama) and data export never write into TuneLab's own folders,
never overwrite an existing export without --force, and never write through a hard link.

Real runs of a tiny random Llama; the real `tunelab` command in a subprocess for the one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cli_run import one_line_error, tunelab

import tiny_model
from tunelab.cli import main as cli
from tunelab.data import schema, store
from tunelab.errors import TuneLabError
from tunelab.evals import evaluate, report_doc
from tunelab.train import export, runs
from tunelab.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _train(model: str) -> str:
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "recipe": "manual", "auto_report": False})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def two_runs(workspace, tiny):
    tiny_model.dataset()
    return _train(tiny), _train(tiny)


def test_export_into_another_runs_adapter_is_refused_and_its_weights_are_unchanged(workspace, two_runs):
    a, b = two_runs
    run_b = workspace / "runs" / b
    before = _hashes(run_b / "adapter"), _hashes(run_b / "checkpoints")
    assert before[0] and any("adapter_model.safetensors" in k for k in before[1])
    for out in (str(run_b / "adapter"), f"../runs/{b}/adapter", f"../runs/{b}/checkpoints/step-2/adapter"):
        err = one_line_error(tunelab(workspace, "export", a, out))
        assert "runs/" in err and "TuneLab keeps its own files" in err
    assert (_hashes(run_b / "adapter"), _hashes(run_b / "checkpoints")) == before
    # A symlink in exports/ that leads into runs/ is followed, then refused.
    (workspace / "exports").mkdir(exist_ok=True)
    (workspace / "exports" / "sneaky").symlink_to(run_b / "adapter")
    with pytest.raises(TuneLabError, match="runs/"):
        export.export(a, "sneaky")
    assert (_hashes(run_b / "adapter"), _hashes(run_b / "checkpoints")) == before


def test_no_silent_overwrite_and_never_through_a_hard_link(workspace, two_runs):
    a, b = two_runs
    first = export.export(a, "mine")
    assert Path(first["out"], "adapter_model.safetensors").is_file()
    err = one_line_error(tunelab(workspace, "export", b, "mine"))
    assert "already exists" in err and "--force" in err
    assert _hashes(Path(first["out"])) == _hashes(workspace / "runs" / a / "adapter")
    # An export folder whose file is a hard link to run b's checkpoint (as a published adapter is):
    # --force replaces the folder; the checkpoint keeps its bytes.
    ck = next((workspace / "runs" / b / "checkpoints").glob("step-*/adapter/adapter_model.safetensors"))
    linked = workspace / "exports" / "linked"
    linked.mkdir(parents=True)
    os.link(ck, linked / "adapter_model.safetensors")
    ck_hash = hashlib.sha256(ck.read_bytes()).hexdigest()
    with pytest.raises(TuneLabError, match="already exists"):
        export.export(a, "linked")
    export.export(a, "linked", force=True)
    assert hashlib.sha256(ck.read_bytes()).hexdigest() == ck_hash
    assert _hashes(linked) == _hashes(workspace / "runs" / a / "adapter")
    assert not [p for p in (workspace / "exports").iterdir() if p.name.startswith(".")]  # no temp left
    # The dashboard's export job is refused before it starts.
    with pytest.raises(TuneLabError, match="already exists"):
        export.start(a, "mine", "adapter")


def _report(tiny: str) -> str:
    store.commit("probe", schema.to_table([{"id": "p0", "instruction": "Say <b>hi</b>",
                                            "output": "<script>alert(1)</script>"}]), "import")
    return evaluate.create_report(evaluate.EvalConfig(models=[tiny], data="probe"))


def test_reports_export_and_curves_csv_refuse_state_files(workspace, tiny, two_runs):
    a, _ = two_runs
    rid = _report(tiny)
    manifest = workspace / "datasets" / "tiny" / "manifest.json"
    status = workspace / "runs" / a / "status.json"
    keep = manifest.read_bytes(), status.read_bytes()
    err = one_line_error(tunelab(workspace, "reports", "export", rid, str(manifest)))
    assert "datasets/" in err
    err = one_line_error(tunelab(workspace, "reports", "export", rid, "../datasets/tiny/manifest.json"))
    assert "datasets/" in err
    err = one_line_error(tunelab(workspace, "runs", "curves", a, "--csv", str(status)))
    assert "runs/" in err
    err = one_line_error(tunelab(workspace, "runs", "curves", a, "--csv", f"../runs/{a}/status.json"))
    assert "runs/" in err
    for state in ("../tunelab.yaml", "../.trash/x.csv", str(Path(os.environ["TUNELAB_MODEL_CACHE"]) / "x.csv")):
        with pytest.raises(TuneLabError):
            report_doc.export_report(rid, state)
    assert (manifest.read_bytes(), status.read_bytes()) == keep
    listed = tunelab(workspace, "runs", "list", "--json")
    assert listed.returncode == 0 and a in listed.stdout

    # Ordinary exports still work; a second one over the first needs --force.
    assert cli(["runs", "curves", a, "--csv", "curves.csv"]) == 0
    assert (workspace / "exports" / "curves.csv").read_text().startswith("run,step,metric,value")
    assert "already exists" in one_line_error(tunelab(workspace, "runs", "curves", a, "--csv", "curves.csv"))
    assert cli(["runs", "curves", a, "--csv", "curves.csv", "--force"]) == 0
    assert cli(["reports", "export", rid, "r.json"]) == 0
    assert json.loads((workspace / "exports" / "r.json").read_text())["report"] == rid
    assert "already exists" in one_line_error(tunelab(workspace, "reports", "export", rid, "r.json"))
    assert "already exists" in one_line_error(tunelab(workspace, "data", "export", "tiny", "r.json"))


def test_html_export_escapes_the_data(workspace, tiny):
    rid = _report(tiny)
    evaluate.run_report(rid)
    assert cli(["reports", "export", rid, "r.html"]) == 0
    page = (workspace / "exports" / "r.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    # The page carries plotly's own <script>; the records' markup must never appear raw.
    assert "<script>alert(1)</script>" not in page and "<b>hi</b>" not in page
    assert "alert(1)" in page and "hi" in page  # the data is there, escaped
