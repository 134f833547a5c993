"""Small helpers shared by the test suites: real event JSON, a Lambda context, response decoding."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"


@dataclass
class FakeLambdaContext:
    function_name: str = "confab-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:confab-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/confab-test"
    log_stream_name: str = "2026/11/22/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of tests/events/<name>.json with top-level keys replaced."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    event.update(overrides)
    return event


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"]) if response.get("body") else None


def header(response: dict[str, Any], name: str) -> str | None:
    for source in (
        response.get("headers") or {},
        {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()},
    ):
        for key, value in source.items():
            if key.lower() == name.lower():
                return str(value)
    return None


def wait_for_a_lock_waiter(db: Any, timeout: float = 10.0) -> None:
    """Return once some session of the test database waits on a lock (a racing act has reached its lock)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while time.monotonic() < deadline:
        if db.execute(query).fetchone()[0]:
            return
        time.sleep(0.02)
    raise AssertionError("nothing waited on a lock")


def upload_form(
    fields: dict[str, str], data: bytes, file_content_type: str = "application/octet-stream"
) -> tuple[str, bytes]:
    """The Content-Type header and body a client POSTs to an upload target: every field, then the file last."""
    boundary = f"confab-{uuid.uuid4().hex}"
    body = bytearray()
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload"\r\n'
        f"Content-Type: {file_content_type}\r\n\r\n"
    ).encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(body)


def admins_first_operations() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route marked admins_first (functions/_http.py): a caller who is not an
    administrator gets its 403 whatever the request holds."""
    import importlib

    from functions import _validation
    from shared import routes

    found = set()
    for group in routes.ROUTE_GROUPS:
        app = importlib.import_module(group.module).app
        for route in app._static_routes + app._dynamic_routes:
            if route.func in _validation.FIRST_CHECKS:
                found.add((route.method, route.path.replace("<", "{").replace(">", "}")))
    return found


@contextmanager
def explained_plans(db: Any) -> Iterator[list[str]]:
    """The plans of every statement `db` runs inside the block, nested ones (in PL/pgSQL functions) included, with
    their actual row counts: auto_explain's notices, collected. Skips the test on a server where its role may not
    load auto_explain (RDS: a superuser's)."""
    import psycopg
    import pytest

    plans: list[str] = []
    db.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    try:
        db.execute("LOAD 'auto_explain'")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("auto_explain cannot be loaded by this role")
    for setting in (
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        db.execute(setting)
    try:
        yield plans
    finally:
        db.execute("SET client_min_messages = notice")
