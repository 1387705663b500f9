"""GPU check (issue 24): QLoRA 4-bit and LoRA bf16, 30 steps each, on the largest model this machine has.

Run by scripts/gpu_check.sh on a CUDA machine. The model is the largest (by parameters) of: the registry
(shipped and added), every safetensors snapshot in the Hugging Face cache, and the Hub ids in
$TUNELAB_GPU_MODELS (comma-separated, fetched when the Hub is reachable) — whose LoRA and QLoRA runs the
Models page's estimator says fit the free GPU memory. Each run trains in this process (so its peak GPU
memory is torch's own max_memory_allocated) and a section with tokens/s, peak memory and first -> last
loss is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

STEPS = int(os.environ.get("GPU_CHECK_STEPS", "30"))


def candidates() -> list[str]:
    """MODEL arguments this machine can load without downloading, plus any asked-for Hub ids."""
    from tunelab.models import hub
    from tunelab.models.registry import list_models

    out = [m["name"] for m in list_models() if m["kind"] in ("hf", "gguf")]
    snaps = hub.cache_dir().glob("models--*/snapshots/*")
    out += [str(s) for s in snaps if (s / "config.json").exists() and list(s.glob("*.safetensors"))]
    out += [x.strip() for x in os.environ.get("TUNELAB_GPU_MODELS", "").split(",") if x.strip()]
    return out


def pick() -> tuple[str, int, list[str]]:
    """(largest model whose LoRA and QLoRA fit, its parameters, what was skipped and why)."""
    from tunelab.train import catalog

    sized, skipped = [], []
    for model in candidates():
        try:
            c = catalog.costs(model, device="cuda")
        except Exception as exc:  # noqa: BLE001 - an unreachable Hub id, an unreadable folder: next one
            skipped.append(f"{model}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        fits = {r["method"]: r["fits"] for r in c["training"]}
        if fits.get("lora") and fits.get("qlora"):
            sized.append((c["params"], model))
        else:
            skipped.append(f"{model}: does not fit ({c['training'][0]['reason']})")
    if not sized:
        raise SystemExit("gpu_check: no model fits: " + "; ".join(skipped))
    params, model = max(sized)
    return model, params, skipped


def train(model: str, method: str) -> dict:
    """One 30-step run in this process: tokens/s (median of the steps after the first), peak GPU memory, loss."""
    import statistics

    import torch

    from tunelab.train import runs, sft
    from tunelab.train.config import TrainConfig

    cfg = TrainConfig.for_method(method)
    cfg.set({"model": model, "data": "gpu_check", "max_steps": STEPS, "save_steps": STEPS, "batch_size": 4,
             "cutoff_len": 512, "recipe": "manual", "auto_report": False, "learning_rate": 2e-4})
    if method == "lora":
        cfg.set({"dtype": "bfloat16"})
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run_id = runs.create(cfg)
    t0 = time.time()
    rc = sft.main(runs.run_dir(run_id))
    wall = time.time() - t0
    rows = [r for r in runs.metrics(run_id) if r.get("loss") is not None]
    if rc != 0 or not rows:
        return {"method": method, "error": runs.log_tail(run_id, 5)}
    speeds = [r["tokens_per_s"] for r in rows[1:] if r.get("tokens_per_s")] or [rows[0].get("tokens_per_s", 0)]
    return {"method": method, "run": run_id, "tokens_per_s": statistics.median(speeds),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "loss_first": rows[0]["loss"],
            "loss_last": rows[-1]["loss"], "steps": rows[-1]["step"], "wall_s": wall}


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; nothing measured", file=sys.stderr)
        return 2
    from _common import record, row, sample_records

    from tunelab.data import store
    from tunelab.data.schema import to_table

    os.environ.setdefault("TUNELAB_HOME", tempfile.mkdtemp(prefix="gpu-check-ws-"))
    recs = [dict(r, id=f"r{i}") for i, r in enumerate(sample_records() * 8)]
    store.commit("gpu_check", to_table(recs), op="gpu_check")
    model, params, skipped = pick()
    gpu = torch.cuda.get_device_name(0)
    print(f"gpu_check: {model} ({params / 1e6:.0f}M parameters) on {gpu}", file=sys.stderr)
    results = []
    for method in ("qlora", "lora"):
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            if method == "qlora":
                results.append({"method": method, "error": "bitsandbytes is not installed (pip install bitsandbytes)"})
                continue
        results.append(train(model, method))
    rows, notes = [], [f"{model}, {params / 1e6:.0f}M parameters, on {gpu}; {STEPS} steps, batch 4 x 512 tokens, "
                       f"torch {torch.__version__}."]
    for r in results:
        label = "QLoRA 4-bit (NF4, bf16 compute)" if r["method"] == "qlora" else "LoRA bf16"
        if "error" in r:
            notes.append(f"{label}: failed: {r['error']}")
            continue
        rows += [row(f"{label}: tokens/s", r["tokens_per_s"], None, "tokens/s"),
                 row(f"{label}: peak GPU memory", r["peak_gib"], None, "GiB", higher_is_better=False),
                 row(f"{label}: loss first -> last", r["loss_last"], r["loss_first"], "loss", higher_is_better=False)]
        notes.append(f"{label}: run {r['run']}, {r['steps']} steps in {r['wall_s']:.0f} s.")
    if skipped:
        notes.append("Not chosen: " + "; ".join(skipped))
    record("gpu_check", rows, "\n".join(notes))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
