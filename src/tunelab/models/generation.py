"""Text generation behind one small protocol: local transformers, llama.cpp, or an OpenAI-compatible endpoint.

`get_backend(spec)` picks and caches a backend; every caller (chat CLI, Playground, server, Generate,
Compare, eval) talks to the same three methods: `chat`, `complete`, `stream_chat`.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Protocol

from tunelab.data.messages import to_messages
from tunelab.errors import TuneLabError
from tunelab.models.convert import merged_dir
from tunelab.models.loading import has_native_template, load_model, load_tokenizer
from tunelab.models.registry import ModelRef, resolve

# Models held in memory per process; a third evicts the least recently used (SmolLM2 fp32 ~1.2 GB).
MAX_LOADED = 2


@dataclass
class GenerationSettings:
    """How to sample; temperature 0 means greedy (the same answer every time)."""

    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens (a token is about 3/4 of a word)."})
    temperature: float = field(default=0.0, metadata={"help": "Randomness. 0 always picks the most likely word; 0.7 is varied; above 1 gets erratic."})
    top_p: float = field(default=1.0, metadata={"help": "Only sample among the most likely words that together hold this much probability (1 = all words)."})
    seed: int | None = field(default=None, metadata={"help": "Fix it to get the same random answer again."})
    stop: list[str] = field(default_factory=list, metadata={"help": "Stop as soon as one of these strings appears (it is not included)."})

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise TuneLabError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise TuneLabError(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TuneLabError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Generation:
    """One answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    tokens_per_s: float
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


class Backend(Protocol):
    """A text generator; conversations are OpenAI-style [{"role", "content"}, ...]."""

    name: str

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]: ...

    def complete(self, prompts: list[str], settings: GenerationSettings, batch_size: int = 8) -> list[Generation]: ...

    def stream_chat(self, conversation: list[dict], settings: GenerationSettings) -> Iterator[str]: ...


class Stream:
    """An iterator of text pieces; `.generation` holds the totals once it is exhausted."""

    def __init__(self, produce: Callable[["Stream"], Iterable[str]]):
        """Args: produce: given this Stream, returns the pieces (a generator that sets `.generation` at its end)."""
        self.generation: Generation | None = None
        self._it = iter(produce(self))

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        """Stop generating (the consumer went away)."""
        close = getattr(self._it, "close", None)
        if close:
            close()


def make_generation(text: str, prompt_tokens: int, completion_tokens: int, latency_s: float, finish_reason: str) -> Generation:
    return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      latency_s=round(latency_s, 4), finish_reason=finish_reason,
                      tokens_per_s=round(completion_tokens / latency_s, 2) if latency_s > 0 else 0.0)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text up to the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def filter_stream(pieces: Iterable[str], stop: list[str]) -> Iterator[str]:
    """Yield streamed text up to the first stop string, holding back a tail that may start one."""
    hold = max((len(s) for s in stop if s), default=1) - 1
    buf = ""
    for piece in pieces:
        buf += piece
        text, hit = cut_at_stop(buf, stop)
        if hit:
            if text:
                yield text
            return
        if len(buf) > hold:
            safe = len(buf) - hold
            yield buf[:safe]
            buf = buf[safe:]
    if buf:
        yield buf


# A dataset record's prompt as chat messages (without its output): the data layer's one definition.
records_to_messages = to_messages


def check_conversation(conversation: list[dict]) -> None:
    """Refuse a malformed conversation with one clear sentence."""
    if not conversation:
        raise TuneLabError("a conversation needs at least one message")
    for m in conversation:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise TuneLabError(f"bad message {m!r}: expected {{'role': 'system'|'user'|'assistant', 'content': str}}")


