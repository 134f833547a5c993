"""Messages through the handlers: send, pages, idempotency, limits, edits, read status, reactions, feedback."""

from __future__ import annotations

import re
import uuid

import pytest

from shared.pagination import encode_cursor
from tests.conversations_helpers import call, jwt_principal, make_user


@pytest.fixture
def room(app_container, db):
    alice, bob, carol = (jwt_principal(make_user(db, n)) for n in ("alice", "bob", "carol"))
    body = {"kind": "group", "title": "t", "participant_ids": [str(bob.user_id)]}
    conversation = call("POST", "/v1/conversations", alice, body=body).body
    return {"alice": alice, "bob": bob, "carol": carol, "id": conversation["id"]}


def _send(room, who, content, **extra):
    return call("POST", f"/v1/conversations/{room['id']}/messages", room[who], body={"content": content, **extra})


def _file(db, owner_id, name="a.txt"):
    return db.execute(
        "INSERT INTO user_files (owner_id, original_name, content_type, size, storage_key) "
        "VALUES (%s, %s, 'text/plain', 3, gen_random_uuid()::text) RETURNING id",
        (owner_id, name),
    ).fetchone()[0]


def test_send_answers_201_and_pages_walk_backward_and_forward_without_gaps(room):
    sent = [_send(room, "alice" if i % 2 else "bob", f"m{i}").body["id"] for i in range(7)]
    path = f"/v1/conversations/{room['id']}/messages"
    for direction, expected in (("backward", sent[::-1]), ("forward", sent)):
        seen, cursor = [], None
        while True:
            query = {"limit": 3, "direction": direction, **({"cursor": cursor} if cursor else {})}
            page = call("GET", path, room["alice"], query=query).body
            seen += [m["id"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected


def test_polling_after_the_newest_message_a_client_has_answers_what_was_sent_since_oldest_first(room):
    path = f"/v1/conversations/{room['id']}/messages"
    first = [_send(room, "alice", f"m{i}").body["id"] for i in range(3)]
    nothing = call("GET", path, room["bob"], query={"after": str(first[-1])})
    assert nothing.status == 200 and nothing.body == {"items": [], "next_cursor": None}
    since = [_send(room, "bob", f"n{i}").body["id"] for i in range(5)]
    page = call("GET", path, room["alice"], query={"after": str(first[-1]), "limit": "3"}).body
    assert [m["id"] for m in page["items"]] == since[:3]
    rest = call("GET", path, room["alice"], query={"cursor": page["next_cursor"], "direction": "forward"}).body
    assert [m["id"] for m in rest["items"]] == since[3:] and rest["next_cursor"] is None
    everything = call("GET", path, room["alice"], query={"after": "0", "direction": "forward"}).body
    assert [m["id"] for m in everything["items"]] == first + since
    thread = call("POST", f"/v1/conversations/{room['id']}/threads", room["alice"], body={"title": "t"}).body
    in_thread = [_send(room, "alice", f"t{i}", thread_id=thread["id"]).body["id"] for i in range(2)]
    polled = call("GET", f"/v1/threads/{thread['id']}/messages", room["bob"], query={"after": str(in_thread[0])})
    assert polled.status == 200 and [m["id"] for m in polled.body["items"]] == in_thread[1:]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"after": "1", "cursor": encode_cursor([1])}, 400),
        ({"after": "1", "direction": "backward"}, 400),
        ({"after": "-1"}, 422),
        ({"after": str(2**63)}, 422),
        ({"after": "newest"}, 422),
    ],
)
def test_after_with_a_cursor_backward_or_out_of_a_message_ids_range_is_a_problem_not_a_page(room, query, status):
    answer = call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query=query)
    assert answer.status == status and answer.headers["Content-Type"] == "application/problem+json"


def test_polling_a_conversation_the_caller_is_not_in_is_the_404_of_any_other(room):
    _send(room, "alice", "private")
    answer = call("GET", f"/v1/conversations/{room['id']}/messages", room["carol"], query={"after": "0"})
    assert answer.status == 404


def test_retried_send_returns_the_original_with_200_when_the_idempotency_key_repeats(room, db):
    first = _send(room, "alice", "once", idempotency_key="k-1")
    again = _send(room, "alice", "once", idempotency_key="k-1")
    assert first.status == 201 and again.status == 200 and again.body["id"] == first.body["id"]
    other = _send(room, "bob", "once", idempotency_key="k-1")  # keys are per sender
    assert other.status == 201
    assert db.execute("SELECT count(*) FROM messages WHERE idempotency_key = 'k-1'").fetchone()[0] == 2


