"""GET /v1/conversations?kind=...: the list filtered by kind of conversation, on a real PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from shared.repositories.conversations import ConversationsRepository
from shared.services.conversations import CONVERSATION_KINDS
from tests.conversations_helpers import call, event_for, jwt_principal, make_user
from tests.helpers import explained_plans

INVALID_REQUEST = "https://confab.dev/problems/invalid-request"
VALIDATION_ERROR = "https://confab.dev/problems/validation-error"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def people(app_container, db):
    return {name: jwt_principal(make_user(db, name)) for name in ("alice", "bob", "carol")}


def _conversation(db: psycopg.Connection[Any], kind: str, at: datetime, *members: uuid.UUID) -> str:
    """A conversation of `kind` last active at `at`, with `members` in it, inserted as the schema allows (an
    anonymous one has no participant through the API: here it may, so that every kind can be listed)."""
    row = db.execute(
        "INSERT INTO conversations (kind, title, created_at, last_message_at) VALUES (%s, %s, %s, %s) RETURNING id",
        (kind, f"{kind} at {at:%H:%M}", at - timedelta(days=1), at),
    ).fetchone()
    assert row is not None
    for member in members:
        db.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (row[0], member))
    return str(row[0])


def _listed(principal: Any, **query: Any) -> list[str]:
    reply = call("GET", "/v1/conversations", principal, query=query)
    assert reply.status == 200, reply.body
    return [item["id"] for item in reply.body["items"]]


def _walk(principal: Any, **query: Any) -> list[str]:
    """Every page of the list, each cursor passed back with the same query."""
    seen: list[str] = []
    cursor = None
    while True:
        reply = call("GET", "/v1/conversations", principal, query={**query, **({"cursor": cursor} if cursor else {})})
        assert reply.status == 200, reply.body
        seen += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return seen


@pytest.fixture
def one_of_each(people, db):
    """alice in one conversation of each kind, the newest first in the schema's order; bob in one of each too,
    alice's direct one included, the others his alone; carol in none."""
    alice, bob = people["alice"].user_id, people["bob"].user_id
    mine = {
        kind: _conversation(db, kind, BASE - timedelta(hours=n), alice, *([bob] if kind == "direct" else []))
        for n, kind in enumerate(CONVERSATION_KINDS)
    }
    others = {
        kind: _conversation(db, kind, BASE + timedelta(hours=n + 1), bob) for n, kind in enumerate(CONVERSATION_KINDS)
    }
    return mine, others


def test_the_kinds_are_those_the_schema_allows_when_a_filter_is_read(db):
    # The function names every kind when none is asked for (migration 0627): it and the service must name them all.
    definition = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'conversations'::regclass AND conname = 'conversations_kind_check'"
    ).fetchone()
    assert definition is not None
    assert tuple(re.findall(r"'(\w+)'::text", definition[0])) == CONVERSATION_KINDS


@pytest.mark.parametrize("kind", CONVERSATION_KINDS)
def test_only_the_callers_conversations_of_that_kind_are_listed_when_filtered_by_one_kind(people, one_of_each, kind):
    mine, others = one_of_each
    assert _listed(people["alice"], kind=kind) == [mine[kind]]
    assert _listed(people["carol"], kind=kind) == []
    bobs = [others[kind], mine[kind]] if kind == "direct" else [others[kind]]
    assert _listed(people["bob"], kind=kind) == bobs


def test_every_kind_is_listed_as_before_when_no_kind_is_asked_for(people, one_of_each):
    mine, _ = one_of_each
    assert _listed(people["alice"]) == [mine[kind] for kind in CONVERSATION_KINDS]
    assert _listed(people["alice"], kind=",".join(CONVERSATION_KINDS)) == _listed(people["alice"])


def test_conversations_of_any_kind_named_are_listed_by_activity_when_several_kinds_are_asked_for(people, one_of_each):
    mine, _ = one_of_each
    assert _listed(people["alice"], kind="room,direct") == [mine["direct"], mine["room"]]
    # The order the kinds are named in, and a kind named twice, change nothing.
    assert _listed(people["alice"], kind="direct,room,direct") == [mine["direct"], mine["room"]]
    assert _listed(people["alice"], kind="assistant,group") == [mine["group"], mine["assistant"]]


def test_a_conversation_leaves_the_filtered_list_when_the_caller_leaves_it(people, one_of_each):
    mine, _ = one_of_each
    alice = people["alice"]
    left = call("DELETE", f"/v1/conversations/{mine['direct']}/participants/{alice.user_id}", alice)
    assert left.status == 204, left.body
    assert _listed(alice, kind="direct") == []
    assert _listed(people["bob"], kind="direct")[-1] == mine["direct"]


