"""What each model costs on this machine: the Models page's table, from the one estimator.

Memory comes from train/estimate.py's memory_bytes (calibrated on measured peak RSS, bench/RESULTS.md)
and models/size.py's geometry; time from the same tokens/s the Train page's estimate uses (an earlier
run's measured speed when there is one, else the 2-core calibration scaled by size). Like LLaMA-Factory's
hardware table, but for the free memory of this machine, and with the reason for each verdict.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.models.registry import list_models
from tunelab.models.size import model_size
from tunelab.train.config import TrainConfig
from tunelab.train.estimate import (CPU_TOKENS_PER_S_135M, free_memory_bytes, measured_speed, memory_bytes,
                                    trainable_params)

METHODS = ("lora", "qlora", "full")
EXAMPLES = 1000
TOKENS_PER_EXAMPLE = 256  # the default cutoff: an upper bound for the time of 1,000 examples
# Greedy decoding, 2 cores, measured on SmolLM2-135M (docs ENVIRONMENT.md): transformers float32 and
# llama.cpp on its Q4 GGUF. Decoding reads every weight per token, so it scales with 1 / parameters.
GEN_TOKENS_PER_S_135M = {"transformers": 14.3, "llama.cpp": 100.0}
GB = 1e9


def disk_bytes(path: str) -> int:
    """Bytes of a model file or folder (0 for an endpoint)."""
    p = Path(path) if path else None
    if p is None or not p.exists():
        return 0
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def catalog() -> list[dict]:
    """The registry's models and the runs with saved weights, with what the Models page shows: params,
    architecture, license, template, revision (a run: its step) and disk size."""
    from tunelab.models.registry import resolve
    from tunelab.models.templates import template_name

    rows = []
    for m in list_models():
        path = m.get("path") or ""
        if not path and m["kind"] == "gguf":  # a shipped model's file (Gemma is assembled on first use)
            try:
                path = resolve(m["name"]).path
            except Exception:  # noqa: BLE001 - a package not installed: shown without a size
                path = ""
        rows.append({"name": m["name"], "params": m["params"], "architecture": m.get("architecture", ""),
                     "license": m.get("license", ""), "template": template_name(m), "revision": m.get("revision", ""),
                     "source": m["source"], "kind": m["kind"], "disk_bytes": disk_bytes(path)})
    return rows + _runs({r["name"]: r for r in rows})


def _runs(by_name: dict[str, dict], limit: int = 20) -> list[dict]:
    """Training runs with saved weights (newest first): their base's facts, their own template and size."""
    from tunelab import jobs
    from tunelab.models import run_output
    from tunelab.models.templates import template_name

    out = []
    for st in jobs.list_jobs("runs")[:limit]:
        d = jobs.job_dir("runs", st["id"])
        meta = run_output.read(d)
        if not meta:
            continue
        folder = d / (meta.get("adapter_dir") or meta.get("model_dir") or "")
        base = by_name.get(meta["base"], {})
        out.append({"name": st["id"], "params": base.get("params"), "architecture": base.get("architecture", ""),
                    "license": base.get("license", ""), "template": template_name({"path": str(folder)}),
                    "revision": f"step {meta['step']}", "source": f"run on {meta['base']} ({meta['method']})",
                    "kind": "run", "disk_bytes": disk_bytes(str(folder))})
    return out


def _verdict(method: str, need: float, need_ck: float, free: float | None, device: str) -> tuple[bool | None, str]:
    if method == "qlora" and device != "cuda":
        return False, "QLoRA's 4-bit weights need a CUDA GPU (bitsandbytes); this machine has none"
    if free is None:
        return None, "free memory unknown"
    if need <= free:
        return True, f"about {need / GB:.1f} GB of the {free / GB:.1f} GB free"
    if need_ck <= free:
        return True, (f"with gradient checkpointing: about {need_ck / GB:.1f} GB of the {free / GB:.1f} GB free "
                      f"({need / GB:.1f} GB without)")
    return False, f"needs about {need_ck / GB:.1f} GB even with gradient checkpointing; {free / GB:.1f} GB free"


def costs(model: str, free: float | None = None, device: str | None = None) -> dict:
    """Memory, time per 1,000 examples and fit for LoRA / QLoRA / full, and generation tokens/s.

    Args:
        model: a MODEL argument with local weights.
        free: free memory in bytes (measured when not given).
        device: "cpu" or "cuda" (detected when not given).
    Returns:
        {"model", "params", "device", "free_gb", "training": [{"method", "memory_gb", "minutes_per_1000",
        "fits", "reason"}], "generation": {"transformers": tokens/s, "llama.cpp": tokens/s or None}}.
    """
    size = model_size(model)
    geo, total = size.geometry, size.params + size.adapter_params
    device = device or device_type()
    free = free_memory_bytes(device) if free is None else free
    speed = measured_speed(model) or CPU_TOKENS_PER_S_135M * 135e6 / max(total, 1)
    rows = []
    for method in METHODS:
        cfg = TrainConfig.for_method(method)
        cfg.set({"model": model, "batch_size": 4, "cutoff_len": TOKENS_PER_EXAMPLE})
        train = trainable_params(cfg, geo, total)
        need = memory_bytes(cfg, geo, total, train, False, device)
        need_ck = memory_bytes(cfg, geo, total, train, True, device)
        fits, reason = _verdict(method, need, need_ck, free, device)
        rows.append({"method": method, "memory_gb": round(need / GB, 2), "memory_checkpointed_gb": round(need_ck / GB, 2),
                     "minutes_per_1000": round(EXAMPLES * TOKENS_PER_EXAMPLE / speed / 60, 1),
                     "fits": fits, "reason": reason})
    gen = {k: round(v * 135e6 / max(total, 1), 1) for k, v in GEN_TOKENS_PER_S_135M.items()}
    return {"model": model, "params": total, "device": device, "free_gb": None if free is None else round(free / GB, 1),
            "training": rows, "generation": gen}
