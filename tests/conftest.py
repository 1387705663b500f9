"""Shared fixtures: every test gets its own empty workspace; converted models are shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Converting a shipped GGUF model takes 20-50 s: convert once per machine, not once per test.
os.environ.setdefault("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fresh_data_caches():
    """Clear st.cache_data between tests: its keys are (dataset, version), and every test has its
    own workspace holding a different `toy` v1 — one dashboard process only ever has one workspace."""
    yield
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty TUNELAB_HOME for one test."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("TUNELAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A folder with a 2-layer random Llama plus SmolLM2's tokenizer and chat template (loads in ~1 s).

    For tests that need the real code paths (templates, padding, streaming, serving) but not good text.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      initializer_range=0.5)  # large weights give decisive argmaxes: fp32 noise cannot flip greedy output
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
