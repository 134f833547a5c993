"""Anonymous conversations: created without credentials, reached by their token only, limited per address."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.anonymous import parse_anonymous_token, verify_anonymous_token
from tests.conversations_helpers import anonymous_principal, call, jwt_principal, make_user


def _create(ip="198.51.100.1", body=None):
    return call("POST", "/v1/anonymous/conversations", None, body=body or {}, source_ip=ip)


def test_a_bare_post_starts_an_untitled_anonymous_conversation_while_a_bad_body_is_still_422(app_container, db):
    # A chat widget starts a conversation with a bare POST: it was a 422 asking for a JSON body of `{}`.
    bare = call("POST", "/v1/anonymous/conversations", None, source_ip="198.51.100.2")
    assert bare.status == 201 and bare.body["conversation"]["title"] is None and bare.body["token"]
    for raw in (b"[]", b"not json", b'{"colour": "red"}'):
        refused = call("POST", "/v1/anonymous/conversations", None, raw_body=raw, source_ip="198.51.100.2")
        assert refused.status in (400, 422), (raw, refused)


def test_anonymous_conversation_has_no_owner_and_a_token_that_opens_it(app_container, db):
    reply = _create(body={"title": "hi"})
    assert reply.status == 201
    conversation, token = reply.body["conversation"], reply.body["token"]
    assert conversation["kind"] == "anonymous" and conversation["user_id"] is None
    stored = db.execute(
        "SELECT anonymous_token_hash FROM conversations WHERE id = %s", (conversation["id"],)
    ).fetchone()[0]
    assert stored and token not in stored
    assert verify_anonymous_token(token, uuid.UUID(conversation["id"]), stored)
    assert parse_anonymous_token(token)[0] == uuid.UUID(conversation["id"])


def test_token_reaches_its_conversation_messages_and_threads_only(app_container, db):
    mine = _create().body["conversation"]["id"]
    other = _create().body["conversation"]["id"]
    anon = anonymous_principal(uuid.UUID(mine))
    sent = call("POST", f"/v1/conversations/{mine}/messages", anon, body={"content": "hello", "idempotency_key": "a"})
    assert sent.status == 201 and sent.body["sender_id"] is None
    again = call("POST", f"/v1/conversations/{mine}/messages", anon, body={"content": "hello", "idempotency_key": "a"})
    assert again.status == 200 and again.body["id"] == sent.body["id"]
    assert call("GET", f"/v1/conversations/{mine}/messages", anon).body["items"][0]["content"] == "hello"
    assert call("PATCH", f"/v1/messages/{sent.body['id']}", anon, body={"content": "edited"}).status == 200
    assert call("POST", f"/v1/conversations/{mine}/threads", anon, body={"title": "t"}).status == 201
    assert call("GET", f"/v1/conversations/{other}", anon).status == 404
    assert call("GET", f"/v1/conversations/{other}/messages", anon).status == 404
    assert call("GET", "/v1/conversations", anon).status == 401  # user-only routes


def test_token_never_reaches_a_regular_conversation_even_with_its_id(app_container, db):
    alice = jwt_principal(make_user(db, "alice"))
    group = call("POST", "/v1/conversations", alice, body={"kind": "group", "title": "g"}).body["id"]
    forged = anonymous_principal(uuid.UUID(group))  # a token naming a non-anonymous conversation
    assert call("GET", f"/v1/conversations/{group}/messages", forged).status == 404
    assert call("POST", f"/v1/conversations/{group}/messages", forged, body={"content": "x"}).status == 404


def test_creation_is_429_with_retry_after_when_one_address_makes_too_many(app_container, monkeypatch):
    limit = app_container.settings.anonymous_create_limit
    for _ in range(limit):
        assert _create(ip="192.0.2.50").status == 201
    refused = _create(ip="192.0.2.50")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert _create(ip="192.0.2.51").status == 201  # another address is not affected


def test_creation_is_429_when_one_ipv6_network_rotates_its_addresses(app_container):
    # An IPv6 client holds a whole /64: each of its addresses must not get a limit of its own.
    limit = app_container.settings.anonymous_create_limit
    for n in range(1, limit + 1):
        assert _create(ip=f"2001:db8:1:2::{n:x}").status == 201
    refused = _create(ip="2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert _create(ip="2001:db8:1:3::1").status == 201  # another network is not affected


def test_creation_counts_an_ipv4_mapped_ipv6_address_as_its_ipv4_address(app_container):
    limit = app_container.settings.anonymous_create_limit
    for _ in range(limit):
        assert _create(ip="192.0.2.60").status == 201
    assert _create(ip="::ffff:192.0.2.60").status == 429


@pytest.fixture
def small_network_budget(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two creations per address, five per IPv6 /48 (set before app_container reads the settings)."""
    monkeypatch.setenv("ANONYMOUS_CREATE_LIMIT", "2")
    monkeypatch.setenv("ANONYMOUS_CREATE_LIMIT_PER_IPV6_48", "5")


