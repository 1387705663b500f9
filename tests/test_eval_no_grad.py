"""Evaluation through the chunked cross-entropy makes no gradient buffers (issue 21).

Under torch.no_grad the output layer's weight of a full fine-tune still requires grad, and the chunked
loss used to allocate its float32 gradient (vocabulary x width: 113 MB for SmolLM2, ~2 GB for a 128k
vocabulary) and the hidden states' gradient on every eval batch. Every tensor an op makes is recorded.
"""

from __future__ import annotations

import pytest

from tunelab.train import sft


def _made(fn) -> list[tuple[str, tuple]]:
    """(op, shape) of every tensor a non-view op creates while fn() runs."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    made = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor):
                        made.append((str(func), tuple(t.shape)))
            return out

    with Record():
        fn()
    return made


@pytest.mark.parametrize("hidden_grad", [False, True])
def test_chunked_loss_under_no_grad_allocates_no_gradient(hidden_grad):
    import torch

    torch.manual_seed(0)
    weight = torch.randn(4096, 48, requires_grad=True)  # a full fine-tune's trainable output layer
    hidden = torch.randn(37, 48, requires_grad=hidden_grad)
    targets = torch.randint(0, 4096, (37,))
    with torch.no_grad():
        value = {}
        made = _made(lambda: value.setdefault("loss", sft.chunked_cross_entropy(hidden, weight, targets)))
    shapes = [s for _, s in made]
    assert tuple(weight.shape) not in shapes, made  # no weight-sized gradient buffer
    assert tuple(hidden.shape) not in shapes, made  # no hidden-sized one either
    assert not value["loss"].requires_grad and value["loss"].grad_fn is None
    oracle = torch.nn.functional.cross_entropy(hidden.detach() @ weight.detach().T, targets, reduction="sum")
    assert float(value["loss"]) == pytest.approx(float(oracle), rel=1e-5)
    # with gradients on, the training path still returns the gradient (in one pass)
    loss = sft.chunked_cross_entropy(hidden, weight, targets)
    loss.backward()
    w = weight.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(hidden.detach() @ w.T, targets, reduction="sum").backward()
    assert torch.allclose(weight.grad, w.grad, rtol=1e-4, atol=1e-5)