def test_an_idempotency_key_header_makes_a_send_retryable_as_it_does_a_completion(room, db):
    # CORS allows Idempotency-Key and a thread completion reads it (docs/ai.md); a send that ignored it stored a
    # client's retry twice. Both, the same, is one key; both, different, is a 422 naming the header, as for a
    # completion (the body's used to win silently, and a client that meant the header's retried nothing).
    path = f"/v1/conversations/{room['id']}/messages"
    header = {"Idempotency-Key": "h-1"}
    first = call("POST", path, room["alice"], body={"content": "once"}, headers=header)
    again = call("POST", path, room["alice"], body={"content": "once"}, headers=header)
    assert (first.status, again.status) == (201, 200) and again.body["id"] == first.body["id"]
    assert first.body["idempotency_key"] == "h-1"
    same = call("POST", path, room["alice"], body={"content": "once", "idempotency_key": "h-1"}, headers=header)
    assert same.status == 200 and same.body["id"] == first.body["id"]
    both = call("POST", path, room["alice"], body={"content": "twice", "idempotency_key": "b-1"}, headers=header)
    assert both.status == 422 and [error["loc"] for error in both.body["errors"]] == [["header", "idempotency-key"]]
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_a_key_used_again_for_another_message_is_409_and_stores_nothing_while_a_true_retry_answers(room, db):
    first = _send(room, "alice", "lunch at noon?", idempotency_key="k-1")
    thread = call("POST", f"/v1/conversations/{room['id']}/threads", room["alice"], body={"title": "t"}).body
    # A client whose key counter restarted, or that reused a key in another thread: not a retry of the first send,
    # and answering the first message with 200 would tell it this one was delivered.
    other_text = _send(room, "alice", "running late", idempotency_key="k-1")
    assert (other_text.status, other_text.body["type"]) == (409, "https://confab.dev/problems/conflict")
    other_thread = _send(room, "alice", "lunch at noon?", idempotency_key="k-1", thread_id=thread["id"])
    assert other_thread.status == 409
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    retry = _send(room, "alice", "lunch at noon?", idempotency_key="k-1")
    assert (retry.status, retry.body["id"]) == (200, first.body["id"])
    # Still a retry after the first message was edited.
    call("PATCH", f"/v1/messages/{first.body['id']}", room["alice"], body={"content": "lunch at one?"})
    assert _send(room, "alice", "lunch at noon?", idempotency_key="k-1").status == 200
    # Attachments are part of the message too.
    files = [str(_file(db, room["alice"].user_id, name)) for name in ("a.txt", "b.txt")]
    assert _send(room, "alice", "see files", idempotency_key="k-2", attachments=files).status == 201
    assert _send(room, "alice", "see files", idempotency_key="k-2", attachments=files).status == 200
    assert _send(room, "alice", "see files", idempotency_key="k-2", attachments=files[:1]).status == 409


def test_attachments_are_linked_when_the_sender_owns_the_files(room, db):
    mine = _file(db, room["alice"].user_id)
    sent = _send(room, "alice", "see file", attachments=[str(mine)])
    assert sent.status == 201 and sent.body["attachments"][0]["file_id"] == str(mine)
    assert db.execute("SELECT count(*) FROM message_attachments WHERE file_id = %s", (mine,)).fetchone()[0] == 1


def test_send_leaves_nothing_behind_when_an_attachment_is_not_the_senders(room, db):
    mine, theirs = _file(db, room["alice"].user_id), _file(db, room["bob"].user_id)
    before = db.execute("SELECT last_message_at FROM conversations WHERE id = %s", (room["id"],)).fetchone()[0]
    reply = _send(room, "alice", "sneaky", attachments=[str(mine), str(theirs)])
    assert reply.status == 422
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM message_attachments").fetchone()[0] == 0
    assert db.execute("SELECT last_message_at FROM conversations WHERE id = %s", (room["id"],)).fetchone()[0] == before


def test_send_with_an_idempotency_key_is_422_not_500_when_an_attachment_is_not_the_senders(room, db):
    # The failure path looks the key up first (a concurrent retry may have stored it): that lookup must not fail.
    theirs = _file(db, room["bob"].user_id)
    reply = _send(room, "alice", "sneaky", attachments=[str(theirs)], idempotency_key="k-1")
    assert reply.status == 422 and reply.body["errors"][0]["loc"] == ["body", "attachments"]
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_key_lookup_finds_a_concurrent_retrys_message_when_the_send_inserted_nothing(room, db):
    # The path a retry takes when its twin committed after the send's snapshot: it answers the stored message.
    from shared.repositories.messages import MessagesRepository

    sent = _send(room, "alice", "once", idempotency_key="k-1").body
    _send(room, "alice", "once", idempotency_key="k-1")  # the edit below keeps this first text in message_edits
    call("PATCH", f"/v1/messages/{sent['id']}", room["alice"], body={"content": "edited"})
    params = {"conversation_id": room["id"], "user_id": room["alice"].user_id, "idempotency_key": "k-1"}
    params |= {"thread_id": None, "content": "once", "file_ids": []}
    found = MessagesRepository(db).find_by_key(params)
    assert found is not None and found.same and not found.created and f'"id" : {sent["id"]}' in found.message_json


def test_limits_answer_422_or_413_never_500_when_exceeded(room, app_container):
    limit = app_container.settings.message_max_chars
    assert _send(room, "alice", "x" * (limit + 1)).status == 422
    assert _send(room, "alice", "ok", attachments=[str(__import__("uuid").uuid4()) for _ in range(11)]).status == 422
    huge = "y" * (app_container.settings.request_body_max_bytes + 1)
    reply = call("POST", f"/v1/conversations/{room['id']}/messages", room["alice"], raw_body=huge.encode())
    assert reply.status == 413 and reply.body["type"].endswith("/payload-too-large")
    assert call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query={"limit": 5000}).status == 200
    assert call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query={"limit": 0}).status == 400


def test_page_limit_is_capped_at_200_when_more_is_asked(room, db):
    db.execute(
        "INSERT INTO messages (conversation_id, sender_id, content) "
        "SELECT %s, %s, 'm' || g FROM generate_series(1, 230) g",
        (room["id"], room["alice"].user_id),
    )
    page = call("GET", f"/v1/conversations/{room['id']}/messages", room["bob"], query={"limit": 1000}).body
    assert len(page["items"]) == 200 and page["next_cursor"]
    assert len(call("GET", f"/v1/conversations/{room['id']}/messages", room["bob"]).body["items"]) == 50


def test_edit_keeps_the_earlier_version_and_only_the_sender_may_edit(room, db):
    message = _send(room, "alice", "first").body
    assert call("PATCH", f"/v1/messages/{message['id']}", room["bob"], body={"content": "hijack"}).status == 403
    edited = call("PATCH", f"/v1/messages/{message['id']}", room["alice"], body={"content": "second"})
    assert edited.status == 200 and edited.body["content"] == "second" and edited.body["edited_at"]
    kept = db.execute("SELECT previous_content FROM message_edits WHERE message_id = %s", (message["id"],)).fetchall()
    assert kept == [("first",)]