class TransformersBackend:
    """A local model in transformers: batched, left-padded generation; a run loads base + adapter."""

    def __init__(self, ref: ModelRef, device: str | None = None):
        self.ref = ref
        self.name = ref.name
        if ref.kind == "run" and ref.extra.get("method") in ("lora", "qlora"):
            # A LoRA run generates from its weights merged once into a cached copy: the base's speed.
            merged = replace(ref, kind="hf", path=str(merged_dir(ref)), base=None, adapter="")
            self.model, _ = load_model(merged, device=device)
            self.tok = load_tokenizer(ref)  # the run's own tokenizer, fallback-template flag included
        else:
            self.model, self.tok = load_model(ref, device=device)
        # Decoder-only models continue from the right end: padding goes left so every prompt ends at the same column.
        self.tok.padding_side = "left"
        self.fallback_template = not has_native_template(self.tok)
        self.eos_ids = self._eos_ids()
        self._lock = threading.Lock()  # one generate at a time: seeds are global and the server is threaded

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
        if self.tok.eos_token_id is not None and self.tok.eos_token_id not in ids:
            ids.append(self.tok.eos_token_id)
        return ids

    def format_prompt(self, conversation: list[dict]) -> str:
        """The conversation as the model's prompt text (its chat template, or the fallback)."""
        check_conversation(conversation)
        return self.tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str, templated: bool) -> list[int]:
        # Chat templates write BOS themselves when the model wants one; plain prompts get the tokenizer's default.
        ids = self.tok(text, add_special_tokens=not templated)["input_ids"]
        bos = self.tok.bos_token_id
        if templated and bos is not None and self.fallback_template and (not ids or ids[0] != bos):
            if self.tok("", add_special_tokens=True)["input_ids"][:1] == [bos]:
                ids = [bos] + ids
        if not ids:
            raise TuneLabError("the prompt is empty")
        return ids

    def _gen_config(self, settings: GenerationSettings):
        from transformers import GenerationConfig

        sample = settings.temperature > 0
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens, do_sample=sample,
            temperature=settings.temperature if sample else None, top_p=settings.top_p if sample else None,
            top_k=None,  # OpenAI semantics: only temperature and top_p shape sampling
            eos_token_id=self.eos_ids, pad_token_id=self.tok.pad_token_id,
        )

    def _batch(self, ids: list[list[int]], settings: GenerationSettings, streamer=None, stopping: list | None = None):
        """Run generate on one left-padded batch; returns the generated ids (batch x new tokens)."""
        import torch
        from transformers import StoppingCriteriaList

        enc = self.tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.model.device)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            criteria = [c for c in (_stop_criteria(self.tok, settings.stop, enc["input_ids"].shape[1]), *(stopping or [])) if c]
            out = self.model.generate(**enc, generation_config=self._gen_config(settings), streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList(criteria))
        return out[:, enc["input_ids"].shape[1]:].tolist()

    def _finish(self, prompt_len: int, new_ids: list[int], settings: GenerationSettings, latency: float) -> Generation:
        n = len(new_ids)
        reason = "length"
        for i, t in enumerate(new_ids):
            if t in self.eos_ids:
                n, reason = i + 1, "stop"
                break
        text, hit = cut_at_stop(self.tok.decode(new_ids[:n], skip_special_tokens=True), settings.stop)
        return make_generation(text, prompt_len, n, latency, "stop" if hit else reason)

    def _generate(self, texts: list[str], templated: bool, settings: GenerationSettings, batch_size: int,
                  cancel: threading.Event | None = None) -> list[Generation]:
        ids = [self._encode(t, templated) for t in texts]
        stopping = [_cancel_criterion(cancel)] if cancel is not None else None
        # Similar lengths batched together waste less compute on padding; results go back in input order.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[Generation | None] = [None] * len(ids)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + batch_size]
            with self._lock:
                t0 = time.perf_counter()
                new = self._batch([ids[i] for i in chunk], settings, stopping=stopping)
                latency = time.perf_counter() - t0
            for i, new_ids in zip(chunk, new):
                results[i] = self._finish(len(ids[i]), new_ids, settings, latency)
        return results

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings, batch_size: int = 8,
             cancel: threading.Event | None = None) -> list[Generation]:
        """Answer each conversation (batched); latency is the batch's wall time.

        Setting `cancel` (from any thread) ends generation at the next token; the answers are then cut short.
        """
        return self._generate([self.format_prompt(c) for c in conversations], True, settings, batch_size, cancel)

    def complete(self, prompts: list[str], settings: GenerationSettings, batch_size: int = 8,
                 cancel: threading.Event | None = None) -> list[Generation]:
        """Continue each plain-text prompt (no chat template); `cancel` as in `chat`."""
        return self._generate(prompts, False, settings, batch_size, cancel)

    def stream_chat(self, conversation: list[dict], settings: GenerationSettings,
                    cancel: threading.Event | None = None) -> Stream:
        """Stream the answer piece by piece; the returned Stream's `.generation` has the totals."""
        return self._stream(self.format_prompt(conversation), True, settings, cancel)

    def stream_complete(self, prompt: str, settings: GenerationSettings, cancel: threading.Event | None = None) -> Stream:
        return self._stream(prompt, False, settings, cancel)

    def _stream(self, text: str, templated: bool, settings: GenerationSettings, cancel: threading.Event | None = None) -> Stream:
        return Stream(lambda stream: self._stream_pieces(text, templated, settings, stream, cancel))

    def _stream_pieces(self, text: str, templated: bool, settings: GenerationSettings, stream: Stream,
                       cancel: threading.Event | None = None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, TextIteratorStreamer

        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                stop = cancelled.is_set() or (cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        ids = self._encode(text, templated)
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
        box: dict = {}

        def work():
            try:
                with self._lock:
                    t0 = time.perf_counter()
                    box["new"] = self._batch([ids], settings, streamer, [_Cancel()])[0]
                    box["latency"] = time.perf_counter() - t0
            except BaseException as exc:  # surfaced in the consumer's thread below
                box["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            yield from filter_stream(streamer, settings.stop)
        finally:
            cancelled.set()  # a stop string hit or the consumer left: stop decoding now
            thread.join()
        if "error" in box:
            raise box["error"]
        stream.generation = self._finish(len(ids), box["new"], settings, box["latency"])


def _stop_criteria(tok, stop: list[str], prompt_len: int):
    """A stopping criterion that ends a row once its new text holds a stop string (None without stops).

    transformers' own `stop_strings` precomputes tables over the whole vocabulary on every call
    (about 20 s for SmolLM2 on 2 cores); decoding the last few tokens per step costs microseconds.
    """
    stop = [s for s in stop if s]
    if not stop:
        return None
    import torch
    from transformers import StoppingCriteria

    window = max(len(s) for s in stop) + 2  # every token decodes to at least one character

    class _StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = tok.batch_decode(input_ids[:, prompt_len:][:, -window:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in tails], dtype=torch.bool, device=input_ids.device)

    return _StopStrings()


def _cancel_criterion(cancel: threading.Event):
    """A stopping criterion that ends every row once `cancel` is set (its client left, the server is stopping)."""
    import torch
    from transformers import StoppingCriteria

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return _Cancelled()


_CACHE: "OrderedDict[str, Backend]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(frozen=True)
class BackendEntry:
    """A generation backend other than transformers (which serves every other model).

    build(ref) makes the backend; kinds: the ModelRef kinds it serves when the spec names no engine;
    prefix: "NAME:MODEL" forces it; available(): False makes it step aside (an optional extra absent).
    """

    name: str
    build: Callable[[ModelRef], "Backend"]
    kinds: tuple[str, ...] = ()
    prefix: bool = False
    available: Callable[[], bool] = lambda: True


# Backends register here when their module is imported (tunelab/models/__init__.py imports them all);
# this module never imports a backend.
BACKENDS: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> BackendEntry:
    BACKENDS[entry.name] = entry
    return entry


def _build(spec: str) -> Backend:
    kind, _, rest = spec.partition(":")
    if kind == "local":
        return TransformersBackend(resolve(rest))
    forced = BACKENDS.get(kind)
    if forced is not None and forced.prefix:
        return forced.build(resolve(rest))
    ref = resolve(spec)
    for entry in BACKENDS.values():
        if ref.kind in entry.kinds and entry.available():
            return entry.build(ref)
    if ref.kind == "openai":
        raise TuneLabError(f"no backend is registered for the endpoint {ref.name} (import tunelab.models)")
    return TransformersBackend(ref)


def get_backend(spec: str) -> Backend:
    """A backend for a model spec, cached per process (least recently used beyond MAX_LOADED).

    Args:
        spec: a MODEL (registry name, path, .gguf, run id) -> llama.cpp for a plain GGUF when
            llama-cpp-python is installed, else transformers; "local:MODEL" forces transformers;
            "llamacpp:MODEL" forces llama.cpp; "openai:BASE_URL[#model]" an OpenAI-compatible endpoint.
    Returns:
        An object with chat / complete / stream_chat.
    """
    if not spec or not spec.strip():
        raise TuneLabError("no model given")
    spec = spec.strip()
    with _CACHE_LOCK:  # held while loading so two threads never load the same model twice
        if spec in _CACHE:
            _CACHE.move_to_end(spec)
            return _CACHE[spec]
        backend = _build(spec)
        _CACHE[spec] = backend
        while len(_CACHE) > MAX_LOADED:
            _CACHE.popitem(last=False)
        return backend


def clear_cache() -> None:
    """Forget every loaded backend (frees their memory once no one else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
