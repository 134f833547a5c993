"""SQL of the usage pipeline: idempotent per-request rows, thread totals and daily rollups, and reports.

Every write statement touches rows in a fixed key order (event_id, then thread id, then the rollup key),
so concurrent batches wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

# References that no longer exist (a user, thread or anonymous chat deleted before its usage arrived)
# are stored as NULL, as ON DELETE SET NULL would have done, instead of failing the whole batch.
INSERT_USAGE = """
WITH input AS (
    SELECT e.*
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
        event_id uuid, user_id uuid, conversation_id uuid, thread_id uuid, message_id bigint,
        turn_number integer, model text, provider text, tokens_input integer, tokens_output integer,
        tokens_cached integer, query_size integer, response_size integer, cost_usd numeric,
        cost_avoided_usd numeric, latency_ms integer, cache_hit boolean, streaming boolean,
        classification text, occurred_at timestamptz
    )
), inserted AS (
    INSERT INTO model_usage (
        event_id, user_id, conversation_id, thread_id, message_id, turn_number, model_name, provider,
        prompt_tokens, completion_tokens, cached_tokens, total_tokens, query_size, response_size,
        cost, cost_avoided, cache_hit, is_streaming, request_time_ms, classification, "timestamp"
    )
    SELECT i.event_id, u.id, c.id, t.id, m.id, i.turn_number, i.model, i.provider,
           i.tokens_input, i.tokens_output, i.tokens_cached, i.tokens_input + i.tokens_output,
           i.query_size, i.response_size, i.cost_usd, i.cost_avoided_usd, i.cache_hit, i.streaming,
           i.latency_ms, i.classification, i.occurred_at
    FROM input i
    LEFT JOIN users u ON u.id = i.user_id
    LEFT JOIN conversations c ON c.id = i.conversation_id
    LEFT JOIN conversation_threads t ON t.id = i.thread_id
    LEFT JOIN messages m ON m.id = i.message_id
    ORDER BY i.event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id
)
SELECT coalesce(array_agg(id), '{}') FROM inserted
"""

# NO KEY UPDATE, not UPDATE: the FK checks of the insert above hold KEY SHARE on these rows, which
# FOR UPDATE would conflict with (two batches on one thread would deadlock); NO KEY UPDATE does not.
LOCK_THREADS = """
SELECT t.id
FROM conversation_threads t
WHERE t.id IN (SELECT thread_id FROM model_usage WHERE id = ANY(%(ids)s) AND thread_id IS NOT NULL)
ORDER BY t.id
FOR NO KEY UPDATE OF t
"""

# sum() over the per-request integer columns is bigint, like the totals, so totals grow past 2^31 - 1 while
# each request stays within it (UsageEvent bounds every count to its column).
ADD_THREAD_TOTALS = """
UPDATE conversation_threads t
SET tokens_input_total  = t.tokens_input_total + s.prompt_tokens,
    tokens_output_total = t.tokens_output_total + s.completion_tokens,
    tokens_cached_total = t.tokens_cached_total + s.cached_tokens,
    tokens_total        = t.tokens_total + s.total_tokens,
    requests_count      = t.requests_count + s.requests,
    cost_total_usd      = t.cost_total_usd + s.cost,
    last_usage_at       = greatest(t.last_usage_at, s.last_at)
FROM (
    SELECT thread_id, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
           sum(total_tokens) AS total_tokens, sum(cost) AS cost, max("timestamp") AS last_at
    FROM model_usage
    WHERE id = ANY(%(ids)s) AND thread_id IS NOT NULL
    GROUP BY thread_id
) s
WHERE t.id = s.thread_id
"""

# Days are UTC days whatever the session time zone. ORDER BY fixes the order the upsert locks rows in.
ADD_DAILY = """
INSERT INTO usage_daily AS d (
    day, user_id, model_name, provider, requests_count, cache_hits, prompt_tokens, completion_tokens,
    cached_tokens, total_tokens, cost_usd, cost_avoided_usd
)
SELECT ("timestamp" AT TIME ZONE 'UTC')::date AS day, user_id, model_name, provider, count(*),
       count(*) FILTER (WHERE cache_hit), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
       sum(total_tokens), sum(cost), sum(cost_avoided)
FROM model_usage
WHERE id = ANY(%(ids)s)
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT ON CONSTRAINT usage_daily_key DO UPDATE
SET requests_count    = d.requests_count + EXCLUDED.requests_count,
    cache_hits        = d.cache_hits + EXCLUDED.cache_hits,
    prompt_tokens     = d.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
    cached_tokens     = d.cached_tokens + EXCLUDED.cached_tokens,
    total_tokens      = d.total_tokens + EXCLUDED.total_tokens,
    cost_usd          = d.cost_usd + EXCLUDED.cost_usd,
    cost_avoided_usd  = d.cost_avoided_usd + EXCLUDED.cost_avoided_usd
