"""The change feed: GET /v1/conversations/{id}/changes answers edits, deletions and reaction changes after a position,
oldest first."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from shared.services.maintenance import run_maintenance
from tests.conversations_helpers import (
    after_waiting_on_the_conversation,
    anonymous_principal,
    call,
    jwt_principal,
    make_user,
)


@pytest.fixture
def room(app_container, db):
    alice, bob, carol = (jwt_principal(make_user(db, n)) for n in ("alice", "bob", "carol"))
    body = {"kind": "group", "title": "t", "participant_ids": [str(bob.user_id)]}
    conversation = call("POST", "/v1/conversations", alice, body=body).body
    return {"alice": alice, "bob": bob, "carol": carol, "id": conversation["id"]}


def _send(room, who, content):
    reply = call("POST", f"/v1/conversations/{room['id']}/messages", room[who], body={"content": content})
    assert reply.status == 201
    return reply.body["id"]


def _changes(room, who, **query):
    path = f"/v1/conversations/{room['id']}/changes"
    return call("GET", path, room[who], query={k: str(v) for k, v in query.items()})


def _page_item(room, message_id):
    page = call("GET", f"/v1/conversations/{room['id']}/messages", room["bob"], query={"after": str(message_id - 1)})
    return page.body["items"][0]


def test_edits_and_deletions_after_the_newest_message_held_come_oldest_first_with_the_message_as_it_reads(room):
    first, second, third = (_send(room, "alice", f"m{i}") for i in range(3))
    nothing = _changes(room, "bob", after=third)
    assert nothing.status == 200 and nothing.body == {"items": [], "next_cursor": None}
    assert call("PATCH", f"/v1/messages/{first}", room["alice"], body={"content": "m0 fixed"}).status == 200
    assert call("DELETE", f"/v1/messages/{second}", room["alice"]).status == 204
    reply = _changes(room, "bob", after=third)
    assert reply.status == 200 and reply.body["next_cursor"] is None
    edited, deleted = reply.body["items"]
    assert (edited["message_id"], edited["kind"], deleted["message_id"], deleted["kind"]) == (
        first,
        "edited",
        second,
        "deleted",
    )
    assert third < edited["id"] < deleted["id"]
    # The edited message reads exactly as a page renders it.
    assert edited["message"] == _page_item(room, first) and edited["message"]["content"] == "m0 fixed"
    assert deleted["message"] is None
    assert edited["changed_at"].endswith("Z") and datetime.fromisoformat(edited["changed_at"]) <= datetime.now(UTC)
    # Polling after the newest change seen: nothing more, then only what came since.
    assert _changes(room, "bob", after=deleted["id"]).body["items"] == []
    call("PATCH", f"/v1/messages/{third}", room["alice"], body={"content": "m2 fixed"})
    later = _changes(room, "bob", after=deleted["id"]).body["items"]
    assert [(c["message_id"], c["kind"]) for c in later] == [(third, "edited")]


def test_a_second_edit_replaces_the_first_entry_and_a_deletion_drops_the_edits_text_from_the_feed(room, db):
    message = _send(room, "alice", "secret draft")
    call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "still secret"})
    call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "final secret"})
    items = _changes(room, "bob", after=0).body["items"]
    assert [(c["kind"], c["message"]["content"]) for c in items] == [("edited", "final secret")]
    assert call("DELETE", f"/v1/messages/{message}", room["bob"]).status == 403
    assert call("DELETE", f"/v1/messages/{message}", room["alice"]).status == 204
    reply = _changes(room, "bob", after=0)
    assert [(c["message_id"], c["kind"], c["message"]) for c in reply.body["items"]] == [(message, "deleted", None)]
    assert "secret" not in str(reply.body)
    rows = db.execute("SELECT kind FROM message_changes WHERE message_id = %s", (message,)).fetchall()
    assert rows == [("deleted",)]


def _attach(room, who, content, names):
    files = [
        call("POST", "/v1/files", room[who], body={"name": n, "content_type": "text/plain", "size": 1}).body["file"][
            "id"
        ]
        for n in names
    ]
    reply = call(
        "POST", f"/v1/conversations/{room['id']}/messages", room[who], body={"content": content, "attachments": files}
    )
    assert reply.status == 201
    return reply.body["id"], files


def test_deleting_a_file_is_an_edited_change_of_each_message_that_attached_it_reading_as_the_message_now_does(room):
    # Clients holding the message kept showing the deleted file's name: nothing told them it had changed.
    first, (gone, kept) = _attach(room, "alice", "two files", ["gone.txt", "kept.txt"])
    second, _ = _attach(room, "alice", "one file", [])
    call("PATCH", f"/v1/messages/{first}", room["alice"], body={"content": "two files, edited"})
    edit = _changes(room, "bob", after=second).body["items"][0]
    assert call("DELETE", f"/v1/files/{gone}", room["alice"]).status == 204
    items = _changes(room, "bob", after=second).body["items"]
    # One entry per message changed, the earlier edit's entry replaced (both would read as the message now does).
    assert [(c["message_id"], c["kind"]) for c in items] == [(first, "edited")] and items[0]["id"] > edit["id"]
    assert items[0]["message"] == _page_item(room, first)
    assert [a["file_id"] for a in items[0]["message"]["attachments"]] == [kept]
    assert items[0]["message"]["edited_at"] == edit["message"]["edited_at"]  # the text's edit time, not moved
    # A message that never attached it changes nothing, and a file attached nowhere logs nothing.
    lonely = call("POST", "/v1/files", room["alice"], body={"name": "l.txt", "content_type": "text/plain", "size": 1})
    assert call("DELETE", f"/v1/files/{lonely.body['file']['id']}", room["alice"]).status == 204
    assert _changes(room, "bob", after=items[0]["id"]).body["items"] == []


def test_a_file_deletion_waits_for_a_send_holding_the_conversation_so_its_change_commits_in_order(room, database_url):
    # As an edit's: its change's position is drawn under the conversation's row (FOR NO KEY UPDATE), so no message id
    # that commits after it is below it.
    _, (file_id,) = _attach(room, "alice", "m", ["f.txt"])
    assert after_waiting_on_the_conversation(
        database_url, room["id"], lambda: call("DELETE", f"/v1/files/{file_id}", room["alice"]).status
    ) == [204]


def _react(room, who, message_id, emoji):
    return call("POST", f"/v1/messages/{message_id}/reactions", room[who], body={"emoji": emoji}).status


def _unreact(room, who, message_id, encoded):
    return call("DELETE", f"/v1/messages/{message_id}/reactions/{encoded}", room[who]).status


def _summary(room, who, message_id):
    return call("GET", f"/v1/messages/{message_id}/reactions", room[who]).body["reactions"]


def test_a_reaction_added_or_taken_back_is_a_reactions_change_carrying_the_summary_as_the_list_reads(room):
    first, second = _send(room, "alice", "m0"), _send(room, "alice", "m1")
    assert _react(room, "alice", first, "👍") == 201
    assert _react(room, "bob", first, "🎉") == 201
    reply = _changes(room, "bob", after=second)
    assert reply.status == 200 and reply.body["next_cursor"] is None
    [change] = reply.body["items"]  # one entry per message: the second reaction replaced the first's
    assert (change["message_id"], change["kind"], change["message"]) == (first, "reactions", None)
    assert second < change["id"] and change["changed_at"].endswith("Z")
    # The summary as GET .../reactions lists it for the caller (reacted_by_me is the poller's).
    assert change["reactions"] == _summary(room, "bob", first)
    assert change["reactions"] == [
        {"emoji": "🎉", "count": 1, "reacted_by_me": True},
        {"emoji": "👍", "count": 1, "reacted_by_me": False},
    ]
    assert _changes(room, "alice", after=second).body["items"][0]["reactions"] == _summary(room, "alice", first)
    # Taking one back is a change too, and the summary is read at the time of the poll.
    assert _unreact(room, "bob", first, "%F0%9F%8E%89") == 204
    [taken] = _changes(room, "bob", after=change["id"]).body["items"]
    assert (taken["message_id"], taken["kind"]) == (first, "reactions") and taken["id"] > change["id"]
    assert taken["reactions"] == [{"emoji": "👍", "count": 1, "reacted_by_me": False}]
    assert _unreact(room, "alice", first, "%F0%9F%91%8D") == 204
    [emptied] = _changes(room, "bob", after=taken["id"]).body["items"]
    assert (emptied["kind"], emptied["reactions"]) == ("reactions", [])
    # Edits and deletions carry no summary.
    call("PATCH", f"/v1/messages/{second}", room["alice"], body={"content": "m1 fixed"})
    [edited] = _changes(room, "bob", after=emptied["id"]).body["items"]
    assert (edited["kind"], edited["reactions"]) == ("edited", None)


def test_a_reaction_write_that_changes_nothing_logs_no_change(room, db):
    message = _send(room, "alice", "m")
    assert _react(room, "alice", message, "\u2764\ufe0f") == 201
    [logged] = _changes(room, "bob", after=message).body["items"]
    assert _react(room, "alice", message, "\u2764") == 200  # the same heart, spelled without its selector
    assert _unreact(room, "bob", message, "%E2%9D%A4") == 404  # bob never reacted
    assert _changes(room, "bob", after=logged["id"]).body["items"] == []
    rows = db.execute("SELECT id, kind FROM message_changes WHERE message_id = %s", (message,)).fetchall()
    assert rows == [(logged["id"], "reactions")]


def test_a_reaction_refused_at_the_emoji_limit_logs_no_change(room, db):
    from shared.services.messages import REACTION_MAX_EMOJI

    message = _send(room, "alice", "m")
    db.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) "
        "SELECT %s, %s, 'e' || n FROM generate_series(1, %s) n",
        (message, room["bob"].user_id, REACTION_MAX_EMOJI),
    )
    assert _react(room, "alice", message, "🎉") == 409
    assert db.execute("SELECT count(*) FROM message_changes WHERE message_id = %s", (message,)).fetchone()[0] == 0


def test_deleting_a_message_drops_its_reactions_entries_with_its_edits(room, db):
    message, other = _send(room, "alice", "m"), _send(room, "alice", "other")
    _react(room, "bob", message, "👍")
    call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "m fixed"})
    _react(room, "bob", other, "👍")
    assert [c["kind"] for c in _changes(room, "bob", after=other).body["items"]] == ["reactions", "edited", "reactions"]
    assert call("DELETE", f"/v1/messages/{message}", room["alice"]).status == 204
    items = _changes(room, "bob", after=other).body["items"]
    assert [(c["message_id"], c["kind"]) for c in items] == [(other, "reactions"), (message, "deleted")]
    rows = db.execute("SELECT kind FROM message_changes WHERE message_id = %s", (message,)).fetchall()
    assert rows == [("deleted",)]


def test_a_reaction_waits_for_a_send_holding_the_conversation_so_its_change_commits_in_order(room, database_url):
    # A send holds the conversation's row FOR NO KEY UPDATE until it commits; a reaction's access check takes the
    # same lock, so it cannot draw a change id below a message id that commits after it.
    message = _send(room, "alice", "m")
    assert after_waiting_on_the_conversation(database_url, room["id"], lambda: _react(room, "bob", message, "👍")) == [
        201
    ]


def test_a_page_of_changes_goes_on_from_its_cursor_exactly_where_it_stopped(room):
    ids = [_send(room, "bob", f"m{i}") for i in range(7)]
    for message in ids:
        call("PATCH", f"/v1/messages/{message}", room["bob"], body={"content": "again"})
    seen, query = [], {"after": 0, "limit": 3}
    while True:
        page = _changes(room, "alice", **query).body
        seen += [c["message_id"] for c in page["items"]]
        if page["next_cursor"] is None:
            break
        query = {"cursor": page["next_cursor"], "limit": 3}
    assert seen == ids


def test_the_feed_is_the_404_of_any_other_conversation_for_someone_who_cannot_see_it(room, db):
    message = _send(room, "alice", "hi")
    call("DELETE", f"/v1/messages/{message}", room["alice"])
    outsider = _changes(room, "carol", after=0)
    missing = call("GET", f"/v1/conversations/{uuid.uuid4()}/changes", room["carol"], query={"after": "0"})
    assert outsider.status == missing.status == 404 and outsider.body == missing.body
    # A removed participant stops seeing it at once.
    path = f"/v1/conversations/{room['id']}/participants/{room['bob'].user_id}"
    assert call("DELETE", path, room["alice"]).status == 204
    assert _changes(room, "bob", after=0).body == missing.body


def test_an_anonymous_token_reads_its_own_conversations_changes_only(app_container, db):
    made = call("POST", "/v1/anonymous/conversations", body={"title": "a"}).body
    mine = uuid.UUID(made["conversation"]["id"])
    anon = anonymous_principal(mine)
    sent = call("POST", f"/v1/conversations/{mine}/messages", anon, body={"content": "x"}).body["id"]
    assert call("PATCH", f"/v1/messages/{sent}", anon, body={"content": "y"}).status == 200
    items = call("GET", f"/v1/conversations/{mine}/changes", anon).body["items"]
    assert [(c["message_id"], c["message"]["content"]) for c in items] == [(sent, "y")]
    other = call("POST", "/v1/anonymous/conversations", body={}).body["conversation"]["id"]
    assert call("GET", f"/v1/conversations/{other}/changes", anon).status == 404


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"after": "0", "cursor": "WzFd"}, 400),
        ({"cursor": "not a cursor"}, 400),
        ({"limit": "0"}, 400),
        ({"after": "-1"}, 422),
        ({"after": str(2**63)}, 422),
        ({"after": "x"}, 422),
    ],
)
def test_a_malformed_position_is_a_problem_never_a_500(room, query, status):
    reply = call("GET", f"/v1/conversations/{room['id']}/changes", room["bob"], query=query)
    assert reply.status == status and reply.headers["Content-Type"] == "application/problem+json"


def _age_changes(db, conversation_id, days):
    db.execute(
        "UPDATE message_changes SET changed_at = now() - make_interval(days => %s) WHERE conversation_id = %s",
        (days, conversation_id),
    )


def test_a_position_before_purged_changes_is_410_with_where_to_resume_and_never_a_silent_gap(app_container, db, room):
    retention = app_container.settings.message_change_retention_days
    old = [_send(room, "alice", f"old{i}") for i in range(3)]
    call("PATCH", f"/v1/messages/{old[0]}", room["alice"], body={"content": "edited long ago"})
    call("DELETE", f"/v1/messages/{old[1]}", room["alice"])
    before = _changes(room, "bob", after=old[-1]).body["items"]
    _age_changes(db, room["id"], retention + 1)
    recent = _send(room, "alice", "recent")
    call("PATCH", f"/v1/messages/{recent}", room["alice"], body={"content": "recent, edited"})
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.status == "complete" and result.deleted["message_changes"] == 2
    purged_through = max(c["id"] for c in before)
    assert db.execute("SELECT purged_through FROM message_change_horizons").fetchall() == [(purged_through,)]
    # Retained changes follow the cursor, but changes were purged after it: answering them would hide the gap.
    for stale in (0, old[-1], purged_through - 1):
        gone = _changes(room, "bob", after=stale)
        assert gone.status == 410 and gone.headers["Content-Type"] == "application/problem+json"
        assert gone.body["type"].endswith("/gone") and "after=" in gone.body["detail"]
        newest = db.execute("SELECT max(id) FROM message_changes WHERE conversation_id = %s", (room["id"],)).fetchone()
        assert gone.body["resume_after"] == newest[0]
    # At or past the horizon nothing was missed: the page is exact.
    exact = _changes(room, "bob", after=purged_through)
    assert exact.status == 200 and [c["message_id"] for c in exact.body["items"]] == [recent]
    assert _changes(room, "bob", after=gone.body["resume_after"]).body["items"] == []
    # Someone who cannot see the conversation learns nothing about its purge: the 404 as ever.
    assert _changes(room, "carol", after=0).status == 404


def test_a_conversation_whose_changes_were_all_purged_resumes_past_them_without_another_410(app_container, db, room):
    message = _send(room, "alice", "x")
    call("DELETE", f"/v1/messages/{message}", room["alice"])
    _age_changes(db, room["id"], app_container.settings.message_change_retention_days + 1)
    run_maintenance(app_container.db, app_container.settings)
    # Its newest message id is below the purged deletion: polling from it is 410, and the resume position is not.
    gone = _changes(room, "bob", after=0)
    assert gone.status == 410 and gone.body["resume_after"] > message
    assert _changes(room, "bob", after=gone.body["resume_after"]).body == {"items": [], "next_cursor": None}


def test_maintenance_keeps_changes_inside_the_retention_and_a_second_run_purges_nothing(app_container, db, room):
    message = _send(room, "alice", "x")
    call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "y"})
    db.execute("UPDATE message_changes SET changed_at = now() - interval '1 day'")
    first = run_maintenance(app_container.db, app_container.settings)
    second = run_maintenance(app_container.db, app_container.settings)
    assert first.deleted["message_changes"] == second.deleted["message_changes"] == 0
    assert _changes(room, "bob", after=0).status == 200
    assert db.execute("SELECT count(*) FROM message_change_horizons").fetchone()[0] == 0


def test_deleting_the_conversation_or_its_owners_account_takes_its_changes_and_horizon_with_it(app_container, db):
    owner, other = (jwt_principal(make_user(db, n)) for n in ("owner", "other"))
    body = {"kind": "group", "title": "g", "participant_ids": [str(other.user_id)]}
    gone = call("POST", "/v1/conversations", owner, body=body).body["id"]
    owned = call("POST", "/v1/conversations", owner, body={"kind": "assistant", "title": "a"}).body["id"]
    for conversation in (gone, owned):
        sent = call("POST", f"/v1/conversations/{conversation}/messages", owner, body={"content": "x"}).body["id"]
        call("DELETE", f"/v1/messages/{sent}", owner)
        db.execute(
            "INSERT INTO message_change_horizons (conversation_id, purged_through) VALUES (%s, 1)", (conversation,)
        )
    assert call("DELETE", f"/v1/conversations/{gone}", owner).status == 204
    admin = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    assert call("DELETE", f"/v1/admin/users/{owner.user_id}", admin).status == 204
    for table in ("message_changes", "message_change_horizons"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0


def test_change_ids_come_from_the_message_id_sequence_so_both_share_one_order(room, db):
    first = _send(room, "alice", "a")
    call("PATCH", f"/v1/messages/{first}", room["alice"], body={"content": "b"})
    second = _send(room, "alice", "c")
    change = db.execute("SELECT id FROM message_changes").fetchone()[0]
    assert first < change < second


def test_the_purge_passes_over_a_conversation_being_deleted_instead_of_waiting_for_it(
    app_container, db, room, database_url
):
    # The purge takes its conversations' rows before their changes, SKIP LOCKED: a deletion holding the row (and
    # then the change rows, by cascade) is never waited for, and never waits for the purge holding those rows.
    message = _send(room, "alice", "x")
    call("DELETE", f"/v1/messages/{message}", room["alice"])
    other = call("POST", "/v1/conversations", room["bob"], body={"kind": "group", "title": "o"}).body["id"]
    kept = call("POST", f"/v1/conversations/{other}/messages", room["bob"], body={"content": "y"}).body["id"]
    call("DELETE", f"/v1/messages/{kept}", room["bob"])
    db.execute("UPDATE message_changes SET changed_at = now() - interval '400 days'")
    results = []
    with psycopg.connect(database_url) as deleting:
        deleting.execute("DELETE FROM conversations WHERE id = %s", (room["id"],))
        purge = threading.Thread(
            target=lambda: results.append(run_maintenance(app_container.db, app_container.settings))
        )
        purge.start()
        purge.join(30)
        finished = not purge.is_alive()
        deleting.commit()
    purge.join()
    assert finished and results[0].status == "complete" and results[0].deleted["message_changes"] == 1
    assert db.execute("SELECT conversation_id FROM message_change_horizons").fetchall() == [(uuid.UUID(other),)]
    assert db.execute("SELECT count(*) FROM message_changes").fetchone()[0] == 0


# Read and delivered marks --------------------------------------------------------------------------------------------


def _mark(room, who, message_id, status="read"):
    body = {"message_id": message_id, "status": status}
    reply = call("POST", f"/v1/conversations/{room['id']}/read", room[who], body=body)
    assert reply.status == 200, reply.body
    return reply.body


def _marks(items):
    """(kind, reader, message id) of each mark among the changes."""
    return [(c["kind"], c["user_id"], c["message_id"]) for c in items if c["kind"] in ("read", "delivered")]


def _messages(room, who="alice"):
    page = call("GET", f"/v1/conversations/{room['id']}/messages", room[who], query={"after": "0"}).body["items"]
    return {m["id"]: m for m in page}


def test_read_and_delivered_marks_are_changes_naming_the_reader_and_the_message_they_went_up_to(room):
    # A sender polling for read ticks had to read whole pages again: a mark changed statuses and logged nothing.
    first, second, third = (_send(room, "alice", f"m{i}") for i in range(3))
    bob = str(room["bob"].user_id)
    assert _mark(room, "bob", second, "delivered")["updated"] == 2
    assert _mark(room, "bob", first)["updated"] == 1
    reply = _changes(room, "alice", after=third)
    assert reply.status == 200 and reply.body["next_cursor"] is None
    delivered, read = reply.body["items"]
    assert _marks([delivered, read]) == [("delivered", bob, second), ("read", bob, first)]
    assert third < delivered["id"] < read["id"]
    assert (delivered["message"], delivered["reactions"], read["message"], read["reactions"]) == (None,) * 4
    # changed_at is the very time the mark stamped, so a client replaying it gets the statuses as they read.
    held = _messages(room)
    assert held[first]["status"] == "read" and held[second]["status"] == "delivered" and held[third]["status"] == "sent"
    assert held[first]["status_timestamps"]["delivered"] == delivered["changed_at"]
    assert held[second]["status_timestamps"]["delivered"] == delivered["changed_at"]
    assert held[first]["status_timestamps"]["read"] == read["changed_at"]
    assert "delivered" not in held[third]["status_timestamps"]
    # The other kinds name no reader.
    call("PATCH", f"/v1/messages/{third}", room["alice"], body={"content": "m2 fixed"})
    [edited] = _changes(room, "bob", after=read["id"]).body["items"]
    assert (edited["kind"], edited["user_id"]) == ("edited", None)


def test_a_mark_that_moves_no_status_and_no_cursor_logs_nothing(room, db):
    first, second = _send(room, "alice", "m0"), _send(room, "alice", "m1")
    own = _send(room, "bob", "bob's")
    _mark(room, "bob", second)
    [logged] = _changes(room, "alice", after=own).body["items"]
    assert _mark(room, "bob", second)["updated"] == 0  # a repeat
    assert _mark(room, "bob", first)["updated"] == 0  # below the cursor
    assert _mark(room, "bob", second, "delivered")["updated"] == 0  # read never returns to delivered
    assert _mark(room, "alice", own, "delivered")["updated"] == 1  # alice's is a change: bob's message delivered
    delivered = _changes(room, "alice", after=logged["id"]).body["items"]
    assert _marks(delivered) == [("delivered", str(room["alice"].user_id), own)]
    assert _mark(room, "alice", own, "delivered")["updated"] == 0  # and again, nothing
    assert _mark(room, "bob", own, "delivered")["updated"] == 0  # one's own messages are not delivered to one
    assert _changes(room, "alice", after=delivered[0]["id"]).body["items"] == []
    kinds = db.execute("SELECT kind FROM message_changes WHERE conversation_id = %s ORDER BY id", (room["id"],))
    assert [k for (k,) in kinds] == ["read", "delivered"]


def test_a_read_entry_that_moved_only_the_cursor_is_replaced_by_the_readers_next_one_and_one_that_stamped_stays(
    room,
):
    # A later mark's entry cannot say when an earlier one stamped its messages, so an entry that stamped one stays:
    # replaced, a client that missed it would have stamped those messages with the later time. An entry that only
    # moved the reader's cursor (someone else had read the messages) is replaced, so they stay one per reader.
    call(
        "POST",
        f"/v1/conversations/{room['id']}/participants",
        room["alice"],
        body={"user_id": str(room["carol"].user_id)},
    )
    bob, carol = str(room["bob"].user_id), str(room["carol"].user_id)
    first = _send(room, "alice", "m0")
    _mark(room, "bob", first)  # stamps m0
    assert _mark(room, "carol", first)["updated"] == 0  # only carol's cursor moves
    second = _send(room, "alice", "m1")
    _mark(room, "bob", second)  # stamps m1
    assert _mark(room, "carol", second)["updated"] == 0  # replaces carol's first entry
    items = _changes(room, "alice", after=0).body["items"]
    assert _marks(items) == [("read", bob, first), ("read", bob, second), ("read", carol, second)]
    third = _send(room, "alice", "m2")
    assert _mark(room, "carol", third)["updated"] == 1  # stamps m2: replaces carol's cursor-only entry, and stays
    assert _mark(room, "bob", third)["updated"] == 0
    items = _changes(room, "alice", after=0).body["items"]
    assert _marks(items) == [("read", bob, first), ("read", bob, second), ("read", carol, third), ("read", bob, third)]
    # Each stamped message reads with the time of the entry that stamped it.
    held, by_target = _messages(room), {(c["user_id"], c["message_id"]): c["changed_at"] for c in items}
    assert held[first]["status_timestamps"]["read"] == by_target[(bob, first)]
    assert held[second]["status_timestamps"]["read"] == by_target[(bob, second)]
    assert held[third]["status_timestamps"]["read"] == by_target[(carol, third)]
    # The participants' cursors are where the readers' newest entries say.
    listed = call("GET", f"/v1/conversations/{room['id']}/participants", room["alice"]).body["items"]
    cursors = {p["user_id"]: (p["last_read_message_id"], p["last_read_at"]) for p in listed}
    assert cursors[bob][0] == cursors[carol][0] == third


def test_marks_stay_in_the_feed_when_the_message_they_went_up_to_is_deleted(room, db):
    first, second = _send(room, "alice", "m0"), _send(room, "alice", "m1")
    _mark(room, "bob", second, "delivered")
    _mark(room, "bob", second)
    assert call("DELETE", f"/v1/messages/{second}", room["alice"]).status == 204
    items = _changes(room, "alice", after=second).body["items"]
    bob = str(room["bob"].user_id)
    assert [(c["kind"], c["user_id"], c["message_id"]) for c in items] == [
        ("delivered", bob, second),
        ("read", bob, second),
        ("deleted", None, second),
    ]
    assert _messages(room)[first]["status"] == "read"  # "up to" the deleted message still covers the one before it


def test_marks_are_read_by_who_may_read_the_feed_and_an_outsiders_mark_is_the_404_and_logs_nothing(room, db):
    message = _send(room, "alice", "m")
    outsider = call("POST", f"/v1/conversations/{room['id']}/read", room["carol"], body={"message_id": message})
    missing = call("POST", f"/v1/conversations/{uuid.uuid4()}/read", room["carol"], body={"message_id": message})
    assert outsider.status == missing.status == 404 and outsider.body == missing.body
    assert db.execute("SELECT count(*) FROM message_changes").fetchone()[0] == 0
    _mark(room, "bob", message)
    for who in ("alice", "bob"):
        assert _marks(_changes(room, who, after=message).body["items"]) == [("read", str(room["bob"].user_id), message)]
    assert _changes(room, "carol", after=message).status == 404


@pytest.mark.parametrize("status", ["read", "delivered"])
def test_a_mark_waits_for_a_send_holding_the_conversation_so_its_change_commits_in_order(room, database_url, status):
    # Under FOR KEY SHARE a mark drew its position while a send or an edit held the row, and could commit after a
    # poll had seen a larger position: skipped by that client for good.
    message = _send(room, "alice", "m")
    path, body = f"/v1/conversations/{room['id']}/read", {"message_id": message, "status": status}
    assert after_waiting_on_the_conversation(
        database_url, room["id"], lambda: call("POST", path, room["bob"], body=body).status
    ) == [200]


def test_a_readers_account_deletion_keeps_the_marks_it_made_without_naming_it(app_container, db, room):
    # What a mark stamped stays true after its reader goes; the account is no longer named, as nowhere else.
    call(
        "POST",
        f"/v1/conversations/{room['id']}/participants",
        room["alice"],
        body={"user_id": str(room["carol"].user_id)},
    )
    message = _send(room, "alice", "m")
    _mark(room, "carol", message)
    admin = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    assert call("DELETE", f"/v1/admin/users/{room['carol'].user_id}", admin).status == 204
    # Her leaving is a participant change after it (test_conversation_participant_changes.py).
    [mark] = [c for c in _changes(room, "bob", after=message).body["items"] if c["kind"] == "read"]
    assert (mark["kind"], mark["message_id"], mark["user_id"]) == ("read", message, None)
    assert _messages(room)[message]["status_timestamps"]["read"] == mark["changed_at"]


def test_marks_older_than_the_retention_are_purged_behind_a_horizon_as_other_changes_are(app_container, db, room):
    message = _send(room, "alice", "m")
    _mark(room, "bob", message, "delivered")
    _mark(room, "bob", message)
    _age_changes(db, room["id"], app_container.settings.message_change_retention_days + 1)
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.status == "complete" and result.deleted["message_changes"] == 2
    gone = _changes(room, "alice", after=message)
    assert gone.status == 410 and gone.body["resume_after"] > message
    assert _changes(room, "alice", after=gone.body["resume_after"]).body["items"] == []


# The feed's head in the conversation list ----------------------------------------------------------------------------


def _heads(room, who="bob"):
    """The conversation's last_change_id as GET /v1/conversations lists it, and as GET /v1/conversations/{id} does."""
    listed = call("GET", "/v1/conversations", room[who]).body["items"]
    [row] = [c for c in listed if c["id"] == room["id"]]
    return row["last_change_id"], call("GET", f"/v1/conversations/{room['id']}", room[who]).body["last_change_id"]


