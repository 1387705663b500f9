"""Model registry, resolver, chat templates and loading the shipped models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunelab.errors import TuneLabError
from tunelab.jsonio import write_json
from tunelab.models import registry
from tunelab.models.generation import get_backend
from tunelab.models.loading import has_native_template, load_tokenizer

SMOL = "smollm2-135m-instruct"


def _cli(*args, env_home=None):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if env_home:
        env["TUNELAB_HOME"] = str(env_home)
    return subprocess.run([sys.executable, "-m", "tunelab", *args], capture_output=True, text=True, env=env, timeout=120)


def test_models_list_json_lists_shipped(workspace):
    r = _cli("models", "list", "--json", env_home=workspace)
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert set(models) >= {SMOL, "gemma3-270m"}
    assert models[SMOL]["chat_template"] is True and models["gemma3-270m"]["chat_template"] is False
    assert set(models[SMOL]) == {"name", "params", "source", "chat_template", "revision", "architecture", "license",
                                 "template"} and models[SMOL]["params"] > 1e8


def test_add_and_resolve(workspace, tiny_model):
    r = _cli("models", "add", "tiny", tiny_model, env_home=workspace)
    assert r.returncode == 0, r.stderr
    assert "tiny" in [m["name"] for m in registry.list_models()]
    ref = registry.resolve("tiny")
    assert ref.kind == "hf" and ref.path == tiny_model
    registry.add_model("remote", "http://127.0.0.1:9/v1", remote_model="gpt-x")
    ref = registry.resolve("remote")
    assert ref.kind == "openai" and ref.base_url == "http://127.0.0.1:9/v1" and ref.remote_model == "gpt-x"
    ref = registry.resolve("openai:http://127.0.0.1:9/v1#other")
    assert ref.base_url == "http://127.0.0.1:9/v1" and ref.remote_model == "other"
    assert registry.resolve(tiny_model).kind == "hf"


@pytest.mark.parametrize("args, message", [
    (("models", "add", "x", "/no/such/folder"), "neither"),
    (("models", "add", "bad/name", "/tmp"), "invalid model name"),
    (("models", "add", SMOL, "/tmp"), "shipped model name"),
    (("models", "add", "hub", "org/some-model"), "HF_HUB_OFFLINE=1 turns downloads off; set HF_HUB_OFFLINE=0"),
    (("chat", "no-such-model", "hi"), "unknown model"),
])
def test_user_errors_are_one_line(workspace, args, message):
    r = _cli(*args, env_home=workspace)
    assert r.returncode == 1 and message in r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_run_id_resolves_to_base_plus_adapter(workspace):
    run = workspace / "runs" / "run-1"
    run.mkdir(parents=True)
    with pytest.raises(TuneLabError, match="no saved model"):
        registry.resolve("run-1")
    write_json(run / "output.json", {"base": SMOL, "method": "lora", "adapter_dir": "adapter", "model_dir": None})
    ref = registry.resolve("run-1")
    assert ref.kind == "run" and ref.base.name == SMOL and ref.adapter == str(run / "adapter")


def test_chat_template_system_and_history(tiny_model, workspace):
    backend = get_backend(f"local:{tiny_model}")
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]
    text = backend.format_prompt(msgs)
    # ChatML, in order, ending with an open assistant turn.
    assert text == ("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")


def test_fallback_template_for_base_model():
    tok = load_tokenizer("gemma3-270m")
    assert not has_native_template(tok)
    text = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                    {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == f"S\n\n### Instruction:\nQ\n\n### Response:\nA{tok.eos_token}\n\n### Instruction:\nQ2\n\n### Response:\n"
    assert has_native_template(load_tokenizer(SMOL))


@pytest.mark.slow
def test_smollm2_loads_and_answers(workspace):
    import time

    t0 = time.perf_counter()
    backend = get_backend(f"local:{SMOL}")
    assert time.perf_counter() - t0 < 60  # from the safetensors cache, not a fresh GGUF conversion
    assert sum(p.numel() for p in backend.model.parameters()) == registry.SHIPPED[SMOL]["params"]
    from tunelab.models.generation import GenerationSettings

    g = backend.chat([[{"role": "user", "content": "What is the capital of France?"}]], GenerationSettings(max_new_tokens=16))[0]
    assert "Paris" in g.text


@pytest.mark.slow
def test_gemma_loads_with_fallback_template(workspace):
    from tunelab.models.generation import GenerationSettings

    backend = get_backend("local:gemma3-270m")
    assert backend.fallback_template
    g = backend.complete(["The capital of France is"], GenerationSettings(max_new_tokens=8))[0]
    assert g.completion_tokens > 0 and g.text.strip()
