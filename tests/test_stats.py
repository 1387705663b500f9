"""Dataset statistics with a real (tiny, built in-process) Hugging Face tokenizer and the fallback."""

from __future__ import annotations

import pytest

from tunelab.data import stats, store
from tunelab.data.schema import to_table


def tiny_tokenizer(chat_template: str | None = None):
    """A real fast tokenizer: one token per whitespace word, unknown words -> [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    if chat_template:
        fast.chat_template = chat_template
    return fast


RECORDS = [
    {"id": "1", "instruction": "say a b", "output": "a b c"},
    {"id": "2", "instruction": "Say  A B ", "output": "A b c"},  # duplicate of 1 after normalising
    {"id": "3", "instruction": "long", "output": " ".join(["w"] * 600)},
    {"id": "4", "instruction": "empty", "output": "  "},
    {"id": "5", "instruction": "中文", "output": "你好世界", "system": "sys", "history": [["q", "r"]]},
]


@pytest.fixture
def ds(workspace):
    store.commit("st", to_table(RECORDS), "import")
    return "st"


def test_stats_with_a_real_tokenizer(ds):
    s = stats.stats(ds, tokenizer=tiny_tokenizer())
    assert s["records"] == 5
    assert s["duplicates"] == 1 and s["duplicate_ids"] == ["2"]
    assert s["empty_output"] == 1 and s["empty"]["output"] == 1
    assert s["tokens"]["max"] > 600  # 600 words of output plus the role lines
    assert s["truncated"] == {"256": 0.2, "512": 0.2, "1024": 0.0, "2048": 0.0}
    assert s["tokens"]["p50"] <= s["tokens"]["p95"] <= s["tokens"]["max"]
    assert s["longest_ids"][0] == "3"
    assert s["with_history"] == 1 and s["with_system"] == 1
    assert sum(s["histogram"]["counts"]) == 5
    assert set(s) >= {"records", "duplicates", "empty_output", "tokens", "truncated"}


def test_chat_template_is_applied(ds):
    template = "{% for m in messages %}BEGIN {{ m['role'] }} TURN {{ m['content'] }} END {% endfor %}"
    plain = stats.stats(ds, tokenizer=tiny_tokenizer())
    templated = stats.stats(ds, tokenizer=tiny_tokenizer(template))
    # 3 more tokens per message than the plain `role: content` lines (2 messages in record 3)
    assert templated["tokens"]["max"] == plain["tokens"]["max"] + 6


def test_history_and_system_are_counted():
    from tunelab.data.messages import to_messages

    msgs = to_messages({"system": "s", "history": [["u1", "a1"]], "instruction": "i", "input": "x", "output": "o"},
                       with_output=True)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[3]["content"] == "i\n\nx"  # the separator training and generation use


def test_fallback_counter_counts_cjk_characters(ds):
    counter = stats.rough_counter("test")
    assert counter.count(["hello world", "你好世界", "hi 你好"]) == [2, 4, 3]
    s = stats.stats(ds, tokenizer=counter)
    assert s["tokenizer"].startswith("whitespace+cjk-chars")


def test_unloadable_model_falls_back_and_says_so(ds):
    from tunelab.models.tokens import token_counter

    s = stats.stats(ds, tokenizer=token_counter("/nonexistent/model-dir"))
    assert "fallback" in s["tokenizer"]
    assert s["records"] == 5


def test_empty_dataset(workspace):
    store.commit("empty", to_table([]), "import")
    s = stats.stats("empty", tokenizer=stats.rough_counter())
    assert s["records"] == 0 and s["tokens"]["max"] == 0 and s["truncated"]["256"] == 0.0


@pytest.mark.slow
def test_default_smollm2_tokenizer(ds):
    from tunelab.models.tokens import token_counter

    s = stats.stats(ds, tokenizer=token_counter())
    assert "fallback" not in s["tokenizer"]
    assert s["tokens"]["max"] > 600
