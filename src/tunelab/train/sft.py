"""The training entry point: load, wrap, train, save — one run folder in, weights and metrics out.

A plain torch loop (AdamW, linear warmup/decay, gradient accumulation and clipping): on these CPUs
it measured faster per step than HF Trainer and about 4x faster than TRL's SFTTrainer
(measured on 2-core CI machines). Loss is computed only where labels exist: the hidden states of prompt
tokens never reach the 49k-wide output layer, which saves both time and the largest activations.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

from tunelab import jobs
from tunelab.data import store
from tunelab.errors import TuneLabError
from tunelab.jsonio import append_jsonl, read_json, read_jsonl, write_atomic
from tunelab.models import run_output
from tunelab.train import data as tdata
from tunelab.train import inputs, pref_reference, preference, tracking, validate
from tunelab.train.config import PREFERENCE_METHODS, TrainConfig, tuning
from tunelab.train.loss import (  # noqa: F401  (re-exported: the loss lives in train/loss.py)
    CE_CHUNK_ELEMENTS,
    batch_loss,
    chunked_cross_entropy,
    head_owner,
    verify_head,
)
from tunelab.train.fused import fuse
from tunelab.train.setup import (  # noqa: F401  (re-exported: loading and precision live in train/setup.py)
    QLORA_CPU,
    accelerate_kind,
    autocast,
    autocast_dtype,
    base_and_init,
    cast_frozen,
    check_method,
    check_parallel,
    load_model,
    load_records,
    native_bf16_cpu,
)
from tunelab.train.stopping import EarlyStopping, evaluate_sft

KEEP_CHECKPOINTS = 2
STATE_JSON, STATE_TENSORS = "state.json", "state.safetensors"  # optimizer, scheduler, RNG, step


def evaluate(model, enc: tdata.Encoded, cfg: TrainConfig, pad_id: int, device) -> float | None:
    """Mean loss per response token on the held-out examples (stopping.evaluate_sft adds its standard error)."""
    return evaluate_sft(model, enc, cfg, pad_id, device)[0]


def save_checkpoint(run_dir: Path, model, tok, opt, sched, step: int, cfg: TrainConfig, base: str,
                    init: str | None, best: dict | None = None) -> None:
    """Write checkpoints/step-N atomically, publish its weights as the run's output, prune old ones.

    best: early stopping's record ({"step", "loss", "bad"}); its step's checkpoint is never pruned.
    """
    import torch

    full = tuning(cfg) == "full"
    sub = "model" if full else "adapter"
    ck = run_dir / "checkpoints" / f"step-{step}"
    tmp = ck.with_name(f".{ck.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / sub)
    tok.save_pretrained(tmp / sub)
    save_state(tmp, {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "best": best})
    shutil.rmtree(ck, ignore_errors=True)
    os.replace(tmp, ck)
    publish(run_dir, step, cfg, base, init)
    done = sorted((p for p in ck.parent.glob("step-*")), key=lambda p: int(p.name[5:]))
    keep = (best or {}).get("step")
    for p in done[:-KEEP_CHECKPOINTS]:
        if p.name != f"step-{keep}":
            shutil.rmtree(p, ignore_errors=True)


def publish(run_dir: Path, step: int, cfg: TrainConfig, base: str, init: str | None) -> None:
    """Make checkpoints/step-N's weights the run's output (adapter/ or model/ and output.json)."""
    sub = "model" if tuning(cfg) == "full" else "adapter"
    ck = run_dir / "checkpoints" / f"step-{step}"
    # Hard links, so a full model is not copied; swap by rename so readers never see half.
    staged, old = run_dir / f".{sub}.new", run_dir / f".{sub}.old"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(ck / sub, staged, copy_function=os.link)
    if (run_dir / sub).exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(run_dir / sub, old)
    os.replace(staged, run_dir / sub)
    shutil.rmtree(old, ignore_errors=True)
    # The run's public contract with the models layer (models/run_output.py): method says how to load the weights.
    lineage = {"init_adapter": init, "data": cfg.data.data, "data_version": cfg.data.data_version}
    if cfg.method.method in PREFERENCE_METHODS:
        lineage["objective"] = cfg.method.method
    run_output.write(run_dir, base, tuning(cfg), step, lineage)


def save_state(ck: Path, state: dict) -> None:
    """Write a checkpoint's training state as state.json plus its tensors in state.safetensors.

    Never a pickle: loading one runs whatever code a planted file holds.
    """
    from safetensors.torch import save_file

    tensors: dict = {}
    doc = _encode(state, tensors)
    save_file(tensors, str(ck / STATE_TENSORS))
    write_atomic(ck / STATE_JSON, json.dumps(doc))


def load_state(ck: Path) -> dict:
    """A checkpoint's training state (the inverse of save_state), refused with one line when unreadable.

    A state.pt from before safetensors states is read with torch's restricted unpickler only, which
    loads tensors and plain containers and refuses anything that would run code.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if (ck / STATE_JSON).exists():
        try:
            return _decode(read_json(ck / STATE_JSON), load_file(str(ck / STATE_TENSORS)))
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise TuneLabError(f"checkpoint {ck.name} has an unreadable training state ({type(exc).__name__})") from exc
    if (ck / "state.pt").exists():
        try:
            return torch.load(ck / "state.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for a pickle that would build arbitrary objects
            raise TuneLabError(f"checkpoint {ck.name} has a state.pt that is not plain tensors; "
                               f"it was not loaded, since unpickling it could run code") from exc
    raise TuneLabError(f"checkpoint {ck.name} has no training state (state.json)")


def _encode(obj, tensors: dict):
    """obj as JSON: tensors moved into `tensors` and referenced by key; tuples and non-string keys kept."""
    import torch

    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(obj, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a {type(obj).__name__} cannot be stored in a checkpoint's state")


def _decode(doc, tensors: dict):
    if isinstance(doc, list):
        return [_decode(v, tensors) for v in doc]
    if isinstance(doc, dict):
        if "tensor" in doc:
            return tensors[doc["tensor"]]
        if "tuple" in doc:
            return tuple(_decode(v, tensors) for v in doc["tuple"])
        return {_decode(k, tensors): _decode(v, tensors) for k, v in doc["dict"]}
    return doc


def resume_checkpoint(run_dir: Path, cfg: TrainConfig) -> Path | None:
    """The checkpoint folder to resume from (per cfg.training.resume_from), or None."""
    if not cfg.training.resume_from:
        return None
    cks = sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    if cfg.training.resume_from == "last":
        return cks[-1] if cks else None
    ck = run_dir / "checkpoints" / inputs.check_resume_from(cfg.training.resume_from)  # never a path out of the run
    if not ck.is_dir():
        raise TuneLabError(f"no checkpoint {cfg.training.resume_from!r} in {run_dir.name}")
    return ck


def all_ranks(accel, values: list[float], op: str = "sum") -> list[float]:
    """values summed (op="max": maxed) over every process of a distributed run; unchanged in a single one."""
    if accel.num_processes == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=accel.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def train(run_dir: Path, stopping) -> str:
    """Train the run in run_dir to the end (or until stopping()); returns the final status."""
    with tracking.open_trackers(run_dir) as trackers:  # TensorBoard always; MLflow / W&B per report_to
        return _train(run_dir, stopping, trackers)


def _train(run_dir: Path, stopping, trackers: tracking.Trackers) -> str:
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from tunelab.models.loading import load_tokenizer
    from tunelab.models.templates import apply_to as apply_template

    cfg = TrainConfig.from_yaml(run_dir / "config.yaml")
    t = cfg.training
    check_method(cfg.method.method)
    if t.threads:
        torch.set_num_threads(t.threads)
    cuda = torch.cuda.is_available()
    accel = Accelerator(cpu=not cuda)
    main = accel.is_main_process
    if (run_dir / "accelerate.yaml").exists():  # FSDP / DeepSpeed as asked, or one line (never a silent DDP)
        check_parallel(accelerate_kind(run_dir / "accelerate.yaml"), cuda, accel.distributed_type.value)
    if main and accel.num_processes > 1:
        log(f"{accel.num_processes} processes: {accel.distributed_type.value}")
    if main and accel.device.type == "cpu":
        waits = os.environ.get("OMP_WAIT_POLICY", "spin, then sleep (OpenMP's default: the cores were idle at launch)")
        log(f"{torch.get_num_threads()} threads, OpenMP waits: {waits}")
    random.seed(t.seed)
    torch.manual_seed(t.seed)

    base, init = base_and_init(cfg)
    cfg.data.data_version = store.resolve_version(cfg.data.data, cfg.data.data_version)
    tok = load_tokenizer(base)
    log(f"chat template: {apply_template(tok, cfg.model.template, base)}")
    train_recs, eval_recs = load_records(cfg)
    pref = cfg.method.method if cfg.method.method in PREFERENCE_METHODS else None
    if pref:  # preference methods differ from SFT only in the examples, the batches and the loss
        enc = preference.encode(tok, train_recs, cfg.data.cutoff_len, pref)
        eval_enc = preference.encode(tok, eval_recs, cfg.data.cutoff_len, pref)
        preference.check_usable(enc, pref, cfg.data.data)
        if enc.skipped:
            log(f"{enc.skipped} records have no preference pair{' or KTO label' if pref == 'kto' else ''}: skipped")
    else:
        enc = tdata.encode(tok, train_recs, cfg.data.cutoff_len)
        eval_enc = tdata.encode(tok, eval_recs, cfg.data.cutoff_len)
    if not enc.examples:
        raise TuneLabError(f"dataset {cfg.data.data!r} has no usable records (empty, or every answer lies past the cutoff)")
    log(f"{len(enc.examples)} examples, {enc.tokens} tokens; {enc.truncated} truncated at {cfg.data.cutoff_len} tokens, "
        f"{enc.dropped} dropped (answer past the cutoff)")

    from tunelab.train.estimate import checkpointing

    recompute, why = checkpointing(cfg, accel.device.type)
    log(f"gradient checkpointing {why}")
    model = load_model(cfg, base, init, accel.device, checkpointing=recompute)
    amp = autocast_dtype(cfg, accel.device.type)
    if amp is not None and tuning(cfg) != "full":
        cast_frozen(model, amp)
    if tuning(cfg) != "full":
        fuse(model)  # frozen norms and SiLU MLPs keep less for the backward (train/fused.py)
    ptuning = cfg.method.method == "ptuning" or getattr(getattr(model, "peft_config", {}).get("default"), "is_prompt_learning", False)
    packing = cfg.data.packing and not ptuning and not pref  # virtual tokens would sit in front of the first example only
    params = [p for p in model.parameters() if p.requires_grad]
    log(f"trainable parameters: {sum(p.numel() for p in params):,} of {sum(p.numel() for p in model.parameters()):,}")

    if pref:
        rows, per_batch = preference.plan_rows(enc, t.batch_size)
    else:
        rows, per_batch = tdata.plan_rows(enc, cfg.data.cutoff_len, packing, t.batch_size)
    collate = preference.collate if pref else tdata.collate
    world, ga = accel.num_processes, t.grad_accum
    micro_per_epoch = math.ceil(len(rows) / per_batch)
    steps_per_epoch = max(1, micro_per_epoch // (ga * world))
    max_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    opt = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(t.warmup_ratio * max_steps), max_steps)
    model, opt = accel.prepare(model, opt)

    step, ck = 0, resume_checkpoint(run_dir, cfg)
    ref, kto_w = {"train": None, "eval": None}, (cfg.method.kto_desirable_weight, cfg.method.kto_undesirable_weight)
    if pref:  # from the starting weights, so before a checkpoint is loaded (a fresh LoRA: adapter disabled)
        ref = pref_reference.reference(accel.unwrap_model(model), run_dir, enc, eval_enc, tok.pad_token_id, accel.device, method=pref,
                                   adapter_off=init is None and tuning(cfg) == "lora", resuming=ck is not None,
                                   batch_size=t.batch_size, amp=amp, log=log)
    # Early stopping: the best eval loss so far, its step, and evaluations since that were clearly worse.
    stop = EarlyStopping.for_run(t.early_stopping_patience if eval_enc.examples else 0, len(eval_enc.examples), max_steps)
    best, patience = stop.best, stop.patience
    if stop.why_off:
        log(stop.why_off)
    if ck is not None:
        state = load_state(ck)
        best.update(state.get("best") or {})
        _load_weights(accel.unwrap_model(model), ck, cfg)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        step = state["step"]
        log(f"resumed from {ck.name}")
    if main:  # rows past the checkpoint were never saved: drop them so resumed steps do not duplicate
        rows_kept = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("step", 0) <= step]
        write_atomic(run_dir / "metrics.jsonl", "".join(_jsonl(r) for r in rows_kept))
        jobs.write_status(run_dir, step=step, max_steps=max_steps, processes=world,
                          progress=f"{step}/{max_steps}", truncated=enc.truncated, dropped=enc.dropped,
                          examples=len(enc.examples))

    def micro_batches(start_step: int):
        """Global micro-batch k belongs to rank k % world; epochs reshuffle with (seed, epoch)."""
        k, cached = start_step * ga * world, (None, None)
        while True:
            epoch, j = divmod(k, micro_per_epoch)
            if cached[0] != epoch:
                cached = (epoch, tdata.epoch_batches(rows, per_batch, epoch, t.seed, packing))
            if k % world == accel.process_index:  # the global position: ranks stay in step across epochs
                yield epoch, collate(enc, cached[1][j], tok.pad_token_id, packing)
            k += 1

    stream, saved = micro_batches(step), step
    if amp is not None:
        log(f"mixed precision: {amp} autocast, float32 weights ({cfg.training.mixed_precision})")
    model.train()
    early = halt = checked = False
    while step < max_steps and not early:
        # Every rank stops at the same step: one that left alone would leave the others waiting in an all-reduce.
        if all_ranks(accel, [float(stopping())], "max")[0]:
            halt = True
            break
        t0 = time.time()
        group = [next(stream) for _ in range(ga)]
        if not checked and not pref and not ptuning:  # TuneLab's loss == the model's own, or the model's head
            checked, msg = True, verify_head(model, group[0][1], accel.device, amp)
            if msg:
                log(msg)
        if pref:  # the loss is a mean over pairs (KTO: answers); SFT's over response tokens
            n_loss, tally = sum(b["n_units"] for _, b in group), preference.Tally()
        else:
            n_loss = sum(int((b["labels"][:, 1:] != tdata.IGNORE).sum()) for _, b in group)
        # Divide by the global count, and undo DDP's mean over ranks (x world): the update is then the
        # per-token mean over the global batch, the same as one process with grad_accum x world.
        n_loss, tokens = all_ranks(accel, [n_loss, sum(b["n_tokens"] for _, b in group)])
        total = 0.0
        for i, (_, b) in enumerate(group):
            # gradients are all-reduced once per step, on the last micro-batch
            sync = contextlib.nullcontext() if i == ga - 1 else accel.no_sync(model)
            with sync:  # DDP decides in the forward pass whether the backward all-reduces
                with autocast(accel.device.type, amp):
                    if pref:
                        loss = preference.batch_loss(model, b, ref["train"], pref, cfg.method.pref_beta,
                                                     cfg.method.pref_loss, accel.device, tally, kto_w) / max(n_loss, 1)
                    else:
                        loss = batch_loss(model, b, ptuning, accel.device) / max(n_loss, 1)
                accel.backward(loss * world)
            total += float(loss.detach())
        total = all_ranks(accel, [total])[0]  # the global batch's loss, not rank 0's share
        validate.stop_if_nonfinite(step + 1, total)  # every rank has the same total: all stop together
        if pref and world > 1:  # and its reward metrics: the tally holds sums, so sum them over ranks
            for name, value in zip(vars(tally), all_ranks(accel, [float(v) for v in vars(tally).values()])):
                setattr(tally, name, value)
        grad_norm = float(accel.clip_grad_norm_(params, t.max_grad_norm or float("inf")))
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        seconds = time.time() - t0  # before evaluation, so tokens/s is training speed
        eval_loss, eval_se, extra = None, None, {}
        if eval_enc.examples and ((t.eval_steps and step % t.eval_steps == 0) or step == max_steps):
            if pref:
                extra = preference.evaluate(model, eval_enc, ref["eval"], pref, cfg.method.pref_beta, cfg.method.pref_loss,
                                            tok.pad_token_id, accel.device, t.batch_size, amp, kto_w)
                eval_loss, eval_se = extra.pop("eval_loss"), extra.pop("eval_loss_se", None)
            else:
                eval_loss, eval_se = evaluate_sft(model, eval_enc, cfg, tok.pad_token_id, accel.device)
        if eval_loss is not None:  # every rank evaluates the same examples: agree, so early stopping agrees
            known_se = eval_se is not None  # too few examples for a standard error: it stays unknown (None)
            eval_loss, eval_se = (v / world for v in all_ranks(accel, [eval_loss, eval_se or 0.0]))
            eval_se = eval_se if known_se else None
        new_best, early = stop.update(step, eval_loss, eval_se)
        if main:
            row = {"step": step, "loss": round(total, 6), "eval_loss": eval_loss, "eval_loss_se": eval_se,
                   "learning_rate": lr, "grad_norm": round(grad_norm, 6), "tokens": int(tokens),
                   "tokens_per_s": round(tokens / seconds, 1),
                   "epoch": round(step / steps_per_epoch, 3), "time": time.time()}
            if pref:  # every preference row carries its reward metrics (eval_ ones when evaluated)
                row.update(tally.metrics(), **extra)
            append_jsonl(run_dir / "metrics.jsonl", row)
            trackers.log(row)
            jobs.write_status(run_dir, step=step, progress=f"{step}/{max_steps}", best_step=best["step"],
                              best_eval_loss=best["loss"])
            log(f"step {step}/{max_steps} loss {total:.4f} lr {lr:.2e} grad_norm {grad_norm:.3f} {row['tokens_per_s']} tok/s")
        # With early stopping, every new best is saved: it may become the run's result.
        due = (step == max_steps or stopping() or early or (patience and new_best)
               or (t.save_steps and step % t.save_steps == 0))
        if main and due:
            save_checkpoint(run_dir, accel.unwrap_model(model), tok, opt, sched, step, cfg, base, init, best)
            saved = step
    if main and halt and step > saved:
        save_checkpoint(run_dir, accel.unwrap_model(model), tok, opt, sched, step, cfg, base, init, best)
    if early:
        log(f"early stopping at step {step}: {patience} evaluations worse than the best by more than their noise")
    if patience and best["step"] and (early or step >= max_steps):
        kept = (run_dir / "checkpoints" / f"step-{best['step']}").is_dir()
        if main and best["step"] != step and kept:  # the run's result is its best step, not its last
            publish(run_dir, best["step"], cfg, base, init)
            log(f"the run's weights are step {best['step']}'s (best eval loss {best['loss']:.4f})")
        if main:
            jobs.write_status(run_dir, early_stopped=early, best_step=best["step"], best_eval_loss=best["loss"])
    return "completed" if early or step >= max_steps else "stopped"


def _load_weights(model, ck: Path, cfg: TrainConfig) -> None:
    """Load a checkpoint's trainable weights into the wrapped model."""
    if tuning(cfg) == "full":
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(ck / "model" / "model.safetensors")), strict=False)
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(ck / "adapter" / "adapter_model.safetensors")))


def _jsonl(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
