"""`make bench`: run every bench/*_bench.py and bench/peers.py, then write one overview table to bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _common import HERE, machine, table

MARK = "<!-- overview -->"


def main() -> int:
    start, load0 = time.time(), ", ".join(f"{x:.1f}" for x in os.getloadavg())
    for old in (HERE / "results").glob("*.json"):  # the table shows this run's figures only
        old.unlink()
    failed = []
    # peers.py: TuneLab against the real LLaMA-Factory (set up once under /tmp/peer; the imitation otherwise)
    for script in [*sorted(HERE.glob("*_bench.py")), HERE / "peers.py"]:
        print(f"== {script.name}", flush=True)
        if subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0:
            failed.append(script.name)
    minutes = (time.time() - start) / 60
    rows = []
    for f in sorted((HERE / "results").glob("*.json")):
        data = json.loads(f.read_text())
        rows += [dict(r, metric=f"{data['name']}: {r['metric']}") for r in data["rows"]]
    results = HERE / "RESULTS.md"
    history = results.read_text(encoding="utf-8") if results.exists() else ""
    history = history.split(MARK)[-1].lstrip("\n")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    overview = (f"# Benchmarks\n\nLatest figure of every bench script (`make bench`, {time.strftime('%Y-%m-%d %H:%M')}, "
                f"{minutes:.1f} min), each against a baseline measured in the same run. Machine: {machine()}; "
                f"load average at the start {load0}, at the end {load}.\n\n{table(rows)}\n\n"
                f"Failed scripts: {', '.join(failed) or 'none'}\n\nEach script's own sections follow, oldest "
                f"first.\n\n{MARK}\n\n")
    results.write_text(overview + history, encoding="utf-8")
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
