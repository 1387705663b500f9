"""A P-tuning run as the start of another (issue 21): PEFT saves a soft prompt's output only (no prompt encoder
to train) and loads it frozen, and the LoRA / preference paths skip prompt tokens the virtual tokens shift. Every
such start is refused up front, in one line, with no run folder made; so is --method ptuning on a LoRA run."""

from __future__ import annotations

import json

import pytest

import tiny_model as builder
from cli_run import one_line_error, tunelab
from tunelab.train import runs

ARGS = ("--max-steps", "2", "--batch-size", "2", "--cutoff-len", "96", "--recipe", "manual",
        "--num-virtual-tokens", "4", "--encoder-hidden-size", "16", "--threads", "1", "--no-auto-report", "--json")


def _train(home, *args) -> str:
    p = tunelab(home, "train", *args, *ARGS)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["status"] == "completed", runs.log_tail(doc["run"])
    return doc["run"]


@pytest.mark.slow
def test_starts_from_a_ptuning_run_are_refused_before_a_run_folder_exists(workspace, tiny_model):
    from tunelab.data import store
    from tunelab.data.schema import to_table

    builder.dataset("tiny", repeat=2)
    pt = _train(workspace, "--model", tiny_model, "--data", "tiny", "--method", "ptuning")
    lora = _train(workspace, "--model", tiny_model, "--data", "tiny", "--method", "lora")
    store.commit("pairs", to_table([{"id": f"p{i}", "instruction": f"Q{i}?", "input": "", "output": "yes",
                                     "chosen": "yes", "rejected": "no"} for i in range(8)]), op="test")
    before = sorted(p.name for p in (workspace / "runs").iterdir())
    for args, what in ((("--model", tiny_model, "--init-adapter", pt, "--method", "dpo", "--data", "pairs"),
                        "preference training"),
                       (("--model", pt, "--method", "lora", "--data", "tiny"), "--method lora"),
                       (("--model", pt, "--method", "full", "--data", "tiny"), "--method full"),
                       (("--model", pt, "--method", "ptuning", "--data", "tiny"), "--method ptuning")):
        line = one_line_error(tunelab(workspace, "train", *args, *ARGS))
        assert f"{pt} is a P-tuning run: {what} cannot start from it" in line, line
    line = one_line_error(tunelab(workspace, "train", "--model", lora, "--method", "ptuning", "--data", "tiny", *ARGS))
    assert "cannot continue" in line and "lora adapter" in line, line
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == before  # no folder for a refused run
    # a LoRA run still continues (and DPO starts from it)
    _train(workspace, "--model", lora, "--method", "lora", "--data", "tiny")
