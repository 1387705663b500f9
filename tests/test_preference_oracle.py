"""Every preference loss TuneLab offers against TRL 1.16's own code on the same batch (issue 21).

TRL is the oracle: DPO (sigmoid, ipo, hinge) through `DPOTrainer._compute_loss` and KTO through
`KTOTrainer._compute_loss`, each on a trainer built around the same LoRA model (the reference is the
model with its adapter disabled, as in TuneLab); ORPO's odds-ratio term through
`ORPOTrainer.odds_ratio_loss`, its mean log-probs through `ORPOTrainer.get_batch_logps` on the
model's own full logits, and its NLL is the model's own loss. Loss and LoRA gradients must agree:
the gradients also check TuneLab's chunked answer log-probs (train/logps.py) against full logits.
"""

from __future__ import annotations

import types

import pytest

pytest.importorskip("trl")

from tunelab.models.loading import load_tokenizer  # noqa: E402
from tunelab.train import pref_reference, preference  # noqa: E402

WORDS = ["river", "lamp", "garden", "coffee", "window", "pencil", "ocean", "violin"]


def _records() -> list[dict]:
    """Pairs whose answers differ in length and wording (so the sums, means and rotations all differ)."""
    out = []
    for i, w in enumerate(WORDS[:4]):
        good = f"Yes, here is the {w}." + " It is lovely." * (i % 3)
        bad = f"No. Go away, {w}." + " Never." * ((i + 1) % 3)
        out.append({"id": f"p{i}", "instruction": f"Please tell me about the {w}.", "input": "", "output": good,
                    "chosen": good, "rejected": bad})
    return out


