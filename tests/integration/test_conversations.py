"""Conversations and participants through the handlers, on a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.models.conversations import UNREAD_COUNT_MAX
from shared.repositories.conversations import ConversationsRepository
from tests.conversations_helpers import call, jwt_principal, make_user
from tests.helpers import explained_plans


@pytest.fixture
def people(app_container, db):
    ids = {name: make_user(db, name) for name in ("alice", "bob", "carol", "dave")}
    ids["model"] = make_user(db, "model", is_ai=True)
    return {name: jwt_principal(uid) for name, uid in ids.items()}


def _group(owner, *members, title="team"):
    reply = call(
        "POST",
        "/v1/conversations",
        owner,
        body={"kind": "group", "title": title, "participant_ids": [str(m.user_id) for m in members]},
    )
    assert reply.status == 201, reply.body
    return reply.body


def test_direct_conversation_is_found_again_when_created_twice_with_the_same_user(people):
    alice, bob = people["alice"], people["bob"]
    first = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]})
    assert first.status == 201
    again = call("POST", "/v1/conversations", bob, body={"kind": "direct", "participant_ids": [str(alice.user_id)]})
    assert again.status == 200 and again.body["id"] == first.body["id"]


@pytest.mark.parametrize("step", ["find_direct", "lock"])
def test_direct_conversation_is_created_again_when_deleted_while_it_was_being_found(people, db, monkeypatch, step):
    # The pair's conversation goes (both users left, or an admin deleted it) after the create's insert met it and
    # before it was found or locked: the client asked for a conversation with bob and gets one, not a 409 "retry".
    alice, bob = people["alice"], people["bob"]
    body = {"kind": "direct", "participant_ids": [str(bob.user_id)]}
    first = call("POST", "/v1/conversations", alice, body=body).body
    original = getattr(ConversationsRepository, step)
    deleted: list[bool] = []

    def deleted_first(self, *args, **kwargs):
        if not deleted:
            deleted.append(db.execute("DELETE FROM conversations WHERE id = %s", (first["id"],)).rowcount == 1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConversationsRepository, step, deleted_first)
    again = call("POST", "/v1/conversations", alice, body=body)
    assert deleted == [True]
    assert again.status == 201 and again.body["id"] != first["id"] and again.body["kind"] == "direct"
    people_in = call("GET", f"/v1/conversations/{again.body['id']}/participants", bob).body["items"]
    assert sorted(p["user_id"] for p in people_in) == sorted([str(alice.user_id), str(bob.user_id)])


def test_direct_conversation_is_422_when_it_names_the_caller_or_two_users(people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    me = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(alice.user_id)]})
    two = call(
        "POST",
        "/v1/conversations",
        alice,
        body={"kind": "direct", "participant_ids": [str(bob.user_id), str(carol.user_id)]},
    )
    assert me.status == 422 and two.status == 422


def test_group_needs_a_title_and_active_participants_when_created(people):
    alice = people["alice"]
    assert call("POST", "/v1/conversations", alice, body={"kind": "group"}).status == 422
    ghost = call(
        "POST", "/v1/conversations", alice, body={"kind": "group", "title": "t", "participant_ids": [str(uuid.uuid4())]}
    )
    assert ghost.status == 422


def test_list_is_ordered_by_last_activity_with_preview_and_unread_count_when_messages_arrive(people):
    alice, bob = people["alice"], people["bob"]
    older = _group(alice, bob, title="older")
    newer = _group(alice, bob, title="newer")
    call("POST", f"/v1/conversations/{older['id']}/messages", bob, body={"content": "hello alice"})
    call("POST", f"/v1/conversations/{older['id']}/messages", bob, body={"content": "are you there"})
    listed = call("GET", "/v1/conversations", alice)
    assert listed.status == 200
    ids = [c["id"] for c in listed.body["items"]]
    assert ids == [older["id"], newer["id"]]
    top = listed.body["items"][0]
    assert top["unread_count"] == 2 and top["last_message"]["content"] == "are you there"
    assert call("GET", "/v1/conversations", bob).body["items"][0]["unread_count"] == 0  # own messages


def test_each_listed_conversation_reads_as_its_own_get_when_postgresql_renders_the_list(people, db):
    # The list is JSON rendered by PostgreSQL (migration 0622), a conversation by pydantic (GET): the two must agree
    # field for field and in the model's order, for every kind of value a conversation holds.
    alice, bob = people["alice"], people["bob"]
    quiet = _group(alice, bob, title='quiet "\u00e9\U0001f600\n')
    busy = _group(alice, bob, title="busy")
    room = call(
        "POST",
        "/v1/conversations",
        alice,
        body={"kind": "room", "title": "lab", "room_type": "viz", "room_token": "tok-same", "host": "h", "cmd_port": 9},
    ).body
    sent = [
        call("POST", f"/v1/conversations/{busy['id']}/messages", bob, body={"content": content}).body
        for content in ("first", '\u00e9"\\\t\x01' + "\U0001f600" * 300)
    ]
    assert call("PATCH", f"/v1/messages/{sent[0]['id']}", bob, body={"content": "first, fixed"}).status == 200
    call("POST", f"/v1/conversations/{room['id']}/messages", alice, body={"content": "mine"})
    db.execute(
        "INSERT INTO message_change_horizons (conversation_id, purged_through) VALUES (%s, %s)", (room["id"], 10**12)
    )
    # Whole seconds are written without a fraction, as pydantic writes them.
    db.execute("UPDATE conversations SET created_at = date_trunc('second', created_at) WHERE id = %s", (quiet["id"],))
    listed = call("GET", "/v1/conversations", alice)
    assert listed.status == 200 and listed.body["next_cursor"] is None
    items = listed.body["items"]
    assert {item["id"] for item in items} == {quiet["id"], busy["id"], room["id"]}
    for item in items:
        alone = call("GET", f"/v1/conversations/{item['id']}", alice).body
        assert item == alone and list(item) == list(alone)
        assert list(item["last_message"] or {}) == list(alone["last_message"] or {})
    by_id = {item["id"]: item for item in items}
    assert by_id[busy["id"]]["unread_count"] == 2 and len(by_id[busy["id"]]["last_message"]["content"]) == 200
    assert by_id[busy["id"]]["last_change_id"] is not None and by_id[room["id"]]["last_change_id"] == 10**12
    assert by_id[quiet["id"]]["last_message"] is None and "." not in by_id[quiet["id"]]["created_at"]


@pytest.mark.parametrize(
    ("unread", "shown", "capped"),
    [
        (UNREAD_COUNT_MAX - 1, UNREAD_COUNT_MAX - 1, False),
        (UNREAD_COUNT_MAX, UNREAD_COUNT_MAX, False),
        (UNREAD_COUNT_MAX + 1, UNREAD_COUNT_MAX, True),
    ],
)
def test_unread_count_stops_at_the_cap_and_says_so_alike_in_the_list_and_in_get_when_many_are_unread(
    people, db, unread, shown, capped
):
    # Counting stops after UNREAD_COUNT_MAX + 1 messages (migration 0623): a busy group left unread costs the list
    # that much at most. The caller's own messages and those before the read cursor never count.
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob, title="busy")
    call("POST", f"/v1/conversations/{group['id']}/messages", bob, body={"content": "read already"})
    newest = call("GET", f"/v1/conversations/{group['id']}", alice).body["last_message"]["id"]
    assert call("POST", f"/v1/conversations/{group['id']}/read", alice, body={"message_id": newest}).status == 200
    db.execute(
        "INSERT INTO messages (conversation_id, sender_id, content) "
        "SELECT %s, CASE WHEN g <= %s THEN %s ELSE %s END::uuid, 'm' || g FROM generate_series(1, %s + 5) g",
        (group["id"], unread, bob.user_id, alice.user_id, unread),
    )
    alone = call("GET", f"/v1/conversations/{group['id']}", alice).body
    listed = call("GET", "/v1/conversations", alice).body["items"]
    assert (alone["unread_count"], alone["unread_count_capped"]) == (shown, capped)
    assert listed == [alone] and list(listed[0]) == list(alone)
    mine = call("GET", f"/v1/conversations/{group['id']}", bob).body
    assert (mine["unread_count"], mine["unread_count_capped"]) == (5, False)


def test_unread_count_walks_the_index_from_the_read_cursor_and_stops_at_the_cap_when_thousands_are_unread(people, db):
    # With a conversation's unread messages expected few (the average conversation's), the planner picked a bitmap
    # scan, which reads the whole unread range before any LIMIT stops it: bitmap scans are off where the count runs
    # (migration 0623). The plans of both counts are read back through auto_explain.
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob, title="busy")
    db.execute("INSERT INTO conversations (kind, title) SELECT 'group', 'other ' || g FROM generate_series(1, 200) g")
    db.execute(
        "INSERT INTO messages (conversation_id, sender_id, content) "
        "SELECT c.id, %(bob)s, 'm' FROM conversations c CROSS JOIN generate_series(1, 500) g WHERE c.id <> %(id)s",
        {"id": group["id"], "bob": bob.user_id},
    )
    db.execute(
        "INSERT INTO messages (conversation_id, sender_id, content) "
        "SELECT %s, %s, 'm' || g FROM generate_series(1, 5000) g",
        (group["id"], bob.user_id),
    )
    db.execute("VACUUM ANALYZE messages")
    with explained_plans(db) as plans:
        alone = db.execute("SELECT confab_unread_count(%s, %s, NULL)", (group["id"], alice.user_id)).fetchone()
        listed = db.execute(
            "SELECT items FROM confab_conversation_page(%s, 51, NULL, NULL, NULL)", (alice.user_id,)
        ).fetchone()
    assert alone == (UNREAD_COUNT_MAX + 1,) and listed is not None
    assert json.loads(listed[0])[0]["unread_count_capped"] is True
    walks = [
        line
        for line in "\n".join(plans).splitlines()
        if "Scan" in line and " on messages " in line and "conversation_id_idx" in line and "rows=1000" in line
    ]
    assert len(walks) == 2, plans  # confab_unread_count's and the list's, each 1,000 rows from the read cursor
    assert not any("Bitmap" in plan and " on messages " in plan for plan in plans)


def test_list_pages_never_repeat_when_walked_with_small_limits(people):
    alice, bob = people["alice"], people["bob"]
    made = {_group(alice, bob, title=f"g{i}")["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = call("GET", "/v1/conversations", alice, query=query).body
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7 and set(seen) == made


def test_list_pages_follow_activity_then_id_among_others_conversations_for_busy_and_occasional_users(db):
    # The list finds a page two ways (confab_conversation_page): alice, in 880 of 2,700 conversations (more than
    # sqrt(page * conversations)), by walking the activity index while it finds whole pages, and from her own rows
    # past a stretch of 1,600 conversations of carol's (longer than a walk) and for the last; bob, in 54 (fewer than
    # the least bound, 100), from his rows.
    alice, bob, carol = make_user(db, "alice"), make_user(db, "bob"), make_user(db, "carol")
    total = 2700
    # Pairs share a time (the id decides); every third has no message and sorts by its creation; one in five, and
    # the stretch, are carol's, not alice's; one pair in a hundred is also bob's.
    db.execute(
        """
        WITH made AS (
            INSERT INTO conversations (kind, title, created_at, last_message_at)
            SELECT 'group', 'g' || i,
                   CASE WHEN i %% 3 = 0 THEN at ELSE at - interval '1 day' END,
                   CASE WHEN i %% 3 = 0 THEN NULL ELSE at END
            FROM generate_series(0, %(total)s - 1) i, LATERAL (SELECT %(base)s + make_interval(mins => i / 2) AS at) t
            RETURNING id, title
        )
        INSERT INTO participants (conversation_id, user_id)
        SELECT made.id, who FROM made, LATERAL (SELECT substr(made.title, 2)::int AS i) n,
        LATERAL unnest(ARRAY[CASE WHEN n.i %% 5 = 4 OR n.i BETWEEN 600 AND 2199 THEN %(carol)s ELSE %(alice)s END::uuid]
                       || CASE WHEN n.i %% 100 < 2 THEN ARRAY[%(bob)s::uuid] ELSE '{}' END) who
        """,
        {"total": total, "base": datetime(2026, 1, 1, tzinfo=UTC), "alice": alice, "bob": bob, "carol": carol},
    )
    db.execute("ANALYZE conversations, participants")
    repo = ConversationsRepository(db)
    for user, limit in ((alice, 51), (alice, 7), (bob, 3)):
        expected = [
            row[0]
            for row in db.execute(
                "SELECT c.id FROM conversations c JOIN participants p ON p.conversation_id = c.id "
                "WHERE p.user_id = %s ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC",
                (user,),
            )
        ]
        seen: list[uuid.UUID] = []
        after = None
        while True:
            items_json, after = repo.list_for_member(user, after, limit)
            items = json.loads(items_json)
            seen += [uuid.UUID(item["id"]) for item in items]
            assert len(items) == limit - 1 or after is None
            if after is None:
                break
            assert after[1] == seen[-1]
        assert seen == expected
        assert {item["role"] for item in items} <= {"member"}
    assert len(expected) == 2 * (total // 100)


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "A" * 2000])
def test_malformed_cursor_is_400_when_listing(people, cursor):
    # Too long is malformed like any other cursor Confab did not issue: 400, not a schema 422.
    reply = call("GET", "/v1/conversations", people["alice"], query={"cursor": cursor})
    assert (reply.status, reply.body["type"]) == (400, "https://confab.dev/problems/invalid-request")


def test_outsider_gets_the_same_404_as_a_random_id_when_reading_a_conversation(people):
    group = _group(people["alice"], people["bob"])
    outsider = call("GET", f"/v1/conversations/{group['id']}", people["carol"])
    random = call("GET", f"/v1/conversations/{uuid.uuid4()}", people["carol"])
    assert outsider.status == random.status == 404
    assert outsider.body == random.body


def test_platform_admin_is_no_exception_when_not_a_participant(app_container, db, people):
    admin = jwt_principal(make_user(db, "root", role="super_admin"), role="super_admin")
    group = _group(people["alice"], people["bob"])
    assert call("GET", f"/v1/conversations/{group['id']}/messages", admin).status == 404


def test_member_may_not_rename_but_admin_may_when_patching(people):
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob)
    assert call("PATCH", f"/v1/conversations/{group['id']}", bob, body={"title": "mine"}).status == 403
    renamed = call("PATCH", f"/v1/conversations/{group['id']}", alice, body={"title": "ours"})
    assert renamed.status == 200 and renamed.body["title"] == "ours"


def test_title_is_422_when_patched_to_null_in_a_group_or_room(people):
    alice = people["alice"]
    group = _group(alice)
    body = {"kind": "room", "title": "lab", "room_type": "viz", "room_token": "tok-title", "host": "h"}
    room = call("POST", "/v1/conversations", alice, body=body).body
    for conversation in (group, room):
        cleared = call("PATCH", f"/v1/conversations/{conversation['id']}", alice, body={"title": None})
        assert cleared.status == 422, cleared.body
        assert call("GET", f"/v1/conversations/{conversation['id']}", alice).body["title"] == conversation["title"]
    assistant = call("POST", "/v1/conversations", alice, body={"kind": "assistant", "title": "chat"}).body
    untitled = call("PATCH", f"/v1/conversations/{assistant['id']}", alice, body={"title": None})
    assert untitled.status == 200 and untitled.body["title"] is None  # an assistant chat needs none


@pytest.mark.parametrize("blank", ["   ", "\n\t", "\u3000", "\u200b", "\u200d\ufe0f"])
def test_a_group_or_room_title_of_only_whitespace_or_invisible_characters_is_422_when_created_or_patched(
    people, db, blank
):
    # "Always has a title" is for the lists that show it: a title of spaces or a zero-width character shows nothing.
    alice = people["alice"]
    count = "SELECT count(*) FROM conversations"
    before = db.execute(count).fetchone()
    for body in ({"kind": "group", "title": blank}, {"kind": "room", "title": blank, "room_token": "tok-blank"}):
        made = call("POST", "/v1/conversations", alice, body=body)
        assert made.status == 422 and [e["loc"] for e in made.body["errors"]] == [["body", "title"]], made.body
    assert db.execute(count).fetchone() == before
    group = _group(alice, title="  team  ")
    assert group["title"] == "  team  "  # a visible title is stored as sent, spaces and all
    renamed = call("PATCH", f"/v1/conversations/{group['id']}", alice, body={"title": blank, "use_case": "u"})
    assert renamed.status == 422 and [e["loc"] for e in renamed.body["errors"]] == [["body", "title"]]
    kept = call("GET", f"/v1/conversations/{group['id']}", alice).body
    assert kept["title"] == "  team  " and kept["use_case"] is None


def test_status_patched_to_null_is_422_naming_the_field_and_changes_nothing(people):
    # status is never null: the refusal names it as a schema error would, not a bare "rule of the data model".
    alice = people["alice"]
    group = _group(alice)
    cleared = call("PATCH", f"/v1/conversations/{group['id']}", alice, body={"status": None, "use_case": "u"})
    assert cleared.status == 422, cleared.body
    assert [item["loc"] for item in cleared.body["errors"]] == [["body", "status"]]
    kept = call("GET", f"/v1/conversations/{group['id']}", alice).body
    assert kept["status"] == "active" and kept["use_case"] is None


def test_admin_adds_changes_and_removes_participants_when_managing(people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    group = _group(alice, bob)
    base = f"/v1/conversations/{group['id']}/participants"
    assert call("POST", base, bob, body={"user_id": str(carol.user_id)}).status == 403
    added = call("POST", base, alice, body={"user_id": str(carol.user_id)})
    assert added.status == 201 and added.body["role"] == "member"
    assert call("POST", base, alice, body={"user_id": str(carol.user_id)}).status == 409
    promoted = call("PATCH", f"{base}/{carol.user_id}", alice, body={"role": "admin"})
    assert promoted.status == 200 and promoted.body["role"] == "admin"
    assert call("DELETE", f"{base}/{bob.user_id}", alice).status == 204
    listed = call("GET", base, alice).body["items"]
    assert {p["user_id"] for p in listed} == {str(alice.user_id), str(carol.user_id)}


@pytest.mark.parametrize("who", ["member", "caller"])
def test_adding_someone_already_in_is_a_409_that_says_so_and_names_no_constraint(people, who):
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob)
    again = call(
        "POST",
        f"/v1/conversations/{group['id']}/participants",
        alice,
        body={"user_id": str((bob if who == "member" else alice).user_id)},
    )
    assert again.status == 409 and again.headers["Content-Type"] == "application/problem+json"
    assert again.body["reason"] == "already_participant" and "already a participant" in again.body["detail"]
    assert "constraint" not in again.body  # the schema's index name is nothing a client can act on
    roles = {
        p["user_id"]: p["role"]
        for p in call("GET", f"/v1/conversations/{group['id']}/participants", alice).body["items"]
    }
    assert roles == {str(alice.user_id): "admin", str(bob.user_id): "member"}  # the role asked for changed nothing


def test_removed_participant_loses_access_on_the_next_request(people):
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob)
    assert call("GET", f"/v1/conversations/{group['id']}/messages", bob).status == 200
    call("DELETE", f"/v1/conversations/{group['id']}/participants/{bob.user_id}", alice)
    assert call("GET", f"/v1/conversations/{group['id']}/messages", bob).status == 404


def test_last_admin_cannot_leave_or_be_demoted_while_others_remain(people):
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob)
    base = f"/v1/conversations/{group['id']}/participants"
    assert call("DELETE", f"{base}/{alice.user_id}", alice).status == 409
    assert call("PATCH", f"{base}/{alice.user_id}", alice, body={"role": "member"}).status == 409
    assert call("DELETE", f"{base}/{bob.user_id}", bob).status == 204  # anyone may leave
    assert call("DELETE", f"{base}/{alice.user_id}", alice).status == 204  # nobody else remains


def test_conversation_is_deleted_when_the_last_person_leaves_and_only_a_model_remains(people, db):
    alice, bob, model = people["alice"], people["bob"], people["model"]
    group = _group(alice, bob, model)
    base = f"/v1/conversations/{group['id']}/participants"
    assert call("DELETE", f"{base}/{bob.user_id}", bob).status == 204
    assert call("DELETE", f"{base}/{alice.user_id}", alice).status == 204  # the model is no one to administer
    assert db.execute("SELECT count(*) FROM conversations WHERE id = %s", (group["id"],)).fetchone()[0] == 0


def test_a_direct_conversation_with_a_model_account_is_deleted_when_its_person_leaves(people, db):
    alice, model = people["alice"], people["model"]
    direct = call(
        "POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(model.user_id)]}
    ).body
    # Both sides of a direct conversation are admins: the model account counts by is_ai, not by its role.
    assert call("DELETE", f"/v1/conversations/{direct['id']}/participants/{alice.user_id}", alice).status == 204
    assert db.execute("SELECT count(*) FROM conversations WHERE id = %s", (direct["id"],)).fetchone()[0] == 0


def test_ai_role_is_only_for_model_accounts_when_adding(people):
    alice, bob, model = people["alice"], people["bob"], people["model"]
    group = _group(alice, bob)
    base = f"/v1/conversations/{group['id']}/participants"
    assert call("POST", base, alice, body={"user_id": str(model.user_id), "role": "member"}).status == 422
    assert call("POST", base, alice, body={"user_id": str(model.user_id), "role": "ai"}).status == 201


def test_participants_cannot_be_added_to_a_direct_conversation(people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    direct = call(
        "POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]}
    ).body
    assert (
        call(
            "POST", f"/v1/conversations/{direct['id']}/participants", alice, body={"user_id": str(carol.user_id)}
        ).status
        == 409
    )


def test_roles_are_409_when_changed_in_a_direct_conversation_so_neither_user_is_left_without_admin(people):
    alice, bob = people["alice"], people["bob"]
    direct = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]})
    base = f"/v1/conversations/{direct.body['id']}/participants"
    demoted = call("PATCH", f"{base}/{bob.user_id}", alice, body={"role": "member"})
    assert (demoted.status, demoted.body["type"]) == (409, "https://confab.dev/problems/conflict")
    assert "direct conversation" in demoted.body["detail"]
    assert call("PATCH", f"{base}/{alice.user_id}", alice, body={"role": "member"}).status == 409
    assert {p["role"] for p in call("GET", base, bob).body["items"]} == {"admin"}
    assert call("DELETE", f"{base}/{alice.user_id}", alice).status == 204  # the other stays its admin
    assert call("DELETE", f"/v1/conversations/{direct.body['id']}", bob).status == 204


def test_removing_the_other_user_of_a_direct_conversation_is_409_and_leaving_still_works(people):
    alice, bob = people["alice"], people["bob"]
    direct = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]})
    base = f"/v1/conversations/{direct.body['id']}/participants"
    removed = call("DELETE", f"{base}/{bob.user_id}", alice)
    assert (removed.status, removed.body["type"]) == (409, "https://confab.dev/problems/conflict")
    assert call("GET", f"/v1/conversations/{direct.body['id']}/messages", bob).status == 200  # bob is still in it
    assert call("DELETE", f"{base}/{alice.user_id}", alice).status == 204  # leaving is still allowed


def test_delete_removes_the_conversation_when_an_admin_asks(people, db):
    alice, bob = people["alice"], people["bob"]
    group = _group(alice, bob)
    assert call("DELETE", f"/v1/conversations/{group['id']}", bob).status == 403
    assert call("DELETE", f"/v1/conversations/{group['id']}", alice).status == 204
    assert db.execute("SELECT count(*) FROM conversations WHERE id = %s", (group["id"],)).fetchone()[0] == 0


def test_room_keeps_its_fields_and_owner_when_created(people, db):
    alice = people["alice"]
    body = {"kind": "room", "title": "lab", "room_type": "viz", "room_token": "tok-1", "host": "h", "cmd_port": 9000}
    room = call("POST", "/v1/conversations", alice, body=body)
    assert room.status == 201 and room.body["user_id"] == str(alice.user_id) and room.body["cmd_port"] == 9000
    taken = call("POST", "/v1/conversations", people["bob"], body=body)  # room_token is unique, across every room
    assert taken.status == 409 and taken.body["reason"] == "room_token_taken" and "room_token" in taken.body["detail"]
    assert "constraint" not in taken.body  # the index's name is nothing a client can act on
