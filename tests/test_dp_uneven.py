"""Data-parallel sharding with a batch count per epoch that is not a multiple of the processes (issue 21).

7 micro-batches per epoch, 3 epochs: one process with --grad-accum 2 and two processes with --grad-accum 1
must train on the same examples at every optimizer step. Ranks used to pick batches by their index inside
the epoch (`j % world`), so from epoch 2 on rank 1 took the batch one process had already used.
"""

from __future__ import annotations

import json

import pytest

import tiny_model
from cli_run import tunelab
from tunelab.train import runs

# 7 records of different lengths, twice: 14 records, one per row, 2 per batch -> 7 micro-batches per epoch.
RECORDS = [dict(r, output=r["output"] + " ok" * (3 * i)) for i, r in enumerate(tiny_model.RECORDS[:7])]
COMMON = ("--data", "uneven", "--epochs", "3", "--batch-size", "2", "--no-packing", "--cutoff-len", "128",
          "--seed", "7", "--recipe", "manual", "--lora-dropout", "0", "--mixed-precision", "no", "--threads", "1",
          "--save-steps", "100", "--no-auto-report", "--json")


@pytest.mark.slow
def test_uneven_batches_two_processes_see_the_same_examples_as_one(workspace, tiny_model):
    import tiny_model as builder

    builder.dataset("uneven", RECORDS, repeat=2)
    one = tunelab(workspace, "train", "--model", tiny_model, *COMMON, "--grad-accum", "2")
    two = tunelab(workspace, "train", "--model", tiny_model, *COMMON, "--grad-accum", "1",
                  "--launcher", "accelerate", "--num-processes", "2")
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    a, b = (runs.metrics(json.loads(p.stdout)["run"]) for p in (one, two))
    # 7 // 2 = 3 steps per epoch, 3 epochs; the 7th micro-batch of an epoch starts the next step
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 10))
    # the tokens of each step's global batch: the same examples (the records differ in length)
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    for x, y in zip(a, b):  # and the same loss: the same examples through the same weights
        assert abs(x["loss"] - y["loss"]) <= 1e-4 * max(abs(x["loss"]), 1e-6), (x, y)
