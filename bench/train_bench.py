"""LoRA training throughput and memory: TuneLab's loop against two HF Trainer + PEFT baselines.

All train SmolLM2-135M-Instruct with LoRA r8 on q_proj,v_proj, batch 4, cutoff 256 (LLaMA-Factory's
defaults as measured in issue #14) on the same records (the shipped alpaca_mixed sample,
response-only labels) for the same number of steps, each in its own process so peak RSS (VmHWM)
is its own. The baselines pad every batch to its longest example and compute logits for every
position, in float32: "lf-default" imitates LLaMA-Factory's default run (gradient checkpointing on,
reentrant, inputs made to require grad), "baseline" is the same without checkpointing. TuneLab
packs examples into 4 rows of 256 tokens, computes the loss over answer tokens only in chunks,
uses bf16 autocast where the CPU has native bf16, and chooses checkpointing itself
(gradient_checkpointing=auto); "tunelab-gc" forces it on. tokens/s counts real (non-padding)
tokens, median over steps 2..N; each figure is the median of --repeat alternating runs. The
TuneLab child also prints the Train page's memory estimate for its config next to its measured
peak. With CUDA, LoRA and QLoRA are also run on the GPU (tokens/s and peak GPU memory). Results are
appended to bench/RESULTS.md (and bench/results/train.json for `make bench`).

With --dpo, DPO instead: TuneLab's loop (train/preference.py) against TRL's DPOTrainer on the same
pairs (prompt i, chosen = its answer, rejected = the next record's answer), same LoRA, 4 pairs per
step, one epoch = the measured steps. Both take the reference log-probs from the model with the
adapter disabled, computed once before training (TRL: precompute_ref_log_probs=True), so a step is
policy forward + backward in both; tokens/s counts chosen + rejected non-padding tokens. TRL is a
bench-only dependency: `.venv/bin/pip install trl` (requirements-dev.txt).

    .venv/bin/python bench/train_bench.py [--steps 6] [--repeat 2] [--model smollm2-135m-instruct] [--dpo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
LR = 2e-4
BATCH, CUTOFF = 4, 256  # LLaMA-Factory's run in issue #14: per-device batch 4, cutoff_len 256


def run_tunelab(model: str, steps: int, method: str, device_mem: bool, checkpointing: str = "auto") -> dict:
    from _common import peak_rss_mb, sample_records

    from tunelab.data import store
    from tunelab.data.schema import to_table
    from tunelab.train import runs, sft
    from tunelab.train.config import TrainConfig
    from tunelab.train.estimate import estimate

    store.commit("bench", to_table(sample_records()), op="bench")
    cfg = TrainConfig.for_method(method)
    cfg.set({"model": model, "data": "bench", "max_steps": steps, "batch_size": BATCH, "cutoff_len": CUTOFF,
             "packing": True, "save_steps": 0, "wait_for_others": False, "lora_r": LORA["r"],
             "lora_alpha": LORA["lora_alpha"], "lora_target": ",".join(LORA["target_modules"]),
             "learning_rate": LR, "recipe": "manual", "auto_report": False, "gradient_checkpointing": checkpointing})
    run_id = runs.create(cfg)
    assert sft.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    rows = runs.metrics(run_id)
    est = estimate(cfg)
    out = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows[1:]),
           "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"], "peak_rss_mb": peak_rss_mb(),
           "estimate_mb": est["memory_gb"] * 1e9 / 2**20, "checkpointing": est["checkpointing"]}
    if device_mem:
        import torch

        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


DPO_BATCH, DPO_LR, DPO_BETA, DPO_CUTOFF = 4, 5e-5, 0.1, 512


def dpo_pairs(steps: int) -> list[dict]:
    """steps x DPO_BATCH pairs from the sample: chosen = a record's answer, rejected = the next record's."""
    from _common import sample_records

    recs = sample_records(steps * DPO_BATCH + 1)
    return [dict(r, chosen=r["output"], rejected=recs[i + 1]["output"]) for i, r in enumerate(recs[:-1])
            if r["output"] and recs[i + 1]["output"] and r["output"] != recs[i + 1]["output"]]


def run_tunelab_dpo(model: str, steps: int) -> dict:
    from _common import peak_rss_mb

    from tunelab.data import store
    from tunelab.data.schema import to_table
    from tunelab.train import runs, sft
    from tunelab.train.config import TrainConfig

    store.commit("pairs", to_table(dpo_pairs(steps)), op="bench")
    cfg = TrainConfig.for_method("dpo")
    cfg.set({"model": model, "data": "pairs", "max_steps": steps, "batch_size": DPO_BATCH, "cutoff_len": DPO_CUTOFF,
             "save_steps": 0, "wait_for_others": False, "lora_r": LORA["r"], "lora_alpha": LORA["lora_alpha"],
             "lora_target": ",".join(LORA["target_modules"]), "learning_rate": DPO_LR, "pref_beta": DPO_BETA,
             "recipe": "manual", "mixed_precision": "no"})
    if "auto_report" in cfg.flat():
        cfg.set({"auto_report": False})
    run_id = runs.create(cfg)
    assert sft.main(runs.run_dir(run_id)) == 0, runs.log_tail(run_id)
    rows = runs.metrics(run_id)
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows[1:]), "loss_first": rows[0]["loss"],
            "loss_last": rows[-1]["loss"], "reward_accuracy_last": rows[-1]["reward_accuracy"],
            "peak_rss_mb": peak_rss_mb()}


def run_trl_dpo(model: str, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from _common import peak_rss_mb
    from tunelab.data.messages import to_messages
    from tunelab.models.loading import hf_dir, load_tokenizer

    tok = load_tokenizer(model)
    ds = Dataset.from_list([{"prompt": to_messages(r), "chosen": [{"role": "assistant", "content": r["chosen"]}],
                             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in dpo_pairs(steps)])
    speeds: list[float] = []
    state = {"t": 0.0, "n": 0}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            state["t"], state["n"] = time.time(), trainer._total_train_tokens

        def on_step_end(self, args, st, control, **kw):
            speeds.append((trainer._total_train_tokens - state["n"]) / (time.time() - state["t"]))

    args = DPOConfig(output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=DPO_BATCH,
                     learning_rate=DPO_LR, beta=DPO_BETA, max_length=DPO_CUTOFF, logging_steps=1,
                     save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                     precompute_ref_log_probs=True, dataloader_num_workers=0, seed=42)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(str(hf_dir(model)), dtype=torch.float32),
                         args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA), callbacks=[Clock()])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    accs = [h["rewards/accuracies"] for h in trainer.state.log_history if "rewards/accuracies" in h]
    return {"tokens_per_s": statistics.median(speeds[1:]), "loss_first": losses[0], "loss_last": losses[-1],
            "reward_accuracy_last": accs[-1] if accs else None, "peak_rss_mb": peak_rss_mb()}


def run_baseline(model: str, steps: int, checkpointing: bool = False) -> dict:
    """HF Trainer + PEFT, float32, padded batches of BATCH; checkpointing: LLaMA-Factory's default setup."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from tunelab.models.loading import hf_dir, load_tokenizer
    from tunelab.train.data import IGNORE, encode
    from _common import peak_rss_mb, sample_records

    tok = load_tokenizer(model)
    enc = encode(tok, sample_records(), CUTOFF)
    ds = Dataset.from_list([{"input_ids": i, "labels": lab} for i, lab in enc.examples])
    counted: list[int] = []

    def collate(feats):  # pad to the longest in the batch, as the usual recipes do
        width = max(len(f["input_ids"]) for f in feats)
        counted.append(sum(len(f["input_ids"]) for f in feats))
        return {"input_ids": torch.tensor([f["input_ids"] + [tok.pad_token_id] * (width - len(f["input_ids"])) for f in feats]),
                "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in feats]),
                "labels": torch.tensor([f["labels"] + [IGNORE] * (width - len(f["labels"])) for f in feats])}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.time())

        def on_step_end(self, args, state, control, **kw):
            times[-1] = time.time() - times[-1]

    base = AutoModelForCausalLM.from_pretrained(str(hf_dir(model)), dtype=torch.float32)
    if checkpointing:  # as LLaMA-Factory does: reentrant checkpointing, so the inputs must require grad
        base.config.use_cache = False
        base.enable_input_require_grads()
    net = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **LORA))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=BATCH,
                             learning_rate=LR, warmup_steps=0.05, lr_scheduler_type="linear", logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                             gradient_checkpointing=checkpointing,
                             gradient_checkpointing_kwargs={"use_reentrant": True} if checkpointing else None,
                             dataloader_num_workers=0, remove_unused_columns=False, seed=42)
    trainer = Trainer(model=net, args=args, train_dataset=ds, data_collator=collate, callbacks=[Clock()])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # the dataloader may prefetch one batch: pair each step with the batch it trained on
    speeds = [n / t for n, t in zip(counted, times)][1:]
    return {"tokens_per_s": statistics.median(speeds), "loss_first": losses[0], "loss_last": losses[-1],
            "peak_rss_mb": peak_rss_mb()}


