"""Size and cost of a candidate model: parameters, disk, and estimated memory to run and to tune.

Everything here is an ESTIMATE from the model's config.json, in the spirit of LLaMA-Factory's
hardware table; real use adds framework overhead (CUDA context, allocator slack, tokenizer).
P = parameters, T = trainable LoRA parameters, b = bytes per weight at the precision
(fp32 4, bf16 2, int4 0.5 plus ~3% for NF4 block constants):

- run:   P*b + KV cache for `context` tokens (2 * layers * kv_heads * head_dim * context * 2 bytes)
- full:  P*16 (fp32 weights 4 + grads 4 + AdamW m and v 8) + activations
- LoRA:  P*b(bf16) + T*16 + activations            (base frozen; only the adapter has grads/Adam)
- QLoRA: P*b(int4) + T*16 + activations
- activations (Korthikanti et al. 2022, 16-bit, no recomputation):
         layers * seq * batch * hidden * (34 + 5 * heads * seq / hidden) bytes
T assumes LoRA r=8 on q_proj and v_proj (TuneLab's default). Endpoint models show "n/a".
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from tunelab.jsonio import read_json
from tunelab.models.registry import ModelRef, resolve

BYTES = {"fp32": 4.0, "bf16": 2.0, "int4": 0.5 * 1.03}
GB = 1024**3
NA = "n/a"


@dataclass
class Geometry:
    """The config numbers the estimates need."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, cfg: dict) -> "Geometry":
        cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model
        heads = cfg["num_attention_heads"]
        return cls(
            hidden=cfg["hidden_size"],
            layers=cfg["num_hidden_layers"],
            heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            intermediate=cfg.get("intermediate_size") or 4 * cfg["hidden_size"],
            vocab=cfg["vocab_size"],
            tied=bool(cfg.get("tie_word_embeddings", True)),
        )

    def params(self) -> int:
        """Parameter count of a Llama-style decoder (gated MLP, RMSNorm), used when no weights are at hand."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        layer = self.hidden * q + 2 * self.hidden * kv + q * self.hidden + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * layer + self.hidden

    def lora_params(self, r: int = 8) -> int:
        """Trainable parameters of LoRA rank r on q_proj and v_proj."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return self.layers * r * ((self.hidden + q) + (self.hidden + kv))

    def kv_cache_bytes(self, context: int) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * context * 2.0

    def activation_bytes(self, seq: int, batch: int) -> float:
        return self.layers * seq * batch * self.hidden * (34 + 5 * self.heads * seq / self.hidden)


def safetensors_params(folder: Path) -> int | None:
    """Exact parameter count from the safetensors headers (8-byte length + JSON), without loading."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name != "__metadata__":
                count = 1
                for d in t["shape"]:
                    count *= d
                total += count
    return total


def disk_bytes(path: str | Path) -> int:
    """Size of a file, or of every file under a folder."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _local_facts(ref: ModelRef) -> tuple[Geometry, int, int, int]:
    """(geometry, total params, extra adapter params, disk bytes) for a local model."""
    from tunelab.models.loading import hf_dir

    folder = hf_dir(ref)
    geo = Geometry.from_config(read_json(folder / "config.json") or {})
    params = ref.params or safetensors_params(folder) or geo.params()
    if ref.kind == "run":
        adapter = safetensors_params(Path(ref.adapter)) or 0
        return geo, params + adapter, adapter, disk_bytes(ref.adapter)
    return geo, params, 0, disk_bytes(ref.path)


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
    lora = geo.lora_params()
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
        "estimate": f"from config.json: seq {seq}, batch {batch}, KV cache {context} tokens, LoRA r=8 on q,v",
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
