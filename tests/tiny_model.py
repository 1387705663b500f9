"""A tiny llama model (SmolLM2's tokenizer, 2 layers of width 32) saved to a folder: trains in milliseconds."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RECORDS = [
    {"instruction": "What colour is the sky?", "input": "", "output": "The sky is blue."},
    {"instruction": "Say hello in French.", "input": "", "output": "Bonjour."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "2 + 3 = 5."},
    {"instruction": "Name a fruit.", "input": "", "output": "An apple.", "system": "Answer briefly."},
    {"instruction": "And a vegetable?", "input": "", "output": "A carrot.",
     "history": [["Name a fruit.", "An apple."]]},
    {"instruction": "Translate to German.", "input": "Good morning", "output": "Guten Morgen."},
    {"instruction": "What is 10 minus 4?", "input": "", "output": "10 - 4 = 6."},
    {"instruction": "Spell cat backwards.", "input": "", "output": "tac"},
]


def smollm_dir() -> Path:
    """The converted SmolLM2 folder (for its tokenizer), converting it once if needed."""
    from tunelab.models.loading import hf_dir

    return hf_dir("smollm2-135m-instruct")


def build(target: Path, width: int = 32, tied: bool = True, max_positions: int = 512,
          init_range: float | None = None) -> Path:
    """Save a randomly initialised 2-layer llama with SmolLM2's tokenizer and chat template into target.

    width 32 trains in milliseconds; init_range 0.5 gives decisive argmaxes, so fp32 noise cannot
    flip a greedy output (for tests comparing two generation paths).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunelab.models.loading import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    extra = {} if init_range is None else {"initializer_range": init_range}
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                      tie_word_embeddings=tied, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **extra)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(target)
    tok.save_pretrained(target)
    return target


def dataset(name: str = "tiny", records: list[dict] | None = None, repeat: int = 4) -> str:
    """Commit a small dataset into the current workspace and return its name."""
    from tunelab.data import store
    from tunelab.data.schema import to_table

    recs = [dict(r, id=f"r{i}") for i, r in enumerate((records or RECORDS) * repeat)]
    store.commit(name, to_table(recs), op="test")
    return name
