"""Deleting an account: DELETE /v1/users/me (confirmed with the password) and DELETE /v1/admin/users/{id}.

What goes, what stays for other people, who may delete whom, and that every credential of the account stops.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg
import pytest

from shared.bootstrap import container
from shared.errors import NotFoundError
from shared.events.usage import UsageEvent
from shared.models.identity import AdminUserPatch
from shared.repositories.account_deletions import AccountDeletionsRepository
from shared.repositories.usage import UsageRepository, event_rows
from shared.repositories.users import UsersRepository
from shared.services import account_deletions
from shared.services import admin as admin_service
from shared.services.accounts import Client
from shared.services.maintenance import run_maintenance
from shared.services.messages import COUNTERPART_GONE
from shared.services.usage import record_usage
from tests.conversations_helpers import call, jwt_principal
from tests.helpers import upload_form, wait_for_a_lock_waiter
from tests.integration.identity.conftest import PASSWORD

DELETE_ME = {"current_password": PASSWORD}


def _delete_me(api, token, password=PASSWORD):
    return api.call("DELETE", "/v1/users/me", {"current_password": password}, token=token)


def _conversation(api, token, body):
    reply = api.call("POST", "/v1/conversations", body, token=token)
    assert reply.status == 201, reply.json
    return reply.json["id"]


def _send(api, token, conversation_id, content):
    reply = api.call("POST", f"/v1/conversations/{conversation_id}/messages", {"content": content}, token=token)
    assert reply.status == 201, reply.json
    return reply.json["id"]


def _count(db, statement, *params):
    return db.execute(statement, params).fetchone()[0]


# Self-deletion -------------------------------------------------------------------------------------------------


def test_a_user_deletes_their_account_with_their_password_and_every_credential_stops_at_once(api, db):
    pair = api.signup("amy")
    token, user_id = pair["access_token"], pair["user"]["id"]
    key = api.call("POST", "/v1/users/me/api-keys", {"name": "script"}, token=token).json["key"]
    assert api.call("PUT", "/v1/users/me/properties", {"tone": "dry"}, token=token).status == 200
    assert _delete_me(api, token).status == 204
    assert api.call("GET", "/v1/users/me", token=token).status == 401
    assert api.call("GET", "/v1/users/me", token=key).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}).status == 401
    assert api.call("POST", "/v1/auth/login", {"login": "amy", "password": PASSWORD}).status == 401
    left = _count(
        db,
        "SELECT (SELECT count(*) FROM users WHERE id = %s) + (SELECT count(*) FROM api_keys)"
        " + (SELECT count(*) FROM refresh_tokens) + (SELECT count(*) FROM user_properties)",
        user_id,
    )
    assert left == 0
    # The trail: the account's id, who asked, when; its connection logs stay with no user (docs/auth.md).
    trail = db.execute("SELECT user_id::text, role, requested_by, actor_id FROM account_deletions").fetchall()
    assert trail == [(user_id, "user", "user", None)]
    assert _count(db, "SELECT count(*) FROM connection_logs WHERE user_id IS NULL AND action = 'signup'") == 1
    # The name and the address are free again.
    assert api.signup("amy")["user"]["id"] != user_id


def test_an_api_key_deletes_its_owners_account_with_the_password_as_a_password_change_would(api, db):
    token = api.signup("ben")["access_token"]
    key = api.call("POST", "/v1/users/me/api-keys", {"name": "script"}, token=token).json["key"]
    assert _delete_me(api, key).status == 204
    assert _count(db, "SELECT count(*) FROM users") == 0


def test_a_wrong_password_is_the_password_changes_403_and_shares_its_limit(api, db, reconfigure):
    reconfigure(LOGIN_MAX_FAILURES_PER_ACCOUNT="2")
    token = api.signup("cai")["access_token"]
    wrong = _delete_me(api, token, "not the password")
    change = api.call(
        "POST", "/v1/users/me/password", {"current_password": "not it either", "new_password": "x" * 12}, token=token
    )
    assert wrong.status == change.status == 403 and wrong.json == change.json
    assert wrong.headers["content-type"] == "application/problem+json"
    # One budget for every route that asks for the password: the third guess, on either, waits.
    blocked = _delete_me(api, token)
    assert blocked.status == 429 and int(blocked.headers["retry-after"]) > 0
    assert _count(db, "SELECT count(*) FROM users") == 1
    logged = db.execute(
        "SELECT detail FROM connection_logs WHERE action = 'password_change_failed' ORDER BY created_at"
    ).fetchall()
    assert logged == [({"during": "account_deletion"},), (None,)]


@pytest.mark.parametrize("body", [None, {}, {"current_password": PASSWORD, "also": 1}, {"password": PASSWORD}])
def test_a_deletion_without_exactly_the_current_password_is_422_and_deletes_nothing(api, db, body):
    token = api.signup("dan")["access_token"]
    reply = api.call("DELETE", "/v1/users/me", body, token=token)
    assert reply.status == 422 and reply.headers["content-type"] == "application/problem+json"
    assert _count(db, "SELECT count(*) FROM users") == 1


def test_a_stale_authorizer_answer_for_a_deleted_or_deactivated_account_reaches_nothing(api, db, make_role):
    # In AWS the authorizer's Allow is cached for a minute: the handlers refuse a principal whose account is gone.
    gone = uuid.UUID(api.signup("eve")["user"]["id"])
    friend = api.signup("fox")
    group = _conversation(api, friend["access_token"], {"kind": "group", "title": "g", "participant_ids": [str(gone)]})
    stale = jwt_principal(gone)
    assert call("DELETE", "/v1/users/me", stale, body=DELETE_ME).status == 204
    assert call("GET", "/v1/users/me", stale).status == 404
    assert call("DELETE", "/v1/users/me", stale, body=DELETE_ME).status == 404
    assert call("POST", f"/v1/conversations/{group}/messages", stale, body={"content": "hi"}).status == 404
    assert call("POST", "/v1/users/me/api-keys", stale, body={"name": "k"}).status == 404
    assert call("PUT", "/v1/users/me/properties", stale, body={"tone": "x"}).status == 404
    assert _count(db, "SELECT count(*) FROM users WHERE id = %s", gone) == 0
    # Deactivated since the answer was cached: the account cannot be deleted by it either.
    _, root = api.with_role(make_role, "gil", "super_admin")
    held = api.signup("hal")["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{held}", {"is_active": False}, token=root).status == 200
    assert call("DELETE", "/v1/users/me", jwt_principal(uuid.UUID(held)), body=DELETE_ME).status == 401
    assert _count(db, "SELECT count(*) FROM users WHERE id = %s", held) == 1


# What stays for other people --------------------------------------------------------------------------------------


def test_a_deleted_users_messages_stay_in_a_group_for_the_others_who_get_an_admin(api, db):
    ann, bob, cal = (api.signup(name) for name in ("ann", "bob", "cal"))
    ann_token, ann_id = ann["access_token"], ann["user"]["id"]
    members = [bob["user"]["id"], cal["user"]["id"]]
    group = _conversation(api, ann_token, {"kind": "group", "title": "team", "participant_ids": members[:1]})
    added = api.call("POST", f"/v1/conversations/{group}/participants", {"user_id": members[1]}, token=ann_token)
    assert added.status == 201, added.json
    first = _send(api, ann_token, group, "hello from ann")
    keyed = {"content": "retry me", "idempotency_key": "1"}
    assert api.call("POST", f"/v1/conversations/{group}/messages", keyed, token=ann_token).status == 201
    _send(api, bob["access_token"], group, "hi ann")
    direct = _conversation(api, ann_token, {"kind": "direct", "participant_ids": [bob["user"]["id"]]})
    _send(api, ann_token, direct, "just us")
    alone = _conversation(api, ann_token, {"kind": "assistant", "title": "mine"})
    _send(api, ann_token, alone, "a note to myself")
    room = {"kind": "room", "title": "lab", "room_type": "viz", "room_token": "tok-ann", "participant_ids": members}
    shared_room = _conversation(api, ann_token, room)

    assert _delete_me(api, ann_token).status == 204

    page = api.call("GET", f"/v1/conversations/{group}/messages", token=bob["access_token"]).json["items"]
    by_id = {message["id"]: message for message in page}
    assert by_id[first]["content"] == "hello from ann" and by_id[first]["sender_id"] is None
    assert len(page) == 3
    assert _count(db, "SELECT count(*) FROM messages WHERE idempotency_key IS NOT NULL") == 0
    # Ann was the group's only admin: the person who joined first after her is its admin now.
    roles = dict(db.execute("SELECT user_id::text, role FROM participants WHERE conversation_id = %s", (group,)))
    assert roles == {bob["user"]["id"]: "admin", cal["user"]["id"]: "member"}
    assert api.call("PATCH", f"/v1/conversations/{group}", {"title": "ours"}, token=bob["access_token"]).status == 200
    # The direct conversation stays for Bob; the chat nobody else was in went; the room she owned is the others'.
    assert api.call("GET", f"/v1/conversations/{direct}/messages", token=bob["access_token"]).status == 200
    # ...to read: nobody is left to read a message sent there (the answer is the one a leave gives).
    to_nobody = api.call("POST", f"/v1/conversations/{direct}/messages", {"content": "ann?"}, token=bob["access_token"])
    assert (to_nobody.status, to_nobody.json["detail"]) == (409, COUNTERPART_GONE)
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", direct) == 1
    assert _count(db, "SELECT count(*) FROM conversations WHERE id = %s", alone) == 0
    assert db.execute("SELECT user_id FROM conversations WHERE id = %s", (shared_room,)).fetchone() == (None,)
    assert api.call("GET", f"/v1/conversations/{shared_room}", token=cal["access_token"]).status == 200
    assert _count(db, "SELECT count(*) FROM participants WHERE user_id = %s", ann_id) == 0


def test_the_group_of_a_deleted_only_admin_goes_to_the_first_active_member_before_any_deactivated_one(
    api, db, make_role
):
    # The earliest member is deactivated: as admin, the group would have nobody who can sign in to manage it.
    ann, dee, eve = (api.signup(name) for name in ("ann", "dee", "eve"))
    group = _conversation(
        api,
        ann["access_token"],
        {"kind": "group", "title": "g", "participant_ids": [dee["user"]["id"]]},
    )
    added = api.call(
        "POST", f"/v1/conversations/{group}/participants", {"user_id": eve["user"]["id"]}, token=ann["access_token"]
    )
    assert added.status == 201, added.json
    db.execute("UPDATE users SET is_active = false WHERE id = %s", (dee["user"]["id"],))
    assert _delete_me(api, ann["access_token"]).status == 204
    roles = dict(db.execute("SELECT user_id::text, role FROM participants WHERE conversation_id = %s", (group,)))
    assert roles == {dee["user"]["id"]: "member", eve["user"]["id"]: "admin"}


def test_a_conversation_with_only_a_model_left_goes_with_the_account(api, db):
    amy = api.signup("amy")
    model = api.signup("bot")["user"]["id"]
    db.execute("UPDATE users SET is_ai = true WHERE id = %s", (model,))
    body = {"kind": "group", "title": "with a model", "participant_ids": [model]}
    group = _conversation(api, amy["access_token"], body)
    assert _delete_me(api, amy["access_token"]).status == 204
    assert _count(db, "SELECT count(*) FROM conversations WHERE id = %s", group) == 0


def test_licences_that_seat_other_users_refuse_the_deletion_until_those_seats_are_removed(api, db, make_role):
    _, admin = api.with_role(make_role, "ada", "admin")
    owner = api.signup("oli")
    owner_token, owner_id = owner["access_token"], owner["user"]["id"]
    seated = api.signup("sam")["user"]["id"]
    licence = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 3, "owner_id": owner_id}, token=admin).json
    seats = f"/v1/licenses/{licence['id']}/seats"
    for user_id in (owner_id, seated):
        assert api.call("POST", seats, {"user_id": user_id}, token=owner_token).status == 201
    group = _conversation(api, owner_token, {"kind": "group", "title": "g", "participant_ids": [seated]})

    for reply in (_delete_me(api, owner_token), api.call("DELETE", f"/v1/admin/users/{owner_id}", token=admin)):
        assert reply.status == 409 and reply.headers["content-type"] == "application/problem+json"
        assert reply.json["licenses_seating_others"] == 1 and "seats" in reply.json["detail"]
    # Nothing changed: the group still has its admin, the account its licence and seats.
    assert _count(db, "SELECT count(*) FROM license_seats") == 2
    assert db.execute("SELECT role FROM participants WHERE user_id = %s", (owner_id,)).fetchone() == ("admin",)
    assert _count(db, "SELECT count(*) FROM account_deletions") == 0

    assert api.call("DELETE", f"{seats}/{seated}", token=owner_token).status == 204
    assert _delete_me(api, owner_token).status == 204  # its own seat goes with it
    assert _count(db, "SELECT (SELECT count(*) FROM licenses) + (SELECT count(*) FROM license_seats)") == 0
    assert _count(db, "SELECT count(*) FROM conversations WHERE id = %s", group) == 1


def test_a_seat_holders_deletion_frees_the_seat_and_leaves_the_licence(api, db, make_role):
    _, admin = api.with_role(make_role, "ada", "admin")
    owner = api.signup("oli")
    licence = api.call(
        "POST", "/v1/licenses", {"tier": "basic", "seats": 1, "owner_id": owner["user"]["id"]}, token=admin
    ).json
    holder = api.signup("sam")
    seats = f"/v1/licenses/{licence['id']}/seats"
    assert api.call("POST", seats, {"user_id": holder["user"]["id"]}, token=admin).status == 201
    assert _delete_me(api, holder["access_token"]).status == 204
    assert api.call("GET", "/v1/licenses", token=owner["access_token"]).json["items"][0]["seats_used"] == 0


def test_a_seat_given_while_the_deletion_waits_for_the_licence_refuses_the_deletion(api, db, make_role, database_url):
    # A seat assignment holds its licence's row from its count to its commit. The deletion takes the account's
    # licences before it counts their seats: counted first, it saw no seat, then its cascade deleted the licence with
    # the seat just given to someone else.
    owner = api.signup("oli")
    _, admin = api.with_role(make_role, "ada", "admin")
    licence = api.call(
        "POST", "/v1/licenses", {"tier": "basic", "seats": 2, "owner_id": owner["user"]["id"]}, token=admin
    ).json
    seated = api.signup("sam")["user"]["id"]
    out: dict[str, int] = {}
    with psycopg.connect(database_url) as assigning:
        assigning.execute("SELECT 1 FROM licenses WHERE id = %s FOR UPDATE", (licence["id"],))
        assigning.execute("INSERT INTO license_seats (license_id, user_id) VALUES (%s, %s)", (licence["id"], seated))
        deleting = threading.Thread(
            target=lambda: out.update(status=_delete_me(api, owner["access_token"]).status), name="deleting"
        )
        deleting.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 10
        while deleting.is_alive() and not _count(db, waiting) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert deleting.is_alive(), "the deletion did not wait for the licence"
        assigning.commit()
    deleting.join(10)
    assert out["status"] == 409
    assert _count(db, "SELECT count(*) FROM license_seats WHERE user_id = %s", seated) == 1


def test_a_conversation_the_account_creates_while_it_is_deleted_is_handed_over_as_the_others(api, db, database_url):
    # A group or room the account creates commits after the deletion has handed its conversations over, but before
    # the user row goes (the DELETE waits for the creation's foreign-key locks): without a second look, the group
    # kept its members and no admin, and the room went with its owner, taking the others' conversation with it.
    ann, bob = api.signup("ann"), api.signup("bob")
    ann_id, bob_id = ann["user"]["id"], bob["user"]["id"]
    group, room = uuid.uuid4(), uuid.uuid4()
    out: dict[str, int] = {}
    with psycopg.connect(database_url) as creating:
        creating.execute(
            "INSERT INTO conversations (id, kind, title, user_id, created_by, room_type, room_token) "
            "VALUES (%s, 'group', 'g', NULL, %s, NULL, NULL), (%s, 'room', 'r', %s, %s, 'viz', 'tok-ann')",
            (group, ann_id, room, ann_id, ann_id),
        )
        creating.execute(
            "INSERT INTO participants (conversation_id, user_id, role) VALUES "
            "(%s, %s, 'admin'), (%s, %s, 'member'), (%s, %s, 'admin'), (%s, %s, 'member')",
            (group, ann_id, group, bob_id, room, ann_id, room, bob_id),
        )
        deleting = threading.Thread(
            target=lambda: out.update(status=_delete_me(api, ann["access_token"]).status), name="the deletion"
        )
        deleting.start()
        wait_for_a_lock_waiter(db)
        assert deleting.is_alive(), "the deletion did not wait for the creation"
        creating.commit()
    deleting.join(10)
    assert out["status"] == 204
    roles = db.execute("SELECT conversation_id, role FROM participants WHERE user_id = %s", (bob_id,)).fetchall()
    assert sorted(roles) == sorted([(group, "admin"), (room, "admin")])
    assert db.execute("SELECT user_id FROM conversations WHERE id = %s", (room,)).fetchone() == (None,)


def test_a_send_in_flight_when_its_sender_is_deleted_is_kept_for_the_others_and_neither_waits_for_the_other(
    api, db, database_url
):
    # A send is one statement that locks its conversation's row and then names its sender (FOR KEY SHARE of the
    # account): the deletion waits for the conversation, and the send waits for nothing the deletion holds.
    ann, bob = api.signup("ann"), api.signup("bob")
    group = _conversation(
        api, ann["access_token"], {"kind": "group", "title": "g", "participant_ids": [bob["user"]["id"]]}
    )
    out: dict[str, int] = {}
    with psycopg.connect(database_url) as sending:
        sending.execute("SELECT 1 FROM conversations WHERE id = %s FOR NO KEY UPDATE", (group,))
        sending.execute(
            "INSERT INTO messages (conversation_id, sender_id, sender_kind, content) VALUES (%s, %s, 'user', 'last')",
            (group, ann["user"]["id"]),
        )
        deleting = threading.Thread(
            target=lambda: out.update(status=_delete_me(api, ann["access_token"]).status), name="deleting"
        )
        deleting.start()
        wait_for_a_lock_waiter(db)
        assert deleting.is_alive(), "the deletion did not wait for the send"
        sending.commit()
    deleting.join(10)
    assert out["status"] == 204
    kept = db.execute("SELECT content, sender_id FROM messages WHERE conversation_id = %s", (group,)).fetchall()
    assert kept == [("last", None)]
    roles = db.execute("SELECT user_id::text, role FROM participants WHERE conversation_id = %s", (group,)).fetchall()
    assert roles == [(bob["user"]["id"], "admin")]


def test_a_failure_part_way_leaves_the_account_and_everything_it_touched_as_it_was(api, db, monkeypatch):
    ann, bob = api.signup("ann"), api.signup("bob")
    group = _conversation(
        api, ann["access_token"], {"kind": "group", "title": "g", "participant_ids": [bob["user"]["id"]]}
    )
    alone = _conversation(api, ann["access_token"], {"kind": "assistant", "title": "mine"})
    api.call("POST", "/v1/files", {"name": "a.txt", "content_type": "text/plain", "size": 1}, token=ann["access_token"])

    def fail(self, user_id):
        raise RuntimeError("injected")

    with monkeypatch.context() as patched:
        patched.setattr(AccountDeletionsRepository, "delete_user", fail)
        assert _delete_me(api, ann["access_token"]).status == 500
    assert _count(db, "SELECT count(*) FROM users") == 2
    assert _count(db, "SELECT count(*) FROM conversations WHERE id IN (%s, %s)", group, alone) == 2
    bobs_role = db.execute("SELECT role FROM participants WHERE user_id = %s", (bob["user"]["id"],)).fetchone()
    assert bobs_role == ("member",)
    assert _count(db, "SELECT count(*) FROM user_files") == 1
    kept = "SELECT (SELECT count(*) FROM user_file_deletions) + (SELECT count(*) FROM account_deletions)"
    assert _count(db, kept) == 0
    assert api.call("GET", "/v1/users/me", token=ann["access_token"]).status == 200


# Usage ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [False, True], ids=["recorded-before", "batch-in-flight"])
def test_the_usage_of_a_deleted_account_is_folded_into_the_deleted_users_row_even_with_a_batch_in_flight(
    api, db, database_url, in_flight
):
    # The aggregator names the account in model_usage and usage_daily (FOR KEY SHARE of its row) before it commits:
    # the deletion waits for that batch, and its trigger folds the batch's rollups too; an event that arrives after
    # the account is gone is stored with no user (tests/integration/test_usage_aggregator.py).
    amy, bea = api.signup("amy"), api.signup("bea")
    amy_id, bea_id = uuid.UUID(amy["user"]["id"]), uuid.UUID(bea["user"]["id"])
    when = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    def event(user_id, tokens):
        return UsageEvent(
            user_id=user_id,
            model="m",
            provider="p",
            tokens_input=tokens,
            tokens_output=1,
            cost_usd=Decimal("0.5"),
            occurred_at=when,
        )

    record_usage(container().db, [event(amy_id, 10), event(bea_id, 1000)])
    late = event(amy_id, 20)
    out: dict[str, int] = {}
    with psycopg.connect(database_url) as aggregating:
        if in_flight:
            repo = UsageRepository(aggregating)
            repo.add_to_totals(repo.insert_events(event_rows([late])))
        deleting = threading.Thread(
            target=lambda: out.update(status=_delete_me(api, amy["access_token"]).status), name="deleting"
        )
        deleting.start()
        if in_flight:
            wait_for_a_lock_waiter(db)
            assert deleting.is_alive(), "the deletion did not wait for the batch"
        aggregating.commit()
        deleting.join(10)
    assert out["status"] == 204
    if not in_flight:
        assert record_usage(container().db, [late]).inserted == 1
    rollups = db.execute(
        "SELECT user_id, sum(requests_count), sum(prompt_tokens), sum(cost_usd) FROM usage_daily GROUP BY user_id"
    ).fetchall()
    assert sorted(rollups, key=str) == sorted(
        [(None, 2, 30, Decimal("1.0")), (bea_id, 1, 1000, Decimal("0.5"))], key=str
    )
    assert _count(db, "SELECT count(*) FROM model_usage WHERE user_id IS NULL") == 2
    # Recorded before the deletion, the event is amy's and counts her among the model's users under her rows' key; the
    # one that arrives after it names nobody and is kept with no key (docs/usage.md).
    keyed = "SELECT requests_count FROM usage_daily WHERE deleted_user_key IS NOT NULL"
    assert [row[0] for row in db.execute(keyed)] == ([2] if in_flight else [1])


def test_a_usage_batch_that_reaches_a_deleted_account_while_the_deletion_commits_retries_and_files_it_as_deleted(
    api, db, monkeypatch
):
    # The batch read the account in its snapshot, and its foreign-key check waits for the deletion holding the row:
    # once the deletion commits that check fails, the batch rolls back and runs again, storing no user.
    amy = api.signup("amy")
    amy_id = uuid.UUID(amy["user"]["id"])
    late = UsageEvent(
        user_id=amy_id,
        model="m",
        provider="p",
        tokens_input=20,
        tokens_output=1,
        cost_usd=Decimal("0.5"),
        occurred_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )
    paused, resume = threading.Event(), threading.Event()
    real = AccountDeletionsRepository.seal

    def pausing(self, user_id):
        real(self, user_id)
        paused.set()
        resume.wait(10)

    monkeypatch.setattr(AccountDeletionsRepository, "seal", pausing)
    out: dict[str, object] = {}
    deleting = threading.Thread(target=lambda: out.update(status=_delete_me(api, amy["access_token"]).status))
    deleting.start()
    assert paused.wait(10)
    recording = threading.Thread(target=lambda: out.update(recorded=record_usage(container().db, [late])))
    recording.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    deleting.join(10)
    recording.join(10)
    assert out["status"] == 204
    assert out["recorded"].inserted == 1  # type: ignore[attr-defined]
    rollups = db.execute("SELECT user_id, deleted_user_key, requests_count, prompt_tokens FROM usage_daily").fetchall()
    assert rollups == [(None, None, 1, 20)]


# Files ---------------------------------------------------------------------------------------------------------------


def test_the_bytes_of_a_deleted_accounts_files_are_deleted_by_maintenance_after_the_rows(api, db):
    amy = api.signup("amy")
    token, user_id = amy["access_token"], amy["user"]["id"]
    body = {"name": "a.txt", "content_type": "text/plain", "size": 3}
    created = api.call("POST", "/v1/files", body, token=token).json
    upload = created["upload"]
    content_type, form = upload_form(upload["fields"], b"abc", "text/plain")
    split = urlsplit(upload["url"])
    target = split.path + (f"?{split.query}" if split.query else "")
    stored = api.local.handle("POST", target, [("Content-Type", content_type)], form, "127.0.0.1")
    assert stored.status == 204
    assert api.call("GET", f"/v1/files/{created['file']['id']}", token=token).json["file"]["status"] == "uploaded"
    path = container().settings.files_dir / "users" / user_id / created["file"]["id"]
    assert path.is_file()

    assert _delete_me(api, token).status == 204
    assert path.is_file()  # nothing in storage goes before the rows are gone; maintenance deletes it
    assert _count(db, "SELECT count(*) FROM user_files") == 0
    kept = db.execute("SELECT storage_key, owner_id FROM user_file_deletions").fetchall()
    assert kept == [(f"users/{user_id}/{created['file']['id']}", None)]
    run_maintenance(container().db, container().settings)
    assert path.is_file()  # its upload URL is still live: bytes could still arrive through it
    db.execute("UPDATE user_file_deletions SET url_expires_at = now() - interval '2 hours'")
    result = run_maintenance(container().db, container().settings)
    assert result.deleted["user_file_bytes"] == 1 and not path.exists()
    assert _count(db, "SELECT count(*) FROM user_file_deletions") == 0


def test_a_deleted_accounts_messages_that_stay_no_longer_name_its_files(api, db):
    # messages.attachments keeps a copy of each file's id, name, type and size as sent: the deletion took the files
    # and their message_attachments rows, but the others still read the names of the deleted account's files.
    ann, bob = api.signup("ann"), api.signup("bob")
    group = _conversation(
        api, ann["access_token"], {"kind": "group", "title": "g", "participant_ids": [bob["user"]["id"]]}
    )
    body = {"name": "ann-medical-record.pdf", "content_type": "application/pdf", "size": 3}
    file_id = api.call("POST", "/v1/files", body, token=ann["access_token"]).json["file"]["id"]
    sent = {"content": "see attached", "attachments": [file_id]}
    reply = api.call("POST", f"/v1/conversations/{group}/messages", sent, token=ann["access_token"])
    assert reply.status == 201 and [a["file_id"] for a in reply.json["attachments"]] == [file_id]

    assert _delete_me(api, ann["access_token"]).status == 204
    (message,) = api.call("GET", f"/v1/conversations/{group}/messages", token=bob["access_token"]).json["items"]
    assert message["content"] == "see attached" and message["attachments"] == []
    assert _count(db, "SELECT count(*) FROM messages WHERE attachments <> '[]'::jsonb") == 0


# Administrators ------------------------------------------------------------------------------------------------------


def test_an_admin_deletes_a_plain_user_and_the_trail_names_the_admin(api, db, make_role):
    admin_id, admin = api.with_role(make_role, "ada", "admin")
    user = api.signup("ula")
    assert api.call("DELETE", f"/v1/admin/users/{user['user']['id']}", token=user["access_token"]).status == 403
    assert api.call("DELETE", f"/v1/admin/users/{user['user']['id']}", token=admin).status == 204
    assert api.call("GET", "/v1/users/me", token=user["access_token"]).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": user["refresh_token"]}).status == 401
    trail = db.execute("SELECT user_id::text, role, requested_by, actor_id::text FROM account_deletions").fetchall()
    assert trail == [(user["user"]["id"], "user", "admin", admin_id)]
    assert api.call("DELETE", f"/v1/admin/users/{user['user']['id']}", token=admin).status == 404
    # The trail outlives the administrator's account too.
    db.execute("DELETE FROM users WHERE id = %s", (admin_id,))
    assert db.execute("SELECT requested_by, actor_id FROM account_deletions").fetchall() == [("admin", None)]


@pytest.mark.parametrize("second", ["admin", "user"])
def test_a_second_deletion_of_an_account_being_deleted_waits_and_is_the_random_id_404(
    api, db, make_role, monkeypatch, second
):
    # Two administrators at once, or the user as an administrator deletes it: one deletes, the other finds nothing.
    admin_id, admin = api.with_role(make_role, "ada", "admin")
    api.with_role(make_role, "root", "super_admin")
    user = api.signup("ula")
    paused, resume = threading.Event(), threading.Event()
    real = AccountDeletionsRepository.seal

    def pausing(self, user_id):
        real(self, user_id)
        if threading.current_thread().name == "first":
            paused.set()
            resume.wait(10)

    monkeypatch.setattr(AccountDeletionsRepository, "seal", pausing)
    built, out = container(), {}
    acting = jwt_principal(uuid.UUID(admin_id), role="admin")
    first = threading.Thread(
        target=lambda: out.update(
            first=account_deletions.delete_account(built.db, built.settings, acting, uuid.UUID(user["user"]["id"]))
        ),
        name="first",
    )
    first.start()
    assert paused.wait(10)
    path, body, token = (
        (f"/v1/admin/users/{user['user']['id']}", None, admin)
        if second == "admin"
        else ("/v1/users/me", DELETE_ME, user["access_token"])
    )
    seconds = threading.Thread(target=lambda: out.update(second=api.call("DELETE", path, body, token=token)))
    seconds.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    first.join(10)
    seconds.join(10)
    assert "first" in out
    random_id = api.call("DELETE", f"/v1/admin/users/{uuid.uuid4()}", token=admin).json
    reply = out["second"]
    # The user's own request passed the authorizer while the account was still there: no account is a 404, as
    # for any handler reached with a cached answer once the account is gone.
    assert (reply.status, reply.json) == (404, random_id)
    assert _count(db, "SELECT count(*) FROM account_deletions") == 1


@pytest.mark.parametrize("first", ["promotion", "deletion"])
def test_a_plain_admins_deletion_racing_a_promotion_of_the_account_follows_whichever_commits_first(
    api, db, make_role, monkeypatch, first
):
    # Both lock the super_admin rows first: promoted first, the account is an admin only a super_admin deletes
    # (403); deleted first, the promotion finds no account (404).
    _, admin = api.with_role(make_role, "ada", "admin")
    root_id, _ = api.with_role(make_role, "root", "super_admin")
    target = uuid.UUID(api.signup("ula")["user"]["id"])
    paused, resume = threading.Event(), threading.Event()
    promoted_first = (UsersRepository, "set_role_and_active")
    cls, name = promoted_first if first == "promotion" else (AccountDeletionsRepository, "seal")
    real = getattr(cls, name)

    def pausing(self, *args):
        done = real(self, *args)
        if threading.current_thread().name == "first":
            paused.set()
            resume.wait(10)
        return done

    monkeypatch.setattr(cls, name, pausing)
    built, out = container(), {}
    root = jwt_principal(uuid.UUID(root_id), role="super_admin")

    def promote():
        try:
            admin_service.update_user(built.db, root, target, AdminUserPatch(role="admin"), Client())
            out["promotion"] = 200
        except NotFoundError:
            out["promotion"] = 404

    def delete():
        out["deletion"] = api.call("DELETE", f"/v1/admin/users/{target}", token=admin).status

    racing = [promote, delete] if first == "promotion" else [delete, promote]
    leading = threading.Thread(target=racing[0], name="first")
    leading.start()
    assert paused.wait(10)
    following = threading.Thread(target=racing[1])
    following.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    leading.join(10)
    following.join(10)
    if first == "promotion":
        assert out == {"promotion": 200, "deletion": 403}
        assert db.execute("SELECT role FROM users WHERE id = %s", (target,)).fetchone() == ("admin",)
    else:
        assert out == {"deletion": 204, "promotion": 404}
        assert _count(db, "SELECT count(*) FROM users WHERE id = %s", target) == 0


def test_only_a_super_admin_deletes_an_admin_and_nobody_deletes_themselves_without_a_password(api, db, make_role):
    admin_id, admin = api.with_role(make_role, "ada", "admin")
    other_id, _ = api.with_role(make_role, "abe", "admin")
    root_id, root = api.with_role(make_role, "root", "super_admin")
    second_root, _ = api.with_role(make_role, "root2", "super_admin")
    assert api.call("DELETE", f"/v1/admin/users/{other_id}", token=admin).status == 403
    assert api.call("DELETE", f"/v1/admin/users/{root_id}", token=admin).status == 403
    assert api.call("DELETE", f"/v1/admin/users/{admin_id}", token=admin).status == 403
    assert api.call("DELETE", f"/v1/admin/users/{root_id}", token=root).status == 403
    random = api.call("DELETE", f"/v1/admin/users/{uuid.uuid4()}", token=admin)
    assert random.status == 404 and random.headers["content-type"] == "application/problem+json"
    assert _count(db, "SELECT count(*) FROM users") == 4
    assert api.call("DELETE", f"/v1/admin/users/{other_id}", token=root).status == 204
    assert api.call("DELETE", f"/v1/admin/users/{second_root}", token=root).status == 204
    assert _count(db, "SELECT count(*) FROM users") == 2


def test_the_last_super_admin_cannot_delete_their_account_until_there_is_another(api, db, make_role):
    root_id, root = api.with_role(make_role, "root", "super_admin")
    last = _delete_me(api, root)
    assert last.status == 409 and "super_admin" in last.json["detail"]
    assert _count(db, "SELECT count(*) FROM users WHERE id = %s", root_id) == 1
    second_id, _ = api.with_role(make_role, "root2", "super_admin")
    # A deactivated super_admin is no other one.
    assert api.call("PATCH", f"/v1/admin/users/{second_id}", {"is_active": False}, token=root).status == 200
    assert _delete_me(api, root).status == 409
    assert api.call("PATCH", f"/v1/admin/users/{second_id}", {"is_active": True}, token=root).status == 200
    assert _delete_me(api, root).status == 204
    assert db.execute("SELECT id::text, role FROM users").fetchall() == [(second_id, "super_admin")]


def test_a_demoted_admin_with_a_stale_authorizer_answer_deletes_nobody(api, db, make_role, app_container):
    from shared.auth.principal import Principal
    from shared.errors import ForbiddenError
    from shared.services import account_deletions

    _, root = api.with_role(make_role, "root", "super_admin")
    rogue_id, _ = api.with_role(make_role, "rogue", "admin")
    victim = api.signup("vic")["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{rogue_id}", {"role": "user"}, token=root).status == 200
    stale = Principal(kind="jwt", user_id=uuid.UUID(rogue_id), role="admin")
    with pytest.raises(ForbiddenError):
        account_deletions.delete_account(app_container.db, app_container.settings, stale, uuid.UUID(victim))
    assert _count(db, "SELECT count(*) FROM users WHERE id = %s", victim) == 1
