"""llama.cpp backend (optional extra `llamacpp`): about 7x transformers' decode speed on a GGUF file."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import replace
from typing import Iterator

from tunelab.errors import TuneLabError
from tunelab.models.convert import run_gguf
from tunelab.models.generation import (BackendEntry, GenerationSettings, Generation, Stream, check_conversation,
                                       llamacpp_available, make_generation, register_backend)
from tunelab.models.llama_lib import import_llama_cpp, quiet_llama_log  # noqa: F401  (llamacpp.X callers)
from tunelab.models.registry import ModelRef

N_CTX = 4096


class LlamaCppBackend:
    """A plain GGUF model in llama.cpp; one request at a time (a llama context is not thread-safe)."""

    def __init__(self, ref: ModelRef):
        llama_cpp = import_llama_cpp()
        if llama_cpp is None:
            raise TuneLabError("llama.cpp is not installed: run `make install-llamacpp` "
                               "(the optional llamacpp extra; it compiles for about 10 minutes)")
        if ref.kind != "gguf":
            raise TuneLabError(f"{ref.name} is not a GGUF file; llama.cpp runs .gguf models and training runs")
        self.ref = ref
        self.name = ref.name
        self.llm = llama_cpp.Llama(model_path=ref.path, n_ctx=N_CTX, n_threads=os.cpu_count() or 1, verbose=False)
        self.fallback_template = "tokenizer.chat_template" not in self.llm.metadata
        self._lock = threading.Lock()

    def _sampling(self, s: GenerationSettings) -> dict:
        # llama-cpp-python defaults to repeat_penalty 1.1, top_k 40, min_p 0.05; neutralise them so
        # settings mean the same here as in transformers and OpenAI (temperature 0 is greedy).
        return {"max_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p, "stop": s.stop or None,
                "seed": s.seed, "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}

    def format_prompt(self, conversation: list[dict]) -> str:
        """The conversation as prompt text: the GGUF's own chat template, or the fallback for a base model."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        from tunelab.models.loading import FALLBACK_CHAT_TEMPLATE

        check_conversation(conversation)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders templates
        env.globals["raise_exception"] = _raise
        template = self.llm.metadata.get("tokenizer.chat_template") or FALLBACK_CHAT_TEMPLATE
        return env.from_string(template).render(messages=conversation, eos_token=self._token_text(self.llm.token_eos()),
                                                bos_token="", add_generation_prompt=True)

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "ignore")

    def _one(self, prompt: str, s: GenerationSettings) -> Generation:
        with self._lock:
            t0 = time.perf_counter()
            out = self.llm.create_completion(prompt, **self._sampling(s))
            latency = time.perf_counter() - t0
        usage, choice = out["usage"], out["choices"][0]
        return make_generation(choice["text"], usage["prompt_tokens"], usage["completion_tokens"], latency,
                               choice["finish_reason"] or "stop")

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        """Answer each conversation in turn (llama-cpp-python decodes one sequence at a time)."""
        prompts = [self.format_prompt(c) for c in conversations]
        return self.complete(prompts, settings, batch_size)

    def complete(self, prompts: list[str], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]:
        return [self._one(p, settings) for p in prompts]

    def stream_chat(self, conversation: list[dict], settings: GenerationSettings) -> Stream:
        """Stream the answer; the Stream's `.generation` has the totals once it is exhausted."""
        return self.stream_complete(self.format_prompt(conversation), settings)

    def stream_complete(self, prompt: str, settings: GenerationSettings) -> Stream:
        return Stream(lambda stream: self._pieces(prompt, settings, stream))

    def _pieces(self, prompt: str, s: GenerationSettings, stream: Stream) -> Iterator[str]:
        # Decoding runs in its own thread that holds the lock, as in the transformers backend: a
        # consumer iterated from a server's thread pool must never hold the lock between pieces,
        # or waiting requests could use up the pool and starve the stream that holds it.
        pieces: queue.Queue = queue.Queue()
        cancelled = threading.Event()
        box: dict = {}

        def work():
            try:
                with self._lock:
                    t0 = time.perf_counter()
                    box["prompt_tokens"] = len(self.llm.tokenize(prompt.encode("utf-8"), special=True))
                    box["n"], box["reason"] = 0, "stop"
                    for chunk in self.llm.create_completion(prompt, stream=True, **self._sampling(s)):
                        choice = chunk["choices"][0]
                        box["reason"] = choice.get("finish_reason") or box["reason"]
                        if choice.get("text"):
                            box["n"] += 1  # llama.cpp streams one token per chunk
                            pieces.put(choice["text"])
                        if cancelled.is_set():
                            break
                    box["latency"] = time.perf_counter() - t0
            except Exception as exc:  # surfaced in the consumer's thread below
                box["error"] = exc
            finally:
                pieces.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text = ""
        try:
            while (piece := pieces.get()) is not None:
                text += piece
                yield piece
        finally:
            cancelled.set()
            thread.join()
        if "error" in box:
            raise box["error"]
        stream.generation = make_generation(text, box["prompt_tokens"], box["n"], box["latency"], box["reason"])


def _raise(message: str):
    raise TuneLabError(f"the model's chat template refused the conversation: {message}")


def _backend(ref: ModelRef) -> LlamaCppBackend:
    if ref.kind == "run":  # llama.cpp cannot apply a PEFT adapter: run the merged model as GGUF
        ref = replace(ref, kind="gguf", path=str(run_gguf(ref.name)))
    return LlamaCppBackend(ref)


# A plain GGUF runs here when llama-cpp-python is installed; "llamacpp:MODEL" forces it (a run too).
register_backend(BackendEntry("llamacpp", _backend, kinds=("gguf",), prefix=True, available=llamacpp_available))
