"""Shared by every bench script: machine info, peak RSS, and recording figures.

Each script measures its figure AND a baseline in the same run (these machines are noisy), then
calls `record(name, rows)`: a dated section is appended to bench/RESULTS.md and the rows are
kept in bench/results/<name>.json for `make bench`'s overview table.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "samples" / "alpaca_mixed.jsonl"


def sample_records(n: int | None = None) -> list[dict]:
    """The sample's first n records the importer accepts (it deliberately holds a few broken lines).

    Read with TuneLab's own JSONL reader, so the benches use exactly what `data import` keeps.
    """
    from tunelab.data import formats

    out = []
    with open(SAMPLE, "rb") as fh:
        for _, rec in formats.read_jsonl(fh, "alpaca", formats.Columns()):
            if isinstance(rec, dict):
                out.append(dict(rec, id=str(len(out))))
                if len(out) == n:
                    break
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory in MiB: this process's VmHWM (file-backed pages such as mmapped weights included)."""
    if not children:
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def row(metric: str, value: float, baseline: float | None, unit: str, target: str = "",
        higher_is_better: bool = True) -> dict:
    """One figure with its same-run baseline; ratio > 1 means TuneLab is better."""
    ratio = None
    if baseline:
        ratio = value / baseline if higher_is_better else baseline / value if value else None
    return {"metric": metric, "value": value, "baseline": baseline, "unit": unit,
            "ratio": ratio, "target": target}


def _fmt(x) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def table(rows: list[dict]) -> str:
    lines = ["| metric | TuneLab | baseline | unit | ratio | target |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['metric']} | {_fmt(r['value'])} | {_fmt(r['baseline'])} | {r['unit']} | "
                     f"{_fmt(r['ratio'])}{'x' if r['ratio'] else ''} | {r['target']} |")
    return "\n".join(lines)


def record(name: str, rows: list[dict], notes: str = "") -> None:
    """Print the figures, append them to bench/RESULTS.md and bench/results/<name>.json."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    section = f"\n## {name} — {stamp}\n\nMachine: {machine()}\n\n{table(rows)}\n"
    if notes:
        section += f"\n{notes}\n"
    print(section)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write(section)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"name": name, "date": stamp, "machine": machine(),
                                                  "rows": rows}, indent=2))
