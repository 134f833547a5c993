"""What a completion reads and writes: the thread (for a participant only), messages, user properties,
the AI cache, the monthly spend ledger and the recorded answer of each completion."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

THREAD_FOR_PARTICIPANT = """
SELECT t.id, t.conversation_id, t.model_id
FROM conversation_threads t
JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = %(user_id)s
WHERE t.id = %(thread_id)s
"""

USER_PROPERTIES = "SELECT tone, additional_info FROM user_properties WHERE user_id = %(user_id)s"

# One round trip: the message, and the conversation's last_message_at.
INSERT_MESSAGE = """
WITH inserted AS (
    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, model_id, idempotency_key)
    VALUES (%(conversation_id)s, %(thread_id)s, %(sender_id)s, %(sender_kind)s, %(content)s, %(model_id)s,
            %(idempotency_key)s)
    RETURNING id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
), touched AS (
    UPDATE conversations SET last_message_at = now() WHERE id = %(conversation_id)s
)
SELECT * FROM inserted
"""

MESSAGE_BY_KEY = """
SELECT id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
FROM messages
WHERE conversation_id = %(conversation_id)s AND sender_id = %(sender_id)s AND idempotency_key = %(key)s
"""

MESSAGE = """
SELECT id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
FROM messages WHERE id = %(id)s
"""

RECENT_THREAD_MESSAGES = """
SELECT id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
FROM messages
WHERE thread_id = %(thread_id)s AND id <= %(up_to)s
ORDER BY id DESC
LIMIT %(limit)s
"""

TAKE_CACHE_ENTRY = """
UPDATE ai_cache SET hit_count = hit_count + 1, last_hit_at = now()
WHERE model = %(model)s AND prompt_hash = %(prompt_hash)s AND ttl > now()
RETURNING response_text, tokens_input, tokens_output, cost_estimate
"""

PUT_CACHE_ENTRY = """
INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, tokens_input, tokens_output,
                      cost_estimate, ttl)
