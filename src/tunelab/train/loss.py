"""SFT's loss: the summed cross-entropy over the response tokens, the output layer applied a chunk at a time.

TuneLab applies the output layer itself (chunked_cross_entropy) only for architectures whose head is
verified to be one bias-free matmul of the final hidden states: VERIFIED, each checked against the
model's own `labels=` loss in tests/test_loss_oracle.py. Any other model (a head with a multiplier or a
soft-cap this code does not know, e.g. Falcon-H1's lm_head_multiplier) computes its logits itself. Every
run also compares both losses on its first batch (verify_head) and falls back to the model's own head
when they differ.
"""

from __future__ import annotations

import functools

from tunelab.train import data as tdata

# config.model_type of the causal LMs whose logits are lm_head(hidden) and nothing more (test_loss_oracle.py).
VERIFIED = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3"})
# Config keys that would change the logits after the matmul; a verified type with one of them set is refused too.
HEAD_SCALES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier")
OWN_HEAD = "_tunelab_own_head"  # set on a model whose first batch disagreed: its own head from then on
CE_CHUNK_ELEMENTS = 2**23  # logits per chunk: 32 MiB of float32 (170 tokens of a 49k vocabulary)


def _inner(model):
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def head_owner(model):
    """The causal LM whose `lm_head` TuneLab may apply itself (a verified architecture), or None."""
    import torch

    inner = _inner(model)
    head = getattr(inner, "lm_head", None)
    conf = getattr(inner, "config", None)
    if type(head) is not torch.nn.Linear or head.bias is not None or conf is None or getattr(inner, OWN_HEAD, False):
        return None
    conf = getattr(conf, "text_config", None) or conf
    if getattr(conf, "model_type", None) not in VERIFIED:
        return None
    if any(getattr(conf, k, None) not in (None, 1, 1.0) for k in HEAD_SCALES):
        return None
    return inner


