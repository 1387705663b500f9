"""Dependencies run one way, module by module, with no circle.

Every `import` in every module under src/tunelab, pages/ and app.py is read with `ast` (imports inside
functions count: a lazy import is a dependency all the same). Each module sits in one layer:

    pages (+ app.py) -> ui -> top (workflow, samples, workflow_cli) -> train, synth -> evals, serve
        -> models -> data -> base (errors, jsonio, workspace, jobs, outputs, i18n, migrations, text,
           urls, and `tunelab.cli`: the argparse helpers every command module uses)

`ALLOWED` says exactly which layers each layer may import (its own always). A package's command module
(`data/cli.py`, `train/sweep_cli.py`...) sits in its package's layer, like any other module there.
Then the module graph must have no circle at all (not only between packages).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

SRC = Path(__import__("tunelab").__file__).resolve().parent
ROOT = SRC.parent.parent
PAGES = ROOT / "pages"
TOP = {"tunelab.workflow", "tunelab.samples", "tunelab.workflow_cli"}
PACKAGES = ("ui", "train", "synth", "evals", "serve", "models", "data")
_BELOW_MODELS = {"data", "base"}
# The layers each layer may import, besides itself: exactly the intended direction.
ALLOWED = {
    "pages": {"ui", "top", "train", "synth", "evals", "serve", "models", "data", "base"},
    "ui": {"top", "train", "synth", "evals", "serve", "models", "data", "base"},
    "top": {"train", "synth", "evals", "serve", "models", "data", "base"},
    "train": {"evals", "models", "data", "base"},  # train launches its before/after report (evals.auto)
    "synth": {"evals", "models", "data", "base"},  # synth scores and filters with evals.metrics
    "evals": {"models", "data", "base"},
    "serve": {"models", "data", "base"},
    "models": _BELOW_MODELS,
    "data": {"base"},
    "base": set(),
}
# KNOWN TRAIN CYCLES, TO DELETE: the trainer's circles are being broken on another branch (issue 27:
# config -> recipe -> estimate -> loop, runs/tracking below the loop). These edges run back up and are
# left out of the cycle check until that branch is merged; then delete them (the test must still pass).
KNOWN_TRAIN_CYCLES: set[tuple[str, str]] = set()  # none left: train/setup.py and train/curves.py broke them


def module_name(path: Path) -> str:
    """tunelab.data.stats for src/tunelab/data/stats.py, pages.train for pages/train.py, app for app.py."""
    path = path.resolve()
    if path.is_relative_to(SRC):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if path.parent == PAGES:
        return f"pages.{path.stem}"
    return path.stem


def layer(module: str) -> str:
    """The layer a module belongs to."""
    parts = module.split(".")
    if parts[0] != "tunelab":
        return "pages"  # pages/*.py and app.py
    if module in TOP:
        return "top"
    if len(parts) >= 2 and parts[1] in PACKAGES:
        return parts[1]
    return "base"


def imports(path: Path, package: str | None = None) -> list[tuple[str, int]]:
    """(imported name, line) for every import in a file, relative ones resolved, lazy ones included.

    `from a.b import c` gives `a.b.c` (a submodule, when it is one) and `a.b`."""
    me = module_name(path)
    if package is None:
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
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
            out.append((base, node.lineno))
    return out


def _target(name: str, known: set[str]) -> str | None:
    """The module an import name refers to (the longest known prefix), or None."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def sources() -> dict[str, Path]:
    files = [*SRC.rglob("*.py"), *PAGES.glob("*.py"), ROOT / "app.py"]
    return {module_name(p): p for p in files if p.exists()}


