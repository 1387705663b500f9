"""Preference tuning (issue 13): DPO, ORPO and KTO losses, metrics on every row, and held-out preference accuracy."""

from __future__ import annotations

import json
import math

import pytest

from tunelab.cli import main as cli
from tunelab.train import pref_reference, preference, recipe, runs
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


# ---- encoding, config; the losses against TRL are in test_preference_oracle.py ---------------------

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


# ---- reference log-probs: keyed by content (issue 21, item 10) ----------------------------------------

def test_reference_logps_are_recomputed_when_same_size_data_changes(workspace, tiny_model, tmp_path):
    from tunelab.errors import TuneLabError
    from tunelab.models.loading import load_tokenizer
    from tunelab.train import sft

    cfg = TrainConfig.for_method("dpo")
    cfg.set({"model": tiny_model, "data": "x", "lora_r": 4})
    model = sft.load_model(cfg, tiny_model, None, "cpu")
    tok = load_tokenizer(tiny_model)
    old, new = (preference.encode(tok, _pairs(WORDS[k:k + 4]), 256, "dpo") for k in (0, 4))  # same size
    none = preference.encode(tok, [], 256, "dpo")
    kw = {"method": "dpo", "batch_size": 2, "log": lambda m: None}
    first = pref_reference.reference(model, tmp_path, old, none, tok.pad_token_id, "cpu", adapter_off=True,
                                     resuming=False, **kw)
    # A resumed run whose dataset changed (same number of pairs) gets the new data's reference, not the cached one.
    again = pref_reference.reference(model, tmp_path, new, none, tok.pad_token_id, "cpu", adapter_off=True,
                                     resuming=True, **kw)
    fresh = pref_reference.reference_logps(model, new, tok.pad_token_id, "cpu", adapter_off=True)
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    assert flat(again["train"]) == pytest.approx(flat(fresh)) and flat(again["train"]) != pytest.approx(flat(first["train"]))
    cached = json.loads((tmp_path / preference.REF_FILE).read_text())
    assert cached["train"] == again["train"]
    # Unchanged data and model: read back as they are.
    (tmp_path / preference.REF_FILE).write_text(json.dumps(dict(cached, train=[[0.0, 0.0]] * 4)))
    assert pref_reference.reference(model, tmp_path, new, none, tok.pad_token_id, "cpu", adapter_off=True,
                                    resuming=True, **kw)["train"] == [[0.0, 0.0]] * 4
    # Another starting model (a weight changed) recomputes too; where the weights have moved, it is refused.
    import torch

    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora" not in n).add_(0.01)
    moved = pref_reference.reference(model, tmp_path, new, none, tok.pad_token_id, "cpu", adapter_off=True,
                                     resuming=True, **kw)
    assert moved["train"] != [[0.0, 0.0]] * 4
    with pytest.raises(TuneLabError, match="belong to other data or another model"):
        pref_reference.reference(model, tmp_path, old, none, tok.pad_token_id, "cpu", adapter_off=False,
                                 resuming=True, **kw)


# ---- end to end through the CLI ------------------------------------------------------------------

def _trl_eval_loss(method: str, run_id: str, tiny_model: str, records: list[dict], batch_size: int, beta: float, weights, tmp_path):
    """The oracle: the run's held-out loss computed by TRL's own code on the run's published weights.

    The policy is the run's adapter merged into the base; the reference is the base model (TRL's ref_model).
    DPO: DPOTrainer._compute_loss on all pairs; KTO: KTOTrainer._compute_loss per batch of TuneLab's fixed
    groups (the KL term is a batch's own); ORPO: ORPOTrainer's odds-ratio loss plus the model's own NLL.
    """
    import types

    import torch
    from datasets import Dataset
    from test_preference_oracle import _trl_kto_inputs

    from tunelab.models.loading import load_model

    model, tok = load_model(run_id, device="cpu")
    model = model.merge_and_unload().eval()
    base = load_model(tiny_model, device="cpu")[0].eval()
    enc = preference.encode(tok, records, 128, method)
    pad = tok.pad_token_id
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "q"}], "completion": [
        {"role": "assistant", "content": "a"}], "label": True, "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}]}])
    common = {"output_dir": str(tmp_path / "trl"), "report_to": [], "use_cpu": True, "save_strategy": "no", "bf16": False}
    with torch.no_grad():
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(model=model, ref_model=base, args=DPOConfig(beta=beta, **common), processing_class=tok,
                                 train_dataset=ds.remove_columns(["completion", "label"]))
            batch = preference.collate(enc, [[i] for i in range(len(enc.examples))], pad)
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                      "completion_mask": (batch["labels"] != preference.IGNORE).long()}
            return float(trainer._compute_loss(model, inputs, False))
        if method == "kto":
            from trl import KTOConfig, KTOTrainer

            trainer = KTOTrainer(model=model, ref_model=base, processing_class=tok, train_dataset=ds.remove_columns(["chosen", "rejected"]),
                                 args=KTOConfig(beta=beta, desirable_weight=weights[0], undesirable_weight=weights[1],
                                                per_device_train_batch_size=2, **common))
            groups, _ = preference.plan_rows(enc, batch_size)
            total = sum(float(trainer._compute_loss(model, _trl_kto_inputs(enc, g, pad), False)) * len(g) for g in groups)
            return total / len(enc.examples)
        from trl.experimental.orpo.orpo_trainer import ORPOTrainer

        batch = preference.collate(enc, [[i] for i in range(len(enc.examples))], pad)
        b = len(enc.examples)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        means = ORPOTrainer.get_batch_logps(logits, batch["labels"], average_log_prob=True)
        stand_in = types.SimpleNamespace(beta=beta, accelerator=types.SimpleNamespace(device=torch.device("cpu")))
        ratio = ORPOTrainer.odds_ratio_loss(stand_in, means[:b], means[b:])[0]
        nll = [float(model(input_ids=batch["input_ids"][i:i + 1], attention_mask=batch["attention_mask"][i:i + 1],
                           labels=batch["labels"][i:i + 1]).loss) for i in range(b)]
        return sum(nll) / b - float(ratio.mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "orpo", "kto"])
