"""Where a LoRA training step's CPU time and memory go: torch.profiler over a few steps of TuneLab's loop.

Same setup as the peer harness (SmolLM2-135M-Instruct, alpaca_en_demo, LoRA r 8 on q,v, cutoff 256,
batch 4, the default's batching and precision), built from train/sft.py's own pieces; prints the top
operators by self CPU time and the process's RSS after loading and after the steps.

    .venv/bin/python bench/profile_step.py [--steps 3] [--packing] [--checkpointing] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/peers/data/alpaca_en_demo.json")


def rss() -> str:
    s = {ln.split(":")[0]: ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(("VmRSS", "VmHWM"))}
    return f"RSS {int(s['VmRSS']) // 1024} MiB, peak {int(s['VmHWM']) // 1024} MiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--packing", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--unfused", action="store_true", help="without train/fused.py's norms and MLPs")
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tunelab.models.loading import load_tokenizer
    from tunelab.train import data as tdata
    from tunelab.train import sft
    from tunelab.train.config import TrainConfig

    cfg = TrainConfig.for_method("lora")
    cfg.set({"model": "smollm2-135m-instruct", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
             "lora_target": "q_proj,v_proj", "cutoff_len": 256, "batch_size": 4, "packing": a.packing})
    tok = load_tokenizer(cfg.model.model)
    recs = [dict(r, system="", history=[]) for r in json.loads(Path(a.data).read_text())]
    enc = tdata.encode(tok, recs, 256)
    model = sft.load_model(cfg, cfg.model.model, None, torch.device("cpu"), checkpointing=a.checkpointing)
    amp = sft.autocast_dtype(cfg, "cpu")
    if amp is not None:
        sft.cast_frozen(model, amp)
    if not a.unfused:
        from tunelab.train.fused import fuse

        fuse(model)
    print(f"loaded: {rss()}; autocast {amp}")
    rows, per = tdata.plan_rows(enc, 256, a.packing, 4)
    batches = [tdata.collate(enc, b, tok.pad_token_id, a.packing) for b in tdata.epoch_batches(rows, per, 0, 42, a.packing)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    model.train()

    def step(b):
        with sft.autocast("cpu", amp):
            n = int((b["labels"][:, 1:] != tdata.IGNORE).sum())
            loss = sft.batch_loss(model, b, False, torch.device("cpu")) / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])
    t0, tokens = time.time(), 0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for b in batches[1:1 + a.steps]:
            step(b)
            tokens += b["n_tokens"]
    print(f"{a.steps} steps, {tokens / (time.time() - t0):.1f} non-pad tokens/s (profiled); after: {rss()}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))


if __name__ == "__main__":
    main()
