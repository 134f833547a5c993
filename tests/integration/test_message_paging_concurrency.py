"""Walking message pages while other clients keep sending never repeats or skips a message; polling changes while
others edit, delete, react, mark messages read or delivered and change participants never skips a change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from shared.models.conversations import MessageCreate, MessageUpdate, ParticipantAdd, ParticipantUpdate, ReadMark
from shared.pagination import encode_cursor
from shared.services.conversations import add_participant, remove_participant, update_participant
from shared.services.messages import (
    add_reaction,
    delete_message,
    edit_message,
    mark_read,
    remove_reaction,
    send_message,
)
from tests.conversations_helpers import call, jwt_principal, make_user

WRITERS = 3
PER_WRITER = 80


def _walk(conversation_id, reader, direction):
    seen, cursor = [], None
    while True:
        query = {"limit": 17, "direction": direction, **({"cursor": cursor} if cursor else {})}
        page = call("GET", f"/v1/conversations/{conversation_id}/messages", reader, query=query).body
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_pages_never_repeat_or_skip_when_messages_are_inserted_concurrently(app_container, db):
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "busy", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    db.execute(
        "INSERT INTO messages (conversation_id, sender_id, content) SELECT %s, %s, 'seed ' || g "
        "FROM generate_series(1, 300) g",
        (conversation_id, alice.user_id),
    )
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(PER_WRITER):
                send_message(
                    app_container.db, app_container.settings, alice, conversation_id, MessageCreate(content=f"w{n}-{i}")
                )
                time.sleep(0.001)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    backward = _walk(conversation_id, bob, "backward")
    forward = _walk(conversation_id, bob, "forward")
    for t in threads:
        t.join()
    assert errors == []
    assert len(backward) == len(set(backward)) and backward == sorted(backward, reverse=True)
    assert len(forward) == len(set(forward)) and forward == sorted(forward)
    every = [
        r[0] for r in db.execute("SELECT id FROM messages WHERE conversation_id = %s ORDER BY id", (conversation_id,))
    ]
    # Nothing at or below the newest id a walk saw may be missing from it: no late commit slipped behind a cursor.
    assert backward[::-1] == [i for i in every if i <= max(backward)]
    assert forward == [i for i in every if i <= max(forward)]
    assert len(every) == 300 + WRITERS * PER_WRITER


def test_polling_after_the_newest_id_seen_misses_nothing_when_messages_are_sent_concurrently(app_container, db):
    # A client without a push channel polls `after` the newest id it holds. Ids are handed out in commit order
    # within a conversation, so a message that commits after a poll never carries an id below one that poll saw.
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "busy", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(PER_WRITER):
                send_message(
                    app_container.db, app_container.settings, alice, conversation_id, MessageCreate(content=f"w{n}-{i}")
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def poll(newest: int) -> list[int]:
        query = {"after": str(newest), "limit": 7}
        page = call("GET", f"/v1/conversations/{conversation_id}/messages", bob, query=query).body
        return [m["id"] for m in page["items"]]

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    seen: list[int] = []
    for _ in range(10 * WRITERS * PER_WRITER):  # bounded: a poll that went back over old messages never ends
        finished = not any(t.is_alive() for t in threads)  # read before the poll: its drain is the last one
        while (batch := poll(seen[-1] if seen else 0)) and len(seen) <= WRITERS * PER_WRITER:
            seen += batch
        if finished:
            break
    for t in threads:
        t.join()
    assert errors == []
    every = [
        r[0] for r in db.execute("SELECT id FROM messages WHERE conversation_id = %s ORDER BY id", (conversation_id,))
    ]
    assert seen == every and len(every) == WRITERS * PER_WRITER


def _waits_on_a_lock(db, pid) -> bool:
    row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_paging_forward_never_skips_a_completion_message_when_a_send_commits_during_the_record(
    app_container, db, database_url
):
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "g", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    thread_id = call("POST", f"/v1/conversations/{conversation_id}/threads", alice, body={"title": "t"}).body["id"]
    # Hold ai_completions, so the completion's record stops part-way, as a slow one would.
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE ai_completions IN SHARE ROW EXCLUSIVE MODE")
    worker = psycopg.connect(database_url, autocommit=True)
    recorded: list[int] = []

    def record() -> None:
        row = worker.execute(
            "SELECT user_message_id FROM confab_record_completion(%s, %s, %s, 'q', NULL, 'a', 'm', '{}'::jsonb)",
            (thread_id, conversation_id, alice.user_id),
        ).fetchone()
        recorded.append(row[0])

    recording = threading.Thread(target=record)
    recording.start()
    for _ in range(250):
        if _waits_on_a_lock(db, worker.info.backend_pid):
            break
        time.sleep(0.02)
    sender = threading.Thread(
        target=lambda: recorded.append(
            call("POST", f"/v1/conversations/{conversation_id}/messages", bob, body={"content": "meanwhile"}).body["id"]
        )
    )
    sender.start()
    time.sleep(0.3)  # the send waits for the conversation's row, or (before 0503) commits with a larger id
    seen = call("GET", f"/v1/conversations/{conversation_id}/messages", alice, query={"direction": "forward"})
    seen_ids = [m["id"] for m in seen.body["items"]]
    holder.rollback()
    holder.close()
    recording.join(10)
    sender.join(10)
    worker.close()
    cursor = {"cursor": encode_cursor((seen_ids[-1],))} if seen_ids else {}
    later = call(
        "GET", f"/v1/conversations/{conversation_id}/messages", alice, query={"direction": "forward", **cursor}
    )
    everything = seen_ids + [m["id"] for m in later.body["items"]]
    assert set(recorded) <= set(everything), (recorded, seen_ids, everything)
    assert everything == sorted(everything)


def _change_once(app_container, alice, bob, conversation_id, message_id: int, content: str, i: int) -> None:
    """The one change the concurrency test makes to a message, by its place `i` among a writer's messages."""
    if i % 4 == 3:
        delete_message(app_container.db, alice, message_id)
    elif i % 4 == 2:
        add_reaction(app_container.db, alice, message_id, "👍")
    elif i % 8 == 1:
        # Bob's reaction was added before the poll began: taking it back is this message's one reactions change.
        remove_reaction(app_container.db, bob, message_id, "🎉")
    elif i % 8 == 5:
        # Bob, the only reader, marks up to it: a change when it moves a status (a mark of a higher message may have
        # committed first). Only he reads, so no entry of his only moved his cursor: none is replaced.
        mark = ReadMark(message_id=message_id, status="read" if i % 16 == 5 else "delivered")
        mark_read(app_container.db, bob, conversation_id, mark)
    else:
        edit_message(app_container.db, app_container.settings, alice, message_id, MessageUpdate(content=content))


