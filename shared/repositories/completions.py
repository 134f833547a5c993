"""What a completion reads and writes: the thread (for a participant only), messages, user properties,
the AI cache, the monthly spend ledger and the recorded answer of each completion."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from shared.repositories.catalog import MODEL_COLUMNS, ModelRow

THREAD_FOR_PARTICIPANT = """
SELECT t.id, t.conversation_id, t.model_id
FROM conversation_threads t
JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = %(user_id)s
WHERE t.id = %(thread_id)s
"""

# Everything a completion's context needs in one statement: the thread (for a participant only), the caller's
# properties and the model (the requested one, else the thread's, else the default) with its resource endpoint.
COMPLETION_CONTEXT = f"""
SELECT t.id AS thread_id, t.conversation_id AS thread_conversation_id, t.model_id AS thread_model_id,
       up.tone AS user_tone, up.additional_info AS user_info, {MODEL_COLUMNS}
FROM conversation_threads t
JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = %(user_id)s
LEFT JOIN user_properties up ON up.user_id = %(user_id)s
LEFT JOIN model_configurations m
       ON m.model_id = coalesce(nullif(%(model_id)s, ''), nullif(t.model_id, ''), nullif(%(default_model_id)s, ''))
LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id
WHERE t.id = %(thread_id)s
"""  # noqa: S608 (fixed column list)

# The user's message in a thread the sender takes part in (no row otherwise, and none when the idempotency key
# was used already), and the conversation's last_message_at.
INSERT_THREAD_MESSAGE = """
WITH inserted AS (
    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    SELECT t.conversation_id, t.id, %(sender_id)s, 'user', %(content)s, %(idempotency_key)s
    FROM conversation_threads t
    JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = %(sender_id)s
    WHERE t.id = %(thread_id)s
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
), touched AS (
    UPDATE conversations SET last_message_at = now() WHERE id IN (SELECT conversation_id FROM inserted)
)
SELECT * FROM inserted
"""

LATEST_THREAD_MESSAGES = """
SELECT id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
FROM messages
WHERE thread_id = %(thread_id)s
ORDER BY id DESC
LIMIT %(limit)s
"""

# The AI message, the conversation's last_message_at and the recorded answer of the user's message: one statement.
INSERT_ANSWER = """
WITH inserted AS (
    INSERT INTO messages (conversation_id, thread_id, sender_kind, content, model_id)
    VALUES (%(conversation_id)s, %(thread_id)s, 'ai', %(content)s, %(model_id)s)
    RETURNING id, conversation_id, thread_id, sender_id, sender_kind, content, model_id, created_at
), touched AS (
    UPDATE conversations SET last_message_at = now() WHERE id = %(conversation_id)s
), reply AS (
    INSERT INTO ai_completions (user_message_id, ai_message_id, usage)
    SELECT %(user_message_id)s, id, %(usage)s FROM inserted
)
SELECT * FROM inserted
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


class CompletionContext(BaseModel):
    thread: ThreadRef
    tone: str | None
    additional_info: str | None
    model: ModelRow | None


MODEL_FIELDS = tuple(ModelRow.model_fields)


class CompletionsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def thread_for_participant(self, thread_id: UUID, user_id: UUID) -> ThreadRef | None:
        with self.conn.cursor(row_factory=class_row(ThreadRef)) as cur:
            return cur.execute(THREAD_FOR_PARTICIPANT, {"thread_id": thread_id, "user_id": user_id}).fetchone()

    def open_thread_turn(
        self,
        *,
        thread_id: UUID,
        user_id: UUID,
        model_id: str | None,
        default_model_id: str | None,
        content: str,
        idempotency_key: str | None,
        history_limit: int,
    ) -> tuple[CompletionContext | None, MessageRow | None, list[MessageRow]]:
        """(the context or None when the thread is not the user's, the stored user message or None when the
        idempotency key was used already, the thread's newest messages, newest first).

        Three statements sent before any result is read: in a pipelined unit of work (Database.pipelined) they
        share one round trip with the BEGIN. The message is inserted before the caller has checked the model;
        leaving the transaction without commit() takes it back.
        """
        context_params = {
            "thread_id": thread_id,
            "user_id": user_id,
            "model_id": model_id,
            "default_model_id": default_model_id,
        }
        message_params = {
            "thread_id": thread_id,
            "sender_id": user_id,
            "content": content,
            "idempotency_key": idempotency_key,
        }
        context_cur = self.conn.cursor(row_factory=dict_row).execute(COMPLETION_CONTEXT, context_params)
        message_cur = self.conn.cursor(row_factory=class_row(MessageRow)).execute(INSERT_THREAD_MESSAGE, message_params)
        history_cur = self.conn.cursor(row_factory=class_row(MessageRow)).execute(
            LATEST_THREAD_MESSAGES, {"thread_id": thread_id, "limit": history_limit}
        )
        row = context_cur.fetchone()
        message = message_cur.fetchone()
        history = history_cur.fetchall()
        if row is None:
            return None, None, []
        thread = ThreadRef(
            id=row["thread_id"], conversation_id=row["thread_conversation_id"], model_id=row["thread_model_id"]
        )
        model = ModelRow.model_validate({k: row[k] for k in MODEL_FIELDS}) if row["id"] is not None else None
        context = CompletionContext(thread=thread, tone=row["user_tone"], additional_info=row["user_info"], model=model)
        return context, message, history

    def add_answer(
        self,
        *,
        user_message_id: int,
        conversation_id: UUID,
        thread_id: UUID | None,
        content: str,
        model_id: str,
        usage: dict[str, Any],
    ) -> Any:
        """Queue the AI message with its recorded answer; the returned cursor's fetchone() gives its MessageRow."""
        params = {
            "user_message_id": user_message_id,
            "conversation_id": conversation_id,
            "thread_id": thread_id,
            "content": content,
            "model_id": model_id,
            "usage": Jsonb(usage),
        }
        return self.conn.cursor(row_factory=class_row(MessageRow)).execute(INSERT_ANSWER, params)

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
