"""Workspace files are never unpickled (checkpoint states, model folders), and background jobs are reaped."""

from __future__ import annotations

import functools
import os
import random
import shutil
import time
from pathlib import Path

import pytest

import tiny_model
from polling import wait_for
from tunelab import jobs
from tunelab.cli import main as cli
from tunelab.errors import TuneLabError
from tunelab.train import runs, sft
from tunelab.train.config import TrainConfig


class Planted:
    """A pickle payload: unpickling it creates the marker file (what an attacker's code would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _plant(path: Path, marker: Path) -> None:
    import torch

    torch.save({"step": 2, "optimizer": Planted(marker)}, path)


_wait = functools.partial(wait_for, timeout=240, every=0.2)


def _optimizer_and_scheduler():
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = get_linear_schedule_with_warmup(opt, 2, 10)
    for _ in range(3):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_checkpoint_state_round_trips_as_safetensors_and_json(tmp_path):
    import torch
    from transformers import get_linear_schedule_with_warmup

    model, opt, sched = _optimizer_and_scheduler()
    sft.save_state(tmp_path, {"step": 3, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]
    expect_torch, expect_py = torch.rand(5), random.random()  # what the saved RNG states produce next

    torch.manual_seed(123)
    random.seed(123)
    state = sft.load_state(tmp_path)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched2 = get_linear_schedule_with_warmup(opt2, 2, 10)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    assert state["step"] == 3 and sched2.get_last_lr() == sched.get_last_lr()
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(opt2.state_dict()["state"][k][name], t), name
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]  # tuples (betas) kept
    assert torch.equal(torch.rand(5), expect_torch) and random.random() == expect_py


def test_legacy_state_pt_loads_only_as_plain_tensors(tmp_path):
    import torch

    _, opt, sched = _optimizer_and_scheduler()
    torch.save({"step": 3, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp_path / "state.pt")
    assert sft.load_state(tmp_path)["step"] == 3  # a run checkpointed before this change still resumes

    marker = tmp_path / "pwned"
    _plant(tmp_path / "state.pt", marker)
    with pytest.raises(TuneLabError) as err:
        sft.load_state(tmp_path)
    assert not marker.exists()
    assert "\n" not in str(err.value) and "not loaded" in str(err.value)


@pytest.mark.slow
def test_planted_pickle_in_a_run_folder_never_runs_on_resume(workspace, tiny_model_plain, tmp_path):
    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": tiny_model_plain, "data": "tiny", "max_steps": 4, "save_steps": 2, "batch_size": 2,
             "cutoff_len": 128})
    run_id = runs.create(cfg)
    d = runs.run_dir(run_id)
    jobs.write_status(d, status="running", pid=os.getpid())
    # Stop after step 2 as `runs stop` would: checkpoint step-2, status `stopped`.
    assert sft.train(d, lambda: len(runs.metrics(run_id)) >= 2) == "stopped"
    jobs.write_status(d, status="stopped")
    ck = d / "checkpoints" / "step-2"
    marker = tmp_path / "pwned"

    # 1. Only a planted state.pt: refused with one line, the payload never runs.
    safe = tmp_path / "safe"
    safe.mkdir()
    for f in ck.glob("state.*"):
        shutil.move(f, safe / f.name)
    _plant(ck / "state.pt", marker)
    runs.resume(run_id)
    st = _wait(lambda: (s := runs.status(run_id))["status"] not in jobs.ACTIVE and s)
    assert st["status"] == "failed" and not marker.exists(), runs.log_tail(run_id)
    assert st["error"] == ("checkpoint step-2 has a state.pt that is not plain tensors; "
                           "it was not loaded, since unpickling it could run code")

    # 2. A planted state.pt beside the safe state is never read: the resume completes.
    for f in safe.iterdir():
        shutil.move(f, ck / f.name)
    runs.resume(run_id)
    st = _wait(lambda: (s := runs.status(run_id))["status"] not in jobs.ACTIVE and s)
    assert st["status"] == "completed" and not marker.exists(), runs.log_tail(run_id)
    assert [r["step"] for r in runs.metrics(run_id)] == [1, 2, 3, 4]
    assert "resumed from step-2" in runs.log_tail(run_id, 200)
    assert sorted(p.name for p in (d / "checkpoints" / "step-4").glob("state.*")) == ["state.json", "state.safetensors"]


@pytest.fixture(scope="module")
def tiny_model_plain(tmp_path_factory) -> str:
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


@pytest.fixture(scope="module")
def pickled_model(tmp_path_factory, tiny_model_plain) -> Path:
    """The tiny model with its weights as pytorch_model.bin (a pickle) and no safetensors."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("pickled") / "pickled-llama"
    shutil.copytree(tiny_model_plain, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(str(Path(tiny_model_plain) / "model.safetensors")), folder / "pytorch_model.bin")
    assert (folder / "pytorch_model.bin").exists() and not list(folder.glob("*.safetensors"))
    return folder


def test_model_folder_with_pickled_weights_is_refused_in_one_line(workspace, pickled_model, capsys):
    expect = (f"error: the folder {pickled_model} holds pickled weights (pytorch_model.bin), which can run code "
              f"when loaded; only safetensors are loaded: convert it first")
    assert cli(["models", "add", "pickled", str(pickled_model)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [expect]
    assert cli(["chat", str(pickled_model), "hello", "--max-new-tokens", "2"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [expect]
    tiny_model.dataset()
    assert cli(["train", "--model", str(pickled_model), "--data", "tiny", "--detach"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [expect]
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())


def _proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), or None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0]
    except FileNotFoundError:
        return None


def _launch_short_job(job_id: str, queued: bool) -> tuple[Path, int]:
    d = jobs.job_dir("reports", job_id)
    if queued:
        jobs.write_status(d, status="queued", created=time.time())
    pid = jobs.launch("reports", job_id, ["data", "list", "--json"]).pid  # the Popen object is dropped
    return d, pid


def test_finished_background_job_is_reaped(workspace):
    _, pid = _launch_short_job("report-reap", queued=False)
    # It exits within seconds; a finished child nobody waits on stays a zombie (Z) indefinitely.
    _wait(lambda: _proc_state(pid) in (None, "Z"), timeout=120, every=0.1)
    _wait(lambda: _proc_state(pid) is None, timeout=5, every=0.1)


def test_queued_job_whose_process_died_is_interrupted(workspace):
    d, pid = _launch_short_job("report-dies", queued=True)
    assert jobs.read_status(d)["pid"] == pid  # recorded at launch, before the child writes anything
    _wait(lambda: _proc_state(pid) in (None, "Z"), timeout=120, every=0.1)
    st = jobs.read_status(d)
    assert st["status"] == "interrupted" and st["error"] == "the process stopped before it started (killed or crashed)"
    assert jobs.list_jobs("reports")[0]["status"] == "interrupted"


def test_queued_job_still_launching_or_alive_stays_queued(workspace):
    d = jobs.job_dir("reports", "report-starting")
    jobs.write_status(d, status="queued", created=time.time())
    assert jobs.read_status(d)["status"] == "queued"  # no pid yet: being launched
    jobs.write_status(d, pid=os.getpid())
    assert jobs.read_status(d)["status"] == "queued"  # waiting its turn in a live process