def _change_messages(app_container, alice, bob, conversation_id, message_ids: list[int], n: int) -> None:
    for i, message_id in enumerate(message_ids):
        _change_once(app_container, alice, bob, conversation_id, message_id, f"e{n}-{i}", i)


PARTICIPANT_CHANGES = 60


def _change_participants(app_container, alice, conversation_id, people: list) -> None:
    """Each participant changed once, by its place: an addition, a role change or a removal (the last two of
    participants added before the poll, without an entry)."""
    for i, user_id in enumerate(people):
        if i % 3 == 0:
            add_participant(app_container.db, alice, conversation_id, ParticipantAdd(user_id=user_id))
        elif i % 3 == 1:
            update_participant(app_container.db, alice, conversation_id, user_id, ParticipantUpdate(role="admin"))
        else:
            remove_participant(app_container.db, alice, conversation_id, user_id)


def _thread(errors: list[BaseException], changes: Callable[..., None], *args: Any) -> threading.Thread:
    """A thread running changes(*args), its error appended to `errors` (surfaced by the test's assertion)."""

    def run() -> None:
        try:
            changes(*args)
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=run)


def test_polling_changes_after_the_newest_one_seen_misses_none_when_edits_deletes_and_reactions_commit_concurrently(
    app_container, db
):
    # Each writer edits some of its messages, reacts to others (adding a reaction, or adding one and taking another
    # back), marks others read or delivered (as bob) and deletes others, all in one conversation, while one more
    # adds, promotes and removes participants. A change's id is drawn under the conversation's row lock (FOR NO KEY
    # UPDATE, edits, reactions, marks and participant changes as deletes and sends), so changes commit in id order and
    # a poll after the newest change seen never skips one that commits later.
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "busy", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    seeded = [
        r[0]
        for r in db.execute(
            "INSERT INTO messages (conversation_id, sender_id, content) SELECT %s, %s, 'seed ' || g "
            "FROM generate_series(1, %s) g RETURNING id",
            (conversation_id, alice.user_id, WRITERS * PER_WRITER),
        ).fetchall()
    ]
    # Reactions bob takes back while the others write, seeded without a change (the poll starts after them).
    db.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) SELECT id, %s, '🎉' FROM unnest(%s::bigint[]) id",
        (bob.user_id, [m for n in range(WRITERS) for i, m in enumerate(seeded[n::WRITERS]) if i % 8 == 1]),
    )
    # Participants to promote or remove, there before the poll without an entry; each user is changed once, so no
    # entry replaces another.
    people = [make_user(db) for _ in range(PARTICIPANT_CHANGES)]
    db.execute(
        "INSERT INTO participants (conversation_id, user_id) SELECT %s, u FROM unnest(%s::uuid[]) u",
        (conversation_id, [u for i, u in enumerate(people) if i % 3 != 0]),
    )
    errors: list[BaseException] = []

    def poll(newest: int) -> list[dict]:
        query = {"after": str(newest), "limit": 7}
        return call("GET", f"/v1/conversations/{conversation_id}/changes", bob, query=query).body["items"]

    threads = [
        _thread(errors, _change_messages, app_container, alice, bob, conversation_id, seeded[n::WRITERS], n)
        for n in range(WRITERS)
    ]
    threads.append(_thread(errors, _change_participants, app_container, alice, conversation_id, people))
    for t in threads:
        t.start()
    seen: list[dict] = []
    most = WRITERS * PER_WRITER + PARTICIPANT_CHANGES
    for _ in range(10 * most):  # bounded
        finished = not any(t.is_alive() for t in threads)  # read before the poll: its drain is the last one
        while (batch := poll(seen[-1]["id"] if seen else seeded[-1])) and len(seen) <= most:
            seen += batch
        if finished:
            break
    for t in threads:
        t.join()
    assert errors == []
    log = db.execute(
        "SELECT id, message_id, kind FROM message_changes WHERE conversation_id = %s ORDER BY id", (conversation_id,)
    ).fetchall()
    # Each message is changed once (edited, reacted to, marked, or deleted), and each participant once, so nothing
    # the feed held was superseded since.
    assert [(c["id"], c["message_id"], c["kind"]) for c in seen] == [tuple(row) for row in log]
    marks = WRITERS * len([i for i in range(PER_WRITER) if i % 8 == 5])
    assert most - marks < len(log) <= most  # a mark that moved nothing logs nothing
    assert len([kind for _, _, kind in log if kind == "participants"]) == PARTICIPANT_CHANGES
    assert {kind for _, _, kind in log} == {"edited", "deleted", "reactions", "read", "delivered", "participants"}
