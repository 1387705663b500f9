"""A run pins its eval dataset's version in config.yaml, as it pins the training data's (issue 21)."""

from __future__ import annotations

import yaml

import tiny_model as builder
from tunelab.data import store
from tunelab.data.schema import to_table
from tunelab.train import runs, sft
from tunelab.train.config import TrainConfig


def test_a_run_evaluates_on_the_eval_version_it_was_created_with(workspace):
    builder.dataset("tiny", repeat=2)
    builder.dataset("ev", repeat=1)  # v1: 8 records
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "smollm2-135m-instruct", "data": "tiny", "eval_data": "ev", "recipe": "manual"})
    run_id = runs.create(cfg)
    doc = yaml.safe_load((runs.run_dir(run_id) / "config.yaml").read_text())
    assert doc["data"]["eval_data_version"] == 1 and doc["data"]["data_version"] == 1
    # the eval dataset changes after the run was made: a resume still evaluates on v1's records
    store.commit("ev", to_table([dict(r, id=f"n{i}", output="changed") for i, r in enumerate(builder.RECORDS[:3])]),
                 op="test")
    assert store.resolve_version("ev") == 2
    _, eval_recs = sft.load_records(runs.config(run_id))
    assert len(eval_recs) == 8 and all(r["output"] != "changed" for r in eval_recs)
