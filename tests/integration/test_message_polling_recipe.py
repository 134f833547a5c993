"""The client recipe of docs/conversations.md ("Polling both feeds"): a client that polls messages after the newest
message id it holds and changes after the newest change id it applied ends with the conversation as it reads (its
messages, their statuses and status times, and their reactions), whatever commits between and during its polls; one
number for both feeds skips changes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from shared.models.conversations import MessageCreate, MessageUpdate, ReadMark
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
PER_WRITER = 40
# A message's status only moves forward.
STATUS_RANK = {"sent": 0, "delivered": 1, "read": 2}


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
            elif change["kind"] == "edited" and change["message_id"] in self.messages:
                self.messages[change["message_id"]] = change["message"]
            elif change["kind"] in ("read", "delivered"):
                self._apply_mark(change)
            # Any other kind is skipped; its position still counts.
            self.changes_after = max(self.changes_after, change["id"])

    def _apply_mark(self, change: dict[str, Any]) -> None:
        """The documented rule: every held message up to the mark's message, not the reader's, whose status is below
        the mark's kind, takes it, stamped with the mark's time (a read also stamps delivered where unstamped)."""
        kind, at = change["kind"], change["changed_at"]
        for message_id, message in self.messages.items():
            if (
                message_id <= change["message_id"]
                and message["sender_id"] != change["user_id"]
                and STATUS_RANK[message["status"]] < STATUS_RANK[kind]
            ):
                times = dict(message["status_timestamps"])
                if kind == "read":
                    times.setdefault("delivered", at)
                times[kind] = at
                self.messages[message_id] = {**message, "status": kind, "status_timestamps": times}


def _conversation(db) -> tuple[Any, Any, str]:
    alice, bob, carol = (jwt_principal(make_user(db, name)) for name in ("alice", "bob", "carol"))
    body = {"kind": "group", "title": "polled", "participant_ids": [str(bob.user_id), str(carol.user_id)]}
    return alice, bob, call("POST", "/v1/conversations", alice, body=body).body["id"]


def _carol(db) -> Any:
    return jwt_principal(db.execute("SELECT id FROM users WHERE username = 'carol'").fetchone()[0])


def _mark(who, conversation_id: str, message_id: int, status: str = "read") -> None:
    body = {"message_id": message_id, "status": status}
    assert call("POST", f"/v1/conversations/{conversation_id}/read", who, body=body).status == 200


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
    # Marks between two polls, several by one reader: each stamps its own time, so replaying only the reader's
    # newest one would stamp the earlier ones' messages with the wrong time. Among them bob's own (the poller's) and
    # a mark that only moves carol's cursor; alice's messages and bob's are marked by each other and by carol.
    carol = _carol(db)
    before = _send(alice, conversation_id, "read by carol first")
    _mark(carol, conversation_id, before["id"], "delivered")
    _mark(carol, conversation_id, before["id"])
    mine = call("POST", f"/v1/conversations/{conversation_id}/messages", bob, body={"content": "bob's"}).body
    _mark(alice, conversation_id, mine["id"], "delivered")
    after = _send(alice, conversation_id, "read by carol later")
    _mark(carol, conversation_id, after["id"])
    _mark(bob, conversation_id, after["id"])  # only bob's cursor: carol read them
    _mark(carol, conversation_id, mine["id"])  # below carol's cursor: nothing
    client.poll_messages()
    client.poll_changes()
    assert client.messages == _as_it_reads(bob, conversation_id)
    assert client.held_reactions() == _reactions_as_they_read(bob, client)
    statuses = {m["id"]: m["status"] for m in client.messages.values()}
    assert statuses[before["id"]] == statuses[after["id"]] == statuses[mine["id"]] == "read"
    read_at = {m: client.messages[m]["status_timestamps"]["read"] for m in (before["id"], after["id"])}
    assert read_at[before["id"]] < read_at[after["id"]]
    assert client.reactions[early[0]["id"]] == [{"emoji": "👍", "count": 1, "reacted_by_me": True}]
    assert client.reactions[late["id"]] == [{"emoji": "🎉", "count": 1, "reacted_by_me": False}]
    assert client.messages[early[0]["id"]]["content"] == "edited again"
    assert client.messages[late["id"]]["content"] == "edited before it was fetched"
    assert early[2]["id"] not in client.messages and gone["id"] not in client.messages


class Writer:
    """Sends, edits, reacts (as alice or as bob, the poller), sends, takes a reaction back and deletes, in turn; and
    marks, as bob or carol, what was sent, delivered or read."""

    EMOJI = ("👍", "🎉", "❤️")

    def __init__(self, app_container: Any, alice: Any, bob: Any, carol: Any, conversation_id: str, n: int) -> None:
        self.container, self.alice, self.bob, self.carol = app_container, alice, bob, carol
        self.conversation_id, self.n = conversation_id, n
        self.mine: list[int] = []
        self.reacted: list[tuple[Any, int]] = []  # (who, message id) of reactions not yet taken back

    def step(self, i: int) -> None:
        db, settings, emoji = self.container.db, self.container.settings, self.EMOJI[self.n % len(self.EMOJI)]
        if i % 6 in (0, 3) or not self.mine:
            body = MessageCreate(content=f"w{self.n}")
            self.mine.append(json.loads(send_message(db, settings, self.alice, self.conversation_id, body)[0])["id"])
            if i % 6 == 3:
                # Up to the message just sent: bob and carol in turn, delivered twice, then read twice. Other writers'
                # messages below it may be deleted meanwhile, and marks of lower messages may commit after it.
                reader = self.bob if (i // 6) % 2 == 0 else self.carol
                mark = ReadMark(message_id=self.mine[-1], status="delivered" if (i // 12) % 2 == 0 else "read")
                mark_read(db, reader, self.conversation_id, mark)
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
    carol = _carol(db)
    client = PollingClient(bob, conversation_id)
    client.start()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            writing = Writer(app_container, alice, bob, carol, conversation_id, n)
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
    assert {m["status"] for m in client.messages.values()} - {"sent"}  # some marks to compare
