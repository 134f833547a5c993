"""The usage event: what every model call reports, and the publisher interface producers call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal, Protocol
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What model_usage's columns can hold. A value beyond them would pass validation and then fail the batch's
# one transaction, sending every record of the batch back to the queue; bounded here, it fails alone.
INTEGER_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1

Count = Annotated[int, Field(ge=0, le=INTEGER_MAX)]
# numeric(14, 8), as model_usage and ai_cache hold a call's cost: the most one call may cost.
MOST_COST_USD = Decimal("999999.99999999")
# PostgreSQL text (and jsonb, which carries the batch) cannot hold a NUL character.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class UsageEvent(BaseModel):
    """One model request. event_id is set by the producer once; every redelivery carries the same one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4)
    user_id: UUID | None = None
    conversation_id: UUID | None = None
    thread_id: UUID | None = None
    message_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    turn_number: Count | None = None
    model: Text = Field(min_length=1, max_length=255)
    provider: Text = Field(min_length=1, max_length=50)
    tokens_input: Count = 0
    tokens_output: Count = 0
    tokens_cached: Count = 0
    query_size: Count = 0
    response_size: Count = 0
    cost_usd: Decimal = Field(Decimal(0), ge=0, max_digits=14, decimal_places=8)
    cost_avoided_usd: Decimal = Field(Decimal(0), ge=0, max_digits=14, decimal_places=8)
    latency_ms: Count = 0
    cache_hit: bool = False
    streaming: bool = False
    classification: Text | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # Sent on as UTC: a time without an offset would be read in the session's TimeZone (the machine's, for an
        # embedded server), an offset beyond +-15:59 is one PostgreSQL refuses (failing the batch), and a time whose
        # UTC year is outside 1-9999 would be stored as one no later read can load.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("occurred_at is outside the years 1-9999 in UTC") from exc

    @model_validator(mode="after")
    def _total_fits(self) -> UsageEvent:
        # model_usage.total_tokens (input + output) is an integer column too.
        if self.tokens_total > INTEGER_MAX:
            raise ValueError(f"tokens_input + tokens_output exceeds {INTEGER_MAX}")
        return self

    @property
    def tokens_total(self) -> int:
        return self.tokens_input + self.tokens_output


class UsagePublisher(Protocol):
    """Where producers hand events; SQS in AWS, an in-process queue locally. Never loses an event."""

    def publish(self, events: Sequence[UsageEvent]) -> None: ...
