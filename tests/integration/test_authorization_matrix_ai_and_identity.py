"""The authorization matrix of the AI and identity route groups (completions, records, catalog, licences, users,
usage, admin, openai), generated from one policy table as the conversations' matrix is
(test_conversation_authorization.py): every route x every kind of caller x {user A's object, a random id}; any
cell whose answer differs from the policy fails the test.

A resource the caller may not see is a 404 with the body of a random id; an admin-only route is a 403 for
anyone else (docs/ai.md, docs/auth.md, docs/usage.md).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from shared import bootstrap, routes
from shared.auth.passwords import hash_password
from shared.auth.principal import Principal
from shared.bootstrap import Container
from tests.ai_helpers import FakePublisher, add_model
from tests.authorization_matrix import (
    AI_AND_IDENTITY_GROUPS,
    CONVERSATION_GROUPS,
    UNMATRIXED_GROUPS,
    mismatches,
    outcome,
    routes_in,
)
from tests.conversations_helpers import (
    VALID_BODIES,
    Reply,
    anonymous_principal,
    api_key_principal,
    call,
    jwt_principal,
    make_user,
)

# owner: user A, whose object each cell names; owner_api_key: A through an API key; associate: user B, who shares
# A's object without owning it (a participant of A's conversation, a seat holder of A's licence); former: wrote in
# A's conversation, then left it (leaving deletes the participant row); stranger: a plain user with nothing of A's;
# admin and super_admin: platform roles.
CALLERS = ("none", "anonymous", "owner", "owner_api_key", "associate", "former", "stranger", "admin", "super_admin")
OWNERS = ("owner", "owner_api_key")
ADMINS = ("admin", "super_admin")

# Every route here needs a signed-in user: 401 without credentials and for an anonymous-conversation token (but
# participant_or_anonymous_off: a participant's, and 403 for an anonymous token while anonymous AI is off).
#   user: any signed-in user, no object   session: signed in with an access token (an API key gets 403)
#   admin: platform admins (403 for everyone else, whatever the id)   listed: anyone signed in, on an entry
#   every user sees (an active model or template)   owner: A only   participant: A and the other participants of
#   A's conversation   licence_manager: the licence's owner and admins   licence_admin: admins; the licence's
#   owner gets 403 (it may see it); anyone else the 404   account: any signed-in user deletes their own account,
#   but A's licence seats B, so A gets 409 (docs/auth.md, "Deleting an account")   admin_delete: as admin, but
#   deleting A is 409 for the same reason   seat_holder: the holder of a seat of A's licence (the associate); A
#   and admins, who hold none, get the 404 as anyone else does
# A random id is a 404 for whoever may use the route at all.
POLICY: dict[tuple[str, str], str] = {
    # An anonymous conversation's token may ask in its own conversation's threads (tests/integration/
    # test_ai_anonymous.py) once ANONYMOUS_AI_MODEL_ID is set; unset, as here, it is 403 whatever the thread.
    ("POST", "/v1/threads/{id}/completions"): "participant_or_anonymous_off",
    ("GET", "/v1/code-executions"): "user",
    ("POST", "/v1/code-executions"): "participant",  # in A's conversation
    ("GET", "/v1/code-executions/{id}"): "participant",
    ("PATCH", "/v1/code-executions/{id}"): "owner",  # changed by its author only
    ("GET", "/v1/analysis-reports"): "user",
    ("POST", "/v1/analysis-reports"): "user",
    ("GET", "/v1/analysis-reports/{id}"): "owner",
    ("PATCH", "/v1/analysis-reports/{id}"): "owner",
    ("GET", "/v1/model-configurations"): "user",
    ("POST", "/v1/model-configurations"): "admin",
    ("PATCH", "/v1/model-configurations/{id}"): "admin",
    ("GET", "/v1/deployed-resources"): "admin",
    ("POST", "/v1/deployed-resources"): "admin",
    ("GET", "/v1/deployed-resources/{id}"): "admin",
    ("PATCH", "/v1/deployed-resources/{id}"): "admin",
    ("DELETE", "/v1/deployed-resources/{id}"): "admin",
    ("GET", "/v1/agent-templates"): "user",
    ("POST", "/v1/agent-templates"): "admin",
    ("PATCH", "/v1/agent-templates/{id}"): "admin",
    ("GET", "/v1/users/me/agent-templates/{id}"): "listed",
    ("PUT", "/v1/users/me/agent-templates/{id}"): "listed",
    ("POST", "/v1/licenses"): "admin",  # for A
    ("GET", "/v1/licenses"): "user",
    ("PATCH", "/v1/licenses/{id}"): "licence_admin",
    ("DELETE", "/v1/licenses/{id}"): "licence_admin",
    ("GET", "/v1/licenses/{id}/seats"): "licence_manager",
    ("POST", "/v1/licenses/{id}/seats"): "licence_manager",
    ("DELETE", "/v1/licenses/{id}/seats/{user_id}"): "licence_manager",  # the associate's seat
    ("GET", "/v1/users/me/seats"): "user",  # the caller's own seats: the associate's names A's licence
    ("DELETE", "/v1/users/me/seats/{id}"): "seat_holder",  # the caller's own seat of A's licence
    ("GET", "/v1/users/me"): "user",
    ("PATCH", "/v1/users/me"): "user",
    ("DELETE", "/v1/users/me"): "account",
    ("POST", "/v1/users/me/password"): "user",
    ("POST", "/v1/users/me/logout-all"): "user",
    ("GET", "/v1/users/me/properties"): "user",
    ("PUT", "/v1/users/me/properties"): "user",
    ("GET", "/v1/users/me/api-keys"): "user",
    ("POST", "/v1/users/me/api-keys"): "session",
    ("DELETE", "/v1/users/me/api-keys/{id}"): "owner",
    ("GET", "/v1/users/me/connection-logs"): "user",
    ("GET", "/v1/admin/users"): "admin",
    ("PATCH", "/v1/admin/users/{id}"): "admin",  # on A, a plain user
    ("DELETE", "/v1/admin/users/{id}"): "admin_delete",
    ("GET", "/v1/admin/connection-logs"): "admin",
    ("GET", "/v1/usage/me"): "user",
    ("GET", "/v1/admin/usage/monthly"): "admin",
    ("GET", "/v1/admin/usage/models"): "admin",
    ("POST", "/v1/chat/completions"): "user",
    ("GET", "/v1/models"): "user",
    ("GET", "/v1/models/{id}"): "listed",
}

# Routes without an id whose body names one of A's objects: "foreign" names a random one instead.
BODY_NAMES_OBJECT = {("POST", "/v1/code-executions"), ("POST", "/v1/licenses")}
# Of those, the ones whose body names a user for an admin (who may see every user): a random one is a bad body, 422.
BODY_NAMES_USER = {("POST", "/v1/licenses")}


def names_object(route: routes.Route) -> bool:
    return "{" in route.path or (route.method, route.path) in BODY_NAMES_OBJECT


def _for_admins(route: routes.Route, rule: str, caller: str, own: bool) -> str:
    if caller not in ADMINS:
        return "403"
    if own and rule == "admin_delete":
        return "409"
    if own or not names_object(route):
        return "ok"
    return "422" if (route.method, route.path) in BODY_NAMES_USER else "404"


def expected(route: routes.Route, rule: str, caller: str, own: bool) -> str:
    """The answer the policy gives: "ok" (any 2xx) or a status code."""
    if caller == "anonymous" and rule == "participant_or_anonymous_off":
        return "403"  # anonymous AI is off by default: refused before the thread is looked at
    if caller in ("none", "anonymous"):
        return "401"
    if rule == "participant_or_anonymous_off":
        rule = "participant"
    if rule == "user":
        return "ok"
    if rule == "session":
        return "403" if caller == "owner_api_key" else "ok"
    if rule == "account":
        return "409" if caller in OWNERS else "ok"
    if rule in ("admin", "admin_delete"):
        return _for_admins(route, rule, caller, own)
    if not own:
        return "404"
    allowed = {
        "listed": CALLERS,
        "owner": OWNERS,
        "participant": (*OWNERS, "associate"),
        "licence_manager": (*OWNERS, *ADMINS),
        "licence_admin": ADMINS,
        "seat_holder": ("associate",),
    }[rule]
    if caller in allowed:
        return "ok"
    return "403" if rule == "licence_admin" and caller in OWNERS else "404"


PASSWORD = "correct horse battery"
MODEL = "local-echo"


@dataclass
class Target:
    """A's objects for one cell (routes change and delete them), and the caller."""

    principal: Principal | None
    caller_user: uuid.UUID | None
    ids: dict[str, str]
    spare_user: uuid.UUID


