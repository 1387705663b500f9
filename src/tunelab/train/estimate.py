"""Before launch: trainable parameters, memory and time of a run, from the model's headers alone.

Sizes come from models/size.py, the same estimator as the Compare page's size/cost table (a GGUF
base is read from its header, never converted for an estimate).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from tunelab import jobs
from tunelab.jsonio import read_jsonl
from tunelab.models.size import Geometry, model_size
from tunelab.train.config import TrainConfig
from tunelab.train.preference import SEQS_PER_EXAMPLE

# Measured: the default LoRA run on SmolLM2-135M (bf16 frozen weights, fused norms/MLPs), 2 quiet cores of this
# project's CI machines, bench/peers.py (30 steps, 2026-12-06): 356-365 tokens/s on an AMD EPYC (AVX-512 BF16),
# 540-571 on an Intel Xeon (AMX); 155 before those levers. Near the slower machine (a first estimate errs
# long rather than short), scaled by model size; after one run of a model its own measured median replaces it (measured_speed).
CPU_TOKENS_PER_S_135M = 400.0

# Peak memory of a run, calibrated on SmolLM2-135M LoRA runs (batch 4 x 256 tokens, bf16 autocast over bf16
# frozen weights, train/fused.py's norms and MLPs; peak RSS (VmHWM) of the run process in bench/peers.py,
# 2026-12-06: 1866 MiB without checkpointing, 1320 with; the estimate below: 1879 and 1457).
RUNTIME_BYTES = 0.55e9  # Python, torch, transformers, PEFT, the tokenizer and the encoded data
# Bytes each token keeps for the backward pass per decoder layer, per (hidden, intermediate) unit:
# bf16 autocast (measured; 44, 11 before the frozen embedding/norms went bf16 and the norms/MLP were fused),
# float32 compute (not yet measured here).
ACT_AMP = (35, 9)
ACT_FP32 = (16 * 4, 4 * 4)
# With checkpointing each layer keeps its inputs and what the recompute needs (measured: about 32 bytes per
# hidden unit, not the 4 of the input alone), plus one layer's activations while it is recomputed.
ACT_CHECKPOINTED = 32
TIGHT = 0.5  # gradient checkpointing turns on (auto) when a run would need more than this share of free memory


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


def _amp(cfg: TrainConfig, device_type: str) -> bool:
    """Whether the run computes under bf16 autocast (frozen weights then held in bf16)."""
    from tunelab.train.setup import native_bf16_cpu

    t = cfg.training
    if t.mixed_precision == "no" or cfg.model.dtype != "float32" or cfg.method.method == "qlora":
        return False
    return t.mixed_precision == "bf16" or device_type == "cuda" or native_bf16_cpu()


def memory_bytes(cfg: TrainConfig, geo: Geometry, total: int, train: int, checkpointing: bool,
                 device_type: str = "cpu") -> float:
    """Peak memory of a run in bytes: runtime, weights, trainable state, kept activations, the loss chunk.

    Args:
        cfg: the run's config (dtype, method, batch_size, cutoff_len, mixed_precision).
        geo: the model's geometry; total: its parameter count; train: trainable parameters.
        checkpointing: whether decoder layers are recomputed in the backward pass.
        device_type: "cpu" or "cuda" (a GPU holds no Python runtime; its bf16 autocast is assumed).
    """
    from tunelab.train.config import tuning

    t = cfg.training
    amp = _amp(cfg, device_type)
    embed = geo.vocab * geo.hidden
    if cfg.method.method == "qlora":
        weights = total * 0.55 + embed * 4
    elif cfg.model.dtype != "float32":
        weights = total * 2
    elif amp and tuning(cfg) != "full":  # every frozen weight stored in bf16 (setup.cast_frozen)
        weights = total * 2
    else:
        weights = total * 4
    # A preference example puts 2 sequences through the model with gradients (chosen, rejected), KTO 1: its
    # answer tokens' log-probs come a chunk of logits at a time (train/logps.py), like SFT's loss below.
    tokens = t.batch_size * cfg.data.cutoff_len * SEQS_PER_EXAMPLE.get(cfg.method.method, 1)
    per_h, per_i = ACT_AMP if amp else ACT_FP32
    layer = tokens * (per_h * geo.hidden + per_i * geo.intermediate)  # one decoder layer's kept activations
    act = tokens * geo.layers * geo.hidden * ACT_CHECKPOINTED + layer if checkpointing else geo.layers * layer
    loss = 3 * 4 * min(2**23, tokens * geo.vocab)  # one chunk of logits and their gradient
    runtime = 0 if device_type == "cuda" else RUNTIME_BYTES
    return runtime + weights + train * 16 + act + loss


def free_memory_bytes(device_type: str = "cpu") -> float | None:
    """Memory this machine (or container, or GPU) can still give a run, or None when unknown."""
    if device_type == "cuda":
        import torch

        return float(torch.cuda.mem_get_info()[0])
    import psutil

    free = psutil.virtual_memory().available
    try:  # a container's own limit (cgroup v2) may be far below the machine's
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            free = min(free or float("inf"), int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def checkpointing(cfg: TrainConfig, device_type: str = "cpu", free: float | None = None) -> tuple[bool, str]:
    """Whether the run uses gradient checkpointing, and why (auto: on when memory is tight).

    Args:
        cfg: the run's config; training.gradient_checkpointing is auto, on or off.
        device_type: where the run trains ("cpu" or "cuda").
        free: free memory in bytes (measured when not given).
    Returns:
        (on, the reason in one sentence).
    """
    setting = cfg.training.gradient_checkpointing
    if setting != "auto":
        picked = cfg.recipe.get("gradient_checkpointing") or {}
        why = picked.get("why") if picked.get("source") == "recipe" and picked.get("value") == setting else None
        return setting == "on", f"{setting}: {why}" if why else f"{setting} (set by you)"
    try:
        size = model_size(cfg.model.model)
    except Exception as exc:  # an unreadable model fails later with its own message
        return False, f"off: the model's size is unknown ({type(exc).__name__})"
    train = trainable_params(cfg, size.geometry, size.params)
    need = memory_bytes(cfg, size.geometry, size.params, train, False, device_type)
    free = free_memory_bytes(device_type) if free is None else free
    if free is None:
        return False, "off: free memory unknown"
    if need <= TIGHT * free:
        return False, f"off: about {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free"
    with_ck = memory_bytes(cfg, size.geometry, size.params, train, True, device_type)
    return True, (f"on: without it the run would need about {need / 1e9:.1f} GB, more than {TIGHT:.0%} of the "
                  f"{free / 1e9:.1f} GB free; with it about {with_ck / 1e9:.1f} GB, for about 25% more time per step")


def estimate(cfg: TrainConfig, tokens_per_epoch: int | None = None) -> dict:
    """Trainable/total parameters, peak memory (GB) and seconds per step and for the run.

    Args:
        cfg: the run's config.
        tokens_per_epoch: the dataset's tokens after the cutoff, when known.
    Returns:
        {"trainable", "total", "memory_gb", "checkpointing", "tokens_per_step", "seconds_per_step", "steps",
        "seconds"}; memory_gb is the peak with gradient checkpointing as the run would choose it.
    """
    size = model_size(cfg.model.model)
    s, total = size.geometry, size.params
    train = trainable_params(cfg, s, total)
    t = cfg.training
    tokens_step = t.batch_size * t.grad_accum * cfg.data.cutoff_len
    on, _ = checkpointing(cfg)
    mem = memory_bytes(cfg, s, total, train, on)
    speed = measured_speed(cfg.model.model) or CPU_TOKENS_PER_S_135M * 135e6 / max(total, 1)
    steps = t.max_steps
    if not steps and tokens_per_epoch:
        steps = max(1, round(t.epochs * tokens_per_epoch / tokens_step))
    sec_step = tokens_step / speed
    return {"trainable": train, "total": total, "memory_gb": round(mem / 1e9, 2), "checkpointing": on,
            "tokens_per_step": tokens_step,
            "seconds_per_step": round(sec_step, 1), "steps": steps or None,
            "seconds": round(sec_step * steps) if steps else None}