def graph() -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """(module -> {module it imports: line}, module -> its streamlit import sites).

    `from tunelab.models import convert` is an edge to tunelab.models.convert only: the package's
    __init__ runs for any of its submodules, so it is not counted as an edge of its own."""
    files = sources()
    known = set(files)
    deps: dict[str, dict[str, int]] = {}
    streamlit: dict[str, list[str]] = {}
    for mod, path in files.items():
        deps[mod] = {}
        names = imports(path)
        from_bases: dict[int, set[str]] = {}
        from_names: dict[tuple[int, str], list[str]] = {}
        for name, line in names:
            base = name.rpartition(".")[0]
            if (base, line) in names:
                from_bases.setdefault(line, set()).add(base)
                from_names.setdefault((line, base), []).append(name)
        for name, line in names:
            if name == "streamlit" or name.startswith("streamlit."):
                streamlit.setdefault(mod, []).append(f"{path.relative_to(ROOT)}:{line}")
            if not name.startswith("tunelab"):
                continue
            target = _target(name, known)
            # `from pkg import sub` names pkg.sub and pkg: pkg counts only when the statement also
            # imports a name that is not a submodule (`from tunelab.data.formats import Columns`).
            if target == name and name in from_bases.get(line, ()) and all(
                    n in known for n in from_names.get((line, name), ())):
                continue
            if target and target != mod and target != "tunelab":
                deps[mod].setdefault(target, line)
    return deps, streamlit


def upward(deps: dict[str, dict[str, int]]) -> list[str]:
    """Every import from a layer to one it may not import."""
    return sorted(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)}), line {line}"
                  for mod, targets in deps.items() for dep, line in targets.items()
                  if layer(dep) != layer(mod) and layer(dep) not in ALLOWED[layer(mod)])


def cycles(deps: dict[str, dict[str, int]], ignore: set[tuple[str, str]] = frozenset()) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if (v, w) in ignore:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_every_module():
    deps, _ = graph()
    assert len(deps) > 120
    assert {"pages.train", "app", "tunelab.data.formats.parquet", "tunelab.ui.chat"} <= set(deps)


def test_every_import_runs_downwards():
    deps, _ = graph()
    broken = upward(deps)
    assert not broken, "imports against the layer order:\n" + "\n".join(broken)


def test_the_module_graph_has_no_cycle():
    deps, _ = graph()
    found = cycles(deps, KNOWN_TRAIN_CYCLES)
    lines = [" <-> ".join(c) + "\n    " + "; ".join(f"{a} -> {b} (line {deps[a][b]})" for a in c for b in c
                                               if b in deps[a]) for c in found]
    assert not found, "import circles:\n" + "\n".join(lines)


def test_known_train_cycles_are_only_train_edges_that_exist():
    deps, _ = graph()
    for a, b in KNOWN_TRAIN_CYCLES:
        assert layer(a) == layer(b) == "train" and b in deps[a], (a, b)


def test_only_ui_and_pages_import_streamlit():
    _, streamlit = graph()
    outside = sorted(site for mod, sites in streamlit.items() if layer(mod) not in ("ui", "pages") for site in sites)
    assert not outside, f"streamlit imported outside tunelab.ui and pages/: {outside}"


def test_the_checks_catch_a_circle_and_an_upward_import():
    """The detectors themselves, on a small graph: a lazy circle and a data module importing models."""
    deps = {"tunelab.data.a": {"tunelab.data.b": 1}, "tunelab.data.b": {"tunelab.data.c": 3},
            "tunelab.data.c": {"tunelab.data.a": 9, "tunelab.models.x": 4}, "tunelab.models.x": {}}
    assert cycles(deps) == [["tunelab.data.a", "tunelab.data.b", "tunelab.data.c"]]
    assert cycles(deps, {("tunelab.data.c", "tunelab.data.a")}) == []
    assert upward(deps) == ["tunelab.data.c (data) imports tunelab.models.x (models), line 4"]


@pytest.mark.parametrize("module,expected", [
    ("tunelab.data.stats", "data"), ("tunelab.models.convert", "models"), ("tunelab.data.cli", "data"),
    ("tunelab.jobs", "base"), ("tunelab.ui.chat", "ui"), ("tunelab.train.export", "train"),
    ("tunelab.workflow", "top"), ("tunelab.workflow_cli", "top"), ("tunelab.errors", "base"),
    ("tunelab.cli", "base"), ("pages.train", "pages"), ("app", "pages"), ("tunelab.data.formats.csvfile", "data"),
])
def test_layer_of(module, expected):
    assert layer(module) == expected


def test_relative_and_lazy_imports_are_seen(tmp_path):
    """The walker must see an import hidden inside a function and a relative one."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from tunelab.train.export import run_gguf\n\nfrom ..data import stats\n")
    assert {n for n, _ in imports(f, package="tunelab.models")} >= {
        "tunelab.train.export", "tunelab.train.export.run_gguf", "tunelab.data", "tunelab.data.stats"}


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
