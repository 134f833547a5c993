"""Helpers for the conversation tests: users inserted directly, and handler calls as API Gateway would make them."""

from __future__ import annotations

import importlib
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import psycopg

from shared import routes
from shared.auth.principal import Principal
from shared.local.events import proxy_event
from tests.helpers import FakeLambdaContext


def make_user(
    db: psycopg.Connection[Any], name: str | None = None, *, role: str = "user", is_ai: bool = False
) -> uuid.UUID:
    name = name or f"user-{uuid.uuid4().hex[:10]}"
    row = db.execute(
        "INSERT INTO users (username, email, role, is_ai) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, f"{name}@example.test", role, is_ai),
    ).fetchone()
    assert row is not None
    return row[0]


def jwt_principal(user_id: uuid.UUID, role: str = "user") -> Principal:
    return Principal(kind="jwt", user_id=user_id, role=role, token_version=0)  # type: ignore[arg-type]


def api_key_principal(user_id: uuid.UUID) -> Principal:
    return Principal(kind="api_key", user_id=user_id, role="user", api_key_id=uuid.uuid4())


def anonymous_principal(conversation_id: uuid.UUID) -> Principal:
    return Principal(kind="anonymous", conversation_id=conversation_id)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def event_for(
    method: str,
    path: str,
    principal: Principal | None = None,
    body: Any = None,
    query: dict[str, Any] | None = None,
    source_ip: str = "203.0.113.7",
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """The proxy event API Gateway would send for this request (after the authorizer), and its module."""
    found = routes.match(method, path)
    assert found is not None, f"no route for {method} {path}"
    group, route, params = found
    raw_path = path + ("?" + urlencode(query) if query else "")
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
    request_headers = [("Content-Type", "application/json"), ("Host", "127.0.0.1:8000"), *(headers or {}).items()]
    authorizer = principal.to_context() if principal is not None else None
    event = proxy_event(
        method=method,
        raw_path=raw_path,
        resource=route.path,
        path_parameters=params,
        headers=request_headers,
        body=data,
        source_ip=source_ip,
        authorizer=authorizer,
    )
    return event, group.module


def call(method: str, path: str, principal: Principal | None = None, **kwargs: Any) -> Reply:
    event, module = event_for(method, path, principal, **kwargs)
    result = importlib.import_module(module).lambda_handler(event, FakeLambdaContext())
    headers = dict(result.get("headers") or {})
    headers.update({k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()})
    body = json.loads(result["body"]) if result.get("body") else None
    return Reply(result["statusCode"], body, headers)


# A valid body for each id-bearing route that takes one, so a request with a random id is judged on the id
# alone (tests/integration/test_path_ids.py checks that every such route has one).
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/conversations/{id}"): {"title": "renamed"},
    ("POST", "/v1/conversations/{id}/participants"): {"user_id": str(uuid.uuid4())},
    ("PATCH", "/v1/conversations/{id}/participants/{user_id}"): {"role": "member"},
    ("POST", "/v1/conversations/{id}/read"): {"message_id": 1},
    ("POST", "/v1/conversations/{id}/threads"): {"title": "t"},
    ("POST", "/v1/conversations/{id}/panels"): {"name": "p"},
    ("PATCH", "/v1/panels/{id}"): {"name": "q"},
    ("POST", "/v1/conversations/{id}/data-refs"): {"file_id": str(uuid.uuid4())},
    ("POST", "/v1/conversations/{id}/messages"): {"content": "hello"},
    ("PATCH", "/v1/messages/{id}"): {"content": "edited"},
    ("POST", "/v1/messages/{id}/reactions"): {"emoji": "🎉"},
    ("PUT", "/v1/messages/{id}/feedback"): {"rating": 5},
    ("PATCH", "/v1/admin/users/{id}"): {"is_active": True},
    ("PATCH", "/v1/licenses/{id}"): {"seats": 1},
    ("POST", "/v1/licenses/{id}/seats"): {"user_id": str(uuid.uuid4())},
    ("PATCH", "/v1/model-configurations/{id}"): {"display_name": "m"},
    ("PATCH", "/v1/deployed-resources/{id}"): {"status": "active"},
    ("PATCH", "/v1/agent-templates/{id}"): {"display_name": "t"},
    ("PUT", "/v1/users/me/agent-templates/{id}"): {"is_enabled": True},
    ("PATCH", "/v1/code-executions/{id}"): {"output": "x"},
    ("PATCH", "/v1/analysis-reports/{id}"): {"progress_percentage": 5},
    ("POST", "/v1/threads/{id}/completions"): {"content": "hi"},
}


def after_waiting_on_the_conversation(database_url: str, conversation_id: Any, write: Any) -> list[int]:
    """Run `write` in a thread while another transaction holds the conversation's row FOR NO KEY UPDATE (as a send
    does): check that it waits for it, let it go; what `write` answered."""
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM conversations WHERE id = %s FOR NO KEY UPDATE", (conversation_id,))
        done: list[int] = []
        writer = threading.Thread(target=lambda: done.append(write()))
        writer.start()
        writer.join(timeout=1.5)
        assert writer.is_alive() and done == []  # waiting on the conversation's row
        holder.rollback()
    writer.join(timeout=10)
    return done
