"""Weights on disk, below the registry and the loaders: where converted models are cached, the
safetensors-only rule, and parameter counts read from safetensors headers (no tensor is loaded)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from tunelab import workspace
from tunelab.errors import TuneLabError


def model_cache() -> Path:
    """Where converted models live: $TUNELAB_MODEL_CACHE (shared by test workspaces) or the workspace."""
    env = os.environ.get("TUNELAB_MODEL_CACHE")
    d = Path(env).expanduser().resolve() if env else workspace.subdir("models") / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


# Weights in these formats are Python pickles: loading them can run any code hidden in the file.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors(folder: str | Path, adapter: bool = False) -> Path:
    """Refuse a model (or PEFT adapter) folder whose weights are not safetensors; returns the folder.

    Pickled weights (`pytorch_model.bin`, `adapter_model.bin`...) are never loaded, even with
    torch's restricted unpickler: a workspace or downloaded folder is not trusted to hold plain tensors.
    """
    folder = Path(folder)
    weights = [folder / "adapter_model.safetensors"] if adapter else list(folder.glob("*.safetensors"))
    if any(p.is_file() for p in weights):
        return folder
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickled:
        raise TuneLabError(f"the folder {folder} holds pickled weights ({pickled[0]}), which can run code when loaded; "
                           f"only safetensors are loaded: convert it first")
    raise TuneLabError(f"the folder {folder} has no safetensors weights")


def safetensors_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from every safetensors header in a folder (8-byte length + JSON), without loading."""
    shapes = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        shapes.update({k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return shapes


def safetensors_params(folder: Path) -> int | None:
    """Exact parameter count from the safetensors headers, or None without safetensors files."""
    shapes = safetensors_shapes(folder)
    return sum(numel(s) for s in shapes.values()) if shapes else None


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
