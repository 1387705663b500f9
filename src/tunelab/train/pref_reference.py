"""Reference log-probs of a preference run (DPO, KTO): computed once, kept in the run folder, keyed by content.

They come from the model as it starts: a fresh LoRA adapter with the adapter disabled
(`model.disable_adapter()`, so no second copy of the model), and a run started from an SFT adapter
or a full fine-tune from its initial weights. They are kept in the run folder (REF_FILE), so a
resumed run still compares with its starting point; each example costs one forward pass without
gradients, once per run instead of once per epoch. The file is keyed by a hash of the examples'
tokens and of the starting model's weights: a changed dataset (even of the same size) or another
model recomputes them (or, where the weights have moved and cannot give the reference again, refuses).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.errors import TuneLabError
from tunelab.train.logps import sequence_logps
from tunelab.train.preference import REF_FILE, PrefEncoded, fixed_batches, collate
from tunelab.train.setup import autocast


def reference_logps(model, enc: PrefEncoded, pad_id: int, device, batch_size: int = 8, adapter_off: bool = False,
                    amp=None) -> list[list[float]]:
    """Summed answer log-probs of every sequence of every example under the model as it is now.

    Per example: [chosen, rejected] for a pair, [answer, its mismatched KL sequence] for KTO.
    adapter_off: run with the PEFT adapter disabled (the base model, without a second copy).
    """
    import contextlib

    import torch

    if not enc.examples:
        return []
    out: list[list[float]] = [[] for _ in enc.examples]
    was_training = model.training
    model.eval()
    off = model.disable_adapter() if adapter_off else contextlib.nullcontext()
    device_type = torch.device(device).type
    with torch.no_grad(), off:
        for rows in fixed_batches(enc, batch_size):
            batch = collate(enc, rows, pad_id)
            with autocast(device_type, amp):
                sums, _ = sequence_logps(model, batch, device)
                n = len(batch["index"])
                per = sums.view(-1, n).T  # (examples, sequences)
                if "kl_input_ids" in batch:
                    per = torch.cat([per, sequence_logps(model, batch, device, "kl_")[0][:, None]], 1)
            for i, vals in zip(batch["index"].tolist(), per.tolist(), strict=True):
                out[i] = vals
    model.train(was_training)
    return out


def reference_key(model, enc: PrefEncoded, eval_enc: PrefEncoded, method: str, batch_size: int,
                  adapter_off: bool) -> str:
    """A hash of what the reference log-probs depend on: the examples' tokens and the reference model's weights.

    The weights are sampled (about 1000 values per tensor, with names and shapes): a cheap
    fingerprint of the starting model; with adapter_off the adapter's own weights are left out.
    """
    from array import array

    h = hashlib.sha256(json.dumps([method, batch_size if method == "kto" else None, adapter_off]).encode())
    for part in (enc, eval_enc):
        h.update(f"|{len(part.examples)}|{part.cutoff}".encode())
        for e in part.examples:
            h.update(f"/{e.desirable}".encode())
            for ids, labels in e.seqs:
                h.update(array("q", ids).tobytes() + b"," + array("q", labels).tobytes() + b";")
    for name, p in model.named_parameters():
        if adapter_off and p.requires_grad:
            continue
        flat = p.detach().reshape(-1)
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(flat[::max(1, flat.numel() // 1024)].float().cpu().numpy().tobytes())
    return h.hexdigest()


def reference(model, run_dir: Path, enc: PrefEncoded, eval_enc: PrefEncoded, pad_id: int, device, *,
              method: str, adapter_off: bool, resuming: bool, batch_size: int, amp=None, log=print) -> dict:
    """{"train": [...], "eval": [...], "key": ...} reference log-probs, computed once per run and kept in REF_FILE.

    A resumed run reads them back when their key (reference_key) still matches: its model no longer
    is its starting point. A fresh LoRA run (adapter_off) can always recompute them, since disabling
    the adapter gives the base model; a run whose weights have moved and whose data or starting model
    changed cannot, and is refused.
    """
    if method == "orpo":
        return {"train": None, "eval": None}
    path = Path(run_dir) / REF_FILE
    key = reference_key(model, enc, eval_enc, method, batch_size, adapter_off)
    if resuming and path.exists():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("key") == key:
            return doc
        log("the reference log-probs were computed on other data or another model: computing them again")
    if resuming and not adapter_off:
        raise TuneLabError("this run's reference log-probs are missing or belong to other data or another model, "
                           "and its weights have moved from the starting point: start a new run instead of resuming")
    log(f"reference log-probs of {len(enc.examples) + len(eval_enc.examples)} examples "
        f"({'adapter disabled' if adapter_off else 'initial weights'})")
    if method == "kto":
        log(f"KTO's KL reference point: each batch's prompts with the batch's other answers "
            f"(batches of {max(2, batch_size)} answers or more)")
    doc = {"train": reference_logps(model, enc, pad_id, device, batch_size, adapter_off, amp),
           "eval": reference_logps(model, eval_enc, pad_id, device, batch_size, adapter_off, amp), "key": key}
    from tunelab.jsonio import write_atomic

    write_atomic(path, json.dumps(doc))
    return doc
