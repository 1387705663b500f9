"""Generation backends: batched == single greedy output, streaming, stop strings, settings, messages."""

from __future__ import annotations

import time

import pytest

from tunelab.errors import TuneLabError
from tunelab.models import generation
from tunelab.models.generation import GenerationSettings, filter_stream, get_backend, records_to_messages

SMOL = "smollm2-135m-instruct"
PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name three colours of the rainbow, as a list please."}],
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Write one sentence about the sea."}, {"role": "assistant", "content": "The sea is wide."},
     {"role": "user", "content": "Another one, about waves, with more words in it than before."}],
]


@pytest.fixture
def tiny(tiny_model, workspace):
    generation.clear_cache()
    return get_backend(f"local:{tiny_model}")


def test_batched_equals_single_greedy(tiny):
    s = GenerationSettings(max_new_tokens=12)
    single = [tiny.chat([c], s)[0] for c in PROMPTS]
    batched = tiny.chat(PROMPTS, s, batch_size=4)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.completion_tokens > 0 and g.text for g in batched)
    # Prompts differ in length, so the batch really was left-padded.
    assert len({g.prompt_tokens for g in batched}) > 1
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]


def test_token_counts_and_speed(tiny):
    g = tiny.complete(["Once upon a time"], GenerationSettings(max_new_tokens=8))[0]
    assert g.prompt_tokens == len(tiny.tok("Once upon a time")["input_ids"])
    assert 1 <= g.completion_tokens <= 8
    assert g.latency_s > 0 and g.tokens_per_s == pytest.approx(g.completion_tokens / g.latency_s, rel=0.01)
    assert g.finish_reason in ("stop", "length")
    assert g.finish_reason == "stop" or g.completion_tokens == 8  # "length" means the 8-token budget was used


def test_streaming_yields_incrementally(tiny):
    s = GenerationSettings(max_new_tokens=16)
    stream = tiny.stream_chat(PROMPTS[0], s)
    seen = []
    for piece in stream:
        seen.append((piece, time.perf_counter()))
    assert len(seen) > 3
    assert seen[-1][1] > seen[0][1]  # pieces arrived over time, not all at once
    text = "".join(p for p, _ in seen)
    assert text == tiny.chat([PROMPTS[0]], s)[0].text
    assert stream.generation.text == text and stream.generation.completion_tokens > 0


def test_stream_can_be_abandoned(tiny):
    stream = tiny.stream_chat(PROMPTS[0], GenerationSettings(max_new_tokens=200))
    next(stream)
    stream.close()  # the generating thread stops and releases the model
    assert tiny.chat([PROMPTS[2]], GenerationSettings(max_new_tokens=2))[0].completion_tokens >= 1


def test_stop_string_cuts_text(tiny):
    full = tiny.complete(["Once upon a time"], GenerationSettings(max_new_tokens=12))[0].text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    g = tiny.complete(["Once upon a time"], GenerationSettings(max_new_tokens=12, stop=[stop]))[0]
    assert stop not in g.text and full.startswith(g.text) and g.finish_reason == "stop"
    streamed = "".join(tiny.stream_chat(PROMPTS[0], GenerationSettings(max_new_tokens=12, stop=[stop])))
    assert stop not in streamed


def test_sampling_is_seeded(tiny):
    s = GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    a = tiny.chat([PROMPTS[0]], s)[0].text
    assert a == tiny.chat([PROMPTS[0]], s)[0].text


def test_filter_stream_holds_back_partial_stop():
    assert "".join(filter_stream(["Hel", "lo ST", "OP world"], ["STOP"])) == "Hello "
    assert "".join(filter_stream(["a", "b", "c"], [])) == "abc"


def test_bad_settings_and_messages():
    with pytest.raises(TuneLabError):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(TuneLabError):
        GenerationSettings(top_p=0)
    with pytest.raises(TuneLabError):
        generation.check_conversation([{"role": "robot", "content": "x"}])


def test_records_to_messages():
    rec = {"system": "Be kind.", "history": [["Hi", "Hello!"]], "instruction": "Translate", "input": "chat", "output": "cat"}
    assert records_to_messages(rec) == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Translate\n\nchat"},
    ]
    assert records_to_messages({"instruction": "Q"}) == [{"role": "user", "content": "Q"}]


def test_backend_cache_is_lru(tiny_model, workspace):
    generation.clear_cache()
    a = get_backend(f"local:{tiny_model}")
    assert get_backend(f"local:{tiny_model}") is a
    get_backend(f"local:{tiny_model}/")  # distinct specs count as distinct entries
    get_backend(f"local:{tiny_model}//")
    assert f"local:{tiny_model}" not in generation._CACHE and len(generation._CACHE) == generation.MAX_LOADED


@pytest.mark.slow
def test_smollm2_batched_equals_single(workspace):
    generation.clear_cache()
    b = get_backend(f"local:{SMOL}")
    s = GenerationSettings(max_new_tokens=16)
    single = [b.chat([c], s)[0].text for c in PROMPTS]
    assert [g.text for g in b.chat(PROMPTS, s, batch_size=4)] == single
    assert "Paris" in single[0]


@pytest.mark.slow
@pytest.mark.skipif(not generation.llamacpp_available(), reason="llama-cpp-python not installed (optional extra)")
def test_llamacpp_backend(workspace):
    generation.clear_cache()
    b = get_backend(SMOL)  # a plain GGUF goes to llama.cpp automatically when it is installed
    assert type(b).__name__ == "LlamaCppBackend"
    s = GenerationSettings(max_new_tokens=16)
    g = b.chat([PROMPTS[0]], s)[0]
    raw = b.llm.create_completion(b.format_prompt(PROMPTS[0]), max_tokens=16, temperature=0.0)
    # Greedy answers equal raw llama-cpp-python's; they can differ from transformers' (llama.cpp
    # quantises activations to 8 bits, which flips SmolLM2's close first-token choice here).
    assert g.text == raw["choices"][0]["text"] and g.prompt_tokens == raw["usage"]["prompt_tokens"]
    assert 0 < g.completion_tokens <= 16
    stream = b.stream_chat(PROMPTS[0], s)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == g.text
    assert stream.generation.completion_tokens == g.completion_tokens
    stop = g.text.split()[2]
    assert b.chat([PROMPTS[0]], GenerationSettings(max_new_tokens=16, stop=[stop]))[0].text == g.text.split(stop)[0]
