"""Evaluation throughput: the batched evaluator against one example at a time, same model, same examples.

Both passes run `tunelab.evals.evaluate.evaluate_batches` on the shipped SmolLM2-135M-Instruct
(transformers backend, greedy) over the first 64 well-formed records of the alpaca_mixed sample;
only the batch size differs (1 vs --batch-size). Reports examples/s of each, the speed-up, and
how many answers agree between the two passes (greedy decoding should make them identical up to
floating-point ties). Then a LoRA run on the same model (TuneLab's default adapter, r=8 on every
linear layer, non-zero weights) answers the first --run-examples prompts one at a time, interleaved
with the base over two rounds: its tokens/s against the base's is the ratio a tuned model costs in evaluation, the Playground and `serve` (target >= 0.9x: a run
generates from its weights merged once into a cached copy). Appends a dated section to
bench/RESULTS.md (and bench/results/eval.json).

    .venv/bin/python bench/eval_bench.py [--examples 64] [--batch-size 16] [--max-new-tokens 32] [--no-run] [--run-examples 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import peak_rss_mb, record, row, sample_records  # noqa: E402


def timed_pass(backend, items, settings, batch_size: int) -> tuple[float, list[dict]]:
    from tunelab.evals.evaluate import evaluate_batches

    rows: list[dict] = []
    t0 = time.perf_counter()
    evaluate_batches(backend, items, settings, batch_size, rows.extend)
    return time.perf_counter() - t0, rows


def lora_run(model: str, run_id: str = "bench-lora") -> str:
    """A run folder as training leaves it: TuneLab's default LoRA adapter (random, non-zero) on model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab import workspace
    from tunelab.models import run_output
    from tunelab.models.loading import hf_dir, load_tokenizer
    from tunelab.train.config import MethodArgs

    m = MethodArgs()
    d = workspace.subdir("runs") / run_id
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("{}\n")
    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(str(hf_dir(model))),
                          LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, target_modules=m.lora_target,
                                     init_lora_weights=False))
    peft.save_pretrained(d / "adapter")
    load_tokenizer(model).save_pretrained(d / "adapter")
    run_output.write(d, model, "lora", 1, {"init_adapter": None, "data": "bench", "data_version": 1})
    return run_id


def run_vs_base(model: str, items, settings, rounds: int = 2) -> tuple[float, float, float, float]:
    """(run tokens/s, base tokens/s, seconds to build the run's backend (merge once), seconds from its cache).

    One prompt at a time, base and run interleaved over `rounds` (order swapped each round), so that the
    machine's drift hits both alike. Batched tokens/s would be unfair here: the bench's adapter is
    random, so the run's answers end early at different lengths and a batch waits for its longest
    answer while counting fewer tokens — at batch 16 that measured 0.35x on identical weights' speed.
    """
    from tunelab.models.generation import clear_cache, get_backend

    run_id = lora_run(model)
    t0 = time.perf_counter()
    get_backend(run_id)
    first_load = time.perf_counter() - t0
    clear_cache()
    t0 = time.perf_counter()
    run = get_backend(run_id)
    cached_load = time.perf_counter() - t0
    base = get_backend(f"local:{model}")
    run.chat([items[0]["messages"]], settings)  # warm-up, as for the base
    spent = {"run": [0, 0.0], "base": [0, 0.0]}
    for r in range(rounds):
        pair = (("run", run), ("base", base)) if r % 2 == 0 else (("base", base), ("run", run))
        for name, backend in pair:
            seconds, rows = timed_pass(backend, items, settings, 1)
            spent[name][0] += sum(row["completion_tokens"] for row in rows)
            spent[name][1] += seconds
    return spent["run"][0] / spent["run"][1], spent["base"][0] / spent["base"][1], first_load, cached_load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--no-run", action="store_true", help="skip the LoRA run vs base ratio")
    ap.add_argument("--run-examples", type=int, default=8, help="prompts for the run vs base ratio")
    args = ap.parse_args()
    os.environ["TUNELAB_HOME"] = tempfile.mkdtemp(prefix="eval-bench-")

    from tunelab.data import schema, store
    from tunelab.evals.evaluate import load_examples
    from tunelab.models.generation import GenerationSettings, get_backend

    store.commit("bench", schema.to_table(sample_records(args.examples)), "import")
    _, items = load_examples("bench")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    backend = get_backend(f"local:{args.model}")  # transformers: the backend the evaluator batches
    backend.chat([items[0]["messages"]], settings)  # warm-up: first-call allocations off the clock
    batched_s, batched = timed_pass(backend, items, settings, args.batch_size)
    print(f"batched (bs={args.batch_size}): {batched_s:.1f} s", file=sys.stderr, flush=True)
    single_s, single = timed_pass(backend, items, settings, 1)
    print(f"one at a time: {single_s:.1f} s", file=sys.stderr, flush=True)
    n = len(items)
    agree = sum(a["output"] == b["output"] for a, b in zip(batched, single))
    tokens = sum(r["completion_tokens"] for r in batched)
    run_rows, run_note = [], ""
    if not args.no_run:
        few = items[: args.run_examples]
        run_tps, base_tps, first_load, cached_load = run_vs_base(args.model, few, settings)
        print(f"LoRA run: {run_tps:.1f} tokens/s vs base {base_tps:.1f}", file=sys.stderr, flush=True)
        run_rows = [row(f"LoRA run tokens/s vs its base ({len(few)} prompts one at a time, interleaved x2)",
                        run_tps, base_tps, "tokens/s", ">= 0.9x")]
        run_note = (f" The LoRA run's backend took {first_load:.1f} s to build the first time (merge + save "
                    f"once) and {cached_load:.1f} s from its cached merged copy.")
    record("eval", [
        row(f"examples/s, {n} examples, batch {args.batch_size} vs 1", n / batched_s, n / single_s,
            "examples/s", ">= 3x"),
        row("generated tokens/s (batched vs 1)", tokens / batched_s,
            sum(r["completion_tokens"] for r in single) / single_s, "tokens/s"),
        row("answers identical between the passes", agree / n, None, "fraction", "1.0 (greedy)"),
        *run_rows,
        row("peak RSS", peak_rss_mb(), None, "MB"),
    ], notes=f"{args.model} via transformers (fp32, CPU threads: {__import__('torch').get_num_threads()}), greedy, "
             f"max {args.max_new_tokens} new tokens, first {n} records of data/samples/alpaca_mixed.jsonl; "
             f"batched {batched_s:.1f} s vs one at a time {single_s:.1f} s. The machine is shared, so both "
             f"passes ran back to back in one process.{run_note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