class World:
    """Fresh users and objects for every cell, made with plain SQL so a cell costs milliseconds: routes change
    passwords, end sessions and delete things, and an admin's rights are read again from its row."""

    def __init__(self, db: psycopg.Connection[Any]):
        self.db = db
        self.password_hash = hash_password(PASSWORD, rounds=4)
        self.model = add_model(db, MODEL)
        self.cells = 0

    def _one(self, statement: str, *params: Any) -> Any:
        row = self.db.execute(statement, params).fetchone()
        assert row is not None
        return row[0]

    def _user(self, role: str = "user") -> uuid.UUID:
        user = make_user(self.db, role=role)
        self.db.execute("UPDATE users SET password_hash = %s WHERE id = %s", (self.password_hash, user))
        return user

    def target(self, caller: str) -> Target:
        # One commit for the cell's rows rather than one for each (the connection is in autocommit).
        with self.db.transaction():
            return self._target(caller)

    def _target(self, caller: str) -> Target:
        self.cells += 1
        tag = f"{self.cells}-{uuid.uuid4().hex[:8]}"
        a, b = self._user(), self._user()
        former = self._user()
        users = {"owner": a, "owner_api_key": a, "associate": b, "former": former, "stranger": self._user()}
        users |= {"admin": self._user("admin"), "super_admin": self._user("super_admin")}
        conversation = self._one(
            "INSERT INTO conversations (kind, title, created_by) VALUES ('group', 't', %s) RETURNING id", a
        )
        for user, role in ((a, "admin"), (b, "member")):
            self.db.execute(
                "INSERT INTO participants (conversation_id, user_id, role) VALUES (%s, %s, %s)",
                (conversation, user, role),
            )
        self.db.execute(
            "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, 'bye')", (conversation, former)
        )
        message = self._one(
            "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, 'hi') RETURNING id",
            conversation,
            a,
        )
        ids = {
            "conversation": conversation,
            "message": message,
            "thread": self._one(
                "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%s, %s) RETURNING id",
                conversation,
                a,
            ),
            "execution": self._one(
                "INSERT INTO code_executions (conversation_id, message_id, user_id, initial_code) "
                "VALUES (%s, %s, %s, 'print(1)') RETURNING id",
                conversation,
                message,
                a,
            ),
            "report": self._one(
                "INSERT INTO deep_analysis_reports (report_uuid, user_id, goal) VALUES (%s, %s, 'g') RETURNING id",
                f"r-{tag}",
                a,
            ),
            "licence": self._one(
                "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats) "
                "VALUES (%s, 'cfl_x', %s, 'premium', 10) RETURNING id",
                a,
                f"h-{tag}",
            ),
            "api_key": self._one(
                "INSERT INTO api_keys (user_id, prefix, key_hash) VALUES (%s, %s, %s) RETURNING id",
                a,
                f"cfb_{tag}",
                f"h-{tag}",
            ),
            "resource": self._one(
                "INSERT INTO deployed_resources (resource_name, resource_type) VALUES (%s, 'bedrock') RETURNING id",
                f"r-{tag}",
            ),
            "template": self._one(
                "INSERT INTO agent_templates (template_name, description, prompt_template) "
                "VALUES (%s, 'd', 'p') RETURNING id",
                f"t-{tag}",
            ),
            "model": self.model,
            "model_name": MODEL,
            "user": a,
            "seat_holder": b,
            "tag": tag,
        }
        self.db.execute("INSERT INTO license_seats (license_id, user_id) VALUES (%s, %s)", (ids["licence"], b))
        principal: Principal | None = None
        if caller == "anonymous":
            principal = anonymous_principal(
                self._one("INSERT INTO conversations (kind) VALUES ('anonymous') RETURNING id")
            )
        elif caller == "owner_api_key":
            principal = api_key_principal(a)
        elif caller != "none":
            principal = jwt_principal(users[caller], role=caller if caller in ADMINS else "user")
        caller_user = principal.user_id if principal else None
        return Target(principal, caller_user, {k: str(v) for k, v in ids.items()}, self._user())


