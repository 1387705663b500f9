"""A run's curves for export: every metric of every step in long format (CSV), and its TensorBoard folder.

Reads runs (runs.metrics); apart from tracking.py, which writes them during the loop and must not
import runs (runs imports tracking).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tunelab.errors import TuneLabError
from tunelab.train import runs
from tunelab.train.tracking import SKIP, TB_DIR


def tensorboard_dir(run_id: str) -> Path | None:
    """The run's TensorBoard folder, once it has one."""
    d = runs.run_dir(run_id) / TB_DIR
    return d if d.is_dir() else None


def curves(run_ids: list[str]) -> list[dict]:
    """Every metric of every step of the runs, long format: [{"run", "step", "metric", "value"}].

    Args:
        run_ids: runs to export, in order (unknown ids are refused).
    Returns:
        One dict per (run, step, metric) with a numeric value, metrics in the rows' own key order.
    """
    if not run_ids:
        raise TuneLabError("no run given: name one or more runs (see `tunelab runs list`)")
    out = []
    for run_id in dict.fromkeys(run_ids):
        for row in runs.metrics(run_id):
            for key, value in row.items():
                if key not in SKIP and isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.append({"run": run_id, "step": row.get("step"), "metric": key, "value": value})
    return out


def curves_csv(run_ids: list[str]) -> str:
    """curves() as CSV text with the header run,step,metric,value (what the run list's download button saves)."""
    return rows_csv(curves(run_ids))


def rows_csv(rows: list[dict]) -> str:
    """Long-format curve rows (curves()) as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["run", "step", "metric", "value"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
