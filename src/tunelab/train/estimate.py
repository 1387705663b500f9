"""Before launch: trainable parameters, memory and time of a run, from the model's headers alone.

Sizes come from models/size.py, the same estimator as the Compare page's size/cost table (a GGUF
base is read from its header, never converted for an estimate).
"""

from __future__ import annotations

import statistics

from tunelab import jobs
from tunelab.jsonio import read_jsonl
from tunelab.models.size import Geometry, model_size
from tunelab.train.config import TrainConfig

# Measured: LoRA on SmolLM2-135M, plain loop, 2 cores (measured on this project's 2-core CI machines); scaled by model size.
CPU_TOKENS_PER_S_135M = 155.0


def trainable_params(cfg: TrainConfig, geo: Geometry, total: int) -> int:
    """Parameters the method updates (total: the model's whole count, for a full fine-tune)."""
    m, h = cfg.method, geo.hidden
    if m.method == "full":
        return total
    if m.method == "ptuning":  # PEFT's MLP prompt encoder plus the virtual token embeddings
        e = m.encoder_hidden_size
        return m.num_virtual_tokens * h + h * e + e * e + e * h + 2 * e + h
    return geo.lora_params(m.lora_r, m.lora_target)


def measured_speed(model: str) -> float | None:
    """Median tokens/s of earlier runs of this model, if any."""
    speeds = []
    for st in jobs.list_jobs("runs")[:10]:
        if st.get("model") == model:
            rows = read_jsonl(jobs.job_dir("runs", st["id"]) / "metrics.jsonl")
            speeds += [r["tokens_per_s"] for r in rows[1:] if r.get("tokens_per_s")]
    return statistics.median(speeds) if speeds else None


def tokens_per_epoch(model: str, data: str, version: int | None, cutoff: int, sample: int = 2000) -> int:
    """Training tokens in one epoch (each record chat-formatted, cut at cutoff), from an even sample.

    Tokenising every record of a large dataset would take longer than the estimate is worth: up to
    `sample` evenly spaced records are counted and scaled to the whole dataset.
    """
    from tunelab.data import stats, store
    from tunelab.models.tokens import token_counter

    table = store.read(data, version)
    n = table.num_rows
    if not n:
        return 0
    if n > sample:
        table = table.take([i * n // sample for i in range(sample)])
    lengths = stats.token_lengths(table, token_counter(model))
    return round(sum(min(x, cutoff) for x in lengths) * n / len(lengths))


def estimate(cfg: TrainConfig, tokens_per_epoch: int | None = None) -> dict:
    """Trainable/total parameters, peak memory (GB) and seconds per step and for the run.

    Args:
        cfg: the run's config.
        tokens_per_epoch: the dataset's tokens after the cutoff, when known.
    Returns:
        {"trainable", "total", "memory_gb", "tokens_per_step", "seconds_per_step", "steps", "seconds"}.
    """
    size = model_size(cfg.model.model)
    s, total = size.geometry, size.params
    train = trainable_params(cfg, s, total)
    t = cfg.training
    tokens_step = t.batch_size * t.grad_accum * cfg.data.cutoff_len
    weight_bytes = 4 if cfg.model.dtype == "float32" else 2
    if cfg.method.method == "qlora":
        weight_bytes = 0.55
    # weights + (weight, grad, 2 Adam moments) per trainable param + activations kept for backward
    act = t.batch_size * cfg.data.cutoff_len * s.layers * (16 * s.hidden + 4 * s.intermediate) * 4
    mem = total * weight_bytes + train * 16 + act + 0.6e9  # 0.6 GB: torch + transformers themselves
    speed = measured_speed(cfg.model.model) or CPU_TOKENS_PER_S_135M * 135e6 / max(total, 1)
    steps = t.max_steps
    if not steps and tokens_per_epoch:
        steps = max(1, round(t.epochs * tokens_per_epoch / tokens_step))
    sec_step = tokens_step / speed
    return {"trainable": train, "total": total, "memory_gb": round(mem / 1e9, 2), "tokens_per_step": tokens_step,
            "seconds_per_step": round(sec_step, 1), "steps": steps or None,
            "seconds": round(sec_step * steps) if steps else None}
