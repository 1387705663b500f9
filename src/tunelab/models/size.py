"""A model's size without loading it: its geometry and exact parameter count from file headers.

One estimator for the Compare page's size/cost table (evals/cost.py) and the Train page's
before-launch estimate (train/estimate.py). Counts come from the weights' headers where there are
weights (the safetensors JSON header; the GGUF header's tensor shapes, read without converting the
model), and from the config formula otherwise. Whether the output layer shares the embedding
matrix ("tied") is read the same way: no `lm_head.weight` / `output.weight` tensor means tied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TuneLabError
from tunelab.jsonio import read_json
from tunelab.models.registry import ModelRef, resolve
from tunelab.models.weights import numel as _numel
from tunelab.models.weights import safetensors_params, safetensors_shapes  # noqa: F401  (size.X callers)

# TuneLab's LoRA default (train/config.py MethodArgs; tests/test_layers.py holds the two equal).
DEFAULT_LORA_R = 8
DEFAULT_LORA_TARGET = "all-linear"
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Geometry:
    """The shape numbers the estimates need."""

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
        """From a config.json; a missing tie_word_embeddings takes the model type's own default."""
        cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model
        heads = cfg["num_attention_heads"]
        tied = cfg.get("tie_word_embeddings")
        if tied is None:
            tied = _default_tied(cfg.get("model_type", ""))
        return cls(
            hidden=cfg["hidden_size"],
            layers=cfg["num_hidden_layers"],
            heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            intermediate=cfg.get("intermediate_size") or 4 * cfg["hidden_size"],
            vocab=cfg["vocab_size"],
            tied=bool(tied),
        )

    @classmethod
    def from_gguf(cls, meta: dict, tensors: dict[str, tuple[int, ...]]) -> "Geometry":
        """From a GGUF header (llama.cpp's `<arch>.*` keys and the tensor shapes)."""
        arch = meta["general.architecture"]
        hidden = int(meta[f"{arch}.embedding_length"])
        heads = int(meta[f"{arch}.attention.head_count"])
        kv = meta.get(f"{arch}.attention.head_count_kv", heads)
        ffn = meta.get(f"{arch}.feed_forward_length", 4 * hidden)
        embd = tensors.get("token_embd.weight")
        vocab = meta.get(f"{arch}.vocab_size") or (max(embd) if embd else meta.get("tokenizer.ggml.tokens", 0))
        return cls(
            hidden=hidden,
            layers=int(meta[f"{arch}.block_count"]),
            heads=heads,
            kv_heads=int(kv if not isinstance(kv, list) else max(kv)),  # per-layer lists: the largest
            head_dim=int(meta.get(f"{arch}.attention.key_length") or hidden // heads),
            intermediate=int(ffn if not isinstance(ffn, list) else max(ffn)),
            vocab=int(vocab),
            tied="output.weight" not in tensors,
        )

    def params(self) -> int:
        """Parameter count of a Llama-style decoder (gated MLP, RMSNorm), used when no weights are at hand."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        layer = self.hidden * q + 2 * self.hidden * kv + q * self.hidden + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * layer + self.hidden

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder block."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def lora_params(self, r: int = DEFAULT_LORA_R, target: str = DEFAULT_LORA_TARGET) -> int:
        """Trainable parameters of LoRA rank r on the target layers ("all-linear" or "q_proj,v_proj")."""
        dims = self.linear_shapes()
        names = LINEAR if target == "all-linear" else [t.strip() for t in target.split(",")]
        return self.layers * sum(r * sum(dims[t]) for t in names if t in dims)

    def kv_cache_bytes(self, context: int) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * context * 2.0

    def activation_bytes(self, seq: int, batch: int) -> float:
        return self.layers * seq * batch * self.hidden * (34 + 5 * self.heads * seq / self.hidden)


def _default_tied(model_type: str) -> bool:
    """The model type's own default (Llama: untied, Gemma: tied); transformers' base default otherwise."""
    try:
        from transformers import AutoConfig

        return bool(AutoConfig.for_model(model_type).tie_word_embeddings)
    except (ImportError, ValueError, KeyError):
        return True


# GGUF value types (gguf.GGUFValueType): struct format of each fixed-size scalar.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def gguf_header(path: str | Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """(metadata, tensor name -> shape) from a GGUF file's header, reading no weights.

    Large arrays (the tokenizer's vocabulary and merges) are skipped and stored as their length:
    gguf.GGUFReader parses every one of them (4 s for SmolLM2, 19 s for Gemma's 262k tokens);
    this reads SmolLM2's header in about 0.1 s. Shapes are in PyTorch order (outermost first).
    """
    with open(path, "rb") as fh:
        def read(fmt: str):
            size = struct.calcsize(fmt)
            return struct.unpack(fmt, fh.read(size))[0]

        def string() -> str:
            return fh.read(read("<Q")).decode("utf-8", "replace")

        def value(vtype: int):
            if vtype == _STRING:
                return string()
            if vtype == _ARRAY:
                itype, count = read("<I"), read("<Q")
                if count > 64:  # skip: only its length is kept
                    if itype == _STRING:
                        for _ in range(count):
                            fh.seek(read("<Q"), 1)
                    else:
                        fh.seek(struct.calcsize(_SCALARS[itype]) * count, 1)
                    return count
                return [value(itype) for _ in range(count)]
            return read(_SCALARS[vtype])

        if fh.read(4) != b"GGUF":
            raise TuneLabError(f"{path} is not a GGUF file")
        version = read("<I")
        if version < 2:
            raise TuneLabError(f"{path} is a GGUF version {version} file; only version 2 and later are read")
        n_tensors, n_kv = read("<Q"), read("<Q")
        meta = {}
        for _ in range(n_kv):
            key = string()
            meta[key] = value(read("<I"))
        tensors = {}
        for _ in range(n_tensors):
            name = string()
            dims = [read("<Q") for _ in range(read("<I"))]
            read("<I"), read("<Q")  # type, offset
            tensors[name] = tuple(reversed(dims))  # GGUF lists the innermost dimension first
    return meta, tensors


@dataclass
class Size:
    """What the estimators need about one local model."""

    geometry: Geometry
    params: int  # the model's own parameters (base weights for a run)
    adapter_params: int  # a run's adapter parameters (0 otherwise)
    exact: bool  # params counted from weight headers rather than the config formula


def model_size(model: str | ModelRef) -> Size:
    """Geometry and parameter count of a local model, from headers (a GGUF is never converted).

    Args:
        model: a MODEL argument or ModelRef (registry name, HF folder, .gguf, run id).
    Returns:
        A Size; a run reports its base's geometry and parameters plus its adapter's.
    """
    ref = resolve(model) if isinstance(model, str) else model
    if ref.kind == "openai":
        raise TuneLabError(f"{ref.name} is an HTTP endpoint; it has no local weights")
    if ref.kind == "run":
        base = model_size(ref.base)
        return Size(base.geometry, base.params, safetensors_params(Path(ref.adapter)) or 0, base.exact)
    if ref.kind == "gguf":
        meta, tensors = gguf_header(ref.path)
        return Size(Geometry.from_gguf(meta, tensors), sum(_numel(s) for s in tensors.values()), 0, True)
    folder = Path(ref.path)
    geo = Geometry.from_config(read_json(folder / "config.json") or {})
    shapes = safetensors_shapes(folder)
    if shapes:  # the weights say whether the output layer is tied, whatever the config claims
        geo.tied = not any(k.endswith("lm_head.weight") for k in shapes)
        return Size(geo, sum(_numel(s) for s in shapes.values()), 0, True)
    return Size(geo, geo.params(), 0, False)