def _targets(batch: dict, device):
    import torch.nn.functional as F

    labels = batch["labels"].to(device)
    inputs = {k: batch[k].to(device) for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
    keep = F.pad(labels[:, 1:] != tdata.IGNORE, (0, 1), value=False)
    return inputs, keep, labels[:, 1:][keep[:, :-1]]


def _hidden(model, owner, inputs: dict, keep):
    """The kept positions' final hidden states (the model returns them in place of their logits)."""
    import torch

    head = owner.lm_head
    try:
        owner.lm_head = torch.nn.Identity()
        return model(**inputs, logits_to_keep=keep, use_cache=False).logits
    finally:
        owner.lm_head = head


def batch_loss(model, batch: dict, prompt_learning: bool, device):
    """Summed cross-entropy over the response tokens of one batch.

    The output layer is applied by chunked_cross_entropy, a few hundred answer tokens at a time,
    instead of inside the model: the full answers x vocabulary logits (and their gradient) never
    exist at once, at the moment every layer's activations are also held (the run's memory peak).
    """
    import torch.nn.functional as F

    if prompt_learning:  # PEFT prepends virtual tokens and pads the labels itself
        labels = batch["labels"].to(device)
        inputs = {k: batch[k].to(device) for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
        n = int((labels[:, 1:] != tdata.IGNORE).sum())
        return model(**inputs, labels=labels, use_cache=False).loss * n
    inputs, keep, targets = _targets(batch, device)
    owner = head_owner(model)
    if owner is None:  # not a verified plain head: the model's own logits
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        return F.cross_entropy(logits.float(), targets, reduction="sum")
    return chunked_cross_entropy(_hidden(model, owner, inputs, keep), owner.lm_head.weight, targets)


def example_losses(model, batch: dict, device):
    """(summed loss, response tokens) per example of a batch, without gradients (packed rows split at position 0)."""
    import torch
    import torch.nn.functional as F

    inputs, keep, targets = _targets(batch, device)
    with torch.no_grad():
        owner = head_owner(model)
        if owner is None:
            logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
            tok = F.cross_entropy(logits.float(), targets, reduction="none")
        else:
            tok = token_losses(_hidden(model, owner, inputs, keep), owner.lm_head.weight, targets)
    rows, cols = keep.nonzero(as_tuple=True)
    if "position_ids" in inputs:  # packed: an example starts where its positions restart at 0
        seg = (inputs["position_ids"] == 0).cumsum(1)[rows, cols + 1]
        key = rows * (keep.shape[1] + 1) + seg
    else:
        key = rows
    _, idx = torch.unique(key, return_inverse=True)
    m = int(idx.max()) + 1 if len(idx) else 0
    sums = torch.zeros(m, dtype=torch.float64, device=tok.device).index_add_(0, idx, tok.double())
    counts = torch.zeros(m, dtype=torch.float64, device=tok.device).index_add_(0, idx, torch.ones_like(tok).double())
    return sums.tolist(), counts.tolist()


def verify_head(model, batch: dict, device, amp_dtype=None) -> str | None:
    """Compare TuneLab's loss with the model's own `labels=` loss on one batch; on a mismatch use the model's head.

    Returns a line for the log when they differed (and the run now uses the model's own head), else None.
    """
    import torch

    owner = head_owner(model)
    if owner is None:
        return None
    inputs, keep, targets = _targets(batch, device)
    labels = batch["labels"].to(device)
    dev = torch.device(device).type
    was_training = model.training
    model.eval()  # no dropout: both passes see the same network
    try:
        with torch.no_grad(), torch.autocast(dev, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            ours = float(batch_loss(model, batch, False, device)) / max(len(targets), 1)
            own = float(model(**inputs, labels=labels, use_cache=False).loss)
    finally:
        model.train(was_training)
    # float32: rounding only (measured <= 2e-5 on SmolLM2); bf16 compute rounds each logit to 3 digits
    tol = 1e-3 if amp_dtype is None and owner.lm_head.weight.dtype == torch.float32 else 2e-2
    if abs(ours - own) <= tol * max(1.0, abs(own)):
        return None
    setattr(_inner(model), OWN_HEAD, True)
    return (f"the chunked loss ({ours:.5f}) differs from the model's own ({own:.5f}) on the first batch: "
            "this run uses the model's own output layer")


def chunked_cross_entropy(hidden, weight, targets):
    """sum(cross_entropy(hidden @ weight.T, targets)), the logits made and dropped a chunk at a time.

    The gradient is computed in the same pass (softmax minus one-hot, times the weight), so nothing
    is recomputed in the backward pass: the cost is that of one output-layer matmul forward and back.
    Under autocast the matmuls run in its dtype and the softmax in float32, like the model's own head.
    Without gradients (torch.no_grad, evaluation, or inputs that need none) no gradient buffer is made.
    """
    import torch

    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        return token_losses(hidden, weight, targets).sum()
    return _chunked_ce().apply(hidden, weight, targets)


def token_losses(hidden, weight, targets):
    """cross_entropy(hidden @ weight.T, targets) per token, a chunk of logits at a time, never with gradients."""
    import torch

    dev = hidden.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    step = max(1, CE_CHUNK_ELEMENTS // weight.shape[0])
    with torch.no_grad(), torch.autocast(dev, enabled=False):
        w = weight.detach().to(dtype)
        for s in range(0, hidden.shape[0], step):
            h, t = hidden[s:s + step].detach().to(dtype), targets[s:s + step]
            logits = (h @ w.T).float()
            out[s:s + step] = torch.logsumexp(logits, -1) - logits.gather(1, t[:, None]).squeeze(1)
    return out


@functools.cache
def _chunked_ce():
    import torch

    class ChunkedCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):
            dev = hidden.device.type
            dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            step = max(1, CE_CHUNK_ELEMENTS // weight.shape[0])
            with torch.autocast(dev, enabled=False):
                w = weight.to(dtype)
                for s in range(0, hidden.shape[0], step):
                    h, t = hidden[s:s + step].to(dtype), targets[s:s + step]
                    logits = (h @ w.T).float()
                    lse = torch.logsumexp(logits, -1)
                    total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                    g = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                    g[torch.arange(len(t), device=g.device), t] -= 1
                    g = g.to(dtype)
                    if need_h:
                        grad_h[s:s + step] = g @ w
                    if need_w:
                        grad_w += (g.T @ h).float()
            ctx.save_for_backward(grad_h, grad_w)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx, grad_out):
            grad_h, grad_w = ctx.saved_tensors
            return (None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
                    None if grad_w is None else (grad_w * grad_out).to(ctx.weight_dtype), None)

    return ChunkedCE
