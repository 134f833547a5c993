"""Helpers for usage pipeline tests: rows to attach usage to, SQS events carrying usage events, expected sums."""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

import psycopg

from shared.events.usage import UsageEvent
from tests.helpers import load_event


def make_user(db: psycopg.Connection[Any], role: str = "user") -> uuid.UUID:
    name = f"u{uuid.uuid4().hex[:10]}"
    row = db.execute(
        "INSERT INTO users (username, email, role) VALUES (%s, %s, %s) RETURNING id",
        (name, f"{name}@example.com", role),
    ).fetchone()
    assert row
    return row[0]


def make_thread(db: psycopg.Connection[Any], user_id: uuid.UUID | None) -> tuple[uuid.UUID, uuid.UUID]:
    """A conversation owned by `user_id` with one thread; returns (conversation_id, thread_id)."""
    conv = db.execute(
        "INSERT INTO conversations (kind, user_id) VALUES ('assistant', %s) RETURNING id", (user_id,)
    ).fetchone()
    assert conv
    thread = db.execute(
        "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%s, %s) RETURNING id", (conv[0], user_id)
    ).fetchone()
    assert thread
    return conv[0], thread[0]


def sqs_event(bodies: Iterable[str], message_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """A real SQS event (tests/events/sqs_usage_batch.json) carrying the given bodies, one per record."""
    template = load_event("sqs_usage_batch")["Records"][0]
    records = []
    for i, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = message_ids[i] if message_ids else str(uuid.uuid4())
        record["receiptHandle"] = f"{template['receiptHandle'][:40]}{i:04d}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def thread_totals(db: psycopg.Connection[Any], thread_id: uuid.UUID) -> dict[str, Any]:
    row = db.execute(
        "SELECT tokens_input_total, tokens_output_total, tokens_cached_total, tokens_total, requests_count,"
        " cost_total_usd, last_usage_at FROM conversation_threads WHERE id = %s",
        (thread_id,),
    ).fetchone()
    assert row
    keys = ("tokens_input", "tokens_output", "tokens_cached", "tokens_total", "requests", "cost", "last_usage_at")
    return dict(zip(keys, row, strict=True))


def expected_thread_totals(events: Iterable[UsageEvent]) -> dict[uuid.UUID, dict[str, Any]]:
    sums: dict[uuid.UUID, dict[str, Any]] = {}
    for e in events:
        if e.thread_id is None:
            continue
        s = sums.setdefault(
            e.thread_id,
            {"tokens_input": 0, "tokens_output": 0, "tokens_cached": 0, "tokens_total": 0, "requests": 0,
             "cost": Decimal(0), "last_usage_at": None},
        )  # fmt: skip
        s["tokens_input"] += e.tokens_input
        s["tokens_output"] += e.tokens_output
        s["tokens_cached"] += e.tokens_cached
        s["tokens_total"] += e.tokens_total
        s["requests"] += 1
        s["cost"] += e.cost_usd
        s["last_usage_at"] = max(filter(None, (s["last_usage_at"], e.occurred_at)))
    return sums


def daily_rollups(db: psycopg.Connection[Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Totals per (day, user, model, provider); deleted users' rows, kept apart by their keys, summed as one user."""
    rows = db.execute(
        "SELECT day, user_id, model_name, provider, sum(requests_count), sum(cache_hits), sum(prompt_tokens),"
        " sum(completion_tokens), sum(cached_tokens), sum(total_tokens), sum(cost_usd), sum(cost_avoided_usd)"
        " FROM usage_daily GROUP BY day, user_id, model_name, provider"
    ).fetchall()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


def expected_rollups(events: Iterable[UsageEvent]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    sums: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, Decimal(0), Decimal(0)])
    for e in events:
        key = (e.occurred_at.astimezone(UTC).date(), e.user_id, e.model, e.provider)
        s = sums[key]
        for i, value in enumerate(
            (1, int(e.cache_hit), e.tokens_input, e.tokens_output, e.tokens_cached, e.tokens_total,
             e.cost_usd, e.cost_avoided_usd)
        ):  # fmt: skip
            s[i] += value
    return {k: tuple(v) for k, v in sums.items()}