def test_participants_read_a_messages_earlier_versions_latest_first_and_others_get_404(room):
    message = _send(room, "alice", "v1").body
    for text in ("v2", "v3", "v4"):
        assert call("PATCH", f"/v1/messages/{message['id']}", room["alice"], body={"content": text}).status == 200
    edits = f"/v1/messages/{message['id']}/edits"
    first = call("GET", edits, room["bob"], query={"limit": 2}).body
    rest = call("GET", edits, room["bob"], query={"cursor": first["next_cursor"]}).body
    history = first["items"] + rest["items"]
    assert [e["previous_content"] for e in history] == ["v3", "v2", "v1"] and rest["next_cursor"] is None
    assert {e["edited_by"] for e in history} == {str(room["alice"].user_id)}
    outsider = call("GET", f"/v1/messages/{message['id']}/edits", room["carol"])
    unknown = call("GET", "/v1/messages/999999/edits", room["carol"])
    assert outsider.status == unknown.status == 404 and outsider.body == unknown.body
    never_edited = _send(room, "bob", "as sent").body
    assert call("GET", f"/v1/messages/{never_edited['id']}/edits", room["alice"]).body["items"] == []


def test_an_edit_to_the_text_the_message_already_has_changes_nothing_when_a_patch_is_retried(room):
    message = _send(room, "alice", "v1").body
    path = f"/v1/messages/{message['id']}"
    changes = f"/v1/conversations/{room['id']}/changes"
    # Never edited: the same text leaves it unedited.
    same = call("PATCH", path, room["alice"], body={"content": "v1"})
    assert same.status == 200 and same.body == message
    assert call("GET", f"{path}/edits", room["bob"]).body["items"] == []
    assert call("GET", changes, room["bob"], query={"after": str(message["id"])}).body["items"] == []
    # Edited, then the PATCH retried: one earlier version, one change, the first edit's time.
    edited = call("PATCH", path, room["alice"], body={"content": "v2"}).body
    feed = call("GET", changes, room["bob"], query={"after": str(message["id"])}).body["items"]
    retried = call("PATCH", path, room["alice"], body={"content": "v2"})
    assert retried.status == 200 and retried.body == edited
    assert [e["previous_content"] for e in call("GET", f"{path}/edits", room["bob"]).body["items"]] == ["v1"]
    assert call("GET", changes, room["bob"], query={"after": str(message["id"])}).body["items"] == feed
    # Still the sender's alone: the same text from someone else is the 403 as before.
    assert call("PATCH", path, room["bob"], body={"content": "v2"}).status == 403


def test_delete_is_for_the_sender_or_a_conversation_admin(room):
    by_alice = _send(room, "alice", "a").body
    by_bob = _send(room, "bob", "b").body
    assert call("DELETE", f"/v1/messages/{by_alice['id']}", room["bob"]).status == 403
    assert call("DELETE", f"/v1/messages/{by_bob['id']}", room["alice"]).status == 204  # alice is admin
    assert call("DELETE", f"/v1/messages/{by_alice['id']}", room["alice"]).status == 204
    assert call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"]).body["items"] == []


def test_status_moves_sent_delivered_read_and_never_backwards(room):
    first = _send(room, "alice", "one").body
    second = _send(room, "alice", "two").body
    assert first["status"] == "sent" and "sent" in first["status_timestamps"]
    path = f"/v1/conversations/{room['id']}/read"
    delivered = call("POST", path, room["bob"], body={"message_id": second["id"], "status": "delivered"})
    assert delivered.status == 200 and delivered.body["updated"] == 2 and delivered.body["last_read_message_id"] is None
    read = call("POST", path, room["bob"], body={"message_id": first["id"]})
    assert read.body["last_read_message_id"] == first["id"] and read.body["updated"] == 1
    call("POST", path, room["bob"], body={"message_id": second["id"]})
    back = call("POST", path, room["bob"], body={"message_id": first["id"]})
    assert back.body["last_read_message_id"] == second["id"]  # the cursor never moves back
    again = call("POST", path, room["bob"], body={"message_id": second["id"], "status": "delivered"})
    assert again.body["updated"] == 0  # read never returns to delivered
    items = call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"]).body["items"]
    assert {m["status"] for m in items} == {"read"}
    assert all({"sent", "delivered", "read"} <= set(m["status_timestamps"]) for m in items)


def test_last_message_at_and_the_list_order_follow_the_newest_remaining_message_when_the_newest_is_deleted(room):
    other = call("POST", "/v1/conversations", room["alice"], body={"kind": "group", "title": "other"}).body
    first = _send(room, "alice", "first").body
    call("POST", f"/v1/conversations/{other['id']}/messages", room["alice"], body={"content": "elsewhere"})
    newest = _send(room, "bob", "newest").body

    def listed():
        return [c["id"] for c in call("GET", "/v1/conversations", room["alice"]).body["items"]]

    def seen():
        return call("GET", f"/v1/conversations/{room['id']}", room["alice"]).body

    assert listed() == [room["id"], other["id"]] and seen()["last_message_at"] == newest["created_at"]
    assert call("DELETE", f"/v1/messages/{newest['id']}", room["bob"]).status == 204
    # The preview shows the message before it, and the conversation sorts by that message's time, as if the
    # deleted one had never been sent.
    assert (seen()["last_message"]["id"], seen()["last_message_at"]) == (first["id"], first["created_at"])
    assert listed() == [other["id"], room["id"]]
    assert call("DELETE", f"/v1/messages/{first['id']}", room["alice"]).status == 204
    emptied = seen()
    assert (emptied["last_message"], emptied["last_message_at"]) == (None, None)  # back to its created_at
    assert listed() == [other["id"], room["id"]]
    # Deleting an older message leaves the time of the newest alone.
    older, latest = _send(room, "alice", "older").body, _send(room, "alice", "latest").body
    assert call("DELETE", f"/v1/messages/{older['id']}", room["alice"]).status == 204
    assert seen()["last_message_at"] == latest["created_at"] and listed()[0] == room["id"]


