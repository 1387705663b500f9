"""Size and cost of a candidate model: parameters, disk, and estimated memory to run and to tune.

Everything here is an ESTIMATE from the model's geometry (models/size.py: the weights' headers, a
GGUF's included, so nothing is converted), in the spirit of LLaMA-Factory's hardware table; real use
adds framework overhead (CUDA context, allocator slack, tokenizer).
P = parameters, T = trainable LoRA parameters, b = bytes per weight at the precision
(fp32 4, bf16 2, int4 0.5 plus ~3% for NF4 block constants):

- run:   P*b + KV cache for `context` tokens (2 * layers * kv_heads * head_dim * context * 2 bytes)
- full:  P*16 (fp32 weights 4 + grads 4 + AdamW m and v 8) + activations
- LoRA:  P*b(bf16) + T*16 + activations            (base frozen; only the adapter has grads/Adam)
- QLoRA: P*b(int4) + T*16 + activations
- activations (Korthikanti et al. 2022, 16-bit, no recomputation):
         layers * seq * batch * hidden * (34 + 5 * heads * seq / hidden) bytes
T is TuneLab's LoRA default (r=8 on every linear layer), the same count the Train page shows.
Endpoint models show "n/a".
"""

from __future__ import annotations

from pathlib import Path

from tunelab.models.registry import ModelRef, resolve
from tunelab.models.size import DEFAULT_LORA_R, DEFAULT_LORA_TARGET, Geometry, model_size, safetensors_params

__all__ = ["Geometry", "disk_bytes", "estimate", "safetensors_params", "table_row"]

BYTES = {"fp32": 4.0, "bf16": 2.0, "int4": 0.5 * 1.03}
GB = 1024**3
NA = "n/a"


def disk_bytes(path: str | Path) -> int:
    """Size of a file, or of every file under a folder."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _local_facts(ref: ModelRef) -> tuple[Geometry, int, int, int]:
    """(geometry, total params, extra adapter params, disk bytes) for a local model."""
    size = model_size(ref)
    if ref.kind == "run":
        return size.geometry, size.params + size.adapter_params, size.adapter_params, disk_bytes(ref.adapter)
    return size.geometry, size.params, 0, disk_bytes(ref.path)


def estimate(model: str | ModelRef, seq: int = 512, batch: int = 1, context: int = 2048) -> dict:
    """Size and estimated memory for one model.

    Args:
        model: a MODEL argument or ModelRef.
        seq: training sequence length for the activation estimate.
        batch: training micro-batch size.
        context: tokens of KV cache counted for running the model.
    Returns:
        {"name", "kind", "params", "disk_gb", "run_gb": {"fp32", "bf16", "int4"},
         "train_gb": {"full", "lora", "qlora"}, "lora_params", "estimate": str};
        numbers are None for endpoint models.
    """
    ref = resolve(model) if isinstance(model, str) else model
    name = model if isinstance(model, str) else ref.name
    if ref.kind == "openai":
        return {"name": name, "kind": "endpoint", "params": ref.params, "disk_gb": None,
                "run_gb": dict.fromkeys(("fp32", "bf16", "int4")),
                "train_gb": dict.fromkeys(("full", "lora", "qlora")), "lora_params": None,
                "estimate": "hosted endpoint: no local weights"}
    geo, params, _, disk = _local_facts(ref)
    acts = geo.activation_bytes(seq, batch)
    lora = geo.lora_params(DEFAULT_LORA_R, DEFAULT_LORA_TARGET)
    kv = geo.kv_cache_bytes(context)
    return {
        "name": name,
        "kind": ref.kind,
        "params": params,
        "disk_gb": disk / GB,
        "run_gb": {k: (params * b + kv) / GB for k, b in BYTES.items()},
        "train_gb": {
            "full": (params * 16 + acts) / GB,
            "lora": (params * BYTES["bf16"] + lora * 16 + acts) / GB,
            "qlora": (params * BYTES["int4"] + lora * 16 + acts) / GB,
        },
        "lora_params": lora,
        "estimate": f"from the model's headers: seq {seq}, batch {batch}, KV cache {context} tokens, "
                    f"LoRA r={DEFAULT_LORA_R} on {DEFAULT_LORA_TARGET} (TuneLab's default)",
    }


def table_row(est: dict) -> dict:
    """One flat, human-readable row of the size/cost table ("n/a" where nothing is known)."""

    def gb(v):
        return NA if v is None else f"{v:.2f} GB"

    params = est["params"]
    row = {
        "model": est["name"],
        "params": NA if not params else (f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"),
        "disk": gb(est["disk_gb"]),
    }
    row.update({f"run {k}": gb(v) for k, v in est["run_gb"].items()})
    row.update({f"tune {k}": gb(v) for k, v in est["train_gb"].items()})
    return row
