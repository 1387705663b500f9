"""TuneLab's SFT loss against the oracle: the model's own `labels=` loss (issue 21).

TuneLab applies the output layer itself, a chunk at a time, only for architectures it has verified here
(train/loss.VERIFIED); for every tiny randomly initialised config below (no downloads) and for the shipped
SmolLM2, the summed response-token loss divided by the token count equals the model's own mean loss. A head
TuneLab does not know (Falcon-H1's lm_head_multiplier) goes through the model's own forward, and a head that
changes its logits behind a verified type is caught on the first batch (verify_head) and falls back.
"""

from __future__ import annotations

import pytest

import tiny_model
from tunelab.train import data as tdata
from tunelab.train import loss as tloss

VOCAB = 160
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128)


def _configs():
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        LlamaConfig,
        MistralConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )

    return {
        "llama": (LlamaConfig(**COMMON), True),
        "llama-untied": (LlamaConfig(**COMMON, tie_word_embeddings=False), True),
        "qwen2": (Qwen2Config(**COMMON), True),
        "qwen3": (Qwen3Config(**COMMON, head_dim=8), True),
        "mistral": (MistralConfig(**COMMON), True),
        "gemma3": (Gemma3TextConfig(**COMMON, head_dim=8, sliding_window=8), True),
        "phi3": (Phi3Config(**COMMON, pad_token_id=0), True),
        "gemma2-no-softcap": (Gemma2Config(**COMMON, head_dim=8, final_logit_softcapping=None), True),
        # a soft-capped head: verified type, but TuneLab leaves the logits to the model
        "gemma2-softcap": (Gemma2Config(**COMMON, head_dim=8, final_logit_softcapping=3.0), False),
    }


def _model(conf):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    conf.initializer_range = 0.5  # large logits: a wrong head is far off, not within rounding
    m = AutoModelForCausalLM.from_config(conf, attn_implementation="eager")
    return m.eval()


def _batch(packed: bool) -> dict:
    """Two rows of random tokens with masked prompts (packed: two examples per row, positions restarting)."""
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (2, 24), generator=g)
    labels = ids.clone()
    labels[:, :7] = tdata.IGNORE
    out = {"input_ids": ids, "labels": labels}
    if packed:
        labels[:, 12:16] = tdata.IGNORE  # the second example's prompt
        out["position_ids"] = torch.cat([torch.arange(12), torch.arange(12)]).repeat(2, 1)
    else:
        labels[1, 20:] = tdata.IGNORE  # padding
        out["attention_mask"] = torch.ones_like(ids)
        out["attention_mask"][1, 20:] = 0
    return out


def _own(model, batch) -> float:
    import torch

    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return float(model(**inputs, labels=batch["labels"], use_cache=False).loss)


def _ours(model, batch) -> float:
    import torch

    n = int((batch["labels"][:, 1:] != tdata.IGNORE).sum())
    with torch.no_grad():
        return float(tloss.batch_loss(model, batch, False, "cpu")) / n


@pytest.mark.parametrize("name", list(_configs()))
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_loss_equals_the_models_own_loss(name, packed, monkeypatch):
    conf, chunked = _configs()[name]
    model = _model(conf)
    assert (tloss.head_owner(model) is not None) == chunked, conf.model_type
    monkeypatch.setattr(tloss, "CE_CHUNK_ELEMENTS", 5 * VOCAB)  # 5 tokens a chunk: several chunks per batch
    batch = _batch(packed)
    own = _own(model, batch)
    assert _ours(model, batch) == pytest.approx(own, rel=1e-5, abs=1e-6), name
    # with gradients too (the training path): the same value, and the example losses add up to it
    import torch

    n = int((batch["labels"][:, 1:] != tdata.IGNORE).sum())
    model.train()
    torch.manual_seed(0)
    assert float(tloss.batch_loss(model, batch, False, "cpu")) / n == pytest.approx(own, rel=1e-5, abs=1e-6)
    sums, counts = tloss.example_losses(model.eval(), batch, "cpu")
    assert len(sums) == (4 if packed else 2) and sum(counts) == n
    assert sum(sums) / n == pytest.approx(own, rel=1e-5, abs=1e-6)


def test_an_unknown_head_multiplier_uses_the_models_own_logits():
    """Falcon-H1 multiplies its logits (lm_head_multiplier): not verified, so the model computes them."""
    from transformers import FalconH1Config

    conf = FalconH1Config(**COMMON, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8, mamba_d_state=8,
                          mamba_n_groups=1, mamba_chunk_size=16, lm_head_multiplier=0.25)
    model = _model(conf)
    assert tloss.head_owner(model) is None
    batch = _batch(False)
    assert _ours(model, batch) == pytest.approx(_own(model, batch), rel=1e-5)


def test_a_head_that_changes_its_logits_is_caught_on_the_first_batch():
    """A verified type whose forward soft-caps its logits (as a new release might): verify_head falls back."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    class ScaledHead(LlamaForCausalLM):
        def forward(self, *a, **kw):
            labels = kw.pop("labels", None)
            out = super().forward(*a, **kw)
            out.logits = torch.tanh(out.logits / 3.0) * 3.0
            if labels is not None:
                out.loss = self.loss_function(out.logits, labels, self.config.vocab_size)
            return out

    torch.manual_seed(0)
    model = ScaledHead(LlamaConfig(**COMMON, initializer_range=0.5)).eval()
    batch = _batch(False)
    assert tloss.head_owner(model) is not None and abs(_ours(model, batch) - _own(model, batch)) > 0.05
    msg = tloss.verify_head(model, batch, "cpu")
    assert msg and "differs from the model's own" in msg
    assert tloss.head_owner(model) is None and _ours(model, batch) == pytest.approx(_own(model, batch), rel=1e-5)
    plain = _model(LlamaConfig(**COMMON))
    assert tloss.verify_head(plain, batch, "cpu") is None and tloss.head_owner(plain) is not None


@pytest.mark.slow
def test_smollm2_chunked_loss_equals_its_own(workspace):
    """The shipped SmolLM2 on real chat-formatted records, packed and not."""
    from tunelab.models.loading import load_tokenizer
    from tunelab.train import sft
    from tunelab.train.config import TrainConfig

    cfg = TrainConfig.for_method("full")
    path = str(tiny_model.smollm_dir())
    model = sft.load_model(cfg, path, None, "cpu").eval()
    assert tloss.head_owner(model) is not None
    tok = load_tokenizer(path)
    enc = tdata.encode(tok, [dict(r, id=str(i)) for i, r in enumerate(tiny_model.RECORDS)], 96)
    for packed in (False, True):
        rows, _ = tdata.plan_rows(enc, 96, packed, 4)
        batch = tdata.collate(enc, rows[:4], tok.pad_token_id, packed)
        assert _ours(model, batch) == pytest.approx(_own(model, batch), rel=5e-5), packed  # float32 sums over 49k logits
    assert tloss.verify_head(model, batch, "cpu") is None