def test_read_cursor_and_unread_count_stay_when_the_last_read_message_is_deleted(room):
    # The cursor is a high-water mark: it keeps naming a deleted message, and nothing before it is unread again.
    sent = [_send(room, "alice", f"m{i}").body["id"] for i in range(3)]
    path = f"/v1/conversations/{room['id']}"

    def read(message_id):
        return call("POST", f"{path}/read", room["bob"], body={"message_id": message_id}).body["last_read_message_id"]

    def unread():
        return call("GET", path, room["bob"]).body["unread_count"]

    assert read(sent[-1]) == sent[-1]
    assert call("DELETE", f"/v1/messages/{sent[-1]}", room["alice"]).status == 204
    assert unread() == 0
    listed = call("GET", f"{path}/participants", room["bob"]).body["items"]
    assert {p["user_id"]: p["last_read_message_id"] for p in listed}[str(room["bob"].user_id)] == sent[-1]
    newer = _send(room, "alice", "after").body["id"]
    assert unread() == 1
    assert read(sent[0]) == sent[-1]  # still never backwards
    assert read(newer) == newer and unread() == 0


def test_a_mark_that_moves_nothing_writes_no_row_and_answers_the_cursor_as_it_is(room, db):
    sent = [_send(room, "alice", f"m{i}").body["id"] for i in range(3)]
    path = f"/v1/conversations/{room['id']}/read"

    def mark(message_id, status="read"):
        reply = call("POST", path, room["bob"], body={"message_id": message_id, "status": status})
        assert reply.status == 200, reply.body
        return reply.body

    def written():
        # The participant row's version (a rewrite gives it a new xmin) and the conversation's change feed.
        row = db.execute(
            "SELECT xmin::text, last_read_message_id, last_read_at FROM participants "
            "WHERE conversation_id = %s AND user_id = %s",
            (room["id"], room["bob"].user_id),
        ).fetchone()
        changes = db.execute("SELECT count(*) FROM message_changes WHERE conversation_id = %s", (room["id"],))
        return row, changes.fetchone()[0]

    moved = mark(sent[1])
    before = written()
    assert before[0][1] == sent[1] and moved["updated"] == 2
    # A repeat, a mark below the cursor, a delivered mark of messages already read: nothing moves.
    for message_id, status in ((sent[1], "read"), (sent[0], "read"), (sent[1], "delivered")):
        answer = mark(message_id, status)
        assert (answer["last_read_message_id"], answer["updated"]) == (sent[1], 0)
        assert answer["last_read_at"] == moved["last_read_at"]
        assert written() == before
    # A read mark that stamps messages below the cursor moves statuses (logged) but not the cursor: the row stays too.
    mark(sent[2], "delivered")
    db.execute("UPDATE messages SET status = 'sent', status_timestamps = '{}' WHERE id = %s", (sent[0],))
    row, changes = written()
    assert mark(sent[0])["updated"] == 1 and written() == (row, changes + 1)
    assert mark(sent[2])["last_read_message_id"] == sent[2] and written()[0][0] != row[0]  # a move writes it


def test_read_is_404_when_the_message_is_in_another_conversation(room):
    other = call("POST", "/v1/conversations", room["bob"], body={"kind": "group", "title": "x"}).body
    foreign = call("POST", f"/v1/conversations/{other['id']}/messages", room["bob"], body={"content": "x"}).body
    assert (
        call("POST", f"/v1/conversations/{room['id']}/read", room["bob"], body={"message_id": foreign["id"]}).status
        == 404
    )
    # Deleted from its own conversation, it is still not this one's.
    assert call("DELETE", f"/v1/messages/{foreign['id']}", room["bob"]).status == 204
    assert (
        call("POST", f"/v1/conversations/{room['id']}/read", room["bob"], body={"message_id": foreign["id"]}).status
        == 404
    )


@pytest.mark.parametrize("status", ["read", "delivered"])
def test_marking_up_to_a_message_deleted_since_it_was_fetched_marks_the_messages_before_it(room, status):
    # A client marks the newest message on screen; its sender deleted it a moment before. The mark still means "up to
    # it": before, it was the 404 of a conversation the reader is not in, and nothing was marked.
    sent = [_send(room, "alice", f"m{i}").body["id"] for i in range(3)]
    assert call("DELETE", f"/v1/messages/{sent[-1]}", room["alice"]).status == 204
    path = f"/v1/conversations/{room['id']}"
    mark = call("POST", f"{path}/read", room["bob"], body={"message_id": sent[-1], "status": status})
    assert mark.status == 200, mark.body
    assert mark.body["updated"] == 2
    assert mark.body["last_read_message_id"] == (sent[-1] if status == "read" else None)
    page = call("GET", f"{path}/messages", room["bob"]).body["items"]
    assert [(m["id"], m["status"]) for m in page] == [(sent[1], status), (sent[0], status)]
    changes = call("GET", f"{path}/changes", room["bob"], query={"after": str(sent[-1])}).body["items"]
    assert [(c["kind"], c["message_id"]) for c in changes] == [("deleted", sent[-1]), (status, sent[-1])]