# Which of A's objects the {id} of a path names, by the path's start.
ID_OF = {
    "/v1/threads/": "thread",
    "/v1/code-executions/": "execution",
    "/v1/analysis-reports/": "report",
    "/v1/model-configurations/": "model",
    "/v1/deployed-resources/": "resource",
    "/v1/agent-templates/": "template",
    "/v1/users/me/agent-templates/": "template",
    "/v1/licenses/": "licence",
    "/v1/users/me/api-keys/": "api_key",
    "/v1/users/me/seats/": "licence",
    "/v1/admin/users/": "user",
    "/v1/models/": "model_name",
}


def _path(route: routes.Route, t: Target, own: bool) -> str:
    if "{" not in route.path:
        return route.path
    kind = ID_OF[max((p for p in ID_OF if route.path.startswith(p)), key=len)]
    object_id = t.ids[kind] if own else (f"model-{uuid.uuid4().hex}" if kind == "model_name" else str(uuid.uuid4()))
    return route.path.replace("{id}", object_id).replace("{user_id}", t.ids["seat_holder"])


def _body(route: routes.Route, t: Target, own: bool) -> dict[str, Any] | None:
    tag = t.ids["tag"]
    foreign = str(uuid.uuid4())
    template = {"template_name": f"n-{tag}-{own}", "description": "d", "prompt_template": "p"}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/threads/{id}/completions"): {"content": "hi", "model_id": MODEL},
        ("POST", "/v1/code-executions"): {
            "conversation_id": t.ids["conversation"] if own else foreign,
            "message_id": int(t.ids["message"]),
        },
        ("POST", "/v1/analysis-reports"): {"report_uuid": f"n-{tag}-{own}", "goal": "g"},
        ("PATCH", "/v1/analysis-reports/{id}"): {"status": "running"},
        ("POST", "/v1/model-configurations"): {"model_id": f"m-{tag}-{own}"},
        ("POST", "/v1/deployed-resources"): {"resource_name": "r", "resource_type": "bedrock"},
        ("POST", "/v1/agent-templates"): template,
        ("POST", "/v1/licenses"): {"tier": "premium", "seats": 1, "owner_id": t.ids["user"] if own else foreign},
        ("POST", "/v1/licenses/{id}/seats"): {"user_id": str(t.spare_user)},
        ("PATCH", "/v1/users/me"): {"name": "n"},
        ("DELETE", "/v1/users/me"): {"current_password": PASSWORD},
        ("POST", "/v1/users/me/password"): {"current_password": PASSWORD, "new_password": PASSWORD + "!"},
        ("PUT", "/v1/users/me/properties"): {"tone": "dry"},
        ("POST", "/v1/users/me/api-keys"): {"name": "k"},
        ("POST", "/v1/chat/completions"): {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    }
    return bodies.get((route.method, route.path), VALID_BODIES.get((route.method, route.path)))


