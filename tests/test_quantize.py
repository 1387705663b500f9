"""GGUF types beyond Q8_0 through llama.cpp's quantiser (the optional `llamacpp` extra), and one line without it."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

import tiny_model as tiny_builder
from cli_run import one_line_error, tunelab
from tunelab.cli import main as cli
from tunelab.errors import TuneLabError
from tunelab.train import runs
from tunelab.train.config import TrainConfig

HAS_LLAMACPP = importlib.util.find_spec("llama_cpp") is not None
needs_llamacpp = pytest.mark.skipif(not HAS_LLAMACPP, reason="llama-cpp-python not installed (optional llamacpp extra)")


def _run(model: str) -> str:
    """A 2-step LoRA run on the tiny dataset, trained in this process."""
    tiny_builder.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 128,
             "learning_rate": 5e-2, "lora_target": "all-linear"})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    return run_id


@pytest.fixture
def run_id(workspace, tiny_model):
    return _run(tiny_model)


def test_a_quantised_type_without_the_extra_is_one_line_naming_it(workspace, run_id, tmp_path, monkeypatch):
    """Holds with or without llama-cpp-python: a llama_cpp that cannot be imported stands in for a missing one."""
    blocker = tmp_path / "blocked" / "llama_cpp"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(blocker.parent), os.environ.get("PYTHONPATH")) if p)}
    proc = tunelab(workspace, "export", run_id, "small.gguf", "--gguf", "--gguf-type", "q4_k_m", env=env)
    line = one_line_error(proc)
    assert "--gguf-type q4_k_m needs llama.cpp's quantiser" in line and "make install-llamacpp" in line
    proc = tunelab(workspace, "export", run_id, "for-ollama", "--ollama", "--gguf-type", "q6_k", env=env)
    assert "make install-llamacpp" in one_line_error(proc)
    assert not list(workspace.glob("exports/*"))  # refused before merging: nothing written
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # the same refusal from the Python API
    from tunelab.train.export import export

    with pytest.raises(TuneLabError, match="needs llama.cpp's quantiser"):
        export(run_id, "x.gguf", gguf=True, gguf_type="q5_k_m")
    with pytest.raises(TuneLabError, match="unknown GGUF type 'q3_k'"):
        export(run_id, "x.gguf", gguf=True, gguf_type="q3_k")


@pytest.mark.slow
@needs_llamacpp
def test_quantised_types_hold_their_blocks_and_run_in_llama_cpp(workspace, tmp_path):
    """A width-256 llama (rows split into 256-value k-quant blocks): each type's tensors, size order, an answer."""
    import gguf

    from tunelab.models.generation import GenerationSettings, clear_cache, get_backend

    model = str(tiny_builder.build(tmp_path / "w256", width=256, init_range=0.5))
    run_id = _run(model)
    sizes, want = {}, {"q4_0": "Q4_0", "q4_k_m": "Q4_K", "q5_k_m": "Q5_K", "q6_k": "Q6_K", "q8_0": "Q8_0", "f32": "F32"}
    conv = [{"role": "user", "content": "What colour is the sky?"}]
    for qtype, block in want.items():
        assert cli(["export", run_id, f"{qtype}.gguf", "--gguf", "--gguf-type", qtype]) == 0
        path = workspace / "exports" / f"{qtype}.gguf"
        sizes[qtype] = path.stat().st_size
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
        assert types["blk.0.attn_q.weight"] == block, (qtype, types)
        assert types["blk.0.attn_norm.weight"] == "F32"
        if qtype == "q4_k_m":  # the "M" mix: llama.cpp keeps some attn_v/ffn_down tensors at Q6_K
            assert "Q6_K" in {types[f"blk.{i}.{n}.weight"] for i in (0, 1) for n in ("attn_v", "ffn_down")}
        clear_cache()
        gen = get_backend(f"llamacpp:{path}").chat([conv], GenerationSettings(max_new_tokens=6))[0]
        assert gen.completion_tokens > 0 and gen.text
    assert not list((workspace / "exports").glob(".*"))  # no temporary f32 or partial files left
    assert sizes["q4_0"] < sizes["q5_k_m"] < sizes["q6_k"] < sizes["q8_0"] < sizes["f32"]
    assert sizes["q4_k_m"] < sizes["q5_k_m"]


@pytest.mark.slow
@needs_llamacpp
def test_ollama_folder_with_a_q4_k_m_gguf(workspace, run_id):
    import gguf

    assert cli(["export", run_id, "olla", "--ollama", "--gguf-type", "q4_k_m"]) == 0
    folder = workspace / "exports" / "olla"
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "model.gguf"]
    assert "FROM ./model.gguf" in (folder / "Modelfile").read_text(encoding="utf-8")
    reader = gguf.GGUFReader(str(folder / "model.gguf"))
    field = reader.fields["general.file_type"]
    assert int(field.parts[field.data[0]][0]) == gguf.LlamaFileType.MOSTLY_Q4_K_M
