"""Training memory levers on a tiny llama: gradient checkpointing, the chunked loss, frozen weights held once."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

import tiny_model
from tunelab.errors import TuneLabError
from tunelab.train import data as tdata
from tunelab.train import loss as tloss
from tunelab.train import sft
from tunelab.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _cfg(model, method="lora", **kw) -> TrainConfig:
    cfg = TrainConfig.for_method(method)
    cfg.set({"model": model, "data": "tiny", "max_steps": 2, "batch_size": 2, "cutoff_len": 64, "lora_dropout": 0.0,
             "recipe": "manual"})
    cfg.set(kw)
    return cfg


def _batch(model_dir: str) -> dict:
    """Two packed rows of the tiny records, answer tokens labelled."""
    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer(model_dir)
    enc = tdata.encode(tok, [dict(r, id=str(i)) for i, r in enumerate(tiny_model.RECORDS)], 64)
    rows, _ = tdata.plan_rows(enc, 64, True, 2)
    return tdata.collate(enc, rows[:2], tok.pad_token_id, True)


def _loss_and_grads(model, batch, amp=None):
    import torch

    model.zero_grad(set_to_none=True)
    with sft.autocast("cpu", amp):
        loss = sft.batch_loss(model, batch, False, "cpu")
    loss.backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return float(loss.detach()), torch.cat([p.grad.flatten() for _, p in named]), [n for n, _ in named]


def test_checkpointing_on_gives_the_loss_and_gradients_of_off(workspace, tiny):
    import torch

    batch = _batch(tiny)
    results = []
    for on in (False, True):
        torch.manual_seed(0)
        model = sft.load_model(_cfg(tiny), tiny, None, "cpu", checkpointing=on)
        model.train()
        layers = model.get_base_model().model.layers
        assert all(getattr(m, "gradient_checkpointing", False) == on for m in layers)
        results.append(_loss_and_grads(model, batch))
    (loss_off, g_off, names), (loss_on, g_on, names_on) = results
    assert names == names_on and any("lora_A" in n for n in names)
    assert loss_on == pytest.approx(loss_off, rel=1e-6)
    assert float((g_on - g_off).norm() / g_off.norm()) < 1e-5 and g_off.abs().sum() > 0


@pytest.mark.parametrize("method", ["lora", "full"])
def test_chunked_loss_equals_the_models_own_head(workspace, tiny, monkeypatch, method):
    """Loss and every gradient (the tied output layer's too, in a full fine-tune) match full logits."""
    batch = _batch(tiny)
    model = sft.load_model(_cfg(tiny, method), tiny, None, "cpu")
    assert tloss.head_owner(model) is not None  # the chunked path is the one taken
    monkeypatch.setattr(tloss, "CE_CHUNK_ELEMENTS", 7 * model.config.vocab_size)  # 7 tokens a chunk: several chunks
    chunked = _loss_and_grads(model, batch)
    setattr(tloss._inner(model), tloss.OWN_HEAD, True)  # the model computes the logits itself
    whole = _loss_and_grads(model, batch)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-6)
    assert float((chunked[1] - whole[1]).norm() / whole[1].norm()) < 1e-5
    if method == "full":
        assert "model.embed_tokens.weight" in chunked[2]


def test_chunked_loss_under_bf16_autocast_stays_close(workspace, tiny):
    import torch

    batch = _batch(tiny)
    model = sft.load_model(_cfg(tiny), tiny, None, "cpu")
    for n, p in model.named_parameters():
        if "lora_B" in n:  # a nonzero adapter, so the LoRA A gradients are not all zero
            torch.nn.init.normal_(p, std=0.5)
    sft.cast_frozen(model, torch.bfloat16)
    chunked = _loss_and_grads(model, batch, torch.bfloat16)
    setattr(tloss._inner(model), tloss.OWN_HEAD, True)  # the model computes the logits itself
    whole = _loss_and_grads(model, batch, torch.bfloat16)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-3)
    assert float((chunked[1] - whole[1]).norm() / whole[1].norm()) < 0.03


def _mapped(path: str) -> bool:
    with open("/proc/self/maps") as fh:
        return any(line.rstrip().endswith(path) for line in fh)


