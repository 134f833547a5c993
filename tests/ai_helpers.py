"""Arrange rows for the AI tests: users, a conversation with a thread, models; and a publisher that keeps events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg

from shared.auth.principal import Principal
from shared.events.usage import UsageEvent


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def publish(self, events: Sequence[UsageEvent]) -> None:
        self.events.extend(events)


def add_user(db: psycopg.Connection[Any], *, role: str = "user", tone: str | None = None, info: str | None = None):
    name = f"u{uuid.uuid4().hex[:10]}"
    row = db.execute(
        "INSERT INTO users (username, email, role) VALUES (%s, %s, %s) RETURNING id", (name, f"{name}@ex.com", role)
    ).fetchone()
    user_id = row[0]
    if tone or info:
        db.execute(
            "INSERT INTO user_properties (user_id, tone, additional_info) VALUES (%s, %s, %s)", (user_id, tone, info)
        )
    return user_id


def add_thread(db: psycopg.Connection[Any], *members: uuid.UUID, model_id: str | None = None) -> tuple[Any, Any]:
    conversation_id = db.execute(
        "INSERT INTO conversations (kind, user_id, created_by) VALUES ('assistant', %s, %s) RETURNING id",
        (members[0], members[0]),
    ).fetchone()[0]
    for member in members:
        db.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (conversation_id, member))
    thread_id = db.execute(
        "INSERT INTO conversation_threads (conversation_id, user_id, model_id) VALUES (%s, %s, %s) RETURNING id",
        (conversation_id, members[0], model_id),
    ).fetchone()[0]
    return conversation_id, thread_id


def add_model(
    db: psycopg.Connection[Any],
    model_id: str = "local-echo",
    *,
    provider: str = "local",
    base_url: str | None = None,
    system_prompt: str | None = "You are Confab's test model.",
    price_in: str = "0.5",
    price_out: str = "1.5",
    context_window: int = 8192,
    max_output: int = 256,
) -> Any:
    return db.execute(
        """INSERT INTO model_configurations (model_id, provider, provider_model_id, system_prompt, base_url,
               per_1k_input_tokens_usd, per_1k_output_tokens_usd, context_window_tokens, max_output_tokens)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            model_id,
            provider,
            model_id,
            system_prompt,
            base_url,
            Decimal(price_in),
            Decimal(price_out),
            context_window,
            max_output,
        ),
    ).fetchone()[0]


def context_for(user_id: uuid.UUID, role: str = "user", kind: str = "jwt") -> dict[str, str]:
    return Principal(kind=kind, user_id=user_id, role=role).to_context()  # type: ignore[arg-type]


def api_event(
    method: str,
    resource: str,
    path: str,
    *,
    principal: dict[str, str] | None,
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST proxy event as API Gateway sends it, built on tests/events/health_get.json."""
    from tests.helpers import load_event

    event = load_event("health_get")
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        pathParameters=path_parameters,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=json.dumps(body) if body is not None else None,
    )
    event["headers"] = {**event["headers"], "Content-Type": "application/json"}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": ["application/json"]}
    event["requestContext"] = {
        **event["requestContext"],
        "resourcePath": resource,
        "httpMethod": method,
        "path": "/prod" + path,
        "authorizer": {"principalId": (principal or {}).get("user_id", ""), **(principal or {})},
    }
    return event
