"""Walking message pages while other clients keep sending never repeats or skips a message."""

from __future__ import annotations

import threading
import time

from shared.models.conversations import MessageCreate
from shared.services.messages import send_message
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
