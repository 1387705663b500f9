"""The API's request bodies (pydantic, OpenAI's field names) and the limits every request is held to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tunelab.errors import TuneLabError
from tunelab.models.generation import GenerationSettings

# When a request names no limit: enough for a chat answer, short enough to keep the queue moving.
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_MESSAGES = 512
# A model whose context cannot be read (an openai:URL endpoint) is bounded as if it had this one.
FALLBACK_CONTEXT = 4096
# Default bound on a request's text: its context times this. Real text averages 1-4 characters a
# token, so this never refuses a prompt that fits, and it bounds the work done before tokenising.
CHARS_PER_TOKEN = 8
MIN_BODY_BYTES = 16 * 1024 * 1024


def _valid_unicode(text: str) -> str:
    """Refuse lone surrogates ("\\ud800" in JSON): tokenizers and UTF-8 cannot take them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"holds a lone surrogate ({text[exc.start]!r} at character {exc.start}), which is not text") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


class ContentPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = ""

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])

    def as_dict(self) -> dict:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, logit_bias...)

    model: Text = ""
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stop: Text | Annotated[list[Text], Field(max_length=16)] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, description="a 64-bit integer")
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def settings(self, max_new_tokens: int) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                  seed=self.seed, stop=self.stops())


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: Text | Annotated[list[Text], Field(min_length=1)]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; every excess is a 400 that names the limit."""

    max_tokens: int
    max_prompt_chars: int
    max_messages: int

    def tokens(self, field: str, asked: int | None) -> int:
        if asked is None:
            return min(DEFAULT_MAX_TOKENS, self.max_tokens)
        if asked > self.max_tokens:
            raise TuneLabError(f"{field} is {asked}, over this server's limit of {self.max_tokens} tokens "
                               "(the model's context, or `tunelab serve --max-tokens-limit`)")
        return asked

    def text(self, texts: list[str], stop: list[str]) -> None:
        n = sum(map(len, texts)) + sum(map(len, stop))
        if n > self.max_prompt_chars:
            raise TuneLabError(f"the request's text is {n} characters, over this server's limit of "
                               f"{self.max_prompt_chars} (`tunelab serve --max-prompt-chars`)")

    def messages(self, n: int) -> None:
        if n > self.max_messages:
            raise TuneLabError(f"the request has {n} messages, over this server's limit of {self.max_messages} "
                               "(`tunelab serve --max-messages`)")

    def prompts(self, n: int) -> None:
        if n > self.max_messages:
            raise TuneLabError(f"the request has {n} prompts, over this server's limit of {self.max_messages} "
                               "(`tunelab serve --max-messages`)")


def context_length(backend) -> int | None:
    """The most tokens the backend's model can attend to, when it says (None for a remote endpoint)."""
    config = getattr(getattr(backend, "model", None), "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
    n_ctx = getattr(getattr(backend, "llm", None), "n_ctx", None)
    return int(n_ctx()) if callable(n_ctx) else None


def make_limits(backend, max_tokens_limit: int | None = None, max_prompt_chars: int | None = None,
                max_messages: int | None = None) -> Limits:
    """The server's limits: each given one, else derived from the model's context."""
    context = context_length(backend) or FALLBACK_CONTEXT
    return Limits(max_tokens=min(max_tokens_limit or context, context),
                  max_prompt_chars=max_prompt_chars or context * CHARS_PER_TOKEN,
                  max_messages=max_messages or DEFAULT_MAX_MESSAGES)
