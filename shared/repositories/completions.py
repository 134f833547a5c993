"""What a completion reads and writes: the thread (for a participant only), messages, user properties,
the AI cache, the monthly spend ledger and the recorded answer of each completion.

A thread turn's two main steps are PL/pgSQL functions (migrations/0302): see there for why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from shared.repositories.catalog import ModelRow

# Before the provider call: one call of migrations/0302's function, whose statements' plans the server keeps.
COMPLETION_CONTEXT = """
SELECT * FROM confab_completion_context(%(thread_id)s, %(user_id)s, %(model_id)s, %(default_model_id)s,
                                        %(history_limit)s, %(idempotency_key)s)
"""

# After it: the user's message (unless stored already), the answer and their record, in one call.
RECORD_COMPLETION = """
SELECT * FROM confab_record_completion(%(thread_id)s, %(conversation_id)s, %(user_id)s, %(content)s,
                                       %(idempotency_key)s, %(answer)s, %(model_id)s, %(usage)s)
"""

# The user's message alone, in a thread the sender takes part in (nothing when the key was used already):
# what a turn keeps when the provider fails, so that nothing the user sent is lost. The conversation's row is
# locked before the message gets its id, as a send does: ids in commit order within a conversation. Then the
# sender's participant row, as a send does: a removal that held the conversation's row has deleted it.
INSERT_THREAD_MESSAGE = """
WITH locked AS (
    SELECT c.id AS conversation_id, t.id AS thread_id
    FROM conversation_threads t
    JOIN conversations c ON c.id = t.conversation_id
    JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = %(sender_id)s
    WHERE t.id = %(thread_id)s
    FOR NO KEY UPDATE OF c FOR KEY SHARE OF p
), inserted AS (
    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    SELECT locked.conversation_id, locked.thread_id, %(sender_id)s, 'user', %(content)s, %(idempotency_key)s
    FROM locked
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING conversation_id
)
UPDATE conversations SET last_message_at = now() WHERE id IN (SELECT conversation_id FROM inserted)
"""

# An anonymous conversation's turn (its token holder is no participant): migrations/0537's functions, called only
# for an anonymous caller, so a user's turn runs exactly what it ran before.
ANONYMOUS_COMPLETION_CONTEXT = """
SELECT * FROM confab_anonymous_completion_context(%(thread_id)s, %(conversation_id)s, %(model_id)s,
                                                  %(history_limit)s, %(idempotency_key)s, %(message_limit)s,
                                                  %(turn_limit)s)
"""

RECORD_ANONYMOUS_COMPLETION = """
SELECT * FROM confab_record_anonymous_completion(%(thread_id)s, %(conversation_id)s, %(content)s,
                                                 %(idempotency_key)s, %(answer)s, %(model_id)s, %(usage)s)
"""

# An anonymous turn's message alone (sender NULL, as an anonymous send stores it), kept when the provider fails;
# the conversation's row locked first, as the record does.
INSERT_ANONYMOUS_THREAD_MESSAGE = """
WITH locked AS (
    SELECT c.id AS conversation_id, t.id AS thread_id
    FROM conversation_threads t
    JOIN conversations c ON c.id = t.conversation_id AND c.kind = 'anonymous'
    WHERE t.id = %(thread_id)s AND t.conversation_id = %(conversation_id)s
    FOR NO KEY UPDATE OF c
), inserted AS (
    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    SELECT locked.conversation_id, locked.thread_id, NULL, 'user', %(content)s, %(idempotency_key)s
    FROM locked
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING conversation_id
)
UPDATE conversations SET last_message_at = now() WHERE id IN (SELECT conversation_id FROM inserted)
"""

CACHE_ENTRY = """
SELECT response_text, tokens_input, tokens_output, cost_estimate, finish_reason FROM ai_cache
WHERE model = %(model)s AND prompt_hash = %(prompt_hash)s AND ttl > now() AND finish_reason IS NOT NULL
"""

COUNT_CACHE_HIT = """
UPDATE ai_cache SET hit_count = hit_count + 1, last_hit_at = now()
WHERE model = %(model)s AND prompt_hash = %(prompt_hash)s
"""

PUT_CACHE_ENTRY = """
INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, tokens_input, tokens_output,
                      cost_estimate, finish_reason, ttl)
