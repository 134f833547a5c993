"""The client recipe of docs/conversations.md ("Polling both feeds"): a client that polls messages after the newest
message id it holds and changes after the newest change id it applied ends with the conversation as it reads,
whatever commits between and during its polls; one number for both feeds skips changes."""

from __future__ import annotations

import json
import threading
from typing import Any

from shared.models.conversations import MessageCreate, MessageUpdate
from shared.services.messages import delete_message, edit_message, send_message
from tests.conversations_helpers import call, jwt_principal, make_user

WRITERS = 3
PER_WRITER = 40


class PollingClient:
    """The documented recipe: two numbers, each moved only by its own feed's answers."""

    def __init__(self, principal: Any, conversation_id: str) -> None:
        self.principal, self.conversation_id = principal, conversation_id
        self.messages: dict[int, dict[str, Any]] = {}
        self.messages_after = 0
        self.changes_after = 0

    def _drain(self, feed: str, after: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"after": str(after), "limit": 5}
        while True:
            reply = call("GET", f"/v1/conversations/{self.conversation_id}/{feed}", self.principal, query=query)
            assert reply.status == 200, reply.body
            items += reply.body["items"]
            if reply.body["next_cursor"] is None:
                return items
            query = {"cursor": reply.body["next_cursor"], "limit": 5}

    def start(self) -> None:
        page = call("GET", f"/v1/conversations/{self.conversation_id}/messages", self.principal).body["items"]
        self.messages = {m["id"]: m for m in page}
        self.messages_after = self.changes_after = max(self.messages, default=0)

    def poll_messages(self) -> None:
        for message in self._drain("messages", self.messages_after):
            self.messages[message["id"]] = message
            self.messages_after = max(self.messages_after, message["id"])

    def poll_changes(self) -> None:
        for change in self._drain("changes", self.changes_after):
            if change["kind"] == "deleted":
                self.messages.pop(change["message_id"], None)
            elif change["message_id"] in self.messages:
                self.messages[change["message_id"]] = change["message"]
            self.changes_after = max(self.changes_after, change["id"])


def _conversation(db) -> tuple[Any, Any, str]:
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "polled", "participant_ids": [str(bob.user_id)]}
    return alice, bob, call("POST", "/v1/conversations", alice, body=body).body["id"]


def _send(alice, conversation_id: str, content: str) -> dict[str, Any]:
    reply = call("POST", f"/v1/conversations/{conversation_id}/messages", alice, body={"content": content})
    assert reply.status == 201
    return reply.body


def _as_it_reads(bob, conversation_id: str) -> dict[int, dict[str, Any]]:
    fresh = PollingClient(bob, conversation_id)
    fresh.poll_messages()
    return fresh.messages


def test_one_number_for_both_feeds_skips_an_edit_made_with_a_send_between_two_polls(app_container, db):
    # The example of the docs: why a client holds two numbers.
    alice, bob, conversation_id = _conversation(db)
    first = _send(alice, conversation_id, "one")
    held = first["id"]
    call("PATCH", f"/v1/messages/{first['id']}", alice, body={"content": "one, edited"})
    newer = _send(alice, conversation_id, "two")
    polled = call("GET", f"/v1/conversations/{conversation_id}/messages", bob, query={"after": str(held)}).body
    assert [m["id"] for m in polled["items"]] == [newer["id"]]
    changes = f"/v1/conversations/{conversation_id}/changes"
    one_number = max(held, newer["id"])
    assert call("GET", changes, bob, query={"after": str(one_number)}).body["items"] == []
    edit = call("GET", changes, bob, query={"after": str(held)}).body["items"]
    assert [(c["message_id"], c["kind"], c["message"]["content"]) for c in edit] == [
        (first["id"], "edited", "one, edited")
    ]


def test_the_recipe_ends_with_the_conversation_as_it_reads_when_writes_commit_between_its_polls(app_container, db):
    alice, bob, conversation_id = _conversation(db)
    early = [_send(alice, conversation_id, f"early {i}") for i in range(3)]
    call("PATCH", f"/v1/messages/{early[0]['id']}", alice, body={"content": "edited before the first read"})
    client = PollingClient(bob, conversation_id)
    client.start()
    # Between two polls: an edit and a delete of held messages, then a send.
    call("PATCH", f"/v1/messages/{early[1]['id']}", alice, body={"content": "edited between polls"})
    call("DELETE", f"/v1/messages/{early[2]['id']}", alice)
    _send(alice, conversation_id, "sent between polls")
    client.poll_messages()
    # Between the message poll and the change poll: a send, its edit, an edit of an older message, a send deleted.
    late = _send(alice, conversation_id, "sent between the two feeds")
    call("PATCH", f"/v1/messages/{late['id']}", alice, body={"content": "edited before it was fetched"})
    call("PATCH", f"/v1/messages/{early[0]['id']}", alice, body={"content": "edited again"})
    gone = _send(alice, conversation_id, "deleted before it was fetched")
    call("DELETE", f"/v1/messages/{gone['id']}", alice)
    client.poll_changes()
    client.poll_messages()
    client.poll_changes()
    assert client.messages == _as_it_reads(bob, conversation_id)
    assert client.messages[early[0]["id"]]["content"] == "edited again"
    assert client.messages[late["id"]]["content"] == "edited before it was fetched"
    assert early[2]["id"] not in client.messages and gone["id"] not in client.messages


def test_the_recipe_ends_with_the_conversation_as_it_reads_when_writers_send_edit_and_delete_concurrently(
    app_container, db
):
    alice, bob, conversation_id = _conversation(db)
    client = PollingClient(bob, conversation_id)
    client.start()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            mine: list[int] = []
            for i in range(PER_WRITER):
                if i % 3 == 0 or not mine:
                    sent, _ = send_message(
                        app_container.db, app_container.settings, alice, conversation_id, MessageCreate(content=f"w{n}")
                    )
                    mine.append(json.loads(sent)["id"])
                elif i % 3 == 1:
                    edit_message(
                        app_container.db, app_container.settings, alice, mine[-1], MessageUpdate(content=f"w{n}-{i}")
                    )
                else:
                    delete_message(app_container.db, alice, mine.pop(0))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for _ in range(10 * WRITERS * PER_WRITER):  # bounded
        finished = not any(t.is_alive() for t in threads)  # read before the polls: they are the last ones
        client.poll_messages()
        client.poll_changes()
        if finished:
            break
    for t in threads:
        t.join()
    assert errors == []
    assert client.messages == _as_it_reads(bob, conversation_id)
    assert client.messages  # every writer keeps some of its messages
