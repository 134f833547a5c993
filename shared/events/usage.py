"""The usage event: what every model call reports, and the publisher interface producers call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, Protocol
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


class UsageEvent(BaseModel):
    """One model request. event_id is set by the producer once; every redelivery carries the same one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4)
    user_id: UUID | None = None
    conversation_id: UUID | None = None
    thread_id: UUID | None = None
    message_id: int | None = None
    turn_number: int | None = Field(None, ge=0)
    model: str = Field(min_length=1, max_length=255)
    provider: str = Field(min_length=1, max_length=50)
    tokens_input: int = Field(0, ge=0)
    tokens_output: int = Field(0, ge=0)
    tokens_cached: int = Field(0, ge=0)
    query_size: int = Field(0, ge=0)
    response_size: int = Field(0, ge=0)
    cost_usd: Decimal = Field(Decimal(0), ge=0, max_digits=14, decimal_places=8)
    cost_avoided_usd: Decimal = Field(Decimal(0), ge=0, max_digits=14, decimal_places=8)
    latency_ms: int = Field(0, ge=0)
    cache_hit: bool = False
    streaming: bool = False
    classification: str | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def tokens_total(self) -> int:
        return self.tokens_input + self.tokens_output


class UsagePublisher(Protocol):
    """Where producers hand events; SQS in AWS, an in-process queue locally. Never loses an event."""

    def publish(self, events: Sequence[UsageEvent]) -> None: ...