def child(kind: str, model: str, steps: int) -> dict:
    """Run one measurement in a fresh process (its own peak RSS) with a throwaway workspace."""
    env = dict(os.environ, TUNELAB_HOME=tempfile.mkdtemp(prefix="tunelab-bench-"), HF_HUB_OFFLINE="1",
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               TUNELAB_MODEL_CACHE=os.environ.get("TUNELAB_MODEL_CACHE", str(ROOT / "data" / "model-cache")))
    t0 = time.time()
    p = subprocess.run([sys.executable, __file__, "--child", kind, "--model", model, "--steps", str(steps)],
                       capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"{kind} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(time.time() - t0, 1)
    print(kind, res, file=sys.stderr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the median of each is kept")
    ap.add_argument("--dpo", action="store_true", help="measure DPO against TRL's DPOTrainer instead of LoRA SFT")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]
    if a.child:
        fn = {"tunelab": lambda: run_tunelab(a.model, a.steps, "lora", False),
              "tunelab-gc": lambda: run_tunelab(a.model, a.steps, "lora", False, "on"),
              "baseline": lambda: run_baseline(a.model, a.steps),
              "lf-default": lambda: run_baseline(a.model, a.steps, checkpointing=True),
              "gpu-lora": lambda: run_tunelab(a.model, a.steps, "lora", True),
              "gpu-qlora": lambda: run_tunelab(a.model, a.steps, "qlora", True),
              "tunelab-dpo": lambda: run_tunelab_dpo(a.model, a.steps), "trl-dpo": lambda: run_trl_dpo(a.model, a.steps)
              }[a.child]
        print(json.dumps(fn()))
        return
    import torch
    from _common import record, row

    if a.dpo:
        bench_dpo(a)
        return

    # Alternate the children so that drift in the machine's speed (other processes share these cores)
    # touches each of them alike; keep each one's median.
    kinds = ("tunelab", "lf-default", "baseline", "tunelab-gc")
    tries = {k: [] for k in kinds}
    for _ in range(a.repeat):
        for k in kinds:
            tries[k].append(child(k, a.model, a.steps))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("tokens_per_s", "peak_rss_mb", "loss_first", "loss_last")}
           for k, v in tries.items()}
    ours, lf, base, gc = (med[k] for k in kinds)
    est = statistics.median(r["estimate_mb"] for r in tries["tunelab"])
    est_gc = statistics.median(r["estimate_mb"] for r in tries["tunelab-gc"])
    rows = [row("LoRA speed vs LLaMA-Factory default (HF Trainer + PEFT, checkpointing)", ours["tokens_per_s"],
                lf["tokens_per_s"], "tokens/s", "≥ 2x"),
            row("LoRA peak RSS vs LLaMA-Factory default", ours["peak_rss_mb"], lf["peak_rss_mb"], "MiB",
                "≥ 1.0x (RSS ≤ 1.0x)", higher_is_better=False),
            row("LoRA speed vs plain HF Trainer + PEFT", ours["tokens_per_s"], base["tokens_per_s"], "tokens/s", "≥ 1.5x"),
            row("LoRA peak RSS vs plain HF Trainer + PEFT", ours["peak_rss_mb"], base["peak_rss_mb"], "MiB",
                "≥ 1.25x (RSS ≤ 0.8x)", higher_is_better=False),
            row("TuneLab, checkpointing on: speed vs LLaMA-Factory default", gc["tokens_per_s"], lf["tokens_per_s"],
                "tokens/s", "≥ 2x"),
            row("TuneLab, checkpointing on: peak RSS vs LLaMA-Factory default", gc["peak_rss_mb"], lf["peak_rss_mb"], "MiB",
                "≥ 1.0x", higher_is_better=False),
            row("Train page memory estimate / measured peak (auto)", est, ours["peak_rss_mb"], "MiB", "0.8x - 1.2x"),
            row("Train page memory estimate / measured peak (checkpointing on)", est_gc, gc["peak_rss_mb"], "MiB",
                "0.8x - 1.2x")]
    if torch.cuda.is_available():
        for kind in ("gpu-lora", "gpu-qlora"):
            r = child(kind, a.model, a.steps)
            rows += [row(f"{kind[4:]} on GPU", r["tokens_per_s"], None, "tokens/s"),
                     row(f"{kind[4:]} peak GPU memory", r["peak_gpu_mb"], None, "MiB", higher_is_better=False)]
    from tunelab.train.sft import native_bf16_cpu

    auto = "on" if tries["tunelab"][0]["checkpointing"] else "off"
    notes = (f"{a.model}, LoRA r{LORA['r']} on {','.join(LORA['target_modules'])}, batch {BATCH}, cutoff {CUTOFF}, "
             f"{a.steps} steps, median of {a.repeat} alternating runs each, torch {torch.__version__}. "
             f"TuneLab: {BATCH} packed rows of {CUTOFF} tokens per step, loss over answer tokens in chunks, bf16 "
             f"autocast over bf16-stored frozen weights where the CPU has native bf16 (here: "
             f"{'yes' if native_bf16_cpu() else 'no'}), gradient checkpointing auto (here: {auto}). Baselines: float32 "
             f"HF Trainer + PEFT, {BATCH} examples per step padded to the longest; lf-default with reentrant "
             f"checkpointing as LLaMA-Factory. Loss first -> last: TuneLab {ours['loss_first']:.3f} -> "
             f"{ours['loss_last']:.3f}, lf-default {lf['loss_first']:.3f} -> {lf['loss_last']:.3f}, plain "
             f"{base['loss_first']:.3f} -> {base['loss_last']:.3f}. Every run: "
             + "; ".join(f"{k} " + ", ".join(f"{r['tokens_per_s']:.0f} tok/s {r['peak_rss_mb']:.0f} MiB" for r in v)
                         for k, v in tries.items()) + ". "
             + ("" if torch.cuda.is_available() else "No CUDA GPU here: GPU LoRA/QLoRA rows not measured."))
    record("train", rows, notes)