def test_frozen_weights_are_held_once_in_bf16(workspace, tiny):
    """After the cast, the float32 file mapping is released: each weight exists once, in the bytes counted."""
    import torch

    weights = str(tiny_model.Path(tiny).resolve() / "model.safetensors")
    model = sft.load_model(_cfg(tiny), tiny, None, "cpu")
    if not _mapped(weights):
        pytest.skip("this transformers copies weights out of the file: nothing is held twice to begin with")
    assert sft.cast_frozen(model, torch.bfloat16) > 0
    gc.collect()
    assert not _mapped(weights)  # the file's float32 pages no longer count towards the run's memory
    embed = model.get_input_embeddings().weight
    storages = {p.untyped_storage().data_ptr(): p for p in model.parameters()}
    held = sum(p.untyped_storage().nbytes() for p in storages.values())
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen) and embed.dtype == torch.bfloat16
    expected = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    assert held == expected  # no parameter is a view into a larger (file-sized) buffer


@pytest.mark.slow
def test_optimizer_holds_state_for_lora_parameters_only(workspace, tiny, capsys):
    from tunelab.train import runs
    from tunelab.train.estimate import estimate

    tiny_model.dataset()
    cfg = _cfg(tiny, save_steps=2, gradient_checkpointing="on")
    run_id = runs.create(cfg)
    assert runs.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    assert "gradient checkpointing on (set by you)" in capsys.readouterr().err
    state = sft.load_state(runs.run_dir(run_id) / "checkpoints" / "step-2")["optimizer"]["state"]
    moments = sum(s["exp_avg"].numel() + s["exp_avg_sq"].numel() for s in state.values())
    assert moments == 2 * estimate(cfg)["trainable"]  # Adam's two moments, for the adapter alone


def test_auto_checkpointing_turns_on_when_memory_is_tight(workspace, tiny):
    from tunelab.train.estimate import checkpointing

    cfg = _cfg(tiny, batch_size=8, cutoff_len=512)
    on, why = checkpointing(cfg, free=1e12)
    assert not on and why.startswith("off:")
    need = float(why.split("about ")[1].split(" GB")[0]) * 1e9
    on, why = checkpointing(cfg, free=need)  # it would take all the free memory: more than half
    assert on and "more than 50%" in why
    assert checkpointing(_cfg(tiny, gradient_checkpointing="on"), free=1e12) == (True, "on (set by you)")
    assert checkpointing(_cfg(tiny, gradient_checkpointing="off"), free=1.0) == (False, "off (set by you)")


def test_recipe_gives_its_reason_when_it_turns_checkpointing_on(workspace, tiny, monkeypatch):
    from tunelab.train import estimate as est
    from tunelab.train import recipe
    from tunelab.train.estimate import checkpointing

    cfg = _cfg(tiny, recipe="auto", batch_size=8, cutoff_len=512)
    facts = recipe.Facts(records=5000, tokens=5000 * 300, params=10**6)
    assert "gradient_checkpointing" not in recipe.pick(cfg, facts, set())  # plenty of memory: not listed
    monkeypatch.setattr(est, "free_memory_bytes", lambda device_type="cpu": 1e6)  # a machine nearly out of memory
    picked = recipe.pick(cfg, facts, set())["gradient_checkpointing"]
    assert picked["value"] == "on" and picked["source"] == "recipe" and "GB free" in picked["why"]
    recipe.apply(cfg, set(), facts)
    assert cfg.training.gradient_checkpointing == "on"
    assert checkpointing(cfg)[1] == "on: " + picked["why"]
    mine = recipe.pick(_cfg(tiny, recipe="auto", gradient_checkpointing="off"), facts, {"gradient_checkpointing"})
    assert mine["gradient_checkpointing"] == {"value": "off", "why": "set by you", "source": "you"}


def test_estimate_needs_less_memory_with_checkpointing(workspace):
    from tunelab.models.size import model_size
    from tunelab.train.estimate import memory_bytes, trainable_params

    cfg = _cfg("smollm2-135m-instruct", batch_size=4, cutoff_len=256)
    size = model_size(cfg.model.model)
    train = trainable_params(cfg, size.geometry, size.params)
    off, on = (memory_bytes(cfg, size.geometry, size.params, train, c) for c in (False, True))
    assert on < 0.8 * off


def test_flag_is_checked_and_reaches_the_config(workspace):
    import argparse

    from tunelab.train.config import add_flags, from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser)
    assert from_flags(parser.parse_args(["--gradient-checkpointing", "on"])).training.gradient_checkpointing == "on"
    assert TrainConfig().training.gradient_checkpointing == "auto"
    with pytest.raises(TuneLabError, match="gradient_checkpointing must be one of auto, on, off"):
        TrainConfig.from_dict({"training": {"gradient_checkpointing": "sometimes"}})
    p = subprocess.run([sys.executable, "-m", "tunelab", "train", "--help"], capture_output=True, text=True)
    assert "--gradient-checkpointing {auto,on,off}" in p.stdout