def test_reactions_are_unique_per_user_and_emoji_and_counted_by_emoji(room):
    message = _send(room, "alice", "react").body
    path = f"/v1/messages/{message['id']}/reactions"
    assert call("POST", path, room["alice"], body={"emoji": "👍"}).status == 201
    assert call("POST", path, room["alice"], body={"emoji": "👍"}).status == 200
    call("POST", path, room["bob"], body={"emoji": "👍"})
    call("POST", path, room["bob"], body={"emoji": "🎉"})
    summary = call("GET", path, room["alice"]).body["reactions"]
    assert summary == [
        {"emoji": "👍", "count": 2, "reacted_by_me": True},
        {"emoji": "🎉", "count": 1, "reacted_by_me": False},
    ]
    assert call("DELETE", f"{path}/%F0%9F%8E%89", room["bob"]).status == 204
    assert call("DELETE", f"{path}/%F0%9F%8E%89", room["bob"]).status == 404
    assert call("POST", path, room["carol"], body={"emoji": "👍"}).status == 404


def test_reactions_are_one_per_emoji_however_it_is_spelled_when_forms_are_unicode_equivalent(room, db):
    message = _send(room, "alice", "react").body
    path = f"/v1/messages/{message['id']}/reactions"
    # A red heart with and without its emoji presentation selector (U+FE0F), and an accented letter composed
    # and decomposed (NFC vs NFD): each pair is one emoji to the people reacting.
    assert call("POST", path, room["alice"], body={"emoji": "\u2764\ufe0f"}).status == 201
    again = call("POST", path, room["alice"], body={"emoji": "\u2764"})
    assert (again.status, again.body["emoji"]) == (200, "\u2764\ufe0f")
    assert call("POST", path, room["bob"], body={"emoji": "\u2764"}).status == 201
    assert call("POST", path, room["alice"], body={"emoji": "e\u0301"}).status == 201
    assert call("POST", path, room["alice"], body={"emoji": "\u00e9"}).status == 200
    summary = call("GET", path, room["alice"]).body["reactions"]
    assert summary == [
        {"emoji": "\u2764\ufe0f", "count": 2, "reacted_by_me": True},
        {"emoji": "\u00e9", "count": 1, "reacted_by_me": True},
    ]
    assert db.execute("SELECT count(*) FROM message_reactions").fetchone()[0] == 3
    # Taken back by any spelling of it.
    assert call("DELETE", f"{path}/%E2%9D%A4", room["alice"]).status == 204
    assert call("DELETE", f"{path}/e%CC%81", room["alice"]).status == 204
    assert call("GET", path, room["bob"]).body["reactions"] == [{"emoji": "\u2764", "count": 1, "reacted_by_me": True}]


@pytest.mark.parametrize(
    "emoji",
    [" ", "\ufe0f", "\ufe0e\ufe0f", "\u200d", "\u200b", "\t\n", "\u3000", "\u00a0", "\u2060", "\ufeff",
     "\U000e0001", "\u3164", "\u200d\ufe0f "],
    ids=["space", "vs16", "selectors", "zwj", "zwsp", "tab-newline", "ideographic-space", "nbsp", "word-joiner",
         "bom", "tag", "hangul-filler", "mixed"],
)  # fmt: skip
def test_a_reaction_is_422_naming_emoji_when_the_emoji_is_blank_or_only_invisible_characters(room, db, emoji):
    message = _send(room, "alice", "react").body
    path = f"/v1/messages/{message['id']}/reactions"
    refused = call("POST", path, room["alice"], body={"emoji": emoji})
    assert refused.status == 422 and refused.headers["Content-Type"] == "application/problem+json"
    assert ["body", "emoji"] in [error["loc"] for error in refused.body["errors"]]
    assert db.execute("SELECT count(*) FROM message_reactions").fetchone()[0] == 0
    # The same characters around a visible emoji are still that emoji (a keycap or a family joined by U+200D).
    assert call("POST", path, room["alice"], body={"emoji": "1\ufe0f\u20e3"}).status == 201
    assert call("POST", path, room["alice"], body={"emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467"}).status == 201


def test_a_new_emoji_is_409_once_a_message_holds_the_most_distinct_emoji_and_the_summary_stays_bounded(room, db):
    from shared.services.messages import REACTION_MAX_EMOJI

    message = _send(room, "alice", "react").body
    path = f"/v1/messages/{message['id']}/reactions"
    db.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) "
        "SELECT %s, %s, 'e' || n FROM generate_series(1, %s) n",
        (message["id"], room["bob"].user_id, REACTION_MAX_EMOJI),
    )
    full = call("POST", path, room["alice"], body={"emoji": "🎉"})
    assert (full.status, full.body["type"], full.body["limit"]) == (
        409,
        "https://confab.dev/problems/conflict",
        REACTION_MAX_EMOJI,
    )
    assert call("POST", path, room["alice"], body={"emoji": "e1"}).status == 201  # joining one that is there
    assert call("POST", path, room["alice"], body={"emoji": "e1"}).status == 200
    assert len(call("GET", path, room["alice"]).body["reactions"]) == REACTION_MAX_EMOJI


def test_feedback_is_one_per_message_and_user_and_rating_must_be_1_to_5(room):
    message = _send(room, "alice", "rate me").body
    path = f"/v1/messages/{message['id']}/feedback"
    assert call("PUT", path, room["bob"], body={"rating": 6}).status == 422
    assert call("GET", path, room["bob"]).status == 404
    first = call(
        "PUT", path, room["bob"], body={"rating": 4, "model_name": "m", "model_provider": "p", "temperature": 0.2}
    )
    second = call("PUT", path, room["bob"], body={"rating": 2, "max_tokens": 100})
    assert first.status == second.status == 200 and first.body["id"] == second.body["id"]
    assert call("GET", path, room["bob"]).body["rating"] == 2


