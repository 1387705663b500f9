"""Named chat templates for base models (issue 24): each renders a conversation, detection from the
tokenizer's special tokens, and a run trained with --template keeps it for chat and GGUF export."""

from __future__ import annotations

import shutil

import pytest

import tiny_model
from tunelab.errors import TuneLabError
from tunelab.models import templates

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
         {"role": "assistant", "content": "An apple."}, {"role": "user", "content": "And a vegetable?"}]
MARKS = {"chatml": "<|im_start|>assistant\n", "qwen": "<|im_start|>assistant\n",
         "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n", "gemma": "<start_of_turn>model\n",
         "mistral": "[/INST]", "phi3": "<|assistant|>\n", "alpaca": "### Response:\n", "plain": "And a vegetable?\n\n"}


@pytest.fixture(scope="module")
def tok():
    from tunelab.models.loading import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.parametrize("name", list(templates.TEMPLATES))
def test_each_template_renders_every_turn_and_the_generation_prompt(tok, name):
    saved = tok.chat_template
    try:
        tok.chat_template = templates.get(name)
        text = tok.apply_chat_template(CONVO, tokenize=False, add_generation_prompt=True)
    finally:
        tok.chat_template = saved
    assert all(m["content"] in text for m in CONVO)
    assert text.rstrip().endswith(MARKS[name].rstrip())
    assert text.index("Name a fruit.") < text.index("An apple.") < text.index("And a vegetable?")
    if name in ("gemma", "mistral"):  # no system role: the system prompt opens the first user turn
        assert text.index("Be brief.") < text.index("Name a fruit.")
    assert templates.family(templates.get(name)) == name


def test_detection_from_the_tokenizer_and_refusals(tok):
    assert templates.detect(tok) == "chatml" and templates.detect(tok, "qwen2") == "qwen"
    assert templates.family(tok.chat_template) == "chatml"  # SmolLM2's own template is ChatML
    with pytest.raises(TuneLabError, match="unknown chat template 'vicuna'"):
        templates.get("vicuna")


@pytest.mark.slow
def test_gemma_base_detects_gemma(tok):
    from tunelab.models.loading import load_tokenizer

    gemma = load_tokenizer("gemma3-270m")  # the shipped base model: no template of its own
    assert templates.detect(gemma, "gemma3_text") == "gemma"
    with pytest.raises(TuneLabError, match="no chat template of its own"):
        templates.apply(gemma, "native")


@pytest.mark.slow
def test_run_keeps_its_template_for_chat_and_gguf(workspace, tmp_path, capfd):
    import gguf

    from tunelab.cli import main as cli
    from tunelab.models.generation import get_backend
    from tunelab.models.loading import load_tokenizer
    from tunelab.train import runs
    from tunelab.train.config import TrainConfig

    base = tiny_model.build(tmp_path / "base")
    (base / "chat_template.jinja").unlink()  # a base model: no chat template
    assert templates.template_name({"path": str(base)}) == "alpaca"
    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": str(base), "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "template": "llama3"})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    assert "chat template: llama3" in capfd.readouterr().err
    assert load_tokenizer(run_id).chat_template == templates.get("llama3")
    backend = get_backend(run_id)
    prompt = backend.tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                             add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert cli(["export", run_id, "g", "--gguf"]) == 0
    reader = gguf.GGUFReader(str(workspace / "exports" / "g" / f"{run_id}.gguf"))
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == templates.get("llama3")
    shutil.rmtree(tmp_path / "base")