"""

_TOTALS = """
    sum(requests_count)::bigint AS requests, sum(cache_hits)::bigint AS cache_hits,
    sum(prompt_tokens)::bigint AS tokens_input, sum(completion_tokens)::bigint AS tokens_output,
    sum(cached_tokens)::bigint AS tokens_cached, sum(total_tokens)::bigint AS tokens_total,
    sum(cost_usd) AS cost_usd, sum(cost_avoided_usd) AS cost_avoided_usd
"""

USER_BY_DAY = (
    "SELECT day,"
    + _TOTALS
    + """
FROM usage_daily
WHERE user_id = %(user_id)s AND day BETWEEN %(start)s AND %(end)s
GROUP BY day
ORDER BY day
"""
)

USER_BY_MODEL = (
    "SELECT model_name AS model, provider,"
    + _TOTALS
    + """
FROM usage_daily
WHERE user_id = %(user_id)s AND day BETWEEN %(start)s AND %(end)s
GROUP BY model_name, provider
ORDER BY sum(cost_usd) DESC, model_name, provider
"""
)

# Seed 000's "monthly usage by user", from the rollups. Rows whose user was deleted (or never existed)
# rank as one anonymous row. Keyset pagination on (cost, user key). Days are inclusive, as in the other reports.
MONTHLY_BY_USER = """
SELECT s.*, u.username, u.email
FROM (
    SELECT user_id, coalesce(user_id::text, '') AS user_key,"""
MONTHLY_BY_USER += _TOTALS
MONTHLY_BY_USER += """
    FROM usage_daily
    WHERE day BETWEEN %(start)s AND %(end)s
    GROUP BY user_id
) s
LEFT JOIN users u ON u.id = s.user_id
WHERE %(after_cost)s::numeric IS NULL OR (s.cost_usd, s.user_key) < (%(after_cost)s::numeric, %(after_key)s::text)
ORDER BY s.cost_usd DESC, s.user_key DESC
LIMIT %(limit)s
"""

# A deleted user's rows carry a key of their own in place of user_id, one per model and provider (migration 0551), so
# they still count once each; rows with neither (no known user) count as no one.
BY_MODEL = (
    "SELECT model_name AS model, provider, count(DISTINCT coalesce(user_id, deleted_user_key))::bigint AS users,"
    + _TOTALS
    + """
FROM usage_daily
WHERE day BETWEEN %(start)s AND %(end)s
GROUP BY model_name, provider
ORDER BY sum(cost_usd) DESC, model_name, provider
"""
)


def event_rows(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Events as JSON objects for INSERT_USAGE (pydantic models dumped in JSON mode)."""
    return [event.model_dump(mode="json") for event in events]


class UsageRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def insert_events(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert the rows whose event_id is new; returns the ids of the rows actually inserted."""
        row = self.conn.execute(INSERT_USAGE, {"events": Jsonb(rows)}).fetchone()
        return list(row[0]) if row else []

    def add_to_totals(self, ids: list[int]) -> None:
        """Add the given usage rows to their threads' totals and to the daily rollups."""
        if not ids:
            return
        params = {"ids": ids}
        self.conn.execute(LOCK_THREADS, params)
        self.conn.execute(ADD_THREAD_TOTALS, params)
        self.conn.execute(ADD_DAILY, params)

    def _fetch(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def user_by_day(self, user_id: UUID, start: date, end: date) -> list[dict[str, Any]]:
        return self._fetch(USER_BY_DAY, {"user_id": user_id, "start": start, "end": end})

    def user_by_model(self, user_id: UUID, start: date, end: date) -> list[dict[str, Any]]:
        return self._fetch(USER_BY_MODEL, {"user_id": user_id, "start": start, "end": end})

    def monthly_by_user(
        self, start: date, end: date, *, limit: int, after: tuple[Decimal, str] | None
    ) -> list[dict[str, Any]]:
        after_cost, after_key = after if after else (None, None)
        params = {"start": start, "end": end, "limit": limit, "after_cost": after_cost, "after_key": after_key}
        return self._fetch(MONTHLY_BY_USER, params)

    def by_model(self, start: date, end: date) -> list[dict[str, Any]]:
        return self._fetch(BY_MODEL, {"start": start, "end": end})