@pytest.mark.parametrize("max_tokens", [2**31, 2**63])
def test_feedback_max_tokens_beyond_an_integer_is_a_422_naming_the_field_when_put(room, max_tokens):
    message = _send(room, "alice", "rate me").body
    path = f"/v1/messages/{message['id']}/feedback"
    refused = call("PUT", path, room["bob"], body={"rating": 3, "max_tokens": max_tokens})
    assert refused.status == 422 and refused.headers["Content-Type"] == "application/problem+json"
    assert [error["loc"] for error in refused.body["errors"]] == [["body", "max_tokens"]]
    assert call("GET", path, room["bob"]).status == 404  # nothing stored
    most = call("PUT", path, room["bob"], body={"rating": 3, "max_tokens": 2**31 - 1})
    assert most.status == 200 and most.body["max_tokens"] == 2**31 - 1


def test_threads_hold_their_messages_and_usage_totals(room):
    thread = call("POST", f"/v1/conversations/{room['id']}/threads", room["alice"], body={"title": "side"})
    assert thread.status == 201 and thread.body["tokens_total"] == 0 and float(thread.body["cost_total_usd"]) == 0
    _send(room, "alice", "main")
    in_thread = _send(room, "bob", "threaded", thread_id=thread.body["id"]).body
    page = call("GET", f"/v1/threads/{thread.body['id']}/messages", room["alice"]).body
    assert [m["id"] for m in page["items"]] == [in_thread["id"]]
    assert call("GET", f"/v1/threads/{thread.body['id']}", room["carol"]).status == 404
    listed = call("GET", f"/v1/conversations/{room['id']}/threads", room["bob"]).body
    assert [t["id"] for t in listed["items"]] == [thread.body["id"]]


def test_send_to_a_thread_of_another_conversation_is_422(room):
    other = call("POST", "/v1/conversations", room["alice"], body={"kind": "group", "title": "x"}).body
    thread = call("POST", f"/v1/conversations/{other['id']}/threads", room["alice"], body={}).body
    assert _send(room, "alice", "x", thread_id=thread["id"]).status == 422


def test_search_finds_only_the_callers_conversations(room):
    _send(room, "alice", "the quick brown fox")
    private = call("POST", "/v1/conversations", room["carol"], body={"kind": "group", "title": "c"}).body
    call("POST", f"/v1/conversations/{private['id']}/messages", room["carol"], body={"content": "another quick fox"})
    found = call("GET", "/v1/search/messages", room["bob"], query={"q": "quick fox"}).body["items"]
    assert [m["content"] for m in found] == ["the quick brown fox"]
    assert len(call("GET", "/v1/search/messages", room["carol"], query={"q": "fox"}).body["items"]) == 1
    assert call("GET", "/v1/search/messages", room["bob"], query={"q": "  "}).status == 422


def test_search_narrowed_to_one_conversation_finds_only_its_messages_and_nothing_in_one_the_caller_is_not_in(room):
    _send(room, "alice", "the quick brown fox")
    other = call("POST", "/v1/conversations", room["bob"], body={"kind": "group", "title": "o"}).body
    call("POST", f"/v1/conversations/{other['id']}/messages", room["bob"], body={"content": "a quick red fox"})
    private = call("POST", "/v1/conversations", room["carol"], body={"kind": "group", "title": "c"}).body
    call("POST", f"/v1/conversations/{private['id']}/messages", room["carol"], body={"content": "carol's quick fox"})

    def search(who, **query):
        answer = call("GET", "/v1/search/messages", room[who], query={"q": "quick fox", **query})
        assert answer.status == 200, answer.body
        return [m["content"] for m in answer.body["items"]]

    assert search("bob") == ["a quick red fox", "the quick brown fox"]
    assert search("bob", conversation_id=room["id"]) == ["the quick brown fox"]
    assert search("bob", conversation_id=other["id"]) == ["a quick red fox"]
    # A filter among the caller's conversations: one the caller is not in matches nothing, as an unknown one.
    assert search("bob", conversation_id=private["id"]) == []
    assert search("bob", conversation_id=str(uuid.uuid4())) == []
    malformed = call("GET", "/v1/search/messages", room["bob"], query={"q": "fox", "conversation_id": "nope"})
    assert malformed.status == 422 and malformed.body["errors"][0]["loc"] == ["query", "conversation_id"]


def test_cursor_is_400_when_its_message_id_is_beyond_bigint(room):
    # The id would overflow the ::bigint cast in SQL (a 422) if it reached the database.
    cursor = encode_cursor((10**30,))
    page = call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query={"cursor": cursor})
    found = call("GET", "/v1/search/messages", room["alice"], query={"q": "x", "cursor": cursor})
    assert page.status == found.status == 400
    assert page.body["type"] == found.body["type"] == "https://confab.dev/problems/invalid-request"