def _move_adapter(model, seed: int, scale: float = 0.3) -> None:
    """A nonzero adapter: the policy differs from the reference (the adapter disabled)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def _lora_grads(model):
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert named and all(p.grad is not None for _, p in named)
    out = torch.cat([p.grad.flatten().clone() for _, p in named])
    model.zero_grad(set_to_none=True)
    return out


def _close_grads(ours, theirs, rel=1e-4):
    assert float(theirs.norm()) > 0
    assert float((ours - theirs).norm() / theirs.norm()) < rel


def _lora_config():
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_tokenizer(tiny_model)


# ---- DPO: sigmoid, ipo, hinge ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_losses_equal_trl_dpotrainer_on_the_same_batch(workspace, tiny_model, tok, tmp_path, loss_type):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    recs, beta = _records(), 0.1
    enc = preference.encode(tok, recs, 256, "dpo")
    batch = preference.collate(enc, [[0], [1], [2], [3]], tok.pad_token_id)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["instruction"]}],
                             "chosen": [{"role": "assistant", "content": r["chosen"]}],
                             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in recs])
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     beta=beta, loss_type=[loss_type], use_cpu=True, save_strategy="no", bf16=False)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=ds,
                         processing_class=tok, peft_config=_lora_config())
    model = trainer.model
    _move_adapter(model, seed=1)
    model.eval()
    # TRL marks the answer tokens at their own positions; the same token ids, masks and padding as ours.
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "completion_mask": (batch["labels"] != preference.IGNORE).long()}
    theirs = trainer._compute_loss(model, inputs, False)
    theirs.backward()
    g_theirs = _lora_grads(model)

    ref = pref_reference.reference_logps(model, enc, tok.pad_token_id, "cpu", adapter_off=True)
    tally = preference.Tally()
    ours = preference.batch_loss(model, batch, dict(enumerate(ref)), "dpo", beta, loss_type, "cpu", tally) / 4
    ours.backward()
    g_ours = _lora_grads(model)

    if loss_type == "sigmoid":
        assert abs(float(ours.detach()) - 0.6931472) > 1e-3  # the policy really differs from the reference
    # float32 on both sides: IPO's (log-ratio - 1/(2 beta))^2 is about 26 here and 10x as steep as the
    # log-ratio it squares, so a few float32 ulps of the log-probs (which differ by CPU kernel: 1.3e-5 on
    # an AMD EPYC, 5e-7 relative) are allowed relative to the loss; sigmoid and hinge stay within 1e-5.
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6, abs=1e-5)
    _close_grads(g_ours, g_theirs)
    m, trl_m = tally.metrics(), trainer._metrics["eval"]
    assert m["reward_margin"] == pytest.approx(trl_m["rewards/margins"][0], abs=1e-5)
    assert m["reward_accuracy"] == pytest.approx(trl_m["rewards/accuracies"][0])
    assert m["logps_chosen"] == pytest.approx(trl_m["logps/chosen"][0], abs=1e-4)
    assert m["logps_rejected"] == pytest.approx(trl_m["logps/rejected"][0], abs=1e-4)


# ---- ORPO -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_orpo_loss_equals_trl_odds_ratio_loss_plus_the_models_own_nll(workspace, tiny_model, tok):
    import torch
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    from tunelab.train import sft
    from tunelab.train.config import TrainConfig

    lam = 0.25
    cfg = TrainConfig.for_method("orpo")
    cfg.set({"model": tiny_model, "data": "x", "lora_dropout": 0.0, "lora_r": 4})
    model = sft.load_model(cfg, tiny_model, None, "cpu")
    _move_adapter(model, seed=2)
    model.eval()
    enc = preference.encode(tok, _records(), 256, "orpo")
    batch = preference.collate(enc, [[0], [1], [2], [3]], tok.pad_token_id)
    b = 4

    # The oracle, on the model's own full logits: TRL's per-token mean log-probs and odds-ratio term; the
    # NLL of each chosen answer is the model's own loss (labels on the answer only), one pair at a time.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    means = ORPOTrainer.get_batch_logps(logits, batch["labels"], average_log_prob=True)
    stand_in = types.SimpleNamespace(beta=lam, accelerator=types.SimpleNamespace(device=torch.device("cpu")))
    ratio_losses, rc, rr, _, _ = ORPOTrainer.odds_ratio_loss(stand_in, means[:b], means[b:])
    nll = torch.stack([model(input_ids=batch["input_ids"][i:i + 1], attention_mask=batch["attention_mask"][i:i + 1],
                             labels=batch["labels"][i:i + 1]).loss for i in range(b)])
    theirs = nll.mean() - ratio_losses.mean()  # TRL's `policy_nll_loss - losses.mean()`, NLL per answer
    theirs.backward()
    g_theirs = _lora_grads(model)

    tally = preference.Tally()
    ours = preference.batch_loss(model, batch, None, "orpo", lam, "sigmoid", "cpu", tally) / b
    ours.backward()
    g_ours = _lora_grads(model)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
    _close_grads(g_ours, g_theirs)
    m = tally.metrics()
    assert m["reward_margin"] == pytest.approx(float((rc - rr).mean()), abs=1e-5)
    assert m["reward_accuracy"] == pytest.approx(float((rc > rr).float().mean()))
    assert m["logps_chosen"] == pytest.approx(float(means[:b].mean()), abs=1e-5)


# ---- KTO ------------------------------------------------------------------------------------------

def _kto_trainer(tiny_model, tok, tmp_path, beta, weights):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import KTOConfig, KTOTrainer

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about the {w}."}],
                             "completion": [{"role": "assistant", "content": f"The {w}."}], "label": i % 2 == 0}
                            for i, w in enumerate(WORDS)])
    args = KTOConfig(output_dir=str(tmp_path / "kto"), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     beta=beta, desirable_weight=weights[0], undesirable_weight=weights[1], use_cpu=True,
                     save_strategy="no", bf16=False)
    assert args.loss_type == "kto"
    return KTOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=ds,
                      processing_class=tok, peft_config=_lora_config())


def _trl_kto_inputs(enc, group: list[int], pad_id: int) -> dict:
    """TRL's own collator on our examples, the KL answers built by TRL's rule (kto_trainer.add_kl_completion_ids):
    completions rotated by one within the batch, so example i gets example i-1's answer."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    rows = []
    for i in group:
        ids, labels = enc.examples[i].seqs[0]
        p = next(k for k, x in enumerate(labels) if x != preference.IGNORE)
        rows.append({"prompt_ids": ids[:p], "completion_ids": ids[p:], "label": enc.examples[i].desirable})
    completions = [r["completion_ids"] for r in rows]
    for r, kl in zip(rows, [completions[-1]] + completions[:-1], strict=True):
        r["KL_completion_ids"] = kl
    return DataCollatorForUnpairedPreference(pad_token_id=pad_id)(rows)