def bench_dpo(a) -> None:
    """DPO: TuneLab's loop against TRL's DPOTrainer (same pairs, LoRA, batch, reference precomputed)."""
    import torch
    from _common import record, row

    tries = [(child("tunelab-dpo", a.model, a.steps), child("trl-dpo", a.model, a.steps)) for _ in range(a.repeat)]
    ours = max((t[0] for t in tries), key=lambda r: r["tokens_per_s"])
    trl = max((t[1] for t in tries), key=lambda r: r["tokens_per_s"])
    rows = [row("DPO training speed (chosen + rejected tokens)", ours["tokens_per_s"], trl["tokens_per_s"], "tokens/s",
                "≥ 1.0x (TRL's DPOTrainer)"),
            row("DPO training peak RSS", ours["peak_rss_mb"], trl["peak_rss_mb"], "MB", higher_is_better=False)]
    notes = (f"{a.model}, DPO, {a.steps} steps x {DPO_BATCH} pairs (one epoch), LoRA r={LORA['r']} on "
             f"{','.join(LORA['target_modules'])}, beta {DPO_BETA}, lr {DPO_LR}, float32, best of {a.repeat} alternating "
             f"runs each, torch {torch.__version__}. Reference log-probs from the adapter-disabled model, computed before "
             f"training in both (TRL: precompute_ref_log_probs=True); TuneLab: logits for answer tokens only. "
             f"Loss first -> last: TuneLab {ours['loss_first']:.3f} -> {ours['loss_last']:.3f}, TRL "
             f"{trl['loss_first']:.3f} -> {trl['loss_last']:.3f}. Wall (incl. loading and reference): "
             f"{ours['wall_s']} s vs {trl['wall_s']} s.")
    record("train_dpo", rows, notes)


if __name__ == "__main__":
    main()
