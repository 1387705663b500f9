"""Decoder pieces that keep less for the backward pass (LoRA / P-tuning runs): RMSNorm, SiLU-gated MLP.

A Llama-style RMSNorm computes `weight * (x.float() * rsqrt(mean(x.float()**2) + eps)).to(x.dtype)`
as seven autograd operations, and autograd keeps their float32 intermediates for the backward pass:
about 5.7 KB per token for a 576-wide SmolLM2 norm, two norms per decoder layer; with the residual
stream in bf16 (setup.cast_frozen) the norms were most of what a LoRA step keeps. When the norm's
weight is frozen, the gradient needs only the input (already alive: the residual stream) and the
per-token rsqrt (4 bytes), so FrozenRMSNorm keeps those and recomputes the rest in the backward.

The forward runs the model's own operations in the model's own order, so its output is identical
bit for bit; each patched class is checked once on a random input against its own forward, and a
class whose formula differs (Gemma's `1 + weight`, a new transformers version) is left alone.

The MLP `down(silu(gate(x)) * up(x))` kept gate(x), up(x) and silu(gate(x)) for the backward: SiluMul
keeps the first two and recomputes the SiLU (SmolLM2: 3 KB per token per layer less). Measured on
SmolLM2-135M, 4 x 256 tokens under bf16 autocast: 533 MiB kept for the backward before, 466 with the
norms, 376 with both (bench/RESULTS.md).
"""

from __future__ import annotations

import functools

# Classes whose forward is `weight * (x.float() * rsqrt(mean(x.float()**2) + variance_epsilon)).to(x.dtype)`.
NORMS = frozenset({"LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm", "Phi3RMSNorm",
                   "GraniteRMSNorm", "OlmoRMSNorm", "Olmo2RMSNorm", "CohereRMSNorm"})


@functools.cache
def _function():
    import torch

    class FrozenRMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, eps):
            xf = x.to(torch.float32)
            r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
            ctx.save_for_backward(x, weight, r)
            return weight * (xf * r).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            x, weight, r = ctx.saved_tensors
            xhat = x.to(torch.float32) * r
            g = grad.to(torch.float32) * weight.to(torch.float32)
            dx = r * (g - xhat * (g * xhat).mean(-1, keepdim=True))
            return dx.to(x.dtype), None, None

    return FrozenRMSNorm


@functools.cache
def _silu_mul():
    import torch

    class SiluMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, gate, up):
            ctx.save_for_backward(gate, up)
            return torch.nn.functional.silu(gate) * up

        @staticmethod
        def backward(ctx, grad):
            gate, up = ctx.saved_tensors  # the ops autograd would run, plus the SiLU once more
            return torch.ops.aten.silu_backward(grad * up, gate), grad * torch.nn.functional.silu(gate)

    return SiluMul


def _mlp_forward(self, x):
    return self.down_proj(_silu_mul().apply(self.gate_proj(x), self.up_proj(x)))


def _norm_forward(self, hidden_states):
    return _function().apply(hidden_states, self.weight, self.variance_epsilon)


def _same_forward(module, forward) -> bool:
    """Whether forward gives exactly the module's own output on a random input."""
    import torch

    w = next(module.parameters())
    width = module.weight.shape[-1] if hasattr(module, "weight") else module.gate_proj.in_features
    x = torch.randn(3, width, dtype=w.dtype, device=w.device)
    low = w.dtype in (torch.bfloat16, torch.float16)  # as in training: under autocast (float32 LoRA weights)
    with torch.no_grad(), torch.autocast(w.device.type, dtype=w.dtype if low else torch.bfloat16, enabled=low):
        return torch.equal(type(module).forward(module, x), forward(module, x))


@functools.cache
def _fused_class(cls: type, forward) -> type:
    """A subclass of cls with the given forward (isinstance checks on cls still hold)."""
    return type(f"Fused{cls.__name__}", (cls,), {"forward": forward, "__module__": __name__})


def _fusable(module):
    """The fused forward for module, or None: a known frozen RMSNorm, or a SiLU-gated MLP."""
    name = type(module).__name__
    w = getattr(module, "weight", None)
    if name in NORMS and w is not None and not w.requires_grad and hasattr(module, "variance_epsilon"):
        return _norm_forward
    if (name.endswith("MLP") and all(hasattr(module, k) for k in ("gate_proj", "up_proj", "down_proj"))
            and type(getattr(module, "act_fn", None)).__name__ in ("SiLU", "SiLUActivation")):
        return _mlp_forward
    return None


def fuse(model) -> int:
    """Turn every known frozen RMSNorm and SiLU-gated MLP into its fused subclass; returns how many.

    The class is swapped, not the instance's forward: transformers wraps and restores instance
    forwards to record hidden states, which dropped a patched instance attribute after one call.
    """
    checked: dict[type, bool] = {}
    n = 0
    for module in model.modules():
        forward = _fusable(module)
        if forward is None:
            continue
        cls = type(module)
        if cls not in checked:
            checked[cls] = _same_forward(module, forward)
        if checked[cls]:
            module.__class__ = _fused_class(cls, forward)
            n += 1
    return n
