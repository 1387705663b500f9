"""Dependencies run one way: data <- models <- train / evals / synth <- serve, ui (<- pages).

Every `import` of every module under src/tunelab is read with `ast` (lazy imports inside functions
count too: they are dependencies all the same), then the layer rules and the absence of a cycle
between packages are checked. The command modules (`tunelab.cli`, `*/cli.py`, `app_cli`) sit on
top: they wire each area into the `tunelab` command and may import anything below them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

SRC = Path(__import__("tunelab").__file__).resolve().parent
# Root modules over several layers (imported by the CLI and the pages); every other root module
# (errors, jsonio, workspace, jobs, i18n, migrations...) is a plain helper any layer may use, and
# imports nothing above itself (checked below).
TOP_ROOT = {"tunelab.samples", "tunelab.workflow"}
# What each layer may not import.
FORBIDDEN = {
    "base": {"data", "models", "train", "evals", "synth", "serve", "ui", "cli"},
    "data": {"models", "train", "evals", "synth", "serve", "ui", "cli"},
    "models": {"train", "evals", "synth", "serve", "ui", "cli"},
    "train": {"serve", "ui", "cli"},
    "evals": {"serve", "ui", "cli"},
    "synth": {"serve", "ui", "cli"},
    "serve": {"ui", "cli"},
    "ui": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The layer a tunelab module belongs to."""
    parts = module.split(".")
    if parts[-1] in ("cli", "app_cli", "sweep_cli", "__main__") or module == "tunelab":
        return "cli"
    if module in TOP_ROOT:
        return "top"
    if len(parts) >= 2 and parts[1] in FORBIDDEN:
        return parts[1]
    return "base"


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file, relative imports resolved, lazy ones included."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node.lineno))
            # `from tunelab import jobs` / `from tunelab.models import convert` name submodules
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return out


