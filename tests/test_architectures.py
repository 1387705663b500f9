"""Every common architecture trained, merged and exported (issue 24): tiny random Llama, Mistral, Qwen2,
Qwen3, Gemma2, Gemma3 (text) and Phi-3 models built from configs (no downloads, SmolLM2's tokenizer)
go through the registry, 2 LoRA steps on all linear layers, a merge and a GGUF file; the merged model
and the GGUF (read back by transformers' own GGUF loader) answer with base + adapter's greedy tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tiny_model
from tunelab.cli import main as cli
from tunelab.train import runs
from tunelab.train.config import TrainConfig

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.5)
# Each architecture's config class and what its tiny config needs beyond SMALL. Fields transformers'
# GGUF loader does not read back (Qwen3's head_dim, Gemma's soft-capping) keep their defaults.
ARCHS = {
    "llama": ("LlamaConfig", {"head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "mistral": ("MistralConfig", {"head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "qwen2": ("Qwen2Config", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "qwen3": ("Qwen3Config", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "gemma2": ("Gemma2Config", {"head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 16}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    "phi3": ("Phi3Config", {}, {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
}


def build(model_type: str, target: Path) -> Path:
    """save_pretrained of a randomly initialised tiny model of one architecture, with SmolLM2's tokenizer."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    cls, extra, _ = ARCHS[model_type]
    cfg = getattr(transformers, cls)(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id, tie_word_embeddings=model_type.startswith("gemma"),
                                     **SMALL, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(target)
    tok.save_pretrained(target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("model_type", list(ARCHS))
def test_lora_merge_gguf_give_base_plus_adapter_tokens(workspace, tmp_path, model_type):
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import load_model
    from tunelab.models.registry import add_model, resolve

    folder = build(model_type, tmp_path / model_type)
    added = add_model("tiny", str(folder))
    ref = resolve("tiny")
    assert ref.kind == "hf" and ref.params and added["architecture"].lower().startswith(model_type.split("_")[0][:5])

    tiny_model.dataset()
    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "tiny", "data": "tiny", "max_steps": 2, "save_steps": 2, "batch_size": 2, "cutoff_len": 64,
             "learning_rate": 5e-2, "lora_target": "all-linear"})
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    assert [m["step"] for m in runs.metrics(run_id) if "loss" in m][-1] == 2
    adapter = json.loads((runs.run_dir(run_id) / "output.json").read_text())["adapter_dir"]
    saved = json.loads((runs.run_dir(run_id) / adapter / "adapter_config.json").read_text())["target_modules"]
    targets = {t.rsplit(".", 1)[-1] for t in saved}
    assert targets == ARCHS[model_type][2]  # every linear layer of the blocks, whatever the architecture calls them

    assert cli(["export", run_id, "out", "--merge", "--gguf", "--json"]) == 0
    out = workspace / "exports" / "out"
    tuned, tok = load_model(run_id, device="cpu")
    base = AutoModelForCausalLM.from_pretrained(str(folder))
    prompt = tok.apply_chat_template([{"role": "user", "content": "What colour is the sky?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        want = tuned.generate(**prompt, **gen)[0].tolist()
        moved = (tuned(**prompt).logits - base(**prompt).logits).abs().max().item()
        assert moved > 1e-3  # the adapter changes the answer's logits: the comparisons below test something
        merged = AutoModelForCausalLM.from_pretrained(str(out))
        assert not any("lora" in k for k in merged.state_dict())
        assert merged.generate(**prompt, **gen)[0].tolist() == want
        from_gguf = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=f"{run_id}.gguf")
        assert from_gguf.config.model_type == merged.config.model_type or model_type == "mistral"  # llama.cpp: llama
        assert from_gguf.generate(**prompt, **gen)[0].tolist() == want
