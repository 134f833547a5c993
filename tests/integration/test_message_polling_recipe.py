"""The client recipe of docs/conversations.md ("Polling both feeds"): a client that polls messages after the newest
message id it holds and changes after the newest change id it applied ends with the conversation as it reads (its
messages and their reactions), whatever commits between and during its polls; one number for both feeds skips
changes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from shared.models.conversations import MessageCreate, MessageUpdate
from shared.services.messages import add_reaction, delete_message, edit_message, remove_reaction, send_message
from tests.conversations_helpers import call, jwt_principal, make_user

WRITERS = 3
PER_WRITER = 40


class PollingClient:
    """The documented recipe: two numbers, each moved only by its own feed's answers."""

    def __init__(self, principal: Any, conversation_id: str) -> None:
        self.principal, self.conversation_id = principal, conversation_id
        self.messages: dict[int, dict[str, Any]] = {}
        # Reaction summaries by message id, kept for messages not held yet too: a message page carries no reactions.
        self.reactions: dict[int, list[dict[str, Any]]] = {}
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
            # A cursor alone pages backward (the default direction): a message poll pages on forward.
            query = {
                "cursor": reply.body["next_cursor"],
                "limit": 5,
                **({"direction": "forward"} if feed == "messages" else {}),
            }

    def start(self) -> None:
        page = call("GET", f"/v1/conversations/{self.conversation_id}/messages", self.principal).body["items"]
        self.messages = {m["id"]: m for m in page}
        self.messages_after = self.changes_after = max(self.messages, default=0)
        # The reactions of the messages read, read after them: a change made since is in the feed after that number.
        self.reactions = {m: _reactions(self.principal, m) for m in self.messages}

    def poll_messages(self) -> None:
        for message in self._drain("messages", self.messages_after):
            self.messages[message["id"]] = message
            self.messages_after = max(self.messages_after, message["id"])

    def held_reactions(self) -> dict[int, list[dict[str, Any]]]:
        return {m: self.reactions.get(m, []) for m in self.messages}

    def poll_changes(self) -> None:
        for change in self._drain("changes", self.changes_after):
            if change["kind"] == "deleted":
                self.messages.pop(change["message_id"], None)
                self.reactions.pop(change["message_id"], None)
            elif change["kind"] == "reactions":
                self.reactions[change["message_id"]] = change["reactions"]
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


def _reactions(who, message_id: int) -> list[dict[str, Any]]:
    reply = call("GET", f"/v1/messages/{message_id}/reactions", who)
    assert reply.status == 200, reply.body
    return reply.body["reactions"]


def _as_it_reads(bob, conversation_id: str) -> dict[int, dict[str, Any]]:
    fresh = PollingClient(bob, conversation_id)
    fresh.poll_messages()
    return fresh.messages


def _reactions_as_they_read(bob, client: PollingClient) -> dict[int, list[dict[str, Any]]]:
    return {m: _reactions(bob, m) for m in client.messages}


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
    react = f"/v1/messages/{early[0]['id']}/reactions"
    call("POST", react, alice, body={"emoji": "👍"})
    client = PollingClient(bob, conversation_id)
    client.start()
    # Between two polls: an edit and a delete of held messages, then a send; a reaction to a held message.
    call("PATCH", f"/v1/messages/{early[1]['id']}", alice, body={"content": "edited between polls"})
    call("DELETE", f"/v1/messages/{early[2]['id']}", alice)
    _send(alice, conversation_id, "sent between polls")
    call("POST", react, bob, body={"emoji": "👍"})
    client.poll_messages()
    # Between the message poll and the change poll: a send, its edit and a reaction to it, an edit of an older
    # message, a reaction taken back, a send deleted.
    late = _send(alice, conversation_id, "sent between the two feeds")
    call("PATCH", f"/v1/messages/{late['id']}", alice, body={"content": "edited before it was fetched"})
    call("POST", f"/v1/messages/{late['id']}/reactions", alice, body={"emoji": "🎉"})
    call("PATCH", f"/v1/messages/{early[0]['id']}", alice, body={"content": "edited again"})
    call("DELETE", f"{react}/%F0%9F%91%8D", alice)
    gone = _send(alice, conversation_id, "deleted before it was fetched")
    call("DELETE", f"/v1/messages/{gone['id']}", alice)
    client.poll_changes()
    client.poll_messages()
    client.poll_changes()
    assert client.messages == _as_it_reads(bob, conversation_id)
    assert client.held_reactions() == _reactions_as_they_read(bob, client)
    assert client.reactions[early[0]["id"]] == [{"emoji": "👍", "count": 1, "reacted_by_me": True}]
    assert client.reactions[late["id"]] == [{"emoji": "🎉", "count": 1, "reacted_by_me": False}]
    assert client.messages[early[0]["id"]]["content"] == "edited again"
    assert client.messages[late["id"]]["content"] == "edited before it was fetched"
    assert early[2]["id"] not in client.messages and gone["id"] not in client.messages


class Writer:
    """Sends, edits, reacts (as alice or as bob, the poller), sends, takes a reaction back and deletes, in turn."""

    EMOJI = ("👍", "🎉", "❤️")

    def __init__(self, app_container: Any, alice: Any, bob: Any, conversation_id: str, n: int) -> None:
        self.container, self.alice, self.bob = app_container, alice, bob
        self.conversation_id, self.n = conversation_id, n
        self.mine: list[int] = []
        self.reacted: list[tuple[Any, int]] = []  # (who, message id) of reactions not yet taken back

    def step(self, i: int) -> None:
        db, settings, emoji = self.container.db, self.container.settings, self.EMOJI[self.n % len(self.EMOJI)]
        if i % 6 in (0, 3) or not self.mine:
            body = MessageCreate(content=f"w{self.n}")
            self.mine.append(json.loads(send_message(db, settings, self.alice, self.conversation_id, body)[0])["id"])
        elif i % 6 == 1:
            edit_message(db, settings, self.alice, self.mine[-1], MessageUpdate(content=f"w{self.n}-{i}"))
        elif i % 6 == 2:
            who = self.bob if i % 4 == 2 else self.alice
            add_reaction(db, who, self.mine[-1], emoji)
            if (who, self.mine[-1]) not in self.reacted:
                self.reacted.append((who, self.mine[-1]))
        elif i % 6 == 4:
            who, message_id = self.reacted.pop(0) if self.reacted else (self.alice, self.mine[-1])
            if message_id in self.mine:
                remove_reaction(db, who, message_id, emoji)
        else:
            delete_message(db, self.alice, self.mine.pop(0))


def test_the_recipe_ends_with_the_conversation_as_it_reads_when_writers_send_edit_react_and_delete_concurrently(
    app_container, db
):
    alice, bob, conversation_id = _conversation(db)
    client = PollingClient(bob, conversation_id)
    client.start()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            writing = Writer(app_container, alice, bob, conversation_id, n)
            for i in range(PER_WRITER):
                writing.step(i)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120  # bounded in time: polls that find nothing new take a few milliseconds
    while True:
        finished = not any(t.is_alive() for t in threads)  # read before the polls: they are the last ones
        client.poll_messages()
        client.poll_changes()
        if finished or time.monotonic() > deadline:
            break
    for t in threads:
        t.join()
    assert errors == [] and finished
    assert client.messages == _as_it_reads(bob, conversation_id)
    assert client.messages  # every writer keeps some of its messages
    assert client.held_reactions() == _reactions_as_they_read(bob, client)
    assert any(client.held_reactions().values())  # some reactions are left to compare
