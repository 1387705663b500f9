"""Preference tuning (DPO, ORPO, KTO): the batch builder, the losses with their metrics, and preference accuracy.

A pair record holds a prompt (system, history, instruction, input) with a `chosen` and a
`rejected` answer; a KTO record holds one answer (`output`) and `kto_tag` (True = desirable).
KTO also learns from pairs (chosen desirable, rejected undesirable); DPO and ORPO need pairs.

The losses are TRL 1.16's (`DPOTrainer._compute_loss`, `ORPOTrainer.odds_ratio_loss`,
`KTOTrainer._compute_loss`) on the same log-probabilities, in this project's own loop rather than
TRL's trainers: bench/train_bench.py measured TRL's DPOTrainer slower per token on the same
pairs (bench/RESULTS.md). tests/test_preference_oracle.py holds each loss against TRL's own code
on the same batch.

- DPO: -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) over the answers' summed token
  log-probs (`ipo`: TRL's length-normalised squared form; `hinge`: relu(1 - beta * delta)).
- ORPO: NLL(chosen) + lambda * -logsigmoid(log-odds(chosen) - log-odds(rejected)) on per-token
  mean log-probs, no reference model. The NLL is the chosen answer's mean per-token loss, averaged
  over pairs (the paper's form; TRL 1.16 averages over every chosen token of a batch, the prompt's too).
- KTO (the paper's loss as TRL's KTOTrainer computes it, `loss_type="kto"`): with r = pi - ref
  (summed log-probs) and z0 the KL reference point, a desirable answer costs
  desirable_weight * (1 - sigmoid(beta * (r - z0))), an undesirable one
  undesirable_weight * (1 - sigmoid(beta * (z0 - r))); the batch's loss is their mean. z0 is
  estimated in every batch from mismatched pairs, each prompt with the previous example's answer
  (TRL's rotation by one): the mean of (policy - reference) log-probs of those sequences, computed
  without gradients and clamped at 0. KTO batches are fixed groups of at least 2 examples (the
  batches' order is shuffled each epoch, their members are not), so the mismatched answers are the
  batch's own answers, as TRL recommends, and their reference log-probs are computed once.

The reference log-probs (DPO, KTO) are computed once per run: train/pref_reference.py.

Metrics (every logged step, on train and eval): loss, reward_margin (mean chosen minus mean
rejected implicit reward, beta * log-ratio; ORPO: beta * mean log-prob), reward_accuracy (share of
pairs whose chosen reward is the higher; KTO: share of answers on their label's side of z0), and
logps_chosen / logps_rejected (the log-probs the loss uses: summed for DPO and KTO, per-token mean
for ORPO; for KTO the desirable and undesirable answers); KTO rows also carry kl (z0, mean over batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tunelab.data.messages import tokenize
from tunelab.errors import TuneLabError
from tunelab.train.logps import sequence_logps
from tunelab.train.setup import autocast

METHODS = ("dpo", "orpo", "kto")
PAIR_METHODS = ("dpo", "orpo")
LOSSES = ("sigmoid", "ipo", "hinge")
IGNORE = -100
REF_FILE = "reference_logps.json"  # train/pref_reference.py
SEQS_PER_EXAMPLE = {"dpo": 2, "orpo": 2, "kto": 1}  # sequences a training example puts through the model with gradients


@dataclass
class Example:
    """One training unit: [chosen, rejected] sequences for a pair, [answer] for KTO."""

    seqs: list[tuple[list[int], list[int]]]  # (input_ids, labels) per answer, labels -100 on the prompt
    desirable: bool | None = None  # KTO's label


@dataclass
class PrefEncoded:
    """Tokenised preference examples plus what was lost (the same counters as SFT's Encoded)."""

    examples: list[Example] = field(default_factory=list)
    truncated: int = 0  # examples with an answer cut at the cutoff
    dropped: int = 0  # examples with an answer wholly past the cutoff
    skipped: int = 0  # records without what the method needs (a pair, or a KTO label)
    cutoff: int = 0  # longest sequence (KTO's mismatched prompt + answer sequences are cut here too)

    @property
    def tokens(self) -> int:
        return sum(len(ids) for e in self.examples for ids, _ in e.seqs)


def is_pair(r: dict) -> bool:
    return bool(r.get("chosen")) and bool(r.get("rejected"))


def units(method: str, records: list[dict]) -> list[tuple[tuple[dict, ...], bool | None]]:
    """What each record gives the method: ((chosen, rejected), None) for DPO/ORPO, ((answer,), desirable) for KTO."""
    out = []
    for r in records:
        if is_pair(r):
            c, rj = {**r, "output": r["chosen"]}, {**r, "output": r["rejected"]}
            out += [((c, rj), None)] if method in PAIR_METHODS else [((c,), True), ((rj,), False)]
        elif method == "kto" and r.get("kto_tag") is not None and r.get("output"):
            out.append(((r,), bool(r["kto_tag"])))
    return out


def encode(tok, records: list[dict], cutoff: int, method: str) -> PrefEncoded:
    """Token ids and labels (loss on the answers only) for a preference method, cut at cutoff.

    Args:
        tok: a tokenizer with a chat template.
        records: dataset records with chosen/rejected (pairs) or output + kto_tag (KTO).
        cutoff: longest sequence (prompt + one answer) in tokens.
        method: dpo, orpo or kto.
    Returns:
        PrefEncoded; records the method cannot use are counted in `skipped`.
    """
    out = PrefEncoded(cutoff=cutoff)
    us = units(method, records)
    usable = sum(1 for r in records if is_pair(r) or (method == "kto" and r.get("kto_tag") is not None and r.get("output")))
    out.skipped = len(records) - usable
    tokens = iter(tokenize(tok, [rec for u, _ in us for rec in u]))
    for u, desirable in us:
        seqs, cut = [], False
        for _ in u:
            prompt, answer = next(tokens)
            ids, labels = prompt + answer, [IGNORE] * len(prompt) + answer
            if len(ids) > cutoff:
                cut, ids, labels = True, ids[:cutoff], labels[:cutoff]
            seqs.append((ids, labels))
        if any(all(x == IGNORE for x in labels) for _, labels in seqs):
            out.dropped += 1
            continue
        out.truncated += cut
        out.examples.append(Example(seqs, desirable))
    return out


def check_usable(enc: PrefEncoded, method: str, data: str) -> None:
    """Refuse a dataset that gives the method nothing to learn from, in one sentence."""
    if enc.examples:
        return
    if method == "kto":
        raise TuneLabError(f"dataset {data!r} has no KTO records or preference pairs for kto (records need "
                           f"chosen and rejected answers, or an output with kto_tag)")
    raise TuneLabError(f"dataset {data!r} has no preference pairs for {method} (records need both a chosen and a "
                       f"rejected answer within the cutoff)")


def plan_rows(enc: PrefEncoded, batch_size: int) -> tuple[list[list[int]], int]:
    """(rows, rows per batch): one example per row, rows of similar length side by side (a batch pads little).

    KTO: each row is a whole batch of at least 2 examples (a lone last one joins the batch before),
    so its mismatched answers for the KL reference point are fixed and are the batch's own.
    """
    order = sorted(range(len(enc.examples)), key=lambda i: max(len(ids) for ids, _ in enc.examples[i].seqs))
    if not enc.examples or enc.examples[0].desirable is None:
        return [[i] for i in order], batch_size
    size = max(2, batch_size)
    groups = [order[k:k + size] for k in range(0, len(order), size)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        lone = groups.pop()
        groups[-1] += lone
    return groups, 1


def _split(ids: list[int], labels: list[int]) -> int:
    """Where the answer starts (the prompt's labels are IGNORE)."""
    return next((k for k, x in enumerate(labels) if x != IGNORE), len(labels))


def kl_sequences(exs: list[Example], cutoff: int) -> list[tuple[list[int], list[int]]]:
    """KTO's mismatched sequences: example i's prompt with example i-1's answer (TRL's rotation by one)."""
    out = []
    for k, e in enumerate(exs):
        ids, labels = e.seqs[0]
        other_ids, other_labels = exs[k - 1].seqs[0]
        p, q = _split(ids, labels), _split(other_ids, other_labels)
        kl_ids, kl_labels = ids[:p] + other_ids[q:], [IGNORE] * p + other_labels[q:]
        if cutoff:
            kl_ids, kl_labels = kl_ids[:cutoff], kl_labels[:cutoff]
        out.append((kl_ids, kl_labels))
    return out


def _pad(seqs: list[tuple[list[int], list[int]]], pad_id: int, prefix: str = "") -> dict:
    import torch

    width = max(len(ids) for ids, _ in seqs)
    return {prefix + "input_ids": torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in seqs]),
            prefix + "labels": torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in seqs]),
            prefix + "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in seqs])}