VALUES (%(model)s, %(prompt_hash)s, %(prompt_summary)s, %(response_text)s, %(tokens_input)s + %(tokens_output)s,
        %(tokens_input)s, %(tokens_output)s, %(cost_estimate)s, %(finish_reason)s,
        now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (model, prompt_hash) DO UPDATE SET
    prompt_summary = EXCLUDED.prompt_summary, response_text = EXCLUDED.response_text,
    finish_reason = EXCLUDED.finish_reason,
    tokens_used = EXCLUDED.tokens_used, tokens_input = EXCLUDED.tokens_input, tokens_output = EXCLUDED.tokens_output,
    cost_estimate = EXCLUDED.cost_estimate, ttl = EXCLUDED.ttl, created_at = now(), hit_count = 0, last_hit_at = NULL
"""


@dataclass(frozen=True)
class SpendLedger:
    """A spend limit's ledger: one row of what was spent per `key` (a user's month, or the day of all anonymous
    conversations), and the reservations of the calls in flight against it. Tables and columns are fixed here,
    never taken from a request."""

    totals: str
    reservations: str
    key: tuple[str, ...]

    def _where(self) -> str:
        return " AND ".join(f"{column} = %({column})s" for column in self.key)

    def _columns(self) -> str:
        return ", ".join(self.key)

    def _values(self) -> str:
        return ", ".join(f"%({column})s" for column in self.key)

    def ensure(self) -> str:
        return (
            f"INSERT INTO {self.totals} ({self._columns()}) VALUES ({self._values()}) "  # noqa: S608 (fixed text)
            f"ON CONFLICT ({self._columns()}) DO NOTHING"
        )

    def lock(self) -> str:
        # The row lock serializes concurrent reservations: the check and the reservation are one step.
        return f"SELECT spent_usd FROM {self.totals} WHERE {self._where()} FOR UPDATE"  # noqa: S608 (fixed text)

    def live(self) -> str:
        # Read once the lock is held, in a statement of its own: it sees what the lock's previous holder committed.
        return (
            f"SELECT coalesce(sum(amount_usd), 0) FROM {self.reservations} "  # noqa: S608 (fixed text)
            f"WHERE {self._where()} AND expires_at > now()"
        )

    def reserve(self) -> str:
        return (
            f"INSERT INTO {self.reservations} ({self._columns()}, amount_usd, expires_at) "  # noqa: S608 (fixed text)
            f"VALUES ({self._values()}, %(amount)s, now() + make_interval(secs => %(lease_s)s)) RETURNING id"
        )

    def settle(self) -> str:
        # The call's reservation ends (if it made one; one that expired may be purged already) as its spend counts.
        return (
            f"WITH released AS (DELETE FROM {self.reservations} WHERE id = %(reservation_id)s) "  # noqa: S608 (fixed)
            f"INSERT INTO {self.totals} ({self._columns()}, spent_usd) VALUES ({self._values()}, %(spent)s) "
            f"ON CONFLICT ({self._columns()}) DO UPDATE "
            f"SET spent_usd = {self.totals}.spent_usd + EXCLUDED.spent_usd, updated_at = now()"
        )


# A user's month (MONTHLY_SPEND_LIMIT_USD), and what all anonymous conversations spend in a UTC day
# (ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD, migration 0538).
USER_MONTHS = SpendLedger("ai_spend_months", "ai_spend_reservations", ("user_id", "month"))
ANONYMOUS_DAYS = SpendLedger("ai_anonymous_spend_days", "ai_anonymous_spend_reservations", ("day",))


class ThreadRef(BaseModel):
    id: UUID
    conversation_id: UUID
    model_id: str | None


class PriorTurn(BaseModel):
    """The user message an earlier request with the same idempotency key stored, and its answer if it got one."""

    id: int
    thread_id: UUID | None  # a key is unique per conversation and sender: its message may be in another thread
    content: str
    sent_content: str | None  # the content before its first edit; None when it was never edited
    has_attachments: bool  # its key was a send's (keys are shared), and that send carried files
    answer: dict[str, Any] | None  # the AI message's fields (as in Recorded.answer) and its recorded usage

    def asks_for(self, content: str) -> bool:
        """Whether a turn asking `content` asks for this message: the same content as sent or as it reads after an
        edit, and no attachments (a turn carries none), as for a retried send (shared/repositories/messages.py)."""
        return not self.has_attachments and content in (self.content, self.sent_content)


@dataclass(frozen=True)
class Recorded:
    created: bool  # False: the user message had an answer already (its twin's), and this one was not stored
    user_message_id: int
    answer: dict[str, Any]  # the AI message: id, conversation_id, thread_id, sender_kind, content, model_id, created_at
    usage: dict[str, Any]  # as recorded with the answer


class CacheEntry(BaseModel):
    response_text: str
    tokens_input: int
    tokens_output: int
    cost_estimate: Decimal
    finish_reason: str  # why the answer ended ("stop", "length"): a hit answers it again


class CompletionContext(BaseModel):
    thread: ThreadRef
    tone: str | None
    additional_info: str | None
    model: ModelRow | None
    history: list[tuple[str, str]]  # (sender_kind, content) of the thread's newest messages, newest first
    prior: PriorTurn | None
    held: int = 0  # an anonymous conversation's messages, counted up to its message limit
    answered: int = 0  # an anonymous conversation's AI answers, counted up to its turn limit


MODEL_FIELDS = tuple(ModelRow.model_fields)


class CompletionsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def context(
        self,
        *,
        thread_id: UUID,
        user_id: UUID,
        model_id: str | None,
        default_model_id: str | None,
        history_limit: int,
        idempotency_key: str | None,
    ) -> CompletionContext | None:
        """What the turn needs before the provider call; None when the thread is not the user's."""
        params = {
            "thread_id": thread_id,
            "user_id": user_id,
            "model_id": model_id,
            "default_model_id": default_model_id,
            "history_limit": history_limit,
            "idempotency_key": idempotency_key,
        }
        return self._context(COMPLETION_CONTEXT, params)

    def anonymous_context(
        self,
        *,
        thread_id: UUID,
        conversation_id: UUID,
        model_id: str,
        history_limit: int,
        idempotency_key: str | None,
        message_limit: int,
        turn_limit: int,
    ) -> CompletionContext | None:
        """What an anonymous turn needs before the provider call; None when the thread is not of the token's
        anonymous conversation."""
        params = {
            "thread_id": thread_id,
            "conversation_id": conversation_id,
            "model_id": model_id,
            "history_limit": history_limit,
            "idempotency_key": idempotency_key,
            "message_limit": message_limit,
            "turn_limit": turn_limit,
        }
        return self._context(ANONYMOUS_COMPLETION_CONTEXT, params)

    def _context(self, query: str, params: dict[str, Any]) -> CompletionContext | None:
        """A context function's one row (None: no thread the caller may ask in). The anonymous one has no user
        properties and adds its conversation's counts."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query, params).fetchone()
        if row is None:
            return None
        thread = ThreadRef(
            id=row["thread_id"], conversation_id=row["thread_conversation_id"], model_id=row["thread_model_id"]
        )
        model = ModelRow.model_validate({k: row[k] for k in MODEL_FIELDS}) if row["id"] is not None else None
        return CompletionContext(
            thread=thread,
            tone=row.get("user_tone"),
            additional_info=row.get("user_info"),
            model=model,
            history=row["history"],
            prior=row["prior"],
            held=row.get("held", 0),
            answered=row.get("answered", 0),
        )

    def record(
        self,
        *,
        thread_id: UUID,
        conversation_id: UUID,
        user_id: UUID | None,
        content: str,
        idempotency_key: str | None,
        answer: str,
        model_id: str,
        usage: dict[str, Any],
    ) -> Callable[[], Recorded | None]:
        """Queue the turn's record (`user_id` None: an anonymous conversation's); the returned function gives it
        (None: the caller left the conversation, or the anonymous one was purged)."""
        params = {
            "thread_id": thread_id,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "content": content,
            "idempotency_key": idempotency_key,
            "answer": answer,
            "model_id": model_id,
            "usage": Jsonb(usage),
        }
        if user_id is None:
            # An anonymous conversation's turn: the sender is NULL, the conversation kind is checked instead.
            params.pop("user_id")
            cur = self.conn.cursor(row_factory=dict_row).execute(RECORD_ANONYMOUS_COMPLETION, params)
        else:
            cur = self.conn.cursor(row_factory=dict_row).execute(RECORD_COMPLETION, params)

        def fetch() -> Recorded | None:
            row = cur.fetchone()
            if row is None:
                return None
            created, user_message_id, usage = row.pop("created"), row.pop("user_message_id"), row.pop("usage")
            return Recorded(created=created, user_message_id=user_message_id, answer=row, usage=usage)

        return fetch

    def store_user_message(self, *, thread_id: UUID, user_id: UUID, content: str, idempotency_key: str | None) -> None:
        params = {"thread_id": thread_id, "sender_id": user_id, "content": content, "idempotency_key": idempotency_key}
        self.conn.execute(INSERT_THREAD_MESSAGE, params)

    def store_anonymous_message(
        self, *, thread_id: UUID, conversation_id: UUID, content: str, idempotency_key: str | None
    ) -> None:
        params = {
            "thread_id": thread_id,
            "conversation_id": conversation_id,
            "content": content,
            "idempotency_key": idempotency_key,
        }
        self.conn.execute(INSERT_ANONYMOUS_THREAD_MESSAGE, params)

    def cache_entry(self, model: str, prompt_hash: str) -> CacheEntry | None:
        """A live entry; None when absent or expired."""
        with self.conn.cursor(row_factory=class_row(CacheEntry)) as cur:
            return cur.execute(CACHE_ENTRY, {"model": model, "prompt_hash": prompt_hash}).fetchone()

    def count_cache_hit(self, model: str, prompt_hash: str) -> None:
        self.conn.execute(COUNT_CACHE_HIT, {"model": model, "prompt_hash": prompt_hash})

    def put_cache_entry(self, **values: Any) -> None:
        self.conn.execute(PUT_CACHE_ENTRY, values)

    def lock_spend(self, ledger: SpendLedger, key: dict[str, Any]) -> tuple[Decimal, Decimal]:
        """(spent, reserved by calls in flight) in the ledger's row `key`, locked until the transaction ends."""
        self.conn.execute(ledger.ensure(), key)
        spent = self.conn.execute(ledger.lock(), key).fetchone()
        reserved = self.conn.execute(ledger.live(), key).fetchone()
        assert spent is not None and reserved is not None
        return Decimal(spent[0]), Decimal(reserved[0])

    def reserve_spend(self, ledger: SpendLedger, key: dict[str, Any], amount: Decimal, *, lease_s: float) -> int:
        """A reservation of `amount` that counts until it is settled or `lease_s` seconds have passed; its id."""
        row = self.conn.execute(ledger.reserve(), {**key, "amount": amount, "lease_s": lease_s}).fetchone()
        assert row is not None
        return int(row[0])

    def settle_spend(
        self, ledger: SpendLedger, key: dict[str, Any], *, reservation_id: int | None, spent: Decimal
    ) -> None:
        """End the call's reservation (when it made one) and count what it spent."""
        self.conn.execute(ledger.settle(), {**key, "reservation_id": reservation_id, "spent": spent})