@pytest.mark.slow
def test_kto_loss_equals_trl_ktotrainer_with_its_kl_reference_point_and_weights(workspace, tiny_model, tok, tmp_path):
    """Within 1e-5 of KTOTrainer's loss, with the KL term both above 0 and clamped at 0 (adapters of several seeds)."""
    beta, weights = 0.5, (1.3, 0.7)
    trainer = _kto_trainer(tiny_model, tok, tmp_path, beta, weights)
    model = trainer.model
    recs = _records() + [{"instruction": "Rate this.", "output": "A fine answer, thank you.", "kto_tag": True}]
    enc = preference.encode(tok, recs, 256, "kto")  # 4 pairs -> 8 answers, and a single answer: 9
    groups, per = preference.plan_rows(enc, 4)
    assert per == 1 and [len(g) for g in groups] == [4, 5]  # a lone last answer joins the batch before
    seen: set[bool] = set()
    for seed in range(8):
        if seen == {True, False}:
            break
        _move_adapter(model, seed=10 + seed, scale=0.4)
        model.eval()
        ref = dict(enumerate(pref_reference.reference_logps(model, enc, tok.pad_token_id, "cpu", 4, adapter_off=True)))
        for group in groups:
            batch = preference.collate(enc, [group], tok.pad_token_id)
            inputs = _trl_kto_inputs(enc, group, tok.pad_token_id)
            assert inputs["KL_input_ids"].tolist() == batch["kl_input_ids"].tolist()  # the same mismatched pairs
            theirs = trainer._compute_loss(model, inputs, False)
            theirs.backward()
            g_theirs = _lora_grads(model)
            tally = preference.Tally()
            ours = preference.batch_loss(model, batch, ref, "kto", beta, "sigmoid", "cpu", tally, weights)
            ours = ours / len(group)
            ours.backward()
            g_ours = _lora_grads(model)
            assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
            _close_grads(g_ours, g_theirs)
            kl = trainer._metrics["eval"]["kl"][-1]
            assert tally.metrics()["kl"] == pytest.approx(kl, abs=1e-5)
            seen.add(kl > 0)
    assert seen == {True, False}, "both a positive KL term and one clamped at 0 were compared"


@pytest.mark.slow
def test_kto_is_not_the_old_apo_zero_unpaired_loss(workspace, tiny_model, tok, tmp_path):
    """With unequal weights KTO differs from what --method kto ran before: TRL's apo_zero_unpaired, unweighted."""
    import torch

    beta, weights = 0.5, (1.0, 2.0)
    trainer = _kto_trainer(tiny_model, tok, tmp_path, beta, weights)
    model = trainer.model
    enc = preference.encode(tok, _records(), 256, "kto")
    _move_adapter(model, seed=3, scale=0.4)
    model.eval()
    ref = dict(enumerate(pref_reference.reference_logps(model, enc, tok.pad_token_id, "cpu", 4, adapter_off=True)))
    group = preference.plan_rows(enc, 4)[0][0]
    batch = preference.collate(enc, [group], tok.pad_token_id)
    inputs = _trl_kto_inputs(enc, group, tok.pad_token_id)
    with torch.no_grad():
        ours = float(preference.batch_loss(model, batch, ref, "kto", beta, "sigmoid", "cpu", preference.Tally(), weights))
        kto = float(trainer._compute_loss(model, inputs, False)) * len(group)
        # The old --method kto: apo_zero_unpaired, no KL term, both weights 1.
        trainer.loss_type, trainer.calculate_KL, trainer.desirable_weight, trainer.undesirable_weight = (
            "apo_zero_unpaired", False, 1.0, 1.0)
        apo = float(trainer._compute_loss(model, inputs, False)) * len(group)
    assert ours == pytest.approx(kto, abs=1e-5) and abs(ours - apo) > 1e-2
