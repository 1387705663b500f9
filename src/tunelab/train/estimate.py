"""Before launch: trainable parameters, memory and time of a run, from the model's config.json alone."""

from __future__ import annotations

import json
import statistics

from tunelab import jobs
from tunelab.jsonio import read_jsonl
from tunelab.train.config import TrainConfig

# Measured: LoRA on SmolLM2-135M, plain loop, 2 cores (shared/ENVIRONMENT.md); scaled by model size.
CPU_TOKENS_PER_S_135M = 155.0


def _shape(model: str) -> dict:
    from tunelab.models.loading import hf_dir

    c = json.loads((hf_dir(model) / "config.json").read_text())
    c = c.get("text_config", c)
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return {"hidden": c["hidden_size"], "inter": c["intermediate_size"], "layers": c["num_hidden_layers"],
            "q": heads * head_dim, "kv": c.get("num_key_value_heads", heads) * head_dim, "vocab": c["vocab_size"],
            "tied": c.get("tie_word_embeddings", False)}


def total_params(s: dict) -> int:
    h, i = s["hidden"], s["inter"]
    layer = h * s["q"] * 2 + h * s["kv"] * 2 + 3 * h * i + 2 * h
    return s["layers"] * layer + s["vocab"] * h * (1 if s["tied"] else 2) + h


def trainable_params(cfg: TrainConfig, s: dict) -> int:
    """Parameters the method updates."""
    m, h, i = cfg.method, s["hidden"], s["inter"]
    if m.method == "full":
        return total_params(s)
    if m.method == "ptuning":  # PEFT's MLP prompt encoder plus the virtual token embeddings
        e = m.encoder_hidden_size
        return m.num_virtual_tokens * h + h * e + e * e + e * h + 2 * e + h
    dims = {"q_proj": (h, s["q"]), "k_proj": (h, s["kv"]), "v_proj": (h, s["kv"]), "o_proj": (s["q"], h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    targets = dims if m.lora_target == "all-linear" else [t.strip() for t in m.lora_target.split(",")]
    return s["layers"] * sum(m.lora_r * sum(dims[t]) for t in targets if t in dims)


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

    table = store.read(data, version)
    n = table.num_rows
    if not n:
        return 0
    if n > sample:
        table = table.take([i * n // sample for i in range(sample)])
    lengths = stats.token_lengths(table, stats.token_counter(model))
    return round(sum(min(x, cutoff) for x in lengths) * n / len(lengths))


def estimate(cfg: TrainConfig, tokens_per_epoch: int | None = None) -> dict:
    """Trainable/total parameters, peak memory (GB) and seconds per step and for the run.

    Args:
        cfg: the run's config.
        tokens_per_epoch: the dataset's tokens after the cutoff, when known.
    Returns:
        {"trainable", "total", "memory_gb", "tokens_per_step", "seconds_per_step", "steps", "seconds"}.
    """
    s = _shape(cfg.model.model)
    total, train = total_params(s), trainable_params(cfg, s)
    t = cfg.training
    tokens_step = t.batch_size * t.grad_accum * cfg.data.cutoff_len
    weight_bytes = 4 if cfg.model.dtype == "float32" else 2
    if cfg.method.method == "qlora":
        weight_bytes = 0.55
    # weights + (weight, grad, 2 Adam moments) per trainable param + activations kept for backward
    act = t.batch_size * cfg.data.cutoff_len * s["layers"] * (16 * s["hidden"] + 4 * s["inter"]) * 4
    mem = total * weight_bytes + train * 16 + act + 0.6e9  # 0.6 GB: torch + transformers themselves
    speed = measured_speed(cfg.model.model) or CPU_TOKENS_PER_S_135M * 135e6 / max(total, 1)
    steps = t.max_steps
    if not steps and tokens_per_epoch:
        steps = max(1, round(t.epochs * tokens_per_epoch / tokens_step))
    sec_step = tokens_step / speed
    return {"trainable": train, "total": total, "memory_gb": round(mem / 1e9, 2), "tokens_per_step": tokens_step,
            "seconds_per_step": round(sec_step, 1), "steps": steps or None,
            "seconds": round(sec_step * steps) if steps else None}