def test_creation_is_429_when_one_ipv6_client_rotates_its_64s_within_one_48(small_network_budget, app_container, db):
    # A routed /56 or /48 holds 256 or 65536 /64s, each with a per-address budget of its own: the /48 bounds them.
    # One /64 spends its own budget and keeps trying: its refused requests take no more of the /48's.
    assert [_create(ip="2001:db8:7:1::1").status for _ in range(4)] == [201, 201, 429, 429]
    assert [_create(ip=f"2001:db8:7:{n:x}00::1").status for n in range(2, 6)] == [201, 201, 201, 429]
    refused = _create(ip="2001:db8:7:ffff:1:2:3:4")
    assert refused.status == 429 and refused.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600 and refused.body["type"].endswith("/rate-limited")
    assert db.execute("SELECT count(*) FROM conversations WHERE kind = 'anonymous'").fetchone() == (5,)
    # Another /48, even the next one, is another client.
    assert _create(ip="2001:db8:8::1").status == 201
    assert _create(ip="2001:db8:6:ffff::1").status == 201


@pytest.fixture
def network_budget_below_the_address_one(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANONYMOUS_CREATE_LIMIT", "3")
    monkeypatch.setenv("ANONYMOUS_CREATE_LIMIT_PER_IPV6_48", "2")


def test_creation_counts_ipv4_and_ipv4_mapped_clients_per_address_when_ipv6_is_counted_per_48(
    network_budget_below_the_address_one, app_container
):
    # Below the per-address limit on purpose: were IPv4 counted by any wider network, the third would stop.
    assert [_create(ip="192.0.2.70").status for _ in range(4)] == [201, 201, 201, 429]
    # IPv4-mapped IPv6 addresses all sit in ::ffff:0:0/96: they are IPv4 clients, not one /48.
    assert [_create(ip=f"::ffff:192.0.2.{n}").status for n in range(80, 84)] == [201, 201, 201, 201]
    assert _create(ip="::ffff:192.0.2.70").status == 429  # its IPv4 address's count
    # While two /64s of one /48 reach the (low) per-network limit.
    assert [_create(ip=f"2001:db8:9:{n}::1").status for n in range(1, 4)] == [201, 201, 429]


def test_creation_needs_no_body_when_posted_empty(app_container):
    reply = call("POST", "/v1/anonymous/conversations", None, raw_body=b"{}")
    assert reply.status == 201


@pytest.fixture
def three_messages_each(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymous conversations hold three messages (set before app_container reads the settings)."""
    monkeypatch.setenv("ANONYMOUS_MESSAGE_LIMIT", "3")


def test_anonymous_send_is_409_once_the_conversation_holds_its_limit_and_a_retry_still_answers(
    three_messages_each, app_container, db
):
    room = _create().body["conversation"]["id"]
    anon = anonymous_principal(uuid.UUID(room))
    for n in range(3):
        body = {"content": f"m{n}", "idempotency_key": f"k{n}"}
        assert call("POST", f"/v1/conversations/{room}/messages", anon, body=body).status == 201

    full = call("POST", f"/v1/conversations/{room}/messages", anon, body={"content": "one more"})
    keyed = call("POST", f"/v1/conversations/{room}/messages", anon, body={"content": "more", "idempotency_key": "k9"})

    for reply in (full, keyed):
        assert reply.status == 409 and reply.body["limit"] == 3 and "full" in reply.body["detail"]
        assert reply.headers["Content-Type"] == "application/problem+json"
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (room,)).fetchone() == (3,)
    # A retried send of a stored message still finds it; other conversations and members are not limited.
    retry = call("POST", f"/v1/conversations/{room}/messages", anon, body={"content": "m0", "idempotency_key": "k0"})
    assert retry.status == 200 and retry.body["content"] == "m0"
    alice = jwt_principal(make_user(db, "alice"))
    group = call("POST", "/v1/conversations", alice, body={"kind": "group", "title": "g"}).body["id"]
    for n in range(4):
        assert call("POST", f"/v1/conversations/{group}/messages", alice, body={"content": f"g{n}"}).status == 201


def test_thread_data_nested_past_the_depth_limit_is_422_and_the_threads_still_list_when_a_token_sends_it(
    app_container, db
):
    room = _create().body["conversation"]["id"]
    anon = anonymous_principal(uuid.UUID(room))
    deep = b'{"title": "t", "thread_data": {"a": ' + b"[" * 300 + b"]" * 300 + b"}}"

    refused = call("POST", f"/v1/conversations/{room}/threads", anon, raw_body=deep)

    assert refused.status == 422 and refused.body["errors"][0]["loc"][:2] == ["body", "thread_data"]
    listed = call("GET", f"/v1/conversations/{room}/threads", anon)
    assert listed.status == 200 and listed.body["items"] == []


def test_anonymous_threads_and_edits_are_409_once_the_conversation_holds_its_limit_of_each(
    three_messages_each, app_container, db
):
    # Anyone holding the token may write: the message limit alone left threads (each up to a request body of
    # thread_data) and earlier versions of edited messages without any bound.
    room = _create().body["conversation"]["id"]
    anon = anonymous_principal(uuid.UUID(room))
    for n in range(3):
        assert call("POST", f"/v1/conversations/{room}/threads", anon, body={"title": f"t{n}"}).status == 201
    full = call("POST", f"/v1/conversations/{room}/threads", anon, body={"title": "one more"})
    assert (full.status, full.body["limit"]) == (409, 3)
    assert db.execute("SELECT count(*) FROM conversation_threads WHERE conversation_id = %s", (room,)).fetchone() == (
        3,
    )

    message = call("POST", f"/v1/conversations/{room}/messages", anon, body={"content": "v0"}).body
    for n in range(3):
        assert call("PATCH", f"/v1/messages/{message['id']}", anon, body={"content": f"v{n + 1}"}).status == 200
    refused = call("PATCH", f"/v1/messages/{message['id']}", anon, body={"content": "v4"})
    assert (refused.status, refused.body["limit"]) == (409, 3)
    assert db.execute("SELECT content FROM messages WHERE id = %s", (message["id"],)).fetchone() == ("v3",)
    assert db.execute("SELECT count(*) FROM message_edits").fetchone() == (3,)
    # The last edit retried (the same text) changes nothing, so it is no version more: answered as the message is.
    retried = call("PATCH", f"/v1/messages/{message['id']}", anon, body={"content": "v3"})
    assert (retried.status, retried.body["content"]) == (200, "v3")
    assert db.execute("SELECT count(*) FROM message_edits").fetchone() == (3,)

    # Other conversations are not limited.
    alice = jwt_principal(make_user(db, "alice"))
    group = call("POST", "/v1/conversations", alice, body={"kind": "group", "title": "g"}).body["id"]
    for n in range(4):
        assert call("POST", f"/v1/conversations/{group}/threads", alice, body={"title": f"g{n}"}).status == 201
    mine = call("POST", f"/v1/conversations/{group}/messages", alice, body={"content": "g"}).body
    for n in range(4):
        assert call("PATCH", f"/v1/messages/{mine['id']}", alice, body={"content": f"g{n}"}).status == 200
