"""The authorization matrix, generated from one policy table: every conversation route x every kind of
caller x {own object, foreign object}; any cell whose answer differs from the policy fails the test.

Also: 1,000 random ids across the id-bearing routes all answer 404 with one body.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from shared import routes
from shared.auth.principal import Principal
from shared.storage import storage_key
from tests.authorization_matrix import CONVERSATION_GROUPS, mismatches, outcome, routes_in
from tests.conversations_helpers import (
    VALID_BODIES,
    anonymous_principal,
    api_key_principal,
    call,
    jwt_principal,
    make_user,
)

CALLERS = ("none", "anonymous", "outsider", "member", "admin", "platform_admin", "member_api_key")

# Who may do what to an object in a conversation they belong to. Anything in a conversation the caller is
# not part of is 404 for everyone; user-only routes are 401 for anonymous tokens; every route but the
# public one is 401 without credentials. The matrix below derives each cell from these rules.
#   user: any signed-in user, no object   participant: any participant   admin: conversation admins (403 for
#   members)   self: admins, or a member acting on themselves   creator: its creator (the admin here; 403 for
#   members)   owner: the owner of the file   public: everyone
POLICY: dict[tuple[str, str], str] = {
    ("GET", "/v1/conversations"): "user",
    ("POST", "/v1/conversations"): "user",
    ("GET", "/v1/conversations/{id}"): "participant",
    ("PATCH", "/v1/conversations/{id}"): "admin",
    ("DELETE", "/v1/conversations/{id}"): "admin",
    ("GET", "/v1/conversations/{id}/participants"): "participant",
    ("POST", "/v1/conversations/{id}/participants"): "admin",
    ("PATCH", "/v1/conversations/{id}/participants/{user_id}"): "admin",
    ("DELETE", "/v1/conversations/{id}/participants/{user_id}"): "self",
    ("POST", "/v1/conversations/{id}/read"): "participant",
    ("GET", "/v1/conversations/{id}/threads"): "participant",
    ("POST", "/v1/conversations/{id}/threads"): "participant",
    ("GET", "/v1/threads/{id}"): "participant",
    ("GET", "/v1/conversations/{id}/panels"): "participant",
    ("POST", "/v1/conversations/{id}/panels"): "participant",
    ("PATCH", "/v1/panels/{id}"): "creator",
    ("DELETE", "/v1/panels/{id}"): "creator",
    ("GET", "/v1/conversations/{id}/data-refs"): "participant",
    ("POST", "/v1/conversations/{id}/data-refs"): "participant",
    ("DELETE", "/v1/data-refs/{id}"): "creator",
    ("GET", "/v1/conversations/{id}/messages"): "participant",
    ("POST", "/v1/conversations/{id}/messages"): "participant",
    ("GET", "/v1/conversations/{id}/changes"): "participant",
    ("PATCH", "/v1/messages/{id}"): "participant",  # on the caller's own message
    ("DELETE", "/v1/messages/{id}"): "participant",  # on the caller's own message
    ("GET", "/v1/messages/{id}/edits"): "participant",
    ("GET", "/v1/messages/{id}/reactions"): "participant",
    ("POST", "/v1/messages/{id}/reactions"): "participant",
    ("DELETE", "/v1/messages/{id}/reactions/{emoji}"): "participant",
    ("PUT", "/v1/messages/{id}/feedback"): "participant",
    ("GET", "/v1/messages/{id}/feedback"): "participant",
    ("GET", "/v1/threads/{id}/messages"): "participant",
    ("GET", "/v1/search/messages"): "user",
    ("POST", "/v1/anonymous/conversations"): "public",
    ("POST", "/v1/files"): "user",
    ("GET", "/v1/files"): "user",
    ("GET", "/v1/files/{id}"): "owner",
    ("DELETE", "/v1/files/{id}"): "owner",
}

PARTICIPANTS = ("member", "admin", "member_api_key")


def expected(route: routes.Route, rule: str, caller: str, own: bool) -> str:
    """The answer the policy gives: "ok" (any 2xx) or a status code."""
    if rule == "public":
        return "ok"
    if caller == "none":
        return "401"
    if caller == "anonymous":
        if route.auth != "any":
            return "401"
        return "ok" if own else "404"
    if rule == "user":
        return "ok"
    if rule == "owner":
        return "ok" if own else "404"
    if not own or caller not in PARTICIPANTS:
        return "404"
    if rule in ("admin", "creator") and caller != "admin":
        return "403"
    return "ok"


@dataclass
class Target:
    principal: Principal | None
    conversation: uuid.UUID
    message: int
    thread: uuid.UUID
    panel: uuid.UUID
    ref: uuid.UUID
    file: uuid.UUID
    member: uuid.UUID


class World:
    """Fresh objects for every cell (routes delete things), made with plain SQL so a cell costs milliseconds."""

    def __init__(self, db: psycopg.Connection[Any]):
        self.db = db
        self.admin, self.member, self.outsider, self.stranger = (make_user(db) for _ in range(4))
        self.platform_admin = make_user(db, role="super_admin")

    def _one(self, statement: str, *params: Any) -> Any:
        return self.db.execute(statement, params).fetchone()[0]

    def conversation(self, kind: str, members: dict[uuid.UUID, str]) -> uuid.UUID:
        cid = self._one("INSERT INTO conversations (kind, title) VALUES (%s, 't') RETURNING id", kind)
        for user, role in members.items():
            self.db.execute(
                "INSERT INTO participants (conversation_id, user_id, role) VALUES (%s, %s, %s)", (cid, user, role)
            )
        return cid

    def file(self, owner: uuid.UUID) -> uuid.UUID:
        file_id = uuid.uuid4()
        return self._one(
            "INSERT INTO user_files (id, owner_id, original_name, size, storage_key) "
            "VALUES (%s, %s, 'f', 1, %s) RETURNING id",
            file_id,
            owner,
            storage_key(owner, file_id),
        )

    def principal(self, caller: str, anonymous_conversation: uuid.UUID) -> Principal | None:
        users = {
            "outsider": self.outsider,
            "member": self.member,
            "admin": self.admin,
            "platform_admin": self.platform_admin,
        }
        if caller == "none":
            return None
        if caller == "anonymous":
            return anonymous_principal(anonymous_conversation)
        if caller == "member_api_key":
            return api_key_principal(self.member)
        return jwt_principal(users[caller], role="super_admin" if caller == "platform_admin" else "user")

    def target(self, caller: str, own: bool) -> Target:
        # One commit for the cell's rows rather than one for each (the connection is in autocommit).
        with self.db.transaction():
            return self._target(caller, own)

    def _target(self, caller: str, own: bool) -> Target:
        principal_user = {"member": self.member, "member_api_key": self.member, "admin": self.admin}.get(caller)
        if own and caller == "anonymous":
            cid = self.conversation("anonymous", {})
            sender, creator, target_member = None, self.admin, self.member
        elif own:
            cid = self.conversation("group", {self.admin: "admin", self.member: "member"})
            sender, creator, target_member = principal_user or self.admin, self.admin, self.member
        else:
            cid = self.conversation("group", {self.stranger: "admin"})
            sender, creator, target_member = self.stranger, self.stranger, self.stranger
        anonymous_home = cid if own and caller == "anonymous" else self.conversation("anonymous", {})
        principal = self.principal(caller, anonymous_home)
        caller_user = principal.user_id if principal else None
        message = self._one(
            "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, 'hi') RETURNING id", cid, sender
        )
        if caller_user:
            self.db.execute(
                "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES (%s, %s, '👍')",
                (message, caller_user),
            )
            self.db.execute(
                "INSERT INTO message_feedback (message_id, user_id, rating) VALUES (%s, %s, 3)", (message, caller_user)
            )
        thread = self._one("INSERT INTO conversation_threads (conversation_id) VALUES (%s) RETURNING id", cid)
        panel = self._one(
            "INSERT INTO dashboard_panels (conversation_id, name, created_by) VALUES (%s, 'p', %s) RETURNING id",
            cid,
            creator,
        )
        file_owner = (caller_user if own else self.stranger) or self.stranger
        file_id = self.file(file_owner)
        ref = self._one(
            "INSERT INTO room_data_refs (conversation_id, file_id, created_by) VALUES (%s, %s, %s) RETURNING id",
            cid,
            self.file(creator),
            creator,
        )
        return Target(principal, cid, message, thread, panel, ref, file_id, target_member)


def _path(route: routes.Route, t: Target) -> str:
    by_prefix = {
        "/v1/conversations/": t.conversation,
        "/v1/messages/": t.message,
        "/v1/threads/": t.thread,
        "/v1/panels/": t.panel,
        "/v1/data-refs/": t.ref,
        "/v1/files/": t.file,
    }
    prefix = next(p for p in by_prefix if route.path.startswith(p))
    path = route.path.replace("{id}", str(by_prefix[prefix]), 1)
    return path.replace("{user_id}", str(t.member)).replace("{emoji}", quote("👍"))


def _body(method: str, path: str, t: Target, world: World) -> dict[str, Any] | None:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/conversations"): {"kind": "group", "title": "x"},
        ("PATCH", "/v1/conversations/{id}"): {"title": "renamed"},
        ("POST", "/v1/conversations/{id}/participants"): {"user_id": str(world.outsider)},
        ("PATCH", "/v1/conversations/{id}/participants/{user_id}"): {"role": "member"},
        ("POST", "/v1/conversations/{id}/read"): {"message_id": t.message},
        ("POST", "/v1/conversations/{id}/threads"): {"title": "t"},
        ("POST", "/v1/conversations/{id}/panels"): {"name": "p"},
        ("PATCH", "/v1/panels/{id}"): {"name": "q"},
        ("POST", "/v1/conversations/{id}/data-refs"): {"file_id": str(t.file)},
        ("POST", "/v1/conversations/{id}/messages"): {"content": "hello"},
        ("PATCH", "/v1/messages/{id}"): {"content": "edited"},
        ("POST", "/v1/messages/{id}/reactions"): {"emoji": "🎉"},
        ("PUT", "/v1/messages/{id}/feedback"): {"rating": 5},
        ("POST", "/v1/anonymous/conversations"): {},
        ("POST", "/v1/files"): {"name": "a.txt", "content_type": "text/plain", "size": 3},
    }
    return bodies.get((method, path))


def _our_routes() -> list[routes.Route]:
    return routes_in(CONVERSATION_GROUPS)


def test_policy_table_covers_every_route_of_these_groups():
    assert {(r.method, r.path) for r in _our_routes()} == set(POLICY)


@pytest.fixture
def uploads_unbounded(monkeypatch):
    """The matrix creates a file for every cell, each one more upload in progress for the same caller."""
    monkeypatch.setenv("FILE_UPLOADS_IN_PROGRESS_MAX", "10000")


def test_authorization_matrix_has_zero_cells_that_differ_from_the_policy(uploads_unbounded, app_container, db):
    world = World(db)
    calls = 0

    def cell(route: routes.Route, caller: str, own: bool) -> tuple[str, str]:
        nonlocal calls
        target = world.target(caller, own)
        path = _path(route, target) if "{" in route.path else route.path
        query = {"q": "hi"} if route.path == "/v1/search/messages" else None
        body = _body(route.method, route.path, target, world)
        reply = call(
            route.method, path, target.principal, body=body, query=query, source_ip=f"10.0.{calls // 250}.{calls % 250}"
        )
        calls += 1
        return outcome(reply), expected(route, POLICY[(route.method, route.path)], caller, own)

    cells, wrong = mismatches(_our_routes(), CALLERS, cell)
    assert cells == len(POLICY) * len(CALLERS) * 2
    assert wrong == []


ID_ROUTES_UUID = ("/v1/conversations/", "/v1/threads/", "/v1/panels/", "/v1/data-refs/", "/v1/files/")


def test_one_thousand_random_ids_all_answer_404_with_one_body(app_container, db):
    me = jwt_principal(make_user(db))
    rng = random.Random(20261129)
    id_routes = [r for r in _our_routes() if "{id}" in r.path]
    bodies = set()
    statuses = set()
    for i in range(1000):
        route = id_routes[i % len(id_routes)]
        if route.path.startswith("/v1/messages/"):
            random_id = str(rng.randrange(1, 2**63 - 1))
        else:
            random_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        path = route.path.replace("{id}", random_id).replace("{user_id}", str(uuid.uuid4())).replace("{emoji}", "x")
        reply = call(route.method, path, me, body=VALID_BODIES.get((route.method, route.path)))
        statuses.add(reply.status)
        bodies.add(repr(sorted(reply.body.items())) if isinstance(reply.body, dict) else repr(reply.body))
    assert statuses == {404}
    assert len(bodies) == 1


@pytest.mark.parametrize("bad", ["not-a-uuid", "0", "-1", "99999999999999999999999"])
def test_malformed_ids_are_the_same_404_when_they_cannot_be_ids(app_container, db, bad):
    me = jwt_principal(make_user(db))
    random_reply = call("GET", f"/v1/conversations/{uuid.uuid4()}", me)
    assert call("GET", f"/v1/conversations/{bad}", me).body == random_reply.body
    assert call("DELETE", f"/v1/messages/{bad}", me).body == random_reply.body
