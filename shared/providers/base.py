"""The provider interface every model client implements, and the one shape of token counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.errors import UpstreamError
from shared.observability import logger

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ProviderRequest:
    """What a provider is asked: the provider's model name, the whole context, and the sampling parameters."""

    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float = 0.0
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()  # sequences that end the answer where they appear (not included in it)

    @property
    def system(self) -> str:
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def turns(self) -> tuple[ChatMessage, ...]:
        return tuple(m for m in self.messages if m.role != "system")


MOST_TOKENS_A_CALL = 2**31 - 1


@dataclass(frozen=True)
class TokenUsage:
    """Tokens in one shape whatever the provider: input includes cached input."""

    input: int = 0
    output: int = 0
    cached: int = 0

    def __post_init__(self) -> None:
        # Counts come from the provider's body: a negative one would price a call below zero, and no model
        # takes or writes two billion tokens (the usage columns are 32-bit, cached included: a count beyond them
        # failed the usage event after the answer was stored). Providers turn this ValueError into a 502 for a
        # malformed answer.
        too_many = self.input + self.output > MOST_TOKENS_A_CALL or self.cached > MOST_TOKENS_A_CALL
        if min(self.input, self.output, self.cached) < 0 or too_many:
            raise ValueError("token counts out of range")


@dataclass(frozen=True)
class ProviderResult:
    text: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish_reason: str = "stop"


class ModelProvider(Protocol):
    """A model client. Raises ProviderError subclasses only; never lets the provider's body out."""

    name: str

    def complete(self, request: ProviderRequest) -> ProviderResult: ...


class ProviderError(UpstreamError):
    """A provider failure: 502 (bad answer), 503 (throttled or down) or 504 (timed out). Never carries a body."""


def provider_failed(provider: str, status: int, reason: str) -> ProviderError:
    """The error for a failed call, logged with the provider and a short reason code (never a body or key)."""
    logger.warning("model provider failed", extra={"provider": provider, "status": status, "reason": reason})
    detail = {
        502: "The model provider returned an error.",
        503: "The model provider is unavailable or throttling; retry later.",
        504: "The model provider did not answer in time.",
    }.get(status, "The model provider returned an error.")
    return ProviderError(detail, status=status)


def estimate_tokens(text: str) -> int:
    """A provider-free token estimate (about four characters a token) for budgets and fallbacks."""
    return (len(text) + 3) // 4


# Tokens a chat format adds around each message (role markers, separators): a generous bound.
MESSAGE_OVERHEAD_TOKENS = 8


def most_tokens(messages: Sequence[ChatMessage]) -> int:
    """An upper bound on the input tokens of `messages` for any tokenizer in use: byte-level BPE and
    SentencePiece with byte fallback never make more tokens than the text has UTF-8 bytes (a CJK character is
    three bytes, and about one token), plus each message's format tokens. What the spend limit reserves."""
    return sum(len(m.content.encode()) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def alternating(turns: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """Turns as chat APIs accept them: from the first user turn on, consecutive turns of one role joined into
    one. Bedrock's Converse refuses anything else, as do the chat templates of many open models (vLLM, TGI,
    NIM): a thread can hold two user messages in a row (a turn whose provider call failed keeps its message)
    and a history trimmed to the budget can start with an answer."""
    merged: list[ChatMessage] = []
    for turn in turns:
        if not merged and turn.role != "user":
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = ChatMessage(turn.role, f"{merged[-1].content}\n\n{turn.content}")
        else:
            merged.append(turn)
    return tuple(merged)