def test_train_cli_preference_runs_log_trls_loss_of_their_weights(workspace, tiny_model, capsys, tmp_path, method):
    """The CLI's preference run logs, on every row, reward metrics; its last held-out loss is the loss TRL's own
    code gives for the run's published weights on those pairs, and its first step starts at the reference."""
    recs = _pairs(WORDS[:10]) + [{"id": "k0", "instruction": "Rate this.", "output": "Bad answer.", "kto_tag": False}]
    _commit("pairs", recs)
    _commit("pairs-test", _pairs(WORDS[10:14]))
    beta, weights = (0.3, (1.5, 0.5)) if method == "kto" else (0.2, (1.0, 1.0))
    extra = ["--kto-desirable-weight", "1.5", "--kto-undesirable-weight", "0.5"] if method == "kto" else []
    assert cli(["train", "--model", tiny_model, "--data", "pairs", "--method", method, "--max-steps", "3",
                "--eval-data", "pairs-test", "--eval-steps", "2", "--batch-size", "2", "--cutoff-len", "128",
                "--recipe", "manual", "--learning-rate", "5e-3", "--pref-beta", str(beta), "--mixed-precision", "no",
                "--lora-dropout", "0", *extra, *NO_REPORT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "completed"
    assert cli(["runs", "show", doc["run"], "--json"]) == 0
    show = json.loads(capsys.readouterr().out)
    assert [m["step"] for m in show["metrics"]] == [1, 2, 3]
    for m in show["metrics"]:
        assert isinstance(m["reward_margin"], float) and 0.0 <= m["reward_accuracy"] <= 1.0
        assert math.isfinite(m["loss"])
    evals = [m for m in show["metrics"] if m["eval_loss"] is not None]
    assert [m["step"] for m in evals] == [2, 3] and all("eval_reward_accuracy" in m for m in evals)
    first = show["metrics"][0]
    if method == "dpo":  # a fresh adapter is its reference: every pair's loss is -logsigmoid(0)
        assert first["loss"] == pytest.approx(math.log(2), abs=1e-5) and first["reward_margin"] == 0.0
    if method == "kto":  # r = 0 and z0 = 0: each answer costs its weight x (1 - sigmoid(0))
        assert first["kl"] == 0.0 and first["loss"] in [pytest.approx(v, abs=1e-5) for v in (0.75, 0.5, 0.25)]
        assert all(m["kl"] >= 0.0 for m in show["metrics"])
    held = _pairs(WORDS[10:14])
    assert evals[-1]["eval_loss"] == pytest.approx(_trl_eval_loss(method, doc["run"], tiny_model, held, 2, beta, weights, tmp_path),
                                                   abs=1e-4)
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


@pytest.mark.slow
def test_kto_on_separable_answers_raises_held_out_preference_accuracy(workspace, tiny_model, capsys):
    """Real KTO (KL reference point, weights) learns too: good answers up, bad ones down, on unseen prompts."""
    train_words, held_words = WORDS[:16], WORDS[16:]
    flip = preference.preference_accuracy(tiny_model, _pairs(held_words)) > 0.5
    held = _pairs(held_words, flip)
    base_acc = preference.preference_accuracy(tiny_model, held)
    # Single answers marked good or bad (KTO's own layout), not pairs.
    recs = [{"id": f"k{i}-{good}", "instruction": r["instruction"], "input": "",
             "output": r["chosen"] if good else r["rejected"], "kto_tag": good}
            for i, r in enumerate(_pairs(train_words, flip)) for good in (True, False)]
    _commit("answers", recs)
    assert cli(["train", "--model", tiny_model, "--data", "answers", "--method", "kto", "--recipe", "manual",
                "--max-steps", "24", "--batch-size", "4", "--learning-rate", "5e-3", "--lora-r", "8",
                "--pref-beta", "0.1", "--cutoff-len", "128", *NO_REPORT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "completed"
    rows = runs.metrics(doc["run"])
    assert rows[-1]["reward_margin"] > rows[0]["reward_margin"] and rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["kl"] >= 0.0 for r in rows)
    tuned_acc = preference.preference_accuracy(doc["run"], held)
    assert tuned_acc > base_acc and tuned_acc >= 0.75, (base_acc, tuned_acc)