def collate(enc: PrefEncoded, batch: list[list[int]], pad_id: int, packing: bool = False) -> dict:
    """Tensors for a batch of examples: every chosen sequence first, then every rejected one (pairs).

    Returns input_ids, attention_mask, labels (right-padded), index (the examples' indices),
    desirable and kl_input_ids / kl_attention_mask / kl_labels (KTO), n_tokens and n_units (pairs or KTO answers).
    """
    import torch

    idx = [i for row in batch for i in row]
    exs = [enc.examples[i] for i in idx]
    n_seq = len(exs[0].seqs)
    seqs = [e.seqs[k] for k in range(n_seq) for e in exs]  # chosen block, then rejected block
    out = {**_pad(seqs, pad_id), "index": torch.tensor(idx)}
    if exs[0].desirable is not None:
        out["desirable"] = torch.tensor([bool(e.desirable) for e in exs])
        out.update(_pad(kl_sequences(exs, enc.cutoff), pad_id, "kl_"))
    out["n_tokens"] = sum(len(ids) for ids, _ in seqs)
    out["n_units"] = len(exs)
    return out


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2."""
    import torch

    x = x.clamp(max=-1e-7)
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def dpo_loss(pi_c, pi_r, ref_c, ref_r, beta: float, loss_type: str = "sigmoid", n_c=None, n_r=None):
    """Per-pair DPO loss and the chosen/rejected implicit rewards (beta * log-ratio), as TRL computes them.

    Args:
        pi_c, pi_r, ref_c, ref_r: summed answer log-probs (policy, reference) of chosen and rejected, shape (B,).
        beta: DPO's beta (how far from the reference the policy may move; larger = closer).
        loss_type: sigmoid (DPO), ipo or hinge.
        n_c, n_r: answer token counts (ipo normalises by them).
    Returns:
        (losses (B,), chosen_rewards (B,), rejected_rewards (B,)).
    """
    import torch
    import torch.nn.functional as F

    lc, lr = pi_c - ref_c, pi_r - ref_r
    delta = lc - lr
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * delta)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        losses = (lc / n_c.clamp(min=1) - lr / n_r.clamp(min=1) - 1 / (2 * beta)) ** 2
    else:
        raise TuneLabError(f"pref_loss must be one of {', '.join(LOSSES)}, got {loss_type!r}")
    return losses, beta * lc.detach(), beta * lr.detach()


def orpo_loss(mean_c, mean_r, lam: float):
    """Per-pair ORPO loss: NLL of the chosen answer plus lambda x the odds-ratio term (mean per-token log-probs)."""
    import torch.nn.functional as F

    log_odds = (mean_c - mean_r) - (_log1mexp(mean_c) - _log1mexp(mean_r))
    return -mean_c - lam * F.logsigmoid(log_odds), lam * mean_c.detach(), lam * mean_r.detach()


def kto_loss(pi, ref, desirable, beta: float, kl, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """Per-answer KTO loss (weighted) and implicit rewards (beta * log-ratio), as TRL's KTOTrainer computes them.

    Args:
        pi, ref: summed answer log-probs of the policy and the reference, shape (B,).
        desirable: bool tensor (B,), the answers' labels.
        beta: KTO's beta.
        kl: the reference point z0 (a detached scalar, already clamped at 0).
        desirable_weight, undesirable_weight: the weights of the two kinds of answers.
    Returns:
        (losses (B,), rewards (B,)); the batch's loss is losses.mean().
    """
    import torch

    r = pi - ref
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - r))))
    return losses, beta * r.detach()


def kl_point(model, batch: dict, ref_kl, device):
    """KTO's reference point: mean (policy - reference) log-prob of the batch's mismatched sequences, >= 0, no gradient."""
    import torch

    with torch.no_grad():
        kl_sums, _ = sequence_logps(model, batch, device, "kl_")
    return (kl_sums - ref_kl).mean().clamp(min=0).detach()


@dataclass
class Tally:
    """Sums over the micro-batches of a step (or an evaluation), turned into the metrics row."""

    units: int = 0
    loss: float = 0.0
    correct: float = 0.0
    reward_c: float = 0.0
    reward_r: float = 0.0
    logps_c: float = 0.0
    logps_r: float = 0.0
    n_c: int = 0
    n_r: int = 0
    kl: float = 0.0  # KTO: the reference points of the batches, summed
    n_kl: int = 0

    def metrics(self, prefix: str = "") -> dict:
        """{loss, reward_margin, reward_accuracy, logps_chosen, logps_rejected} with an optional prefix."""
        mean = lambda s, n: round(s / n, 6) if n else None  # noqa: E731
        margin = (self.reward_c / self.n_c if self.n_c else 0.0) - (self.reward_r / self.n_r if self.n_r else 0.0)
        out = {f"{prefix}reward_margin": round(margin, 6),
               f"{prefix}reward_accuracy": mean(self.correct, self.units) if self.units else 0.0,
               f"{prefix}logps_chosen": mean(self.logps_c, self.n_c),
               f"{prefix}logps_rejected": mean(self.logps_r, self.n_r)}
        if self.n_kl:
            out[f"{prefix}kl"] = mean(self.kl, self.n_kl)
        return out


def batch_loss(model, batch: dict, ref: dict | None, method: str, beta: float, loss_type: str, device, tally: Tally,
               weights: tuple[float, float] = (1.0, 1.0)):
    """The summed preference loss of one batch (divide by the step's units); adds its metrics to tally.

    Args:
        model: the policy.
        batch: from collate().
        ref: {example index: [reference summed log-probs per sequence]} (DPO: chosen, rejected; KTO: the
            answer, its mismatched sequence), None for ORPO.
        method: dpo, orpo or kto.
        beta: pref_beta (DPO/KTO beta, ORPO lambda).
        loss_type: DPO's variant.
        device: where the model is.
        tally: accumulates loss and metrics.
        weights: KTO's (desirable_weight, undesirable_weight).
    """
    import torch

    sums, counts = sequence_logps(model, batch, device)
    idx = batch["index"].tolist()
    b = len(idx)
    if method == "kto":
        refs = torch.tensor([ref[i] for i in idx], device=sums.device, dtype=sums.dtype)
        des = batch["desirable"].to(sums.device)
        kl = kl_point(model, batch, refs[:, 1], device)
        losses, rewards = kto_loss(sums, refs[:, 0], des, beta, kl, *weights)
        right = torch.where(des, rewards > beta * kl, rewards < beta * kl)
        tally.kl += float(kl)
        tally.n_kl += 1
        tally.reward_c += float(rewards[des].sum())
        tally.reward_r += float(rewards[~des].sum())
        tally.logps_c += float(sums[des].detach().sum())
        tally.logps_r += float(sums[~des].detach().sum())
        n_des = int(des.sum())
        tally.n_c += n_des
        tally.n_r += b - n_des
    else:
        pc, pr, nc, nr = sums[:b], sums[b:], counts[:b], counts[b:]
        if method == "dpo":
            refs = torch.tensor([ref[i] for i in idx], device=sums.device, dtype=sums.dtype)
            losses, rc, rr = dpo_loss(pc, pr, refs[:, 0], refs[:, 1], beta, loss_type, nc, nr)
            shown_c, shown_r = pc, pr
        else:
            shown_c, shown_r = pc / nc.clamp(min=1), pr / nr.clamp(min=1)
            losses, rc, rr = orpo_loss(shown_c, shown_r, beta)
        right = rc > rr
        tally.reward_c += float(rc.sum())
        tally.reward_r += float(rr.sum())
        tally.logps_c += float(shown_c.detach().sum())
        tally.logps_r += float(shown_r.detach().sum())
        tally.n_c += b
        tally.n_r += b
    tally.units += b
    tally.correct += float(right.float().sum())
    loss = losses.sum()
    tally.loss += float(loss.detach())
    return loss


def fixed_batches(enc: PrefEncoded, batch_size: int) -> list[list[list[int]]]:
    """The batches of an evaluation or a reference pass, in a fixed order (KTO: its fixed groups)."""
    rows, per = plan_rows(enc, batch_size)
    return [rows[k:k + per] for k in range(0, len(rows), per)]


def evaluate(model, enc: PrefEncoded, ref: list | None, method: str, beta: float, loss_type: str, pad_id: int,
             device, batch_size: int, amp=None, weights: tuple[float, float] = (1.0, 1.0)) -> dict | None:
    """Mean preference loss and the metrics on held-out examples, keys prefixed eval_ (eval_loss too)."""
    import torch

    if not enc.examples:
        return None
    tally = Tally()
    model.eval()
    device_type = torch.device(device).type
    sums, counts = [], []  # per batch: the standard error of eval_loss (early stopping's noise band)
    with torch.no_grad():
        for rows in fixed_batches(enc, batch_size):
            batch = collate(enc, rows, pad_id)
            before = (tally.loss, tally.units)
            with autocast(device_type, amp):
                batch_loss(model, batch, ref, method, beta, loss_type, device, tally, weights)
            sums.append(tally.loss - before[0])
            counts.append(tally.units - before[1])
    model.train()
    from tunelab.train.stopping import ratio_se

    return {"eval_loss": round(tally.loss / max(tally.units, 1), 6), "eval_loss_se": ratio_se(sums, counts),
            **tally.metrics("eval_")}


def preference_accuracy(model_spec: str, records: list[dict], length_normalised: bool = True,
                        cutoff: int = 1024, batch_size: int = 8) -> float:
    """Share of pairs whose chosen answer the model finds likelier than the rejected one.

    Likelihood is the mean per-token log-prob of the answer after the prompt (length_normalised,
    the default: a short answer does not win by being short) or the summed log-prob. Ties count
    as misses. Records without both chosen and rejected are ignored.

    Args:
        model_spec: a MODEL (registry name, folder or run id).
        records: dataset records with chosen and rejected.
        length_normalised: compare per-token means (True) or sums (False).
        cutoff: longest sequence in tokens.
        batch_size: pairs per forward pass.
    Returns:
        The share in [0, 1].
    """
    import torch

    from tunelab.models.loading import load_model

    model, tok = load_model(model_spec, device="cpu")
    enc = encode(tok, records, cutoff, "dpo")
    if not enc.examples:
        raise TuneLabError("no preference pairs to measure: records need both a chosen and a rejected answer")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    wins = 0
    with torch.no_grad():
        for rows in fixed_batches(enc, batch_size):
            batch = collate(enc, rows, pad)
            sums, counts = sequence_logps(model, batch, "cpu")
            score = sums / counts.clamp(min=1) if length_normalised else sums
            b = len(batch["index"])
            wins += int((score[:b] > score[b:]).sum())
    return wins / len(enc.examples)
