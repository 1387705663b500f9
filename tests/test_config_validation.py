"""A training config is checked before anything launches (issue 22, item 4): a safe YAML loader, every
number in range, one line each and no run folder; a NaN loss stops the run naming its step; `--json`
is valid JSON (null for NaN/inf); `tunelab train` fails when its run did not finish."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tiny_model
from cli_run import one_line_error, tunelab
from tunelab import jsonio
from tunelab.train import validate
from tunelab.train.config import TrainConfig

LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
          + "training:\n  learning_rate: *i\n")  # 9^9 = 387 million "lol"s once expanded

BAD_FILES = {
    "laughs.yaml": (LAUGHS.encode(), "alias"),
    "list_section.yaml": (b"training: [1, 2]\n", "section 'training' must be a mapping"),
    "text_section.yaml": (b"method: lora\n", "section 'method' must be a mapping"),
    "top_list.yaml": (b"- 1\n- 2\n", "must be a mapping of groups"),
    "not_utf8.yaml": (b"data:\n  data: caf\xe9\n", "not UTF-8"),
    "deep.yaml": (b"training: " + b"[" * 300 + b"]" * 300 + b"\n", "nested more than"),
    "batch0.yaml": (b"training:\n  batch_size: 0\n", "batch_size must be at least 1"),
    "nan_lr.yaml": (b"training:\n  learning_rate: .nan\n", "learning_rate must be a finite number"),
    "long.yaml": (b"model:\n  model: " + b"x" * 5000 + b"\n", "characters long"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_config_file_is_one_line_and_launches_nothing(workspace, tmp_path, name):
    body, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(body)
    t0 = time.monotonic()
    proc = tunelab(workspace, "train", str(path), "--data", "toy")
    line = one_line_error(proc)
    assert expected in line, line
    assert len(line) < 300  # the value is never formatted whole
    assert time.monotonic() - t0 < 60
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())


FLAGS = {
    ("--learning-rate", "0"): "learning_rate must be greater than 0",
    ("--learning-rate", "nan"): "learning_rate must be a finite number",
    ("--learning-rate", "inf"): "learning_rate must be a finite number",
    ("--max-steps", "1e35"): "max_steps must be at most",
    ("--max-records", "-1"): "max_records must be at least 0",
    ("--warmup-ratio", "5"): "warmup_ratio must be at most 1",
    ("--batch-size", "100000000"): "batch_size must be at most",
    ("--batch-size", "0"): "batch_size must be at least 1",
    ("--grad-accum", "0"): "grad_accum must be at least 1",
    ("--lora-r", "0"): "lora_r must be at least 1",
    ("--threads", "-1"): "threads must be at least 0",
    ("--eval-split", "1"): "eval_split must be below 1",
    ("--eval-split", "-0.1"): "eval_split must be at least 0",
    ("--cutoff-len", "1e12"): "cutoff_len must be at most",
}


def test_out_of_range_flags_are_refused_before_launch(workspace):
    tiny_model.dataset("toy")
    for flags, expected in FLAGS.items():
        proc = tunelab(workspace, "train", "--data", "toy", *flags)
        line = one_line_error(proc)
        assert expected in line, (flags, line)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())


def test_validate_accepts_the_defaults_of_every_method():
    from tunelab.train.config import METHODS

    for m in METHODS:
        assert validate.problems(TrainConfig.for_method(m)) == []
    cfg = TrainConfig()
    cfg.set({"learning_rate": float("nan"), "batch_size": 0, "max_records": 0})
    found = validate.problems(cfg)
    assert len(found) == 2 and "learning_rate" in found[0] and "batch_size" in found[1]  # 0 records = all


def test_json_output_writes_null_for_nan_and_inf():
    text = jsonio.dumps({"loss": float("nan"), "rows": [1.5, float("inf"), -float("inf")], "ok": 2})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) == \
        {"loss": None, "rows": [1.5, None, None], "ok": 2}


def _poisoned(tiny: Path, target: Path) -> str:
    """The tiny model with one weight set to infinity: its very first loss is not a number."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny, target)
    weights = load_file(target / "model.safetensors")
    key = next(k for k in weights if k.endswith("norm.weight"))
    weights[key] = torch.full_like(weights[key], math.inf)
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return str(target)


@pytest.mark.slow
def test_a_nan_loss_fails_the_run_naming_its_step(workspace, tiny_model, tmp_path):  # noqa: F811
    import tiny_model as builder

    builder.dataset("toy")
    model = _poisoned(Path(tiny_model), tmp_path / "poisoned")
    proc = tunelab(workspace, "train", "--model", model, "--data", "toy", "--max-steps", "30", "--recipe", "manual",
                   "--no-auto-report", "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed"
    st = json.loads((workspace / "runs" / doc["run"] / "status.json").read_text())
    assert "the loss became nan at step 1" in st["error"] and "\n" not in st["error"]
    assert st["step"] == 0  # stopped before the first update was applied
    assert "error: run" in proc.stderr and "at step 1" in proc.stderr


@pytest.mark.slow
def test_train_exits_nonzero_when_its_run_is_stopped(workspace, tiny_model):  # noqa: F811
    import os

    import tiny_model as builder

    builder.dataset("toy")
    env = dict(os.environ, TUNELAB_HOME=str(workspace), HF_HUB_OFFLINE="1")
    follow = subprocess.Popen([sys.executable, "-m", "tunelab", "train", "--model", tiny_model, "--data", "toy",
                               "--max-steps", "100000", "--recipe", "manual", "--no-auto-report", "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        run_id = None
        while time.monotonic() < deadline:
            found = list((workspace / "runs").glob("run-*/metrics.jsonl")) if (workspace / "runs").exists() else []
            if found and found[0].read_text().count("\n") >= 2:
                run_id = found[0].parent.name
                break
            time.sleep(0.5)
        assert run_id, "the run never trained a step"
        assert tunelab(workspace, "runs", "stop", run_id).returncode == 0
        out, err = follow.communicate(timeout=240)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert json.loads(out)["status"] == "stopped"
    assert follow.returncode == 1, err
    assert f"error: run {run_id} stopped" in err
