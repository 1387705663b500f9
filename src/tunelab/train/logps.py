"""Per-token log-probabilities of the answer tokens, the output layer applied a chunk at a time.

Preference losses need each answer token's log-prob (not only their summed cross-entropy, as SFT
does), with gradients. Holding the answers x vocabulary logits in float32 at once, with their
log-softmax and gradient, was the peak of a preference step (a 49k vocabulary: 200 KB per answer
token, three times over). Here only CHUNK_ELEMENTS logits exist at a time, as in sft.batch_loss's
chunked cross-entropy; the model's own head is used only where TuneLab may not apply it itself.
"""

from __future__ import annotations

import functools

IGNORE = -100
CHUNK_ELEMENTS = 2**23  # logits per chunk: 32 MiB of float32 (170 tokens of a 49k vocabulary)


def sequence_logps(model, batch: dict, device, prefix: str = ""):
    """(summed answer-token log-probs, answer-token counts) per sequence of the batch.

    Args:
        model: the causal LM (PEFT-wrapped or not).
        batch: input_ids, attention_mask and labels (IGNORE where no answer), under `prefix` (e.g. "kl_").
        device: where the model is.
    Returns:
        (sums (n,) float32, counts (n,) float32).
    """
    import torch
    import torch.nn.functional as F

    from tunelab.train.loss import head_owner

    labels = batch[prefix + "labels"].to(device)
    inputs = {"input_ids": batch[prefix + "input_ids"].to(device),
              "attention_mask": batch[prefix + "attention_mask"].to(device)}
    keep = F.pad(labels[:, 1:] != IGNORE, (0, 1), value=False)  # the positions that predict an answer token
    targets = labels[:, 1:][keep[:, :-1]]
    owner = head_owner(model)
    if owner is None:  # a head TuneLab does not apply itself: the model's logits, of the kept positions only
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        token_logps = select_logps(logits, targets)
    else:
        head = owner.lm_head
        try:  # the model returns the kept positions' final hidden states in place of their logits
            owner.lm_head = torch.nn.Identity()
            hidden = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        finally:
            owner.lm_head = head
        token_logps = chunked_logps(hidden, head.weight, targets)
    rows = keep.nonzero()[:, 0]
    n = labels.shape[0]
    sums = torch.zeros(n, device=token_logps.device, dtype=token_logps.dtype).index_add(0, rows, token_logps)
    counts = torch.zeros(n, device=token_logps.device).index_add(0, rows, torch.ones_like(token_logps))
    return sums, counts


def chunked_logps(hidden, weight, targets):
    """log_softmax(hidden @ weight.T)[i, targets[i]] per row, in float32, the logits made a chunk at a time.

    With the output layer frozen (LoRA), the gradient towards the hidden states is computed in the
    forward pass (per row, (one-hot - softmax) @ weight, scaled in the backward by that row's
    incoming gradient), so nothing is recomputed; a trainable output layer (full fine-tune) has its
    chunks recomputed in the backward pass instead (its gradient needs each row's incoming gradient).
    """
    return _chunked().apply(hidden, weight, targets)


def select_logps(logits, targets):
    """log_softmax(logits)[i, targets[i]] per row in float32, without a float32 copy of all the logits."""
    return _select().apply(logits, targets)


def _step(width: int) -> int:
    return max(1, CHUNK_ELEMENTS // width)


@functools.cache
def _chunked():
    import torch

    def compute_dtype(hidden):
        dev = hidden.device.type
        return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype

    def chunk(h, w, t):
        logits = (h @ w.T).float()
        lse = torch.logsumexp(logits, -1)
        return logits, lse, logits.gather(1, t[:, None]).squeeze(1) - lse

    def unit_grad(logits, lse, t, dtype):
        g = logits.sub_(lse[:, None]).exp_().neg_()  # -softmax, in place of the logits
        g[torch.arange(len(t), device=g.device), t] += 1
        return g.to(dtype)

    class ChunkedLogps(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):
            dtype = compute_dtype(hidden)
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h and not need_w else None
            step = _step(weight.shape[0])
            with torch.autocast(hidden.device.type, enabled=False):
                w = weight.to(dtype)
                for s in range(0, hidden.shape[0], step):
                    h, t = hidden[s:s + step].to(dtype), targets[s:s + step]
                    logits, lse, out[s:s + step] = chunk(h, w, t)
                    if grad_h is not None:
                        grad_h[s:s + step] = unit_grad(logits, lse, t, dtype) @ w
            ctx.dtype, ctx.need_w = dtype, need_w
            if need_w:
                ctx.save_for_backward(hidden, weight, targets)
            else:
                ctx.save_for_backward(grad_h)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            if not ctx.need_w:
                (grad_h,) = ctx.saved_tensors
                return None if grad_h is None else grad_h * grad_out[:, None].to(grad_h.dtype), None, None
            hidden, weight, targets = ctx.saved_tensors
            dtype = ctx.dtype
            grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            step = _step(weight.shape[0])
            with torch.autocast(hidden.device.type, enabled=False):
                w = weight.to(dtype)
                for s in range(0, hidden.shape[0], step):
                    h, t = hidden[s:s + step].to(dtype), targets[s:s + step]
                    logits, lse, _ = chunk(h, w, t)
                    g = unit_grad(logits, lse, t, torch.float32) * grad_out[s:s + step, None]
                    g = g.to(dtype)
                    if grad_h is not None:
                        grad_h[s:s + step] = g @ w
                    grad_w += (g.T @ h).float()
            return grad_h, grad_w.to(weight.dtype), None

    return ChunkedLogps


@functools.cache
def _select():
    import torch

    class SelectLogps(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, targets):
            out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
            lse = torch.empty_like(out)
            step = _step(logits.shape[-1])
            for s in range(0, logits.shape[0], step):
                chunk = logits[s:s + step].float()
                lse[s:s + step] = torch.logsumexp(chunk, -1)
                out[s:s + step] = chunk.gather(1, targets[s:s + step, None]).squeeze(1) - lse[s:s + step]
            ctx.save_for_backward(logits, targets, lse)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            logits, targets, lse = ctx.saved_tensors
            grad = torch.empty_like(logits)
            step = _step(logits.shape[-1])
            for s in range(0, logits.shape[0], step):
                g = logits[s:s + step].float().sub_(lse[s:s + step, None]).exp_().neg_()
                g[torch.arange(g.shape[0], device=g.device), targets[s:s + step]] += 1
                grad[s:s + step] = g * grad_out[s:s + step, None]
            return grad, None

    return SelectLogps