def test_a_message_reads_the_same_timestamps_from_send_page_edit_and_the_conversation_preview(room, db):
    sent = _send(room, "alice", "when?").body
    # A whole second too: the fraction is left out then, as pydantic writes it.
    db.execute("UPDATE messages SET created_at = '2026-05-01T10:00:00Z' WHERE id = %s", (sent["id"],))
    other = _send(room, "alice", "and now?").body
    forward = {"direction": "forward"}
    page = call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query=forward).body["items"]
    edited = call("PATCH", f"/v1/messages/{other['id']}", room["alice"], body={"content": "edited"}).body
    preview = call("GET", f"/v1/conversations/{room['id']}", room["alice"]).body["last_message"]

    assert page[0]["created_at"] == "2026-05-01T10:00:00Z"
    assert page[1]["created_at"] == other["created_at"] == edited["created_at"] == preview["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", other["created_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", other["status_timestamps"]["sent"])
    assert edited["edited_at"].endswith("Z")
    again = call("GET", f"/v1/conversations/{room['id']}/messages", room["alice"], query=forward).body["items"]
    assert again[1]["edited_at"] == edited["edited_at"]


# A direct conversation whose other user is gone ----------------------------------------------------------------


@pytest.fixture
def direct(app_container, db):
    alice, bob = (jwt_principal(make_user(db, n)) for n in ("alice", "bob"))
    body = {"kind": "direct", "participant_ids": [str(bob.user_id)]}
    conversation = call("POST", "/v1/conversations", alice, body=body).body
    return {"alice": alice, "bob": bob, "id": conversation["id"]}


def _leave(room, who):
    return call("DELETE", f"/v1/conversations/{room['id']}/participants/{room[who].user_id}", room[who])


def _messages(db, conversation_id):
    return db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)).fetchone()[0]


def test_a_send_into_a_direct_conversation_the_other_user_left_is_409_and_stores_nothing(direct, db):
    kept = _send(direct, "bob", "see you", idempotency_key="k-1").body
    mine = _send(direct, "alice", "bye").body
    before = db.execute("SELECT last_message_at FROM conversations WHERE id = %s", (direct["id"],)).fetchone()[0]
    assert _leave(direct, "bob").status == 204
    attachment = str(_file(db, direct["alice"].user_id))
    for extra in ({}, {"idempotency_key": "k-2"}, {"attachments": [attachment]}):
        refused = _send(direct, "alice", "anyone there?", **extra)
        assert (refused.status, refused.headers["Content-Type"]) == (409, "application/problem+json"), refused.body
        assert refused.body["type"] == "https://confab.dev/problems/conflict"
        assert refused.body["reason"] == "counterpart_gone"
        assert "left this direct conversation or no longer has an account" in refused.body["detail"]
    assert _messages(db, direct["id"]) == 2
    assert db.execute("SELECT count(*) FROM message_attachments").fetchone()[0] == 0
    assert (
        db.execute("SELECT last_message_at FROM conversations WHERE id = %s", (direct["id"],)).fetchone()[0] == before
    )
    # What needs nobody else still works: reading, searching, deleting one's own messages, leaving.
    page = call("GET", f"/v1/conversations/{direct['id']}/messages", direct["alice"]).body["items"]
    assert [m["id"] for m in page] == [mine["id"], kept["id"]]
    found = call("GET", "/v1/search/messages", direct["alice"], query={"q": "see you"}).body["items"]
    assert [m["id"] for m in found] == [kept["id"]]
    assert call("DELETE", f"/v1/messages/{mine['id']}", direct["alice"]).status == 204
    assert _leave(direct, "alice").status == 204
    assert db.execute("SELECT count(*) FROM conversations WHERE id = %s", (direct["id"],)).fetchone()[0] == 0


def test_a_retry_of_a_message_sent_before_the_other_user_left_still_answers_it(direct, db):
    first = _send(direct, "alice", "once", idempotency_key="k-1").body
    assert _leave(direct, "bob").status == 204
    retry = _send(direct, "alice", "once", idempotency_key="k-1")
    assert (retry.status, retry.body["id"]) == (200, first["id"])
    assert _send(direct, "alice", "another", idempotency_key="k-1").status == 409  # the key's other message
    assert _messages(db, direct["id"]) == 1


@pytest.mark.parametrize("who_asks", ["alice", "bob"])
def test_asking_for_the_pairs_direct_conversation_again_brings_back_the_user_who_left_and_sends_go_through(
    direct, db, who_asks
):
    # Bob left. Either of them asking for the pair's conversation again gets the same one (200) with both in it:
    # Bob back in (with its history), or Alice able to write to Bob again, as she could start a group with him.
    assert _leave(direct, "bob").status == 204
    assert _send(direct, "alice", "hello?").status == 409
    other = direct["bob" if who_asks == "alice" else "alice"]
    body = {"kind": "direct", "participant_ids": [str(other.user_id)]}
    again = call("POST", "/v1/conversations", direct[who_asks], body=body)
    assert (again.status, again.body["id"]) == (200, direct["id"])
    roles = db.execute("SELECT user_id, role FROM participants WHERE conversation_id = %s", (direct["id"],)).fetchall()
    assert sorted(roles) == sorted([(direct["alice"].user_id, "admin"), (direct["bob"].user_id, "admin")])
    assert _send(direct, "alice", "hello again").status == 201
    assert _send(direct, "bob", "hi").status == 201


def _unread(room, who):
    return call("GET", f"/v1/conversations/{room['id']}", room[who]).body["unread_count"]


def _cursor(db, room, who):
    return db.execute(
        "SELECT last_read_message_id, last_read_at FROM participants WHERE conversation_id = %s AND user_id = %s",
        (room["id"], room[who].user_id),
    ).fetchone()


