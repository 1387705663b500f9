"""train/fused.py against its oracle, the model's own autograd: the frozen RMSNorm and the SiLU-gated MLP
that keep less for the backward pass give the model's own loss bit for bit and its gradients within
rounding, keep fewer bytes, and leave alone what they do not know (Gemma's `1 + weight` norm, a GELU MLP).
Also train/runs.omp_env: OpenMP's spin only when the cores are idle at launch."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from test_loss_oracle import COMMON, _batch, _configs
from tunelab.train import runs
from tunelab.train.fused import fuse


def _lora(conf, seed=0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    conf.initializer_range = 0.05
    model = AutoModelForCausalLM.from_config(conf, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                             lora_dropout=0.0))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    return model.train()


def _loss_grads(model, batch, amp=None):
    import torch

    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.zero_grad()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            loss = model(**inputs, labels=batch["labels"], use_cache=False).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss), grads, sum(v for k, v in saved.items() if k not in weights)


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "mistral", "gemma3"])
def test_fused_layers_match_the_models_own_autograd(name):
    conf = _configs()[name][0]
    model = _lora(conf)
    fused = copy.deepcopy(model)
    n = fuse(fused)
    batch = _batch(False)
    want, got = _loss_grads(model, batch), _loss_grads(fused, batch)
    if name == "gemma3":  # `1 + weight` norms and a GELU MLP: left to the model
        assert n == 0 and got[0] == want[0] and all(g.equal(want[1][k]) for k, g in got[1].items())
        return
    kinds = [type(m).__name__ for m in fused.modules()]
    assert n == sum(k.startswith("Fused") for k in kinds) >= 3 * conf.num_hidden_layers + 1  # 2 norms + MLP a layer
    assert not [k for k in kinds if k.endswith(("RMSNorm", "MLP")) and not k.startswith("Fused")]
    assert got[0] == want[0]  # the forward is the model's own operations: bit for bit
    for k in want[1]:
        import torch

        torch.testing.assert_close(got[1][k], want[1][k], rtol=1e-4, atol=1e-6, msg=k)
    assert got[2] < want[2]  # fewer bytes kept for the backward


def test_fused_layers_under_bf16_autocast_on_frozen_bf16_weights():
    """The training setup (setup.cast_frozen then fuse): same loss, gradients as close as bf16 allows."""
    import torch

    from tunelab.train.setup import cast_frozen

    model = _lora(_configs()["llama"][0])
    cast_frozen(model, torch.bfloat16)
    fused = copy.deepcopy(model)
    assert fuse(fused) > 0
    batch = _batch(False)
    want, got = _loss_grads(model, batch, torch.bfloat16), _loss_grads(fused, batch, torch.bfloat16)
    assert got[0] == want[0]
    a = torch.cat([g.flatten().float() for g in want[1].values()])
    b = torch.cat([g.flatten().float() for g in got[1].values()])
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.999
    assert got[2] < 0.9 * want[2]  # 13% here (eager attention on a 32-wide model); SmolLM2 533 -> 376 MiB


def test_a_trainable_norm_is_left_to_the_model():
    """Full fine-tuning (or a norm in modules_to_save): the weight needs its gradient, so no swap."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    model = AutoModelForCausalLM.from_config(LlamaConfig(**COMMON))
    n = fuse(model)  # every weight trainable: only the MLPs (their gradients flow through gate/up as before)
    assert n == COMMON["num_hidden_layers"]
    assert all(type(m).__name__ == "LlamaRMSNorm" for m in model.modules() if "RMSNorm" in type(m).__name__)


def test_omp_env_spins_on_idle_cores_and_sleeps_on_busy_ones(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert runs.omp_env(busy_cores=0.1) == {}
    assert runs.omp_env(busy_cores=1.0) == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runs.omp_env(busy_cores=1.0) == {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's choice is kept
    monkeypatch.delenv("OMP_WAIT_POLICY")
    # measured, not given: two processes spinning on this machine's CPUs make it busy
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        assert runs.omp_env() == {"OMP_WAIT_POLICY": "PASSIVE"}
    finally:
        for p in loops:
            p.kill()
            p.wait()