def test_the_list_and_the_conversation_say_the_newest_change_so_a_client_polls_only_feeds_that_moved(room):
    # A client with many conversations had to poll every feed to learn whether anything had changed.
    assert _heads(room) == (None, None)
    message = _send(room, "alice", "m")
    assert _heads(room) == (None, None)  # a send is no change: last_message.id says it
    newest = []
    for write in (
        lambda: call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "m fixed"}),
        lambda: _react(room, "bob", message, "👍"),
        lambda: _mark(room, "bob", message, "delivered"),
        lambda: _mark(room, "bob", message),
        lambda: call("DELETE", f"/v1/messages/{message}", room["alice"]),
    ):
        write()
        items = _changes(room, "bob", after=newest[-1] if newest else message).body["items"]
        newest.append(items[-1]["id"])
        assert _heads(room) == (newest[-1], newest[-1]) and _heads(room, "alice") == (newest[-1], newest[-1])
    assert newest == sorted(newest)
    _mark(room, "bob", _send(room, "alice", "again"))
    assert _heads(room)[0] > newest[-1]


def test_the_feeds_head_stays_at_the_purge_horizon_once_every_change_is_purged(app_container, db, room):
    # A client that polled before the purge must still see the feed moved, poll, and be told to resync (410).
    message = _send(room, "alice", "m")
    call("PATCH", f"/v1/messages/{message}", room["alice"], body={"content": "m fixed"})
    [edit] = _changes(room, "bob", after=message).body["items"]
    _age_changes(db, room["id"], app_container.settings.message_change_retention_days + 1)
    run_maintenance(app_container.db, app_container.settings)
    assert db.execute("SELECT count(*) FROM message_changes").fetchone()[0] == 0
    assert _heads(room) == (edit["id"], edit["id"])
    assert _changes(room, "bob", after=message).status == 410


def test_a_mark_is_one_round_trip_and_one_commit(app_container, db, room, database_url):
    # It now holds the conversation's row as a send does, and marks are frequent: the access check, the mark and the
    # COMMIT go out together, so the row is not held across round trips (it was four: BEGIN, check, mark, COMMIT).
    from bench.harness import trace_counts
    from shared.models.conversations import ReadMark
    from shared.services.messages import mark_read

    sent = [_send(room, "alice", f"m{i}") for i in range(4)]
    mark_read(app_container.db, room["bob"], room["id"], ReadMark(message_id=sent[0]))
    with app_container.db.provider.connection() as conn, psycopg.connect(database_url, autocommit=True) as observer:
        # Commits are counted as transaction ids handed out in the whole database (an autovacuum ANALYZE takes one
        # too): three tries to be counted alone.
        for message_id in sent[1:]:
            counted = trace_counts(
                conn,
                lambda m=message_id: mark_read(app_container.db, room["bob"], room["id"], ReadMark(message_id=m)),
                observer,
            )
            if counted == (1, 1):
                break
    assert counted == (1, 1)
    assert _mark(room, "bob", sent[-1])["last_read_message_id"] == sent[-1]