@pytest.mark.parametrize("who_asks", ["alice", "bob"])
def test_a_user_back_in_a_direct_conversation_starts_reading_where_they_came_back_when_they_left_it(
    direct, db, who_asks
):
    # Bob had read Alice's first message, not her second; he left, and came back. His read cursor went with his
    # participant row: without one the whole history counted as unread again. It now starts at the newest message,
    # as for anyone added to a conversation, and what comes after counts.
    first = _send(direct, "alice", "one").body
    call("POST", f"/v1/conversations/{direct['id']}/read", direct["bob"], body={"message_id": first["id"]})
    second = _send(direct, "alice", "two").body
    _send(direct, "bob", "bye")
    assert _leave(direct, "bob").status == 204
    other = direct["bob" if who_asks == "alice" else "alice"]
    body = {"kind": "direct", "participant_ids": [str(other.user_id)]}
    assert call("POST", "/v1/conversations", direct[who_asks], body=body).status == 200
    newest = db.execute("SELECT max(id) FROM messages WHERE conversation_id = %s", (direct["id"],)).fetchone()[0]
    assert _cursor(db, direct, "bob") == (newest, None)  # a position, not a read: no time, no status moved
    assert _unread(direct, "bob") == 0
    statuses = db.execute("SELECT id, status FROM messages WHERE id IN (%s, %s)", (first["id"], second["id"]))
    assert sorted(statuses.fetchall()) == [(first["id"], "read"), (second["id"], "sent")]
    _send(direct, "alice", "welcome back")
    assert _unread(direct, "bob") == 1
    assert _unread(direct, "alice") == 1  # Bob's "bye": Alice never left, her cursor stays where it was


def test_a_participant_added_to_a_group_starts_reading_at_its_newest_message(room, db):
    sent = [_send(room, "alice", f"before {i}").body["id"] for i in range(3)]
    added = call(
        "POST",
        f"/v1/conversations/{room['id']}/participants",
        room["alice"],
        body={"user_id": str(room["carol"].user_id)},
    )
    assert added.status == 201 and (added.body["last_read_message_id"], added.body["last_read_at"]) == (sent[-1], None)
    assert _unread(room, "carol") == 0 and _unread(room, "bob") == 3
    _send(room, "bob", "after")
    assert _unread(room, "carol") == 1
    # Reading history from before the addition still stamps it: the cursor stays, the statuses move.
    marked = call("POST", f"/v1/conversations/{room['id']}/read", room["carol"], body={"message_id": sent[0]}).body
    assert (marked["last_read_message_id"], marked["updated"]) == (sent[-1], 1)


def test_a_send_to_a_deactivated_counterpart_is_stored_and_waits_for_them_when_they_are_reactivated(direct, db):
    # Deactivation suspends an account for a while (docs/auth.md): it stays in its conversations and comes back as it
    # was, so a message to it waits, as one to anyone offline does. Only a leave or a deletion is counterpart_gone.
    root = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    bob = f"/v1/admin/users/{direct['bob'].user_id}"
    assert call("PATCH", bob, root, body={"is_active": False}).status == 200
    sent = _send(direct, "alice", "for when you are back")
    assert sent.status == 201, sent.body
    # Asking for the pair's conversation is asking to start one with an inactive user: 422, as for a new one.
    again = {"kind": "direct", "participant_ids": [str(direct["bob"].user_id)]}
    assert call("POST", "/v1/conversations", direct["alice"], body=again).status == 422
    assert call("PATCH", bob, root, body={"is_active": True}).status == 200
    seen = call("GET", f"/v1/conversations/{direct['id']}", direct["bob"]).body
    assert (seen["unread_count"], seen["last_message"]["id"]) == (1, sent.body["id"])


def test_a_direct_conversation_with_a_model_account_takes_sends_while_the_model_account_is_in_it(app_container, db):
    alice, model = jwt_principal(make_user(db, "alice")), make_user(db, "model", is_ai=True)
    chat = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(model)]}).body
    assert call("POST", f"/v1/conversations/{chat['id']}/messages", alice, body={"content": "hi"}).status == 201


# Each body of the conversation core that stores text, with a NUL character in one field: (method, path template, body,
# the field named). PostgreSQL text and jsonb cannot hold U+0000.
NUL_BODIES = [
    ("POST", "/v1/conversations/{id}/messages", {"content": "a\x00b"}, "content"),
    ("POST", "/v1/conversations/{id}/messages", {"content": "ok", "idempotency_key": "k\x00"}, "idempotency_key"),
    ("PATCH", "/v1/messages/{message}", {"content": "\x00"}, "content"),
    ("POST", "/v1/conversations", {"kind": "group", "title": "g\x00"}, "title"),
    ("PATCH", "/v1/conversations/{id}", {"status": "on\x00"}, "status"),
    ("POST", "/v1/anonymous/conversations", {"title": "\x00"}, "title"),
    ("POST", "/v1/conversations/{id}/threads", {"title": "t", "thread_data": {"a": [{"\x00": 1}]}}, "thread_data"),
    ("POST", "/v1/conversations/{id}/panels", {"name": "p", "layout": {"x": "\x00"}}, "layout"),
    ("POST", "/v1/files", {"name": "a\x00.txt", "size": 3}, "name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NUL_BODIES)
def test_a_nul_character_is_a_422_naming_its_field_and_stores_nothing_when_sent_in_a_body(
    room, db, method, path, body, field
):
    message = _send(room, "alice", "kept").body["id"]
    counts = "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM conversations), " + (
        "(SELECT count(*) FROM conversation_threads), (SELECT count(*) FROM dashboard_panels), "
        "(SELECT count(*) FROM user_files), (SELECT count(*) FROM message_edits), "
        "(SELECT coalesce(sum(hits), 0) FROM anonymous_rate_limits)"
    )
    before = db.execute(counts).fetchone()
    reply = call(method, path.format(id=room["id"], message=message), room["alice"], body=body)
    assert reply.status == 422 and reply.headers["Content-Type"] == "application/problem+json"
    assert [error["loc"] for error in reply.body["errors"]] == [["body", field]]
    assert "NUL" in reply.body["errors"][0]["msg"]
    assert db.execute(counts).fetchone() == before


def test_a_nul_character_in_a_search_is_a_422_naming_q(room):
    reply = call("GET", "/v1/search/messages", room["alice"], query={"q": "a\x00b"})
    assert reply.status == 422 and reply.body["errors"][0]["loc"] == ["query", "q"]
    assert "NUL" in reply.body["detail"]
