"""A model's token counter for dataset statistics: the models layer loads, the data layer counts."""

from __future__ import annotations

import sys

from tunelab.data.stats import TokenCounter, hf_counter, rough_counter
from tunelab.models.registry import DEFAULT_MODEL


def token_counter(model: str | None = None, tokenizer=None) -> TokenCounter:
    """The counter for a model (default: the shipped SmolLM2), falling back to a rough count.

    Args:
        model: a model name (registry, folder, .gguf, run id); None for the default.
        tokenizer: a ready tokenizer (Hugging Face or TokenCounter) instead of loading one.
    Returns:
        A TokenCounter; its name says which tokenizer, or why the fallback is used.
    """
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    if tokenizer is not None:
        return hf_counter(tokenizer)
    try:
        from tunelab.models.loading import load_tokenizer

        return hf_counter(load_tokenizer(model or DEFAULT_MODEL), model or DEFAULT_MODEL)
    except Exception as exc:  # any failure to load must still give stats, with the reason shown
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        sys.stderr.write(f"warning: tokenizer of {model or DEFAULT_MODEL} not available ({reason}); "
                         "counting words\n")
        return rough_counter(reason)