def test_conversations_made_through_the_api_are_listed_under_their_kind_when_filtered(people):
    alice, bob = people["alice"], people["bob"]
    made = {
        "direct": {"kind": "direct", "participant_ids": [str(bob.user_id)]},
        "group": {"kind": "group", "title": "team", "participant_ids": [str(bob.user_id)]},
        "room": {"kind": "room", "title": "lab", "participant_ids": [str(bob.user_id)]},
        "assistant": {"kind": "assistant", "title": "help"},
    }
    ids = {kind: call("POST", "/v1/conversations", alice, body=body).body["id"] for kind, body in made.items()}
    for kind, conversation_id in ids.items():
        assert _listed(alice, kind=kind) == [conversation_id]
    assert set(_listed(bob, kind="direct,group,room")) == {ids["direct"], ids["group"], ids["room"]}
    assert _listed(bob, kind="assistant") == []


def test_pages_under_a_filter_hold_only_that_kind_and_never_repeat_or_skip_when_walked_with_small_limits(people, db):
    alice, bob = people["alice"].user_id, people["bob"].user_id
    kinds = ["group", "direct", "group", "room"] * 5
    made = [_conversation(db, kind, BASE - timedelta(minutes=n), alice, bob) for n, kind in enumerate(kinds)]
    # Two share a time: the id decides between them.
    db.execute("UPDATE conversations SET last_message_at = %s WHERE id = ANY(%s::uuid[])", (BASE, made[:3]))
    expected = {
        kind: [
            row[0]
            for row in db.execute(
                "SELECT c.id::text FROM conversations c WHERE c.id = ANY(%s::uuid[]) AND c.kind = ANY(%s) "
                "ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC",
                (made, kind.split(",")),
            )
        ]
        for kind in ("group", "direct,room", "room")
    }
    for kind, ids in expected.items():
        for limit in (1, 3, 4):
            assert _walk(people["alice"], kind=kind, limit=limit) == ids


def test_a_page_under_a_filter_is_found_either_way_the_list_finds_its_page_when_a_kind_is_rare_or_common(db):
    # The list finds a page by walking the activity index (a caller with at least sqrt(page * conversations) rows
    # of the kinds asked for) or from the caller's rows of those kinds (migration 0627). alice is in 900 of 2,700
    # conversations: 860 groups (a walk), in a stretch of which she has none (the walk comes short), and 40 rooms
    # (her rows); bob, in 27, always from his rows.
    alice, bob, carol = make_user(db, "alice"), make_user(db, "bob"), make_user(db, "carol")
    db.execute(
        """
        WITH made AS (
            INSERT INTO conversations (kind, title, created_at, last_message_at)
            SELECT CASE WHEN i %% 50 = 7 THEN 'room' WHEN i %% 3 = 0 THEN 'direct' ELSE 'group' END, 'c' || i,
                   %(base)s - make_interval(mins => i / 2) - interval '1 day',
                   CASE WHEN i %% 4 = 0 THEN NULL ELSE %(base)s - make_interval(mins => i / 2) END
            FROM generate_series(0, 2699) i
            RETURNING id, kind, substr(title, 2)::int AS i
        )
        INSERT INTO participants (conversation_id, user_id)
        SELECT made.id, who FROM made,
        LATERAL unnest(ARRAY[CASE WHEN (made.i %% 3 = 1 AND made.i NOT BETWEEN 300 AND 1799) OR made.kind = 'room'
                                  THEN %(alice)s ELSE %(carol)s END::uuid]
                       || CASE WHEN made.i %% 100 = 7 OR made.i %% 100 = 8 THEN ARRAY[%(bob)s::uuid] ELSE '{}' END) who
        """,
        {"base": BASE, "alice": alice, "bob": bob, "carol": carol},
    )
    db.execute("ANALYZE conversations, participants")
    repo = ConversationsRepository(db)
    for user, kinds, limit in (
        (alice, ["group"], 51),
        (alice, ["group"], 7),
        (alice, ["room"], 51),
        (alice, ["room", "direct"], 7),
        (bob, ["room"], 3),
        (bob, ["group", "room"], 51),
    ):
        expected = [
            row[0]
            for row in db.execute(
                "SELECT c.id FROM conversations c JOIN participants p ON p.conversation_id = c.id "
                "WHERE p.user_id = %s AND c.kind = ANY(%s) "
                "ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC",
                (user, kinds),
            )
        ]
        seen: list[uuid.UUID] = []
        after = None
        while True:
            items_json, after = repo.list_for_member(user, after, limit, kinds)
            items = json.loads(items_json)
            assert {item["kind"] for item in items} <= set(kinds)
            seen += [uuid.UUID(item["id"]) for item in items]
            assert len(items) == limit - 1 or after is None
            if after is None:
                break
        assert seen == expected and expected, (kinds, limit)


@pytest.mark.parametrize("kind", ["dm", "", "direct,", "Direct", "direct, group", "group,rooms"])
def test_a_kind_that_names_no_kind_of_conversation_is_a_422_on_the_parameter_when_listing(people, kind):
    reply = call("GET", "/v1/conversations", people["alice"], query={"kind": kind})
    assert (reply.status, reply.body["type"]) == (422, VALIDATION_ERROR), reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert [error["loc"] for error in reply.body["errors"]] == [["query", "kind"]]


