"""TuneLab against the real LLaMA-Factory 0.9.5, same model, data and LoRA settings, in one run.

Runs ../shared/peers/side_by_side.sh (the peer harness: LLaMA-Factory in its own venv under
$PEER_ROOT, SmolLM2-135M-Instruct, alpaca_en_demo, LoRA r 8 on q,v, cutoff 256, batch 4, lr 2e-4,
no eval) once per row, all in this one invocation, and prints one table:

    LLaMA-Factory default (fp32, gradient checkpointing) | LLaMA-Factory bf16
    TuneLab default | TuneLab --gradient-checkpointing on | TuneLab --packing

with non-padding tokens/s (all tokens over the whole training loop's time, step 1 included, as
LLaMA-Factory's train_runtime counts) and peak RSS (VmHWM via /usr/bin/time -v for LLaMA-Factory,
the detached run process's VmHWM for TuneLab), each as a ratio to LLaMA-Factory default.

The peer is set up once (`SKIP_RUN=1 bash ../shared/peers/llamafactory_lora.sh`, ~3 min, from the
package registry). When it cannot be installed, the rows come from bench/train_bench.py's
imitation of LLaMA-Factory (HF Trainer + PEFT, reentrant checkpointing) instead, and every such
row says "IMITATION" in its name.

    .venv/bin/python bench/peers.py [--steps 30] [--peers-dir ../shared/peers] [--no-setup]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "bench"
PEER_ROOT = Path(os.environ.get("PEER_ROOT", "/tmp/peer"))
ROWS = (  # (label, WHO, TL_FLAGS)
    ("LLaMA-Factory default (fp32, checkpointing)", "lf_default", ""),
    ("LLaMA-Factory bf16", "lf_bf16", ""),
    ("TuneLab default", "tunelab", ""),
    ("TuneLab --gradient-checkpointing on", "tunelab", "--gradient-checkpointing on"),
    ("TuneLab --packing", "tunelab", "--packing"),
)


def peers_dir(arg: str | None) -> Path:
    for p in ([Path(arg)] if arg else []) + [ROOT.parent / "shared" / "peers", Path("/work/shared/peers")]:
        if (p / "side_by_side.sh").exists():
            return p
    raise SystemExit("the peer harness (side_by_side.sh) was not found: pass --peers-dir")


def ensure_peer(peers: Path, setup: bool) -> str | None:
    """None when LLaMA-Factory is ready under PEER_ROOT, else why not (after one setup attempt)."""
    def ready() -> bool:
        return (PEER_ROOT / "venv/bin/llamafactory-cli").exists() and (PEER_ROOT / "smollm2/model.safetensors").exists()

    if not ready() and setup:
        print(f"setting up LLaMA-Factory under {PEER_ROOT} (once, ~3 min)", file=sys.stderr, flush=True)
        p = subprocess.run(["bash", str(peers / "llamafactory_lora.sh")], env=dict(os.environ, SKIP_RUN="1"),
                           capture_output=True, text=True)
        if p.returncode:
            return f"setup failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
    return None if ready() else f"LLaMA-Factory is not installed under {PEER_ROOT}"


def _env() -> dict:
    src = str(ROOT / "src")
    return dict(os.environ, PEER_ROOT=str(PEER_ROOT), PROJECT=str(ROOT), HF_HUB_OFFLINE="1",
                PYTHONPATH=src + os.pathsep * bool(os.environ.get("PYTHONPATH")) + os.environ.get("PYTHONPATH", ""),
                TUNELAB_MODEL_CACHE=os.environ.get("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache")))


def run_row(peers: Path, who: str, flags: str, steps: int) -> dict:
    """One trainer through side_by_side.sh: its SUMMARY figures."""
    env = dict(_env(), WHO=who, TL_FLAGS=flags, STEPS=str(steps))
    t0 = time.time()
    p = subprocess.run(["bash", str(peers / "side_by_side.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("SUMMARY")), None)
    if p.returncode or line is None:
        raise SystemExit(f"{who} {flags} failed:\n{(p.stdout + p.stderr)[-3000:]}")
    res = {"summary": line, "wall_s": round(time.time() - t0, 1)}
    res["peak_rss_mib"] = float(re.search(r"peak_rss=([\d.]+)MiB", line).group(1))
    if who.startswith("lf"):
        res["tokens_per_s"] = float(re.search(r"non_pad_tok/s=([\d.]+)", line).group(1))
    else:  # all tokens over all steps' time (step 1 included), from the run's own metrics
        run = json.loads((PEER_ROOT / "tl.json").read_text())["run"]
        rows = [json.loads(x) for x in (PEER_ROOT / "tl_home/runs" / run / "metrics.jsonl").read_text().splitlines()]
        res["tokens_per_s"] = sum(r["tokens"] for r in rows) / sum(r["tokens"] / r["tokens_per_s"] for r in rows)
        res["median_tokens_per_s"] = float(re.search(r"median_tok/s=([\d.]+)", line).group(1))
        log = (PEER_ROOT / "tl.log").read_text() + (PEER_ROOT / "tl_home/runs" / run / "job.log").read_text()
        res["choices"] = [x.split("] ", 1)[-1] for x in log.splitlines()
                          if "gradient checkpointing" in x or "recipe: packing" in x or "batching" in x]
    print(who, flags, res["summary"], file=sys.stderr, flush=True)
    return res


def imitation_rows(steps: int, why: str) -> list[dict]:
    """The fallback: train_bench.py's LLaMA-Factory imitation, every row labelled as such."""
    sys.path[:0] = [str(HERE)]
    from _common import row
    from train_bench import child

    lf, ours, gc = (child(k, "smollm2-135m-instruct", steps) for k in ("lf-default", "tunelab", "tunelab-gc"))
    tag = "IMITATION of LLaMA-Factory (HF Trainer + PEFT, reentrant checkpointing; the real one: " + why + ")"
    return [row(f"{tag}: TuneLab speed", ours["tokens_per_s"], lf["tokens_per_s"], "tokens/s", "≥ 3x"),
            row(f"{tag}: TuneLab peak RSS", ours["peak_rss_mb"], lf["peak_rss_mb"], "MiB", "≤ 1.0x",
                higher_is_better=False),
            row(f"{tag}: TuneLab checkpointing on, speed", gc["tokens_per_s"], lf["tokens_per_s"], "tokens/s"),
            row(f"{tag}: TuneLab checkpointing on, peak RSS", gc["peak_rss_mb"], lf["peak_rss_mb"], "MiB",
                higher_is_better=False)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=int(os.environ.get("PEER_STEPS", 30)))
    ap.add_argument("--peers-dir")
    ap.add_argument("--no-setup", action="store_true", help="do not install LLaMA-Factory when it is missing")
    ap.add_argument("--only", help="comma-separated row numbers (1-5) to run, for a quick look")
    a = ap.parse_args()
    sys.path[:0] = [str(HERE)]
    from _common import machine, record, row

    peers = peers_dir(a.peers_dir)
    why = ensure_peer(peers, not a.no_setup)
    if why:
        print(f"the real LLaMA-Factory is unavailable ({why}): falling back to the imitation", file=sys.stderr)
        record("peers", imitation_rows(min(a.steps, 8), why), f"FALLBACK: {why}.")
        return 0
    want = {int(x) for x in a.only.split(",")} if a.only else set(range(1, len(ROWS) + 1))
    res = {label: run_row(peers, who, flags, a.steps) for i, (label, who, flags) in enumerate(ROWS, 1) if i in want}
    base = res.get(ROWS[0][0])
    lines = ["| trainer | non-pad tokens/s | peak RSS MiB | vs LF default (speed, RSS) |", "|---|---|---|---|"]
    rows = []
    for label, r in res.items():
        sp = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        mem = r["peak_rss_mib"] / base["peak_rss_mib"] if base else None
        ratio = f"{sp:.2f}x, {mem:.2f}x" if base else "—"
        lines.append(f"| {label} | {r['tokens_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {ratio} |")
        rows.append(row(f"{label}: speed", r["tokens_per_s"], base and base["tokens_per_s"], "tokens/s",
                        "≥ 3x" if label == "TuneLab default" else ""))
        rows.append(row(f"{label}: peak RSS", r["peak_rss_mib"], base and base["peak_rss_mib"], "MiB",
                        "≤ 1.0x" if label == "TuneLab default" else "", higher_is_better=False))
    table = "\n".join(lines)
    print(table)
    versions = (PEER_ROOT / "versions.txt").read_text().strip() if (PEER_ROOT / "versions.txt").exists() else "?"
    notes = (f"Real LLaMA-Factory via side_by_side.sh, {a.steps} steps each, one run ({machine()}; load average at "
             f"the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}). Peer: {versions}.\n\n{table}\n\n"
             + "\n".join(f"- {label}: {r['summary']}" + (f" — {'; '.join(r['choices'])}" if r.get("choices") else "")
                         for label, r in res.items()))
    record("peers", rows, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
