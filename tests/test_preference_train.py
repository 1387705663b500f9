"""Preference tuning (issue 13): DPO, ORPO and KTO losses, metrics on every row, and held-out preference accuracy."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from tunelab.cli import main as cli
from tunelab.train import preference, recipe, runs
from tunelab.train.config import METHODS, TrainConfig, tuning

# The before/after report (evals/auto.py) is not what these tests measure: off where the setting exists.
NO_REPORT = ["--no-auto-report"] if "auto_report" in TrainConfig().flat() else []

WORDS = ["river", "lamp", "garden", "coffee", "window", "pencil", "ocean", "violin", "forest", "candle",
         "bridge", "rocket", "tiger", "cloud", "mirror", "orange", "castle", "engine", "button", "island",
         "planet", "ticket", "jacket", "basket"]


def _pairs(words, flip=False) -> list[dict]:
    """Separable pairs: the chosen answer agrees politely, the rejected one refuses (flip swaps them)."""
    out = []
    for i, w in enumerate(words):
        good, bad = f"Yes, here is the {w}.", f"No. Go away, {w}."
        c, r = (bad, good) if flip else (good, bad)
        out.append({"id": f"p{i}", "instruction": f"Please tell me about the {w}.", "input": "", "output": c,
                    "chosen": c, "rejected": r})
    return out


def _commit(name: str, records: list[dict]) -> str:
    from tunelab.data import store
    from tunelab.data.schema import to_table

    store.commit(name, to_table(records), op="test")
    back = store.read(name).to_pylist()
    assert back[0].get("chosen") == records[0].get("chosen"), "the record schema keeps chosen/rejected"
    return name


# ---- the losses, on fixed log-probs -------------------------------------------------------------

def test_dpo_loss_variants_match_hand_computed_values():
    import torch

    pi_c, pi_r = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -15.0])
    ref_c, ref_r = torch.tensor([-11.0, -19.0]), torch.tensor([-11.0, -16.0])
    # delta = (pi_c - ref_c) - (pi_r - ref_r): pair 0: 1 - (-1) = 2; pair 1: -1 - 1 = -2
    losses, rc, rr = preference.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert losses.tolist() == pytest.approx([-math.log(sig(1.0)), -math.log(sig(-1.0))], abs=1e-6)
    assert rc.tolist() == pytest.approx([0.5, -0.5]) and rr.tolist() == pytest.approx([-0.5, 0.5])
    hinge, _, _ = preference.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5, loss_type="hinge")
    assert hinge.tolist() == pytest.approx([0.0, 2.0])
    n = torch.tensor([2.0, 4.0])
    ipo, _, _ = preference.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5, loss_type="ipo", n_c=n, n_r=n)
    # (lc/n - lr/n - 1/(2 beta))^2: pair 0: (0.5 + 0.5 - 1)^2 = 0; pair 1: (-0.25 - 0.25 - 1)^2 = 2.25
    assert ipo.tolist() == pytest.approx([0.0, 2.25])


def test_orpo_and_kto_losses_match_hand_computed_values():
    import torch

    mc, mr = torch.tensor([-0.5]), torch.tensor([-2.0])
    loss, rc, rr = preference.orpo_loss(mc, mr, lam=0.2)
    log_odds = (-0.5 - math.log(1 - math.exp(-0.5))) - (-2.0 - math.log(1 - math.exp(-2.0)))
    assert float(loss) == pytest.approx(0.5 - 0.2 * math.log(1 / (1 + math.exp(-log_odds))), abs=1e-6)
    assert float(rc) == pytest.approx(-0.1) and float(rr) == pytest.approx(-0.4)

    pi, ref = torch.tensor([-9.0, -9.0]), torch.tensor([-10.0, -10.0])  # both answers gained 1 nat
    losses, rewards = preference.kto_loss(pi, ref, torch.tensor([True, False]), beta=0.5)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert losses.tolist() == pytest.approx([1 - sig(0.5), 1 - sig(-0.5)], abs=1e-6)  # the bad one is penalised
    assert rewards.tolist() == pytest.approx([0.5, 0.5])


def test_encode_counts_pairs_kto_records_and_skips(tiny_model):
    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    recs = _pairs(WORDS[:3]) + [{"instruction": "Rate me.", "output": "Fine.", "kto_tag": False},
                                {"instruction": "Plain SFT.", "output": "No pair here."}]
    dpo = preference.encode(tok, recs, 256, "dpo")
    assert len(dpo.examples) == 3 and dpo.skipped == 2 and all(len(e.seqs) == 2 for e in dpo.examples)
    kto = preference.encode(tok, recs, 256, "kto")  # a pair gives one desirable and one undesirable answer
    assert [e.desirable for e in kto.examples] == [True, False] * 3 + [False] and kto.skipped == 1
    batch = preference.collate(dpo, [[0], [2]], tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 4 and batch["n_units"] == 2  # chosen block, then rejected block
    chosen_ids = dpo.examples[0].seqs[0][0]
    assert batch["input_ids"][0, :len(chosen_ids)].tolist() == chosen_ids
    cut = preference.encode(tok, recs, 8, "dpo")  # every prompt is longer than 8 tokens: no answer survives
    assert not cut.examples and cut.dropped == 3
    with pytest.raises(Exception, match="no preference pairs for dpo"):
        preference.check_usable(cut, "dpo", "x")


def test_config_and_recipe_know_the_preference_methods():
    assert {"dpo", "orpo", "kto"} <= set(METHODS)
    cfg = TrainConfig.for_method("dpo")
    assert cfg.method.pref_beta == 0.1 and cfg.method.pref_loss == "sigmoid" and tuning(cfg) == "lora"
    assert cfg.training.learning_rate < TrainConfig.for_method("lora").training.learning_rate
    cfg.set({"pref_tuning": "full"})
    assert tuning(cfg) == "full"
    with pytest.raises(Exception, match="pref_loss must be one of"):
        cfg.set({"pref_loss": "nope"})
    f = recipe.Facts(records=200, tokens=200 * 40, params=135_000_000)
    lora_lr = recipe.pick(TrainConfig.for_method("dpo"), f, set())["learning_rate"]["value"]
    full_lr = recipe.pick(cfg, f, set())["learning_rate"]["value"]
    sft_lr = recipe.pick(TrainConfig.for_method("lora"), f, set())["learning_rate"]["value"]
    assert full_lr < lora_lr < sft_lr


# ---- against TRL on the same batch --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed (requirements-dev.txt)")
def test_dpo_loss_and_metrics_match_trl_dpotrainer_on_the_same_batch(workspace, tiny_model, tmp_path):
    """TRL's DPOTrainer._compute_loss and ours on one batch, same LoRA model: same loss to 1e-4."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    recs = _pairs(WORDS[:4])
    enc = preference.encode(tok, recs, 256, "dpo")
    batch = preference.collate(enc, [[0], [1], [2], [3]], tok.pad_token_id)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["instruction"]}],
                             "chosen": [{"role": "assistant", "content": r["chosen"]}],
                             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in recs])
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     beta=0.1, use_cpu=True, save_strategy="no")
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=ds,
                         processing_class=tok,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"))
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # move the adapter so the policy differs from the reference (adapter disabled)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    completion = (batch["labels"] != preference.IGNORE).long()  # TRL marks answer tokens at their own position
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "completion_mask": completion}
    theirs = float(trainer._compute_loss(model, inputs, False))
    ref = preference.reference_logps(model, enc, tok.pad_token_id, "cpu", adapter_off=True)
    tally = preference.Tally()
    ours = float(preference.batch_loss(model, batch, dict(enumerate(ref)), "dpo", 0.1, "sigmoid", "cpu", tally)) / 4
    assert abs(ours - math.log(2)) > 1e-3  # the policy really differs from the reference
    assert ours == pytest.approx(theirs, abs=1e-4)
    m, trl_m = tally.metrics(), trainer._metrics["eval"]
    assert m["reward_margin"] == pytest.approx(trl_m["rewards/margins"][0], abs=1e-4)
    assert m["reward_accuracy"] == pytest.approx(trl_m["rewards/accuracies"][0])
    assert m["logps_chosen"] == pytest.approx(trl_m["logps/chosen"][0], abs=1e-3)


