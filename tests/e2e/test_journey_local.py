"""One user's journey over real HTTP against `confab serve`: account, assistant chat, a completion, its usage,
an anonymous chat, and the end of the session. Run twice: connected as the schema owner (the local default) and
as the application role the AWS functions use (shared/app_role.py), which may touch rows only."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.app_role import grant_app_role
from tests.e2e.test_local_server import _request, served

pytestmark = pytest.mark.e2e


def _call(server: str, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, raw = _request(f"{server}{path}", method=method, body=body, headers=headers)
    return status, json.loads(raw) if raw else None


@pytest.fixture(params=["schema owner", "application role"])
def server(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[str]:
    role = f"confab_app_{uuid.uuid4().hex[:8]}" if request.param == "application role" else None
    url = database_url
    if role is not None:
        with psycopg.connect(database_url, autocommit=True) as owner:
            grant_app_role(owner, role, "journey-password")
        url = psycopg.conninfo.make_conninfo(database_url, user=role, password="journey-password")
    with served(url, tmp_path) as base_url:
        yield base_url
    if role is not None:
        with psycopg.connect(database_url, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_signup_to_logout_through_a_completion_and_an_anonymous_chat_when_served_locally(server):
    account = {"username": "journey", "email": "journey@example.com", "password": "a strong password"}
    status, _ = _call(server, "POST", "/v1/auth/signup", body=account)
    assert status == 201
    status, session = _call(
        server, "POST", "/v1/auth/login", body={"login": "journey", "password": account["password"]}
    )
    assert status == 200 and session["user"]["username"] == "journey"
    token = session["access_token"]

    status, chat = _call(server, "POST", "/v1/conversations", token, {"kind": "assistant", "title": "help"})
    assert status == 201 and chat["kind"] == "assistant"
    status, thread = _call(server, "POST", f"/v1/conversations/{chat['id']}/threads", token, {"title": "t"})
    assert status == 201
    # No model named, none on the thread: a local server falls back to the model it seeded.
    ask = {"content": "Say hello"}
    status, answer = _call(server, "POST", f"/v1/threads/{thread['id']}/completions", token, ask)
    assert status == 200 and "Say hello" in answer["message"]["content"]
    assert answer["usage"]["cache_hit"] is False and answer["usage"]["model"] == "local-echo"

    status, page = _call(server, "GET", f"/v1/conversations/{chat['id']}/messages?direction=forward", token)
    assert status == 200
    assert [(m["sender_kind"], m["thread_id"]) for m in page["items"]] == [("user", thread["id"]), ("ai", thread["id"])]
    assert page["items"][0]["id"] == answer["user_message_id"]

    # Usage goes through the local server's in-process queue to the aggregator: it shows up shortly after.
    deadline = time.monotonic() + 20
    while True:
        status, usage = _call(server, "GET", "/v1/usage/me", token)
        if (status == 200 and usage["totals"]["requests"] == 1) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200 and usage["totals"]["requests"] == 1 and usage["totals"]["tokens_input"] > 0

    status, anonymous = _call(server, "POST", "/v1/anonymous/conversations", body={})
    assert status == 201
    room, room_token = anonymous["conversation"]["id"], anonymous["token"]
    status, sent = _call(server, "POST", f"/v1/conversations/{room}/messages", room_token, {"content": "hi"})
    assert status == 201 and sent["sender_id"] is None
    assert _call(server, "GET", f"/v1/conversations/{chat['id']}", room_token)[0] == 404

    status, renewed = _call(server, "POST", "/v1/auth/refresh", body={"refresh_token": session["refresh_token"]})
    assert status == 200 and renewed["refresh_token"] != session["refresh_token"]
    assert _call(server, "GET", "/v1/users/me", renewed["access_token"])[0] == 200
    assert _call(server, "POST", "/v1/auth/logout", body={"refresh_token": renewed["refresh_token"]})[0] == 204
    assert _call(server, "POST", "/v1/auth/refresh", body={"refresh_token": renewed["refresh_token"]})[0] == 401
