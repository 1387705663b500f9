"""A trained LoRA run generates at its base's speed: run vs base tokens/s, and merged vs unmerged answers.

Trains a real run the way a user does (`python -m tunelab.samples`, then `tunelab train --model
smollm2-135m-instruct --data alpaca_mixed --max-steps 2 --no-auto-report` in a temporary TUNELAB_HOME; the after-training report would
otherwise evaluate in the background during the timing), then asks
the same 16 prompts greedy, one at a time, through tunelab.models.generation with the base
(`local:smollm2-135m-instruct`) and with the run id as MODEL (its weights merged once into a cached
copy), interleaved over --rounds rounds with the order swapped each round (the machine is shared).
Ratio: run ÷ base tokens/s (target >= 0.9x). The run's answers are then compared with the same run
generated unmerged (base + PEFT adapter, what the merge replaces): greedy text must be identical.
Base and run answers differ naturally (the weights differ).

    .venv/bin/python bench/run_generate_bench.py [--max-new-tokens 32] [--rounds 2] [--steps 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import peak_rss_mb, record, row  # noqa: E402
from generate_bench import MODEL, conversations  # noqa: E402


def train_run(steps: int) -> str:
    """A LoRA run trained by the CLI in the current TUNELAB_HOME; returns its id."""
    from tunelab import workspace

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for cmd in ([sys.executable, "-m", "tunelab.samples"],
                [sys.executable, "-m", "tunelab", "train", "--model", MODEL, "--data", "alpaca_mixed",
                 "--max-steps", str(steps), "--no-auto-report"]):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    runs = sorted(workspace.subdir("runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1].name


def timed(backend, convs, settings) -> tuple[int, float, list[str]]:
    tokens, seconds, texts = 0, 0.0, []
    for conv in convs:
        t0 = time.perf_counter()
        g = backend.chat([conv], settings)[0]
        seconds += time.perf_counter() - t0
        tokens += g.completion_tokens
        texts.append(g.text)
    return tokens, seconds, texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()
    os.environ["TUNELAB_HOME"] = tempfile.mkdtemp(prefix="run-generate-bench-")
    load0 = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    from tunelab.models.generation import GenerationSettings, get_backend
    from tunelab.models.loading import load_model

    t0 = time.perf_counter()
    run_id = train_run(args.steps)
    train_s = time.perf_counter() - t0
    convs = conversations(args.prompts)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    run = get_backend(run_id)  # merges once into the cache
    merge_s = time.perf_counter() - t0
    base = get_backend(f"local:{MODEL}")
    for b in (run, base):
        b.chat([convs[0]], settings)  # warm-up
    spent = {"run": [0, 0.0], "base": [0, 0.0]}
    texts: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name, backend in ((("run", run), ("base", base)) if r % 2 == 0 else (("base", base), ("run", run))):
            tokens, seconds, texts[name] = timed(backend, convs, settings)
            spent[name][0] += tokens
            spent[name][1] += seconds
    unmerged = copy.copy(run)  # the same backend, generating through base + adapter
    unmerged.model, _ = load_model(run_id, device="cpu")
    _, _, texts["unmerged"] = timed(unmerged, convs, settings)
    same = sum(a == b for a, b in zip(texts["run"], texts["unmerged"])) / len(convs)
    differ = sum(a != b for a, b in zip(texts["run"], texts["base"]))
    run_tps, base_tps = (spent[k][0] / spent[k][1] for k in ("run", "base"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    record("run_generate", [
        row(f"trained LoRA run tokens/s vs its base ({len(convs)} prompts one at a time, interleaved "
            f"x{args.rounds})", run_tps, base_tps, "tokens/s", ">= 0.9x"),
        row("run answers identical merged vs unmerged (greedy)", same, None, "fraction", "1.0"),
        row("peak RSS", peak_rss_mb(), None, "MB"),
    ], notes=f"{MODEL} via transformers (fp32), greedy, max {args.max_new_tokens} new tokens; the run: "
             f"`tunelab train --data alpaca_mixed --max-steps {args.steps} --no-auto-report` ({train_s:.0f} s incl. samples), "
             f"merged into its cached copy in {merge_s:.1f} s; {differ}/{len(convs)} of its answers differ "
             f"from the base's. Generated tokens / seconds over all rounds: run {spent['run'][0]} / "
             f"{spent['run'][1]:.1f} s, base {spent['base'][0]} / {spent['base'][1]:.1f} s. Load average at the start {load0}, at the end {load}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
