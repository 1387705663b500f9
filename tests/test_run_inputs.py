"""Run inputs confined and checked before launch (issue 22, item 4): resume_from is 'last' or step-N of
the run's own checkpoints; init_adapter, eval_data and --model are refused before a run folder exists."""

from __future__ import annotations

import pytest
from cli_run import one_line_error, tunelab

import tiny_model
from tunelab.errors import TuneLabError
from tunelab.train import runs, sft
from tunelab.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _cfg(model: str, **kw) -> TrainConfig:
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "recipe": "manual", **kw})
    return cfg


def _run_folders(workspace) -> list[str]:
    d = workspace / "runs"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("bad", ["/tmp", "../other-run/checkpoints/step-2", "step-2/../../..", "checkpoints",
                                 "step-", "/etc/passwd"])
def test_resume_from_outside_the_runs_own_checkpoints_is_refused_before_a_folder(workspace, tiny, bad):
    tiny_model.dataset()
    with pytest.raises(TuneLabError, match="resumes only from its own checkpoints"):
        runs.create(_cfg(tiny, resume_from=bad))
    assert _run_folders(workspace) == []
    for good in ("", "last", "step-20"):
        runs.create(_cfg(tiny, resume_from=good))


def test_the_worker_refuses_an_absolute_resume_from_written_into_config_yaml(workspace, tiny, tmp_path):
    tiny_model.dataset()
    run = runs.create(_cfg(tiny))
    outside = tmp_path / "elsewhere" / "step-9"
    outside.mkdir(parents=True)
    cfg = runs.config(run)
    cfg.training.resume_from = str(outside)  # edited by hand after the run was made
    with pytest.raises(TuneLabError, match="resumes only from its own checkpoints"):
        sft.resume_checkpoint(runs.run_dir(run), cfg)


def test_model_init_adapter_and_eval_data_are_checked_before_a_run_folder(workspace, tiny):
    tiny_model.dataset()
    for kw, match in (({"model": ".."}, "no saved model|unknown model"),
                      ({"init_adapter": "nosuch"}, "unknown model"),
                      ({"init_adapter": tiny}, "is not a run with an adapter"),
                      ({"eval_data": "nosuch"}, "unknown dataset")):
        cfg = _cfg(tiny)
        cfg.set(kw)
        with pytest.raises(TuneLabError, match=match):
            runs.create(cfg)
    assert _run_folders(workspace) == []


def test_cli_resume_from_an_absolute_path_is_one_line(workspace, tiny):
    tiny_model.dataset()
    err = one_line_error(tunelab(workspace, "train", "--model", tiny, "--data", "tiny", "--resume-from", "/tmp",
                                 "--max-steps", "1"))
    assert "resume_from '/tmp'" in err
    assert _run_folders(workspace) == []