QUERIES = {"/v1/admin/usage/monthly": {"month": "2026-11"}}

# A's objects no list may show anyone but A, but for the callers and kinds LIST_SHOWS names.
PRIVATE = ("user", "conversation", "thread", "execution", "report", "licence", "api_key")
LIST_SHOWS: dict[str, dict[str, tuple[str, ...]]] = {
    "/v1/licenses": {caller: PRIVATE for caller in ADMINS},
    # The seat holder sees the licence it holds a seat of, never its owner (A's id).
    "/v1/users/me/seats": {"associate": ("licence",)},
}


def _leaks(route: routes.Route, caller: str, t: Target, reply: Reply) -> bool:
    """Whether a list answered to someone other than A names one of A's private objects it may not show them."""
    if route.method != "GET" or "{" in route.path or caller in OWNERS:
        return False
    shown = LIST_SHOWS.get(route.path, {}).get(caller, ())
    text = json.dumps(reply.body)
    return any(t.ids[kind] in text for kind in PRIVATE if kind not in shown)


def test_policy_table_covers_every_route_of_these_groups() -> None:
    assert {(r.method, r.path) for r in routes_in(AI_AND_IDENTITY_GROUPS)} == set(POLICY)


def test_every_route_group_with_a_signed_in_route_is_in_a_matrix() -> None:
    matrixed = {*CONVERSATION_GROUPS, *AI_AND_IDENTITY_GROUPS}
    for group in routes.ROUTE_GROUPS:
        if group.name in UNMATRIXED_GROUPS:
            assert {route.auth for route in group.routes} == {"public"}, group.name
        else:
            assert group.name in matrixed, f"route group {group.name} is in no authorization matrix"