def _tunelab_module(name: str, known: set[str]) -> str | None:
    """The tunelab module an import name refers to (the longest known prefix), or None."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """(module -> tunelab modules it imports, module -> its streamlit imports)."""
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    known = set(files)
    deps: dict[str, set[str]] = {}
    streamlit: dict[str, list[str]] = {}
    for mod, path in files.items():
        deps[mod] = set()
        for name, line in imports(path):
            if name == "streamlit" or name.startswith("streamlit."):
                streamlit.setdefault(mod, []).append(f"{path.relative_to(SRC.parent)}:{line}")
            target = _tunelab_module(name, known) if name.startswith("tunelab") else None
            if target and target != mod and target != "tunelab":
                deps[mod].add(target)
    return deps, streamlit


def test_layer_rules():
    deps, _ = graph()
    assert len(deps) > 40  # the walk really saw the package
    broken = sorted(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)})"
                    for mod, targets in deps.items() for dep in targets
                    if layer(dep) in FORBIDDEN.get(layer(mod), set()))
    assert not broken, "imports against the layer order:\n" + "\n".join(broken)


def test_only_ui_imports_streamlit():
    _, streamlit = graph()
    outside = sorted(site for mod, sites in streamlit.items() if layer(mod) != "ui" for site in sites)
    assert not outside, f"streamlit imported outside tunelab.ui: {outside}"


def test_package_graph_has_no_cycle():
    deps, _ = graph()
    edges: dict[str, set[str]] = {}
    for mod, targets in deps.items():
        for dep in targets:
            if layer(mod) != layer(dep):
                edges.setdefault(layer(mod), set()).add(layer(dep))
    # Depth-first search for a back edge; report the first cycle found as a path.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if not state.get(nxt):
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if not state.get(start):
            cycle = visit(start, [])
            assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


@pytest.mark.parametrize("module,expected", [
    ("tunelab.data.stats", "data"), ("tunelab.models.convert", "models"), ("tunelab.data.cli", "cli"),
    ("tunelab.jobs", "base"), ("tunelab.ui.chat", "ui"), ("tunelab.train.export", "train"),
    ("tunelab.workflow", "top"), ("tunelab.errors", "base"),
])
def test_layer_of(module, expected):
    assert layer(module) == expected


def test_relative_and_lazy_imports_are_seen(tmp_path, monkeypatch):
    """The walker must see an import hidden inside a function and a relative one."""
    pkg = tmp_path / "tunelab" / "models"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from tunelab.train.export import run_gguf\n\nfrom ..data import stats\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "tunelab")
    assert {n for n, _ in imports(f)} >= {"tunelab.train.export", "tunelab.train.export.run_gguf",
                                           "tunelab.data", "tunelab.data.stats"}


# ---------------------------------------------------------------- one to_messages: Stats counts what training counts

TOKEN_RECORDS = [
    {"id": "a", "instruction": "Translate to French", "input": "good morning, my friend", "output": "bonjour, mon ami"},
    {"id": "b", "system": "Answer briefly.", "history": [["Name a fruit.", "An apple."]],
     "instruction": "And a vegetable?", "input": "", "output": "A carrot."},
    {"id": "c", "instruction": "“一寸光阴一寸金”这个成语是什么意思？", "input": "请用一句话回答",
     "output": "时间非常宝贵，要珍惜。", "system": "你是一个乐于助人的助手。"},
    {"id": "d", "instruction": "", "input": "Only an input here.", "output": "ok"},
]


def test_stats_counts_exactly_the_tokens_training_sees(workspace, tiny_model):
    """Today's regression: Stats joined instruction and input with one newline and counted the whole
    text in one piece; training joins them with a blank line and encodes prompt and answer apart."""
    from tunelab.data import stats, store
    from tunelab.data.schema import to_table
    from tunelab.models.loading import load_tokenizer
    from tunelab.train import data as tdata

    tok = load_tokenizer(tiny_model)  # SmolLM2's tokenizer and chat template
    trained = [len(ids) for ids, _ in tdata.encode(tok, TOKEN_RECORDS, cutoff=100_000).examples]
    store.commit("tok", to_table(TOKEN_RECORDS), "import")
    counted = stats.token_lengths(store.read("tok"), stats.hf_counter(tok))
    assert counted == trained
    assert stats.stats("tok", tokenizer=stats.hf_counter(tok))["tokens"]["max"] == max(trained)


def test_one_record_to_messages_for_every_caller():
    from tunelab.data.messages import to_messages
    from tunelab.models.generation import records_to_messages

    rec = TOKEN_RECORDS[0]
    assert records_to_messages(rec) == to_messages(rec)
    assert to_messages(rec)[-1]["content"] == "Translate to French\n\ngood morning, my friend"
    assert to_messages(rec, with_output=True)[-1] == {"role": "assistant", "content": "bonjour, mon ami"}


# ---------------------------------------------------------------- one model-size estimator

def _real_counts(folder) -> tuple[int, int]:
    """(parameters of the model as transformers loads it, trainable parameters of TuneLab's default LoRA)."""
    from tunelab.train import sft
    from tunelab.train.config import TrainConfig

    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": str(folder), "data": "x"})
    model = sft.load_model(cfg, str(folder), None, "cpu")
    total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("tied", [True, False])
def test_both_estimators_count_the_real_parameters(workspace, tmp_path, tied):
    """Compare's size table and the Train page agree with each other and with the model itself,
    tied or untied, and count TuneLab's default LoRA (r=8 on every linear layer, not just q and v)."""
    import tiny_model as builder

    from tunelab.evals import cost
    from tunelab.train.config import TrainConfig
    from tunelab.train.estimate import estimate

    folder = builder.build(tmp_path / f"tiny-{tied}", width=64, tied=tied)
    total, lora = _real_counts(folder)
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": str(folder), "data": "x"})
    train = estimate(cfg)
    compare = cost.estimate(str(folder))
    assert train["total"] == compare["params"] == total
    assert train["trainable"] == compare["lora_params"] == lora
    # Without weights at hand (config.json alone, tie_word_embeddings left to the model type's
    # default, as some hubs ship it), the formula still gives the same numbers.
    bare = tmp_path / f"bare-{tied}"
    bare.mkdir()
    config = json.loads((folder / "config.json").read_text())
    if not tied:
        config.pop("tie_word_embeddings")  # LlamaConfig's own default is untied
    (bare / "config.json").write_text(json.dumps(config))
    cfg.set({"model": str(bare)})
    assert estimate(cfg)["total"] == cost.estimate(str(bare))["params"] == total


def test_gguf_size_comes_from_its_header_without_converting(workspace, tmp_path, monkeypatch):
    """A GGUF model's size is read from its header: the estimate converts nothing (it used to write
    the whole model as safetensors, 20-50 s, just to read config.json)."""
    from tunelab.evals import cost
    from tunelab.models.loading import hf_dir

    real_folder = hf_dir("smollm2-135m-instruct")  # the shared converted copy, for the real count
    total, lora = _real_counts(real_folder)
    empty_cache = tmp_path / "cache"
    monkeypatch.setenv("TUNELAB_MODEL_CACHE", str(empty_cache))
    est = cost.estimate("smollm2-135m-instruct")
    assert not any(empty_cache.rglob("config.json")), "the estimate converted the GGUF model"
    assert est["params"] == total == 134_515_008 and est["lora_params"] == lora

    from tunelab.models.size import model_size

    assert model_size("smollm2-135m-instruct").geometry.tied


def test_estimator_default_is_the_training_default():
    from tunelab.models import size
    from tunelab.train.config import MethodArgs

    assert (size.DEFAULT_LORA_R, size.DEFAULT_LORA_TARGET) == (MethodArgs().lora_r, MethodArgs().lora_target)


# ---------------------------------------------------------------- a LoRA run generates from a merged cached copy

def _lora_run(base: str, run_id: str, step: int, seed: int) -> str:
    """A run folder as training leaves it: a (random, non-zero) LoRA adapter and its output.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab import workspace
    from tunelab.models import run_output
    from tunelab.models.loading import load_tokenizer

    d = workspace.subdir("runs") / run_id
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("{}\n")
    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(d / "adapter")
    load_tokenizer(base).save_pretrained(d / "adapter")
    run_output.write(d, base, "lora", step, {"init_adapter": None, "data": "x", "data_version": 1})
    return run_id


@pytest.mark.slow
def test_a_lora_run_generates_from_its_merged_copy_with_the_same_answers(workspace, tiny_model):
    import torch

    from tunelab.models import generation
    from tunelab.models.generation import GenerationSettings, TransformersBackend
    from tunelab.models.loading import load_model
    from tunelab.models.registry import resolve

    run = _lora_run(tiny_model, "lora-run", step=4, seed=1)
    generation.clear_cache()
    backend = TransformersBackend(resolve(run), device="cpu")
    assert not hasattr(backend.model, "peft_config")  # plain weights: no adapter matmuls per token
    (folder,) = (workspace / "runs" / run / "merged").glob("step-4-*")
    assert (folder / "model.safetensors").exists()

    # The same greedy tokens as base + unmerged adapter.
    conv = [[{"role": "user", "content": "What colour is the sky?"}], [{"role": "user", "content": "天空是什么颜色？"}]]
    settings = GenerationSettings(max_new_tokens=12)
    peft_model, tok = load_model(run, device="cpu")
    for c in conv:
        ids = backend._encode(backend.format_prompt(c), templated=True)
        with torch.inference_mode():
            want = peft_model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                       eos_token_id=backend.eos_ids, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        assert backend._batch([ids], settings) == [want]

    # Reused on a later load; a new checkpoint replaces it.
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    TransformersBackend(resolve(run), device="cpu")
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    _lora_run(tiny_model, "lora-run", step=6, seed=2)
    TransformersBackend(resolve(run), device="cpu")
    assert [p.name.split("-")[1] for p in (workspace / "runs" / run / "merged").glob("step-*")] == ["6"]