# ---- end to end through the CLI ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "orpo", "kto"])
def test_train_cli_preference_runs_carry_reward_metrics_on_every_row(workspace, tiny_model, capsys, method):
    recs = _pairs(WORDS[:10]) + [{"id": "k0", "instruction": "Rate this.", "output": "Bad answer.", "kto_tag": False}]
    _commit("pairs", recs)
    _commit("pairs-test", _pairs(WORDS[10:14]))
    assert cli(["train", "--model", tiny_model, "--data", "pairs", "--method", method, "--max-steps", "3",
                "--eval-data", "pairs-test", "--eval-steps", "2", "--batch-size", "2", "--cutoff-len", "128",
                *NO_REPORT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "completed"
    assert cli(["runs", "show", doc["run"], "--json"]) == 0
    show = json.loads(capsys.readouterr().out)
    assert [m["step"] for m in show["metrics"]] == [1, 2, 3]
    for m in show["metrics"]:
        assert isinstance(m["reward_margin"], float) and 0.0 <= m["reward_accuracy"] <= 1.0
        assert math.isfinite(m["loss"])
    evals = [m for m in show["metrics"] if m["eval_loss"] is not None]
    assert evals and all("eval_reward_accuracy" in m for m in evals)
    out = json.loads((runs.run_dir(doc["run"]) / "output.json").read_text())
    assert out["method"] == "lora" and out["lineage"]["objective"] == method  # loads as a LoRA run
    if method != "orpo":  # ORPO has no reference model
        assert (runs.run_dir(doc["run"]) / preference.REF_FILE).exists()


@pytest.mark.slow
def test_dpo_on_separable_pairs_raises_held_out_preference_accuracy(workspace, tiny_model, capsys):
    """DPO turns a model that prefers the rejected style into one that prefers the chosen style on unseen prompts."""
    train_words, held_words = WORDS[:16], WORDS[16:]
    # Which side is "good" is arbitrary; take the one the base model gets wrong, so there is room to improve.
    flip = preference.preference_accuracy(tiny_model, _pairs(held_words)) > 0.5
    held = _pairs(held_words, flip)
    base_acc = preference.preference_accuracy(tiny_model, held)
    assert base_acc < 0.5
    _commit("prefs", _pairs(train_words, flip))
    assert cli(["train", "--model", tiny_model, "--data", "prefs", "--method", "dpo", "--recipe", "manual",
                "--max-steps", "24", "--batch-size", "4", "--learning-rate", "5e-3", "--lora-r", "8",
                "--pref-beta", "0.1", "--cutoff-len", "128", *NO_REPORT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "completed"
    rows = runs.metrics(doc["run"])
    assert rows[-1]["reward_accuracy"] == 1.0 and rows[-1]["reward_margin"] > rows[0]["reward_margin"]
    tuned_acc = preference.preference_accuracy(doc["run"], held)
    assert tuned_acc > base_acc and tuned_acc >= 0.75, (base_acc, tuned_acc)