@pytest.fixture
def publisher(app_container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePublisher]:
    """Completions publish their usage here rather than to the local queue's background thread."""
    kept = FakePublisher()
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()
    monkeypatch.setattr(bootstrap, "_usage_publisher", lambda built: kept)
    yield kept
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()


def test_authorization_matrix_has_zero_cells_that_differ_from_the_policy(
    publisher: FakePublisher, db: psycopg.Connection[Any]
) -> None:
    world = World(db)
    our_routes = routes_in(AI_AND_IDENTITY_GROUPS)
    random_id_body = call("GET", f"/v1/code-executions/{uuid.uuid4()}", jwt_principal(make_user(db))).body

    def cell(route: routes.Route, caller: str, own: bool) -> tuple[str, str]:
        target = world.target(caller)
        reply = call(
            route.method,
            _path(route, target, own),
            target.principal,
            body=_body(route, target, own),
            query=QUERIES.get(route.path),
            source_ip=f"10.1.{world.cells // 250}.{world.cells % 250}",
        )
        got = outcome(reply)
        if got == "404" and reply.body != random_id_body:
            got = "404 with another body than a random id's"
        elif got == "ok" and _leaks(route, caller, target, reply):
            got = "ok listing A's objects"
        return got, expected(route, POLICY[(route.method, route.path)], caller, own)

    cells, wrong = mismatches(our_routes, CALLERS, cell)
    assert cells == len(POLICY) * len(CALLERS) * 2
    assert wrong == []


def test_random_ids_all_answer_404_with_one_body_for_whoever_may_use_the_route(
    publisher: FakePublisher, db: psycopg.Connection[Any]
) -> None:
    """A signed-in admin (who may use every route) and a plain user on the routes that are not admin-only."""
    admin = jwt_principal(make_user(db, role="super_admin"), role="super_admin")
    user = jwt_principal(make_user(db))
    rng = random.Random(20261201)
    bodies: set[str] = set()
    statuses: set[int] = set()
    id_routes = [r for r in routes_in(AI_AND_IDENTITY_GROUPS) if "{id}" in r.path]
    for i in range(200):
        route = id_routes[i % len(id_routes)]
        rule = POLICY[(route.method, route.path)]
        caller = admin if rule in ("admin", "admin_delete", "licence_admin") or i % 2 else user
        random_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        path = route.path.replace("{id}", random_id).replace("{user_id}", str(uuid.uuid4()))
        reply = call(route.method, path, caller, body=VALID_BODIES.get((route.method, route.path)))
        statuses.add(reply.status)
        bodies.add(repr(sorted(reply.body.items())) if isinstance(reply.body, dict) else repr(reply.body))
    assert statuses == {404}
    assert len(bodies) == 1
