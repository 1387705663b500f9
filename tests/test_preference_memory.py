"""Preference training's answer log-probs a chunk of logits at a time (issue 21, item 7), on a tiny Llama.

The log-probs and their gradients equal those from the model's own full logits (TRL's
`selective_log_softmax` on them, the oracle), for a LoRA run (frozen output layer), a full
fine-tune (the output layer trained: its chunks are recomputed in the backward) and a head TuneLab
leaves to the model; and no allocation of a step is the answers x vocabulary float32 logits.
"""

from __future__ import annotations

import pytest

import tiny_model
from tunelab.train import logps, loss, preference, sft
from tunelab.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model.build(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def _batch(model_dir: str) -> dict:
    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer(model_dir)
    recs = [{"instruction": f"Tell me about the {w}.", "output": "x",
             "chosen": f"Yes, the {w} is here and it is very nice indeed today.",
             "rejected": f"No {w} for you, go away now please."} for w in ("lamp", "river", "tiger", "cloud")]
    enc = preference.encode(tok, recs, 256, "dpo")
    return preference.collate(enc, [[0], [1], [2], [3]], tok.pad_token_id)


def _model(tiny: str, tuning: str):
    import torch

    cfg = TrainConfig.for_method("dpo")
    cfg.set({"model": tiny, "data": "x", "pref_tuning": tuning, "lora_dropout": 0.0})
    model = sft.load_model(cfg, tiny, None, "cpu")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.5)
    model.eval()
    return model


def _loss_and_grads(model, batch, fn):
    import torch

    model.zero_grad(set_to_none=True)
    sums, counts = fn(model, batch)
    # A loss that weighs each sequence differently, as the preference losses do.
    loss = (sums * torch.linspace(0.5, 1.5, len(sums))).sum() + (sums / counts).sum()
    loss.backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return sums.detach(), torch.cat([p.grad.flatten() for _, p in named]), [n for n, _ in named]


def _oracle(model, batch):
    """TRL's selective_log_softmax on the model's own full logits."""
    from trl.trainer.utils import selective_log_softmax

    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    mask = labels[:, 1:] != preference.IGNORE
    per_token = selective_log_softmax(logits, labels[:, 1:].clamp(min=0))
    return (per_token * mask).sum(-1), mask.sum(-1).float()


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_chunked_answer_logps_and_gradients_equal_full_logits(workspace, tiny, monkeypatch, tuning):
    pytest.importorskip("trl")
    batch = _batch(tiny)
    model = _model(tiny, tuning)
    assert loss.head_owner(model) is not None  # the chunked path is the one taken
    monkeypatch.setattr(logps, "CHUNK_ELEMENTS", 7 * model.config.vocab_size)  # 7 tokens a chunk: several chunks
    ours = _loss_and_grads(model, batch, lambda m, b: logps.sequence_logps(m, b, "cpu"))
    theirs = _loss_and_grads(model, batch, _oracle)
    assert ours[0].tolist() == pytest.approx(theirs[0].tolist(), abs=1e-4)
    assert float((ours[1] - theirs[1]).norm() / theirs[1].norm()) < 1e-5
    if tuning == "full":
        assert "model.embed_tokens.weight" in ours[2] or "lm_head.weight" in ours[2]
    # A head TuneLab leaves to the model: its logits, a float32 chunk at a time, the same numbers.
    monkeypatch.setattr(loss, "head_owner", lambda m: None)
    own_head = _loss_and_grads(model, batch, lambda m, b: logps.sequence_logps(m, b, "cpu"))
    assert own_head[0].tolist() == pytest.approx(theirs[0].tolist(), abs=1e-4)
    assert float((own_head[1] - theirs[1]).norm() / theirs[1].norm()) < 1e-5


def test_no_allocation_holds_the_answers_by_vocabulary_logits(workspace, tiny, monkeypatch):
    """The largest single allocation of a DPO forward and backward is one chunk of logits (old: all of them)."""
    from torch.profiler import ProfilerActivity, profile

    batch = _batch(tiny)
    model = _model(tiny, "lora")
    vocab = model.config.vocab_size
    monkeypatch.setattr(logps, "CHUNK_ELEMENTS", 7 * vocab)
    ref = {i: [0.0, 0.0] for i in range(4)}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = preference.batch_loss(model, batch, ref, "dpo", 0.1, "sigmoid", "cpu", preference.Tally())
        loss.backward()
    answers = int((batch["labels"][:, 1:] != preference.IGNORE).sum())
    whole = answers * vocab * 4
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert answers > 50 and largest <= 7 * vocab * 4 < whole / 10, (largest, whole)


def test_the_memory_estimate_counts_both_answers_of_a_pair(workspace):
    """A DPO/ORPO step puts chosen and rejected through the model: twice the activations of one sequence."""
    from tunelab.models.size import Geometry
    from tunelab.train.estimate import memory_bytes

    geo = Geometry(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=49152, tied=True)
    mem = {}
    for method in ("lora", "dpo", "orpo", "kto"):
        cfg = TrainConfig.for_method(method)
        cfg.set({"model": "x", "data": "x", "batch_size": 4, "cutoff_len": 512, "mixed_precision": "no"})
        mem[method] = memory_bytes(cfg, geo, 134_515_008, 1_000_000, False)
    act = mem["dpo"] - mem["lora"]
    assert act > 0.5e9 and mem["orpo"] == mem["dpo"] and mem["kto"] == mem["lora"]
