"""Where a report's numbers come from: models (revision or file hash), data versions, seed, software, machine.

`collect` runs once in the report's own process when it starts (hashing weights takes a second;
the page that made the report must not wait for it) and is saved as the report folder's
provenance.json. `for_report` reads it back, or for a report made before it existed, rebuilds
what can still be known without hashing anything.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import yaml

from tunelab import jobs
from tunelab.data import store
from tunelab.evals import stats
from tunelab.jsonio import read_json

FILE = "provenance.json"
PACKAGES = ("tunelab", "torch", "transformers", "peft", "scipy", "statsmodels", "numpy", "sacrebleu", "rouge-score",
            "llama-cpp-python")
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".json", ".model", ".txt", ".jinja")


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Installed versions of TuneLab and the libraries its numbers depend on (None: not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def tunelab_commit() -> str | None:
    """The git commit of the TuneLab source in use, when it runs from a checkout."""
    src = Path(__file__).resolve().parents[3]
    if not (src / ".git").exists():
        return None
    try:
        res = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def machine() -> dict:
    """CPU model, cores, memory, OS and Python of this machine (and the GPU when torch is loaded and sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "python": platform.python_version(),
           "hostname": platform.node()}
    try:
        import psutil

        out["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    import sys

    torch = sys.modules.get("torch")  # only when already loaded: importing it here costs seconds
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_hash(path: str) -> str | None:
    """sha256 over a model file, or over a folder's weight and config files (names and contents)."""
    p = Path(path) if path else None
    if p is None or not p.exists():
        return None
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES
                   and "checkpoints" not in f.relative_to(p).parts and "merged" not in f.relative_to(p).parts)
    for f in files:
        h.update(f"{f.relative_to(p)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest() if files else None


def _model(entry: dict, hashed: bool) -> dict:
    ref = entry.get("ref") or {}
    extra = ref.get("extra") or {}
    out = {"name": entry.get("name"), "kind": ref.get("kind"), "source": ref.get("source") or ref.get("path"),
           "revision": ref.get("revision") or extra.get("revision") or extra.get("commit")}
    if extra.get("hub_id"):  # a Hub model (added, or named directly by id): the exact commit its weights came from
        out["hub_id"] = extra["hub_id"]
    if ref.get("kind") == "openai":
        out["endpoint_model"] = ref.get("remote_model")
    elif ref.get("kind") == "run":
        base = ref.get("base") or {}
        out["base"] = {"name": base.get("name"), "source": base.get("source") or base.get("path"),
                       "revision": base.get("revision") or (base.get("extra") or {}).get("revision")}
        if (base.get("extra") or {}).get("hub_id"):
            out["base"]["hub_id"] = base["extra"]["hub_id"]
        run_dir = jobs.job_dir("runs", entry.get("name"))
        conf = _run_config(run_dir)
        out["run"] = {"id": entry.get("name"), "seed": (conf.get("training") or {}).get("seed"),
                      "method": (conf.get("method") or {}).get("method"), "data": (conf.get("data") or {}).get("data"),
                      "data_version": (conf.get("data") or {}).get("data_version")}
        if hashed:
            out["adapter_sha256"] = weights_hash(ref.get("adapter") or "")
            if base.get("path"):
                out["base"]["sha256"] = weights_hash(base["path"])
    if hashed and ref.get("kind") in ("gguf", "hf"):
        out["sha256"] = weights_hash(ref.get("path") or "")
    return out


def _run_config(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _dataset(name: str, version: int | None) -> dict:
    out: dict = {"name": name, "version": version}
    try:
        entry = next((v for v in store.manifest(name)["versions"] if v["version"] == version), None)
    except Exception:  # noqa: BLE001 - a deleted dataset still leaves the report readable
        entry = None
    if entry:
        out.update({k: entry.get(k) for k in ("records", "op", "parent", "created") if k in entry})
    return out


def collect(report_dir: Path, conf: dict, hashed: bool = True) -> dict:
    """The provenance of a report from its config.json (see the module docstring).

    Returns:
        {"report", "created", "models": [{"name", "kind", "source", "revision" (a Hub model's commit sha),
         "hub_id" (Hub models), "sha256" | "run" ...}],
         "data": {"name", "version", "records", "op", "parent"}, "inputs_sha256" (the examples as
         evaluated), "generation", "seed": {"bootstrap", "resamples", "permutations", "generation"},
         "versions": {package: version}, "tunelab_commit", "machine"}.
    """
    inputs = Path(report_dir) / "inputs.jsonl"
    gen = conf.get("generation") or {}
    return {
        "report": Path(report_dir).name,
        "created": time.time(),
        "models": [_model(m, hashed) for m in conf.get("model_refs") or []],
        "data": _dataset(conf.get("data"), conf.get("version")),
        "inputs_sha256": sha256_file(inputs) if inputs.exists() else None,
        "generation": gen,
        "seed": {"bootstrap": stats.SEED, "resamples": stats.N_RESAMPLES, "permutations": stats.N_PERMUTATIONS,
                 "corpus_resamples": stats.N_CORPUS_RESAMPLES, "corpus_permutations": stats.N_CORPUS_PERMUTATIONS,
                 "generation": gen.get("seed") if gen.get("temperature") else "greedy (temperature 0)"},
        "run": (conf.get("meta") or {}).get("run"),
        "versions": versions(),
        "tunelab_commit": tunelab_commit(),
        "machine": machine(),
        "recorded": True,
    }


def for_report(report_dir: Path, conf: dict) -> dict:
    """The saved provenance, or (an older report, or one not started yet) what is known without hashing."""
    saved = read_json(Path(report_dir) / FILE)
    if saved:
        return saved
    # Software and machine are those of whoever reads the report now, not of the run: left out.
    return dict(collect(report_dir, conf, hashed=False), versions=None, tunelab_commit=None, machine=None,
                created=None, recorded=False)