VALUES (%(model)s, %(prompt_hash)s, %(prompt_summary)s, %(response_text)s, %(tokens_input)s + %(tokens_output)s,
        %(tokens_input)s, %(tokens_output)s, %(cost_estimate)s, now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (model, prompt_hash) DO UPDATE SET
    prompt_summary = EXCLUDED.prompt_summary, response_text = EXCLUDED.response_text,
    tokens_used = EXCLUDED.tokens_used, tokens_input = EXCLUDED.tokens_input, tokens_output = EXCLUDED.tokens_output,
    cost_estimate = EXCLUDED.cost_estimate, ttl = EXCLUDED.ttl, created_at = now(), hit_count = 0, last_hit_at = NULL
"""

ENSURE_SPEND_ROW = """
INSERT INTO ai_spend_months (user_id, month) VALUES (%(user_id)s, %(month)s)
ON CONFLICT (user_id, month) DO NOTHING
"""

# The row lock serializes a user's concurrent reservations: the check and the reservation are one step.
LOCK_SPEND_ROW = """
SELECT spent_usd, reserved_usd FROM ai_spend_months
WHERE user_id = %(user_id)s AND month = %(month)s
FOR UPDATE
"""

RESERVE_SPEND = """
UPDATE ai_spend_months SET reserved_usd = reserved_usd + %(amount)s, updated_at = now()
WHERE user_id = %(user_id)s AND month = %(month)s
"""

SETTLE_SPEND = """
UPDATE ai_spend_months
SET reserved_usd = greatest(reserved_usd - %(reserved)s, 0), spent_usd = spent_usd + %(spent)s, updated_at = now()
WHERE user_id = %(user_id)s AND month = %(month)s
"""

ADD_SPEND = """
INSERT INTO ai_spend_months (user_id, month, spent_usd) VALUES (%(user_id)s, %(month)s, %(spent)s)
ON CONFLICT (user_id, month) DO UPDATE
SET spent_usd = ai_spend_months.spent_usd + EXCLUDED.spent_usd, updated_at = now()
"""

GET_REPLY = "SELECT ai_message_id, usage FROM ai_completions WHERE user_message_id = %(user_message_id)s"

PUT_REPLY = """
INSERT INTO ai_completions (user_message_id, ai_message_id, usage)
VALUES (%(user_message_id)s, %(ai_message_id)s, %(usage)s)
"""


class ThreadRef(BaseModel):
    id: UUID
    conversation_id: UUID
    model_id: str | None


class MessageRow(BaseModel):
    id: int
    conversation_id: UUID
    thread_id: UUID | None
    sender_id: UUID | None
    sender_kind: str
    content: str
    model_id: str | None
    created_at: datetime


class CacheEntry(BaseModel):
    response_text: str
    tokens_input: int
    tokens_output: int
    cost_estimate: Decimal


class CompletionsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def thread_for_participant(self, thread_id: UUID, user_id: UUID) -> ThreadRef | None:
        with self.conn.cursor(row_factory=class_row(ThreadRef)) as cur:
            return cur.execute(THREAD_FOR_PARTICIPANT, {"thread_id": thread_id, "user_id": user_id}).fetchone()

    def user_properties(self, user_id: UUID) -> tuple[str | None, str | None]:
        row = self.conn.execute(USER_PROPERTIES, {"user_id": user_id}).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def add_message(self, **values: Any) -> MessageRow:
        values.setdefault("idempotency_key", None)
        values.setdefault("model_id", None)
        values.setdefault("sender_id", None)
        with self.conn.cursor(row_factory=class_row(MessageRow)) as cur:
            row = cur.execute(INSERT_MESSAGE, values).fetchone()
        assert row is not None
        return row

    def message_by_key(self, conversation_id: UUID, sender_id: UUID, key: str) -> MessageRow | None:
        params = {"conversation_id": conversation_id, "sender_id": sender_id, "key": key}
        with self.conn.cursor(row_factory=class_row(MessageRow)) as cur:
            return cur.execute(MESSAGE_BY_KEY, params).fetchone()

    def message(self, id: int) -> MessageRow | None:
        with self.conn.cursor(row_factory=class_row(MessageRow)) as cur:
            return cur.execute(MESSAGE, {"id": id}).fetchone()

    def recent_thread_messages(self, thread_id: UUID, up_to: int, limit: int) -> list[MessageRow]:
        """Newest first."""
        with self.conn.cursor(row_factory=class_row(MessageRow)) as cur:
            return cur.execute(
                RECENT_THREAD_MESSAGES, {"thread_id": thread_id, "up_to": up_to, "limit": limit}
            ).fetchall()

    def take_cache_entry(self, model: str, prompt_hash: str) -> CacheEntry | None:
        """A live entry, counted as a hit; None when absent or expired."""
        with self.conn.cursor(row_factory=class_row(CacheEntry)) as cur:
            return cur.execute(TAKE_CACHE_ENTRY, {"model": model, "prompt_hash": prompt_hash}).fetchone()

    def put_cache_entry(self, **values: Any) -> None:
        self.conn.execute(PUT_CACHE_ENTRY, values)

    def lock_spend(self, user_id: UUID, month: Any) -> tuple[Decimal, Decimal]:
        """(spent, reserved) for the month, with the row locked until the transaction ends."""
        params = {"user_id": user_id, "month": month}
        self.conn.execute(ENSURE_SPEND_ROW, params)
        row = self.conn.execute(LOCK_SPEND_ROW, params).fetchone()
        assert row is not None
        return Decimal(row[0]), Decimal(row[1])

    def reserve_spend(self, user_id: UUID, month: Any, amount: Decimal) -> None:
        self.conn.execute(RESERVE_SPEND, {"user_id": user_id, "month": month, "amount": amount})

    def settle_spend(self, user_id: UUID, month: Any, *, reserved: Decimal, spent: Decimal) -> None:
        params = {"user_id": user_id, "month": month, "reserved": reserved, "spent": spent}
        if reserved:
            self.conn.execute(SETTLE_SPEND, params)
        elif spent:
            self.conn.execute(ADD_SPEND, params)

    def reply(self, user_message_id: int) -> tuple[int, dict[str, Any]] | None:
        row = self.conn.execute(GET_REPLY, {"user_message_id": user_message_id}).fetchone()
        return (int(row[0]), dict(row[1])) if row else None

    def put_reply(self, user_message_id: int, ai_message_id: int, usage: dict[str, Any]) -> None:
        params = {"user_message_id": user_message_id, "ai_message_id": ai_message_id, "usage": Jsonb(usage)}
        self.conn.execute(PUT_REPLY, params)
