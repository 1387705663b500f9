"""The `output.json` contract: what a training run publishes so that its id works as a MODEL.

The training layer writes it (`write`, from `train/sft.save_checkpoint`, each time a checkpoint's
weights are published); the models layer reads it (`read`: registry, loading, convert) without
importing `train`. Schema 1, one JSON object in `runs/<id>/output.json`:

    schema       1 (a file without it is schema 0: the same keys, from before the field existed)
    base         the base MODEL the run started from (registry name, absolute folder or .gguf)
    method       lora | qlora | ptuning | full
    step         the optimizer step of the published weights
    adapter_dir  folder (relative to the run) of the PEFT adapter, or null for a full fine-tune
    model_dir    folder of the full weights, or null for an adapter run
    saved_at     unix time the weights were published (absent in schema 0)
    lineage      {"init_adapter", "data", "data_version"}: where the run came from

Keys are only ever added; readers get every key (None where an old file lacks it).
"""

from __future__ import annotations

import time
from pathlib import Path

from tunelab import migrations
from tunelab.jsonio import read_json, write_json

FILE = "output.json"
SCHEMA = migrations.version("output")  # 1: one migration (adapter-dir-default) so far
KEYS = ("schema", "base", "method", "step", "adapter_dir", "model_dir", "saved_at", "lineage")


def write(run_dir: Path, base: str, method: str, step: int, lineage: dict | None = None) -> dict:
    """Publish a run's weights (written atomically); returns the document written.

    Args:
        run_dir: the run folder.
        base: the base MODEL.
        method: the training method; "full" publishes model/, any other adapter/.
        step: the optimizer step of the weights.
        lineage: {"init_adapter", "data", "data_version"}.
    """
    full = method == "full"
    doc = {"schema": SCHEMA, "base": base, "method": method, "step": step,
           "adapter_dir": None if full else "adapter", "model_dir": "model" if full else None,
           "saved_at": round(time.time(), 3), "lineage": lineage or {}}
    write_json(Path(run_dir) / FILE, doc)
    return doc


def read(run_dir: Path) -> dict | None:
    """The run's published output with every key of the current schema, or None before its first checkpoint."""
    doc = read_json(Path(run_dir) / FILE)
    if not doc:
        return None
    doc = migrations.migrate("output", doc)  # schema 0 runs wrote only {"base", "method"}
    return {**doc, **{k: doc.get(k) for k in KEYS}}