def test_a_repeated_kind_is_a_422_on_the_parameter_when_listing(people, one_of_each):
    # One value, comma-separated: a second kind= is refused rather than read as the first or the last alone.
    from importlib import import_module

    from tests.helpers import FakeLambdaContext

    event, module = event_for("GET", "/v1/conversations", people["alice"])
    event["queryStringParameters"] = {"kind": "group"}
    event["multiValueQueryStringParameters"] = {"kind": ["direct", "group"]}
    result = import_module(module).lambda_handler(event, FakeLambdaContext())
    body = json.loads(result["body"])
    assert result["statusCode"] == 422, body
    assert [error["loc"] for error in body["errors"]] == [["query", "kind"]]


def _second_page_cursor(principal: Any, **query: Any) -> str:
    reply = call("GET", "/v1/conversations", principal, query={**query, "limit": 1})
    assert reply.status == 200 and reply.body["next_cursor"], reply.body
    return str(reply.body["next_cursor"])


@pytest.mark.parametrize(
    ("made_with", "used_with"),
    [
        ({"kind": "group"}, {"kind": "direct"}),
        ({"kind": "group"}, {}),
        ({}, {"kind": "group"}),
        ({"kind": "group,room"}, {"kind": "group"}),
    ],
)
def test_a_cursor_is_a_400_when_passed_with_another_filter_than_its_page_had(people, db, made_with, used_with):
    alice = people["alice"]
    for n, kind in enumerate(["group", "direct", "group", "room", "direct", "room"]):
        _conversation(db, kind, BASE - timedelta(minutes=n), alice.user_id)
    cursor = _second_page_cursor(alice, **made_with)
    reply = call("GET", "/v1/conversations", alice, query={**used_with, "cursor": cursor})
    assert (reply.status, reply.body["type"], reply.body["reason"]) == (400, INVALID_REQUEST, "cursor_filter_mismatch")
    assert "filter" in reply.body["detail"]


def test_a_cursor_goes_on_when_passed_with_the_same_kinds_in_another_order(people, db):
    alice = people["alice"]
    made = [
        _conversation(db, kind, BASE - timedelta(minutes=n), alice.user_id)
        for n, kind in enumerate(["group", "direct", "room", "group"])
    ]
    cursor = _second_page_cursor(alice, kind="room,group")
    assert _listed(alice, kind="group,room,group", cursor=cursor) == [made[2], made[3]]


def test_the_filtered_list_reads_only_the_callers_rows_of_the_kind_when_it_is_rare_among_many(people, db):
    # A caller in 400 groups and 3 rooms asks for rooms: the page is found from her 3 rows of that kind, read by
    # index condition from participants (user_id, conversation_kind) (migrations 0624 to 0627), not from all 403.
    # Fifty others are in the same conversations, so that hers are a fiftieth of the table.
    alice = people["alice"].user_id
    db.execute(
        "INSERT INTO users (username, email) SELECT 'other' || g, 'other' || g || '@example.test' "
        "FROM generate_series(1, 50) g"
    )
    db.execute(
        "WITH made AS (INSERT INTO conversations (kind, title) "
        "SELECT CASE WHEN g <= 3 THEN 'room' ELSE 'group' END, 'c' || g FROM generate_series(1, 403) g RETURNING id) "
        "INSERT INTO participants (conversation_id, user_id) "
        "SELECT made.id, u.id FROM made, users u WHERE u.id = %s OR u.username LIKE 'other%%'",
        (alice,),
    )
    db.execute("VACUUM ANALYZE conversations, participants")
    with explained_plans(db) as plans:
        items_json, after = ConversationsRepository(db).list_for_member(alice, None, 51, ["room"])
    assert len(json.loads(items_json)) == 3 and after is None
    reads = {
        line: int(float(found.group(1)))
        for line in "\n".join(plans).splitlines()
        if " on participants" in line and (found := re.search(r"actual time=[^)]* rows=([\d.]+)", line))
    }
    print("\n".join(plans))
    assert any("participants_user_kind_idx" in line and rows == 3 for line, rows in reads.items()), plans
    assert max(reads.values()) <= 3, plans


def test_a_participant_row_carries_its_conversations_kind_when_written_and_when_the_kind_changes(people, db):
    alice, bob = people["alice"], people["bob"]
    group = call(
        "POST", "/v1/conversations", alice, body={"kind": "group", "title": "t", "participant_ids": [str(bob.user_id)]}
    ).body["id"]
    kinds = "SELECT DISTINCT conversation_kind FROM participants WHERE conversation_id = %s"
    assert db.execute(kinds, (group,)).fetchall() == [("group",)]
    # No route changes a kind; the copy follows one all the same.
    db.execute("UPDATE conversations SET kind = 'room' WHERE id = %s", (group,))
    assert db.execute(kinds, (group,)).fetchall() == [("room",)]
    assert _listed(bob, kind="room") == [group] and _listed(bob, kind="group") == []
    # A row that names no conversation is refused by the foreign key, as before the copy.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (uuid.uuid4(), bob.user_id))
