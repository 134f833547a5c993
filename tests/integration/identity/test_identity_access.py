"""The caller's account, API keys, admin rules, licences and seats, and 404s that reveal nothing."""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid

import psycopg
import pytest

from shared.auth.principal import Principal
from shared.errors import ConflictError, ForbiddenError
from shared.models.identity import AdminUserPatch, LicensePatch
from shared.services import accounts, admin, licenses
from tests.conversations_helpers import call, jwt_principal
from tests.helpers import wait_for_a_lock_waiter
from tests.integration.identity.conftest import PASSWORD


def test_profile_patch_changes_only_given_fields_and_refuses_privileged_ones(api, db):
    token = api.signup("mia", name="Mia", country="NZ")["access_token"]
    patched = api.call("PATCH", "/v1/users/me", {"organization": "Acme"}, token=token)
    assert patched.status == 200 and patched.json["organization"] == "Acme" and patched.json["country"] == "NZ"
    for extra in ({"role": "admin"}, {"is_active": False}, {"id": str(uuid.uuid4())}, {"password_hash": "x"}):
        assert api.call("PATCH", "/v1/users/me", extra, token=token).status == 422
    assert db.execute("SELECT role FROM users WHERE username = 'mia'").fetchone()[0] == "user"


def test_avatar_url_is_422_and_nothing_changes_when_it_is_not_an_http_link(api, db):
    # An admin console renders users' avatars: a stored script URL would run in the admin's session.
    token = api.signup("ivy")["access_token"]
    refused = api.call("PATCH", "/v1/users/me", {"avatar_url": "javascript:alert(1)"}, token=token)
    assert refused.status == 422 and refused.headers["content-type"] == "application/problem+json"
    assert db.execute("SELECT avatar_url FROM users WHERE username = 'ivy'").fetchone()[0] is None
    kept = api.call("PATCH", "/v1/users/me", {"avatar_url": "https://cdn.example.com/ivy.png"}, token=token)
    assert kept.status == 200 and kept.json["avatar_url"] == "https://cdn.example.com/ivy.png"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/auth/signup", {"username": "nul", "email": "n\x00l@example.com", "password": PASSWORD}, "email"),
        (
            "POST",
            "/v1/auth/signup",
            {"username": "nul", "email": "nul@example.com", "password": PASSWORD, "name": "\x00"},
            "name",
        ),
        ("POST", "/v1/auth/login", {"login": "owner\x00", "password": PASSWORD}, "login"),
        ("PATCH", "/v1/users/me", {"organization": "Acme\x00"}, "organization"),
        ("PUT", "/v1/users/me/properties", {"tone": "dry", "additional_info": "a\x00b"}, "additional_info"),
    ],
)
def test_text_with_a_nul_character_is_a_422_naming_the_field_and_writes_nothing(api, db, method, path, body, field):
    # PostgreSQL text cannot hold U+0000: refused by the schema, with the field's loc, not by the database.
    token = api.signup("owner", organization="Before")["access_token"]
    refused = api.call(method, path, body, token=token)
    assert refused.status == 422 and refused.headers["content-type"] == "application/problem+json"
    assert [error["loc"] for error in refused.json["errors"]] == [["body", field]]
    assert "NUL" in refused.json["errors"][0]["msg"]
    assert db.execute("SELECT username, organization FROM users").fetchall() == [("owner", "Before")]
    assert db.execute("SELECT count(*) FROM user_properties").fetchone() == (0,)


def test_properties_are_empty_then_replaced(api):
    token = api.signup("nina")["access_token"]
    assert api.call("GET", "/v1/users/me/properties", token=token).json["tone"] is None
    put = api.call("PUT", "/v1/users/me/properties", {"tone": "friendly", "additional_info": "likes cats"}, token=token)
    assert put.status == 200 and put.json["tone"] == "friendly"
    assert api.call("GET", "/v1/users/me/properties", token=token).json["additional_info"] == "likes cats"


@pytest.mark.parametrize("header", ["Authorization", "x-api-key"])
def test_api_key_is_shown_once_works_and_stops_at_once_when_revoked(api, db, header):
    token = api.signup("olga")["access_token"]
    created = api.call("POST", "/v1/users/me/api-keys", {"name": "ci"}, token=token)
    assert created.status == 201 and created.json["key"].startswith("cfb_")
    key = created.json["key"]
    listed = api.call("GET", "/v1/users/me/api-keys", token=token)
    assert listed.json["items"][0]["prefix"] == key[:12] and key not in listed.raw.decode()
    assert "key_hash" not in listed.raw.decode() and "key" not in listed.json["items"][0]
    use = {"Authorization": f"Bearer {key}"} if header == "Authorization" else {"x-api-key": key}
    assert api.call("GET", "/v1/users/me", headers=use).status == 200
    assert api.call("DELETE", f"/v1/users/me/api-keys/{created.json['id']}", token=token).status == 204
    assert api.call("GET", "/v1/users/me", headers=use).status == 401


def test_api_key_cannot_create_api_keys_when_it_is_the_credential(api, db):
    # A key handed to CI with an expiry, or leaked, would otherwise mint keys that never expire and outlive
    # its revocation. Keys are made from a signed-in session; a key may still list keys and revoke itself.
    token = api.signup("oren")["access_token"]
    ci = api.call("POST", "/v1/users/me/api-keys", {"name": "ci", "expires_at": "2099-01-01T00:00:00Z"}, token=token)
    key = ci.json["key"]
    minted = api.call("POST", "/v1/users/me/api-keys", {"name": "forever"}, token=key)
    assert minted.status == 403 and minted.headers["content-type"] == "application/problem+json"
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1
    assert api.call("GET", "/v1/users/me/api-keys", token=key).status == 200
    assert api.call("DELETE", f"/v1/users/me/api-keys/{ci.json['id']}", token=key).status == 204


def test_api_key_with_past_expiry_is_refused_at_creation(api):
    token = api.signup("pia")["access_token"]
    reply = api.call("POST", "/v1/users/me/api-keys", {"expires_at": "2020-01-01T00:00:00Z"}, token=token)
    assert reply.status == 422
    naive = api.call("POST", "/v1/users/me/api-keys", {"expires_at": "2099-01-01T00:00:00"}, token=token)
    assert naive.status == 422 and "time zone" in naive.raw.decode()


def test_an_expiry_past_the_year_9999_in_utc_is_a_422_naming_expires_at_and_stores_nothing(api, make_role, db):
    _, admin = api.with_role(make_role, "vera", "admin")
    licence = api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 1}, token=admin).json
    late = {"expires_at": "9999-12-31T23:59:59-12:00"}  # 10000-01-01T11:59:59Z
    refused = [
        api.call("POST", "/v1/users/me/api-keys", {"name": "k", **late}, token=admin),
        api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 1, **late}, token=admin),
        api.call("PATCH", f"/v1/licenses/{licence['id']}", late, token=admin),
    ]
    for reply in refused:
        assert reply.status == 422, reply.json
        assert [error["loc"] for error in reply.json["errors"]] == [["body", "expires_at"]]
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0
    assert db.execute("SELECT count(*), count(expires_at) FROM licenses").fetchone() == (1, 0)
    latest = {"expires_at": "9999-12-31T23:59:59+01:00"}  # 22:59:59Z, still the year 9999
    key = api.call("POST", "/v1/users/me/api-keys", {"name": "k", **latest}, token=admin)
    assert key.status == 201 and key.json["expires_at"] == "9999-12-31T22:59:59Z"


def test_another_users_api_key_is_a_404_identical_to_a_random_id(api):
    mine = api.signup("quin")["access_token"]
    theirs = api.signup("rita")["access_token"]
    key_id = api.call("POST", "/v1/users/me/api-keys", {"name": "x"}, token=theirs).json["id"]
    other = api.call("DELETE", f"/v1/users/me/api-keys/{key_id}", token=mine)
    random = api.call("DELETE", f"/v1/users/me/api-keys/{uuid.uuid4()}", token=mine)
    assert other.status == random.status == 404 and other.raw == random.raw


def test_api_key_list_pages_with_a_cursor_and_refuses_a_malformed_one(api):
    token = api.signup("sam")["access_token"]
    for i in range(5):
        api.call("POST", "/v1/users/me/api-keys", {"name": f"k{i}"}, token=token)
    seen, cursor = [], None
    while True:
        path = "/v1/users/me/api-keys?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", path, token=token).json
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"k{i}" for i in range(5)] and len(seen) == 5
    assert api.call("GET", "/v1/users/me/api-keys?cursor=garbage!", token=token).status == 400


def test_users_read_their_own_connection_logs_and_admins_read_all(api, make_role):
    token = api.signup("tom")["access_token"]
    api.signup("uma")
    own = api.call("GET", "/v1/users/me/connection-logs", token=token).json["items"]
    assert [log["action"] for log in own] == ["signup"]
    assert api.call("GET", "/v1/admin/connection-logs", token=token).status == 403
    _, admin = api.with_role(make_role, "vic", "admin")
    everyone = api.call("GET", "/v1/admin/connection-logs", token=admin).json["items"]
    assert {log["action"] for log in everyone} >= {"signup", "login"} and len(everyone) >= 4


def test_admin_lists_deactivates_and_reactivates_users_with_immediate_effect(api, make_role):
    _, admin = api.with_role(make_role, "wade", "admin")
    user = api.signup("xena")
    assert api.call("GET", "/v1/admin/users", token=user["access_token"]).status == 403
    listed = api.call("GET", "/v1/admin/users", token=admin)
    assert listed.status == 200 and "password_hash" not in listed.raw.decode()
    off = api.call("PATCH", f"/v1/admin/users/{user['user']['id']}", {"is_active": False}, token=admin)
    assert off.status == 200 and off.json["is_active"] is False
    assert api.call("GET", "/v1/users/me", token=user["access_token"]).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": user["refresh_token"]}).status == 401
    assert api.call("POST", "/v1/auth/login", {"login": "xena", "password": PASSWORD}).status == 401
    on = api.call("PATCH", f"/v1/admin/users/{user['user']['id']}", {"is_active": True}, token=admin)
    assert on.status == 200 and api.login("xena")
    assert api.call("PATCH", f"/v1/admin/users/{uuid.uuid4()}", {"is_active": False}, token=admin).status == 404


def test_an_admins_patch_with_a_null_role_or_active_flag_is_422_naming_it_and_changes_nothing(api, make_role, db):
    # Neither is ever null: a null was answered 200 with nothing changed, so a console that sent one was told it
    # had saved it.
    _, admin = api.with_role(make_role, "quinn", "admin")
    user = api.signup("rory")
    path = f"/v1/admin/users/{user['user']['id']}"
    refused = api.call("PATCH", path, {"is_active": None}, token=admin)
    assert refused.status == 422 and refused.headers["content-type"] == "application/problem+json"
    assert [item["loc"] for item in refused.json["errors"]] == [["body", "is_active"]]
    both = api.call("PATCH", path, {"role": None, "is_active": False}, token=admin)
    assert both.status == 422 and [item["loc"] for item in both.json["errors"]] == [["body", "role"]]
    assert db.execute("SELECT is_active FROM users WHERE username = 'rory'").fetchone()[0] is True
    assert api.call("PATCH", path, {"role": None}, token=user["access_token"]).status == 403  # the role first


def test_only_a_super_admin_grants_or_takes_admin(api, make_role):
    _, admin = api.with_role(make_role, "yuri", "admin")
    other_admin, _ = api.with_role(make_role, "zoe", "admin")
    _, root = api.with_role(make_role, "root1", "super_admin")
    user = api.signup("abe")
    uid = user["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{uid}", {"role": "admin"}, token=admin).status == 403
    assert api.call("PATCH", f"/v1/admin/users/{other_admin}", {"is_active": False}, token=admin).status == 403
    assert api.call("PATCH", f"/v1/admin/users/{other_admin}", {"role": "user"}, token=admin).status == 403
    promoted = api.call("PATCH", f"/v1/admin/users/{uid}", {"role": "admin"}, token=root)
    assert promoted.status == 200 and promoted.json["role"] == "admin"
    assert api.call("GET", "/v1/users/me", token=user["access_token"]).status == 401  # old role's token
    assert api.call("PATCH", f"/v1/admin/users/{uid}", {"role": "superuser"}, token=root).status == 422


def test_an_administrators_change_to_an_account_names_the_administrator_and_what_changed(api, make_role, db):
    root_id, root = api.with_role(make_role, "root2", "super_admin")
    uid = api.signup("bea")["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{uid}", {"role": "admin"}, token=root).status == 200
    assert api.call("PATCH", f"/v1/admin/users/{uid}", {"is_active": False}, token=root).status == 200
    trail = api.call("GET", "/v1/admin/connection-logs", token=root).json["items"]
    mine = {log["action"]: log for log in trail if log["user_id"] == uid}
    assert mine["role_changed"]["actor_id"] == root_id
    assert mine["role_changed"]["detail"] == {"from": "user", "to": "admin"}
    assert mine["deactivated"]["actor_id"] == root_id and mine["signup"]["actor_id"] is None
    # The trail outlives the administrator's account.
    db.execute("DELETE FROM users WHERE id = %s", (root_id,))
    left = db.execute("SELECT count(*) FROM connection_logs WHERE user_id = %s AND actor_id IS NULL", (uid,))
    assert left.fetchone()[0] == 3


def test_refresh_after_a_role_change_keeps_the_session_with_the_new_role(api, make_role):
    _, root = api.with_role(make_role, "root2", "super_admin")
    user = api.signup("bea")
    assert api.call("PATCH", f"/v1/admin/users/{user['user']['id']}", {"role": "admin"}, token=root).status == 200
    renewed = api.call("POST", "/v1/auth/refresh", {"refresh_token": user["refresh_token"]})
    assert renewed.status == 200 and renewed.json["user"]["role"] == "admin"
    assert api.call("GET", "/v1/admin/users", token=renewed.json["access_token"]).status == 200


def test_the_last_super_admin_can_be_neither_demoted_nor_deactivated(api, make_role):
    root_id, root = api.with_role(make_role, "boss", "super_admin")
    for change in ({"role": "admin"}, {"is_active": False}):
        reply = api.call("PATCH", f"/v1/admin/users/{root_id}", change, token=root)
        assert reply.status == 409
    second_id, second = api.with_role(make_role, "boss2", "super_admin")
    assert api.call("PATCH", f"/v1/admin/users/{second_id}", {"role": "admin"}, token=root).status == 200
    assert api.call("PATCH", f"/v1/admin/users/{root_id}", {"role": "user"}, token=root).status == 409


def test_licence_is_created_by_admins_with_its_key_shown_once(api, make_role, db):
    user = api.signup("cleo")["access_token"]
    assert api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 2}, token=user).status == 403
    _, admin = api.with_role(make_role, "dora", "admin")
    created = api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 2}, token=admin)
    assert created.status == 201 and created.json["key"].startswith("cfl_") and created.json["seats_used"] == 0
    listed = api.call("GET", "/v1/licenses", token=admin)
    assert listed.json["items"][0]["id"] == created.json["id"] and created.json["key"] not in listed.raw.decode()
    stored = db.execute("SELECT key_hash FROM licenses").fetchone()[0]
    assert stored not in created.raw.decode() and stored not in listed.raw.decode()
    assert api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 0}, token=admin).status == 422
    past = {"tier": "pro", "seats": 2, "expires_at": "2020-01-01T00:00:00Z"}
    assert api.call("POST", "/v1/licenses", past, token=admin).status == 422


def test_seats_stop_at_the_limit_and_an_expired_licence_assigns_nothing(api, make_role, db):
    _, admin = api.with_role(make_role, "eli", "admin")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 1}, token=admin).json
    a, b = api.signup("fay")["user"]["id"], api.signup("gus")["user"]["id"]
    assert api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": a}, token=admin).status == 201
    assert api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": b}, token=admin).status == 409
    assert api.call("DELETE", f"/v1/licenses/{lic['id']}/seats/{a}", token=admin).status == 204
    assert api.call("DELETE", f"/v1/licenses/{lic['id']}/seats/{a}", token=admin).status == 404
    db.execute("UPDATE licenses SET expires_at = now() - interval '1 day'")
    assert api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": b}, token=admin).status == 409
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 0


def test_a_retried_assignment_that_took_the_last_seat_is_told_the_user_has_it_not_that_the_licence_is_full(
    api, make_role, db
):
    _, admin = api.with_role(make_role, "ada", "admin")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 1}, token=admin).json
    user = api.signup("ivo")["user"]["id"]
    path = f"/v1/licenses/{lic['id']}/seats"
    assert api.call("POST", path, {"user_id": user}, token=admin).status == 201
    retried = api.call("POST", path, {"user_id": user}, token=admin)
    assert retried.status == 409 and retried.json["detail"] == "The user already has a seat on this licence."
    other = api.call("POST", path, {"user_id": api.signup("jon")["user"]["id"]}, token=admin)
    assert other.status == 409 and other.json["detail"] == "Every seat of the licence is taken."
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 1


def test_a_seat_or_licence_for_an_unknown_user_is_a_422_naming_the_field_not_a_404_of_the_licence(api, make_role, db):
    _, admin = api.with_role(make_role, "kim", "admin")
    owner = api.signup("lou")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 2, "owner_id": owner["user"]["id"]}, token=admin)
    nobody = str(uuid.uuid4())
    for token in (admin, owner["access_token"]):
        seat = api.call("POST", f"/v1/licenses/{lic.json['id']}/seats", {"user_id": nobody}, token=token)
        assert seat.status == 422 and [e["loc"] for e in seat.json["errors"]] == [["body", "user_id"]], seat.json
    created = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 1, "owner_id": nobody}, token=admin)
    assert created.status == 422 and [e["loc"] for e in created.json["errors"]] == [["body", "owner_id"]]
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM licenses").fetchone()[0] == 1
    # A stranger still gets the licence's random-id 404 first, whatever the body names.
    stranger = api.signup("max")["access_token"]
    hidden = api.call("POST", f"/v1/licenses/{lic.json['id']}/seats", {"user_id": nobody}, token=stranger)
    assert hidden.status == 404


def test_another_users_licence_or_seat_is_a_404_identical_to_a_random_id(api, make_role, db):
    owner_id, admin = api.with_role(make_role, "hal", "admin")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 3}, token=admin).json
    seated = api.signup("ian")["user"]["id"]
    api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": seated}, token=admin)
    stranger = api.signup("jon")["access_token"]
    other = api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": seated}, token=stranger)
    random = api.call("POST", f"/v1/licenses/{uuid.uuid4()}/seats", {"user_id": seated}, token=stranger)
    assert other.status == random.status == 404 and other.raw == random.raw
    other = api.call("DELETE", f"/v1/licenses/{lic['id']}/seats/{seated}", token=stranger)
    random = api.call("DELETE", f"/v1/licenses/{uuid.uuid4()}/seats/{seated}", token=stranger)
    assert other.status == random.status == 404 and other.raw == random.raw
    assert api.call("GET", "/v1/licenses", token=stranger).json["items"] == []
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 1


def test_owners_and_admins_list_a_licences_seat_holders_and_admins_find_any_owners_licences(api, make_role):
    _, admin = api.with_role(make_role, "lea", "admin")
    owner = api.signup("max")
    owner_id, owner_token = owner["user"]["id"], owner["access_token"]
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 5, "owner_id": owner_id}, token=admin).json
    held = [api.signup(f"seat{i}")["user"]["id"] for i in range(3)]
    for user_id in held:
        assert (
            api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": user_id}, token=owner_token).status == 201
        )
    # The owner pages through the seats (newest first); an admin sees them too.
    first = api.call("GET", f"/v1/licenses/{lic['id']}/seats?limit=2", token=owner_token).json
    rest = api.call("GET", f"/v1/licenses/{lic['id']}/seats?cursor={first['next_cursor']}", token=owner_token).json
    assert [s["user_id"] for s in first["items"] + rest["items"]] == held[::-1] and rest["next_cursor"] is None
    assert len(api.call("GET", f"/v1/licenses/{lic['id']}/seats", token=admin).json["items"]) == 3
    # A seat holder or a stranger: the random-id 404.
    seat_token = api.call("POST", "/v1/auth/login", {"login": "seat0", "password": PASSWORD}).json["access_token"]
    other = api.call("GET", f"/v1/licenses/{lic['id']}/seats", token=seat_token)
    random = api.call("GET", f"/v1/licenses/{uuid.uuid4()}/seats", token=seat_token)
    assert other.status == random.status == 404 and other.raw == random.raw
    # The admin who made the licence for someone else finds it by its owner, or among all.
    by_owner = api.call("GET", f"/v1/licenses?owner_id={owner_id}", token=admin).json["items"]
    assert [item["id"] for item in by_owner] == [lic["id"]]
    assert lic["id"] in [item["id"] for item in api.call("GET", "/v1/licenses", token=admin).json["items"]]
    assert [i["id"] for i in api.call("GET", "/v1/licenses", token=owner_token).json["items"]] == [lic["id"]]
    assert api.call("GET", f"/v1/licenses?owner_id={owner_id}", token=seat_token).status == 403


def test_twenty_concurrent_seat_assignments_never_exceed_the_licence(api, make_role, app_container, db):
    owner_id, admin = api.with_role(make_role, "kim", "admin")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 5}, token=admin).json
    users = [api.signup(f"seat{i}")["user"]["id"] for i in range(20)]
    principal = Principal(kind="jwt", user_id=uuid.UUID(owner_id), role="admin")
    barrier = threading.Barrier(20)
    outcomes = []

    def assign(user_id):
        barrier.wait()
        try:
            licenses.assign_seat(app_container.db, principal, uuid.UUID(lic["id"]), uuid.UUID(user_id))
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("full")

    threads = [threading.Thread(target=assign, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 5 and outcomes.count("full") == 15
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 5


def test_admins_change_a_licences_seats_tier_and_expiry_and_its_owner_gets_403_and_a_stranger_404(api, make_role, db):
    _, admin = api.with_role(make_role, "ada", "admin")
    owner = api.signup("bob")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 2, "owner_id": owner["user"]["id"]}, token=admin)
    path = f"/v1/licenses/{lic.json['id']}"
    renewal = {"seats": 10, "tier": "premium", "expires_at": "2099-01-01T00:00:00Z"}
    changed = api.call("PATCH", path, renewal, token=admin)
    assert changed.status == 200, changed.json
    assert (changed.json["seats"], changed.json["tier"], changed.json["expires_at"]) == (
        10,
        "premium",
        "2099-01-01T00:00:00Z",
    )
    assert changed.json["id"] == lic.json["id"] and "key" not in changed.json
    assert api.call("PATCH", path, {"expires_at": None}, token=admin).json["expires_at"] is None
    for bad in ({"seats": 0}, {"seats": None}, {"tier": " "}, {"expires_at": "2020-01-01T00:00:00Z"}, {"key": "x"}):
        reply = api.call("PATCH", path, bad, token=admin)
        assert reply.status == 422 and reply.headers["content-type"] == "application/problem+json", bad
    # The owner sees the licence but may not change it; anyone else gets the random-id 404.
    mine = api.call("PATCH", path, {"seats": 100}, token=owner["access_token"])
    assert mine.status == 403 and mine.headers["content-type"] == "application/problem+json"
    stranger = api.signup("cid")["access_token"]
    other = api.call("PATCH", path, {"seats": 100}, token=stranger)
    random = api.call("PATCH", f"/v1/licenses/{uuid.uuid4()}", {"seats": 100}, token=stranger)
    assert other.status == random.status == 404 and other.raw == random.raw
    assert api.call("PATCH", f"/v1/licenses/{uuid.uuid4()}", {"seats": 100}, token=admin).status == 404
    assert db.execute("SELECT seats, tier, expires_at FROM licenses").fetchone() == (10, "premium", None)


def test_lowering_a_licence_below_its_assigned_seats_is_409_and_changes_nothing(api, make_role, db):
    _, admin = api.with_role(make_role, "dan", "admin")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 3}, token=admin).json
    for name in ("eve", "finn"):
        user_id = api.signup(name)["user"]["id"]
        assert api.call("POST", f"/v1/licenses/{lic['id']}/seats", {"user_id": user_id}, token=admin).status == 201
    lowered = api.call("PATCH", f"/v1/licenses/{lic['id']}", {"seats": 1, "tier": "pro"}, token=admin)
    assert lowered.status == 409 and lowered.headers["content-type"] == "application/problem+json"
    assert db.execute("SELECT seats, tier FROM licenses").fetchone() == (3, "basic")
    assert api.call("PATCH", f"/v1/licenses/{lic['id']}", {"seats": 2}, token=admin).json["seats_used"] == 2


def _race(calls):
    """Run the calls at once (a barrier), each in its own thread and so on its own connection."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        with contextlib.suppress(ConflictError):
            call()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_lowering_seats_while_seats_are_assigned_concurrently_never_leaves_more_seats_than_the_licence(
    api, make_role, app_container, db
):
    admin_id, admin = api.with_role(make_role, "gil", "admin")
    principal = Principal(kind="jwt", user_id=uuid.UUID(admin_id), role="admin")
    users = [uuid.UUID(api.signup(f"racer{i}")["user"]["id"]) for i in range(6)]
    for _ in range(5):
        db.execute("DELETE FROM licenses")
        licence = uuid.UUID(api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 8}, token=admin).json["id"])
        for user_id in users[:3]:
            licenses.assign_seat(app_container.db, principal, licence, user_id)
        lower = functools.partial(licenses.update_license, app_container.db, principal, licence, LicensePatch(seats=3))
        assigns = [functools.partial(licenses.assign_seat, app_container.db, principal, licence, u) for u in users[3:]]
        _race([lower, *assigns])
        seats, used = db.execute(
            "SELECT seats, (SELECT count(*) FROM license_seats WHERE license_id = l.id) FROM licenses l"
        ).fetchone()
        assert used <= seats


def test_an_admin_deletes_a_licence_with_its_seats_and_its_owner_gets_403_and_a_stranger_404(api, make_role, db):
    _, admin = api.with_role(make_role, "hana", "admin")
    owner = api.signup("ivo")
    lic = api.call("POST", "/v1/licenses", {"tier": "basic", "seats": 2, "owner_id": owner["user"]["id"]}, token=admin)
    path = f"/v1/licenses/{lic.json['id']}"
    seated = api.signup("jade")["user"]["id"]
    api.call("POST", f"{path}/seats", {"user_id": seated}, token=owner["access_token"])
    assert api.call("DELETE", path, token=owner["access_token"]).status == 403
    stranger = api.signup("kai")["access_token"]
    other = api.call("DELETE", path, token=stranger)
    random = api.call("DELETE", f"/v1/licenses/{uuid.uuid4()}", token=stranger)
    assert other.status == random.status == 404 and other.raw == random.raw
    assert db.execute("SELECT count(*) FROM license_seats").fetchone()[0] == 1
    assert api.call("DELETE", path, token=admin).status == 204
    assert api.call("DELETE", path, token=admin).status == 404
    assert (
        db.execute("SELECT (SELECT count(*) FROM licenses) + (SELECT count(*) FROM license_seats)").fetchone()[0] == 0
    )
    assert api.call("GET", "/v1/licenses", token=owner["access_token"]).json["items"] == []


def test_an_administrator_demoted_or_deactivated_meanwhile_changes_nothing_with_a_stale_authorizer_answer(
    api, make_role, app_container, db
):
    # API Gateway may answer from an Allow cached before the demotion (docs/deploy.md, "Authorizer caching"):
    # the context still says super_admin or admin. The rights are what the account holds when it acts.
    _, root = api.with_role(make_role, "root3", "super_admin")
    rogue_id, _ = api.with_role(make_role, "rogue", "super_admin")
    gone_id, _ = api.with_role(make_role, "gone", "admin")
    plain = api.signup("plain")["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{rogue_id}", {"role": "user"}, token=root).status == 200
    assert api.call("PATCH", f"/v1/admin/users/{gone_id}", {"is_active": False}, token=root).status == 200
    stale_rogue = Principal(kind="jwt", user_id=uuid.UUID(rogue_id), role="super_admin")
    stale_gone = Principal(kind="jwt", user_id=uuid.UUID(gone_id), role="admin")
    attempts = [
        (stale_rogue, rogue_id, AdminUserPatch(role="super_admin")),
        (stale_gone, gone_id, AdminUserPatch(is_active=True)),
        (stale_gone, plain, AdminUserPatch(is_active=False)),
    ]
    for stale, target, patch in attempts:
        with pytest.raises(ForbiddenError):
            admin.update_user(app_container.db, stale, uuid.UUID(target), patch, accounts.Client())
    rows = dict(db.execute("SELECT username, (role, is_active)::text FROM users").fetchall())
    assert rows["rogue"] == "(user,t)" and rows["gone"] == "(admin,f)" and rows["plain"] == "(user,t)"


def test_api_keys_outlive_password_change_and_logout_all_and_are_refused_only_while_the_owner_is_inactive(
    api, make_role
):
    # What docs/auth.md ("API keys and licences") says of keys: they are credentials of their own, revoked one by
    # one; a deactivated owner's keys are refused and work again on reactivation.
    _, root = api.with_role(make_role, "root4", "super_admin")
    body = api.signup("kira")
    token = body["access_token"]
    key = api.call("POST", "/v1/users/me/api-keys", {"name": "ci"}, token=token).json["key"]
    change = {"current_password": PASSWORD, "new_password": "new password 1"}
    token = api.call("POST", "/v1/users/me/password", change, token=token).json["access_token"]
    assert api.call("GET", "/v1/users/me", token=key).status == 200
    assert api.call("POST", "/v1/users/me/logout-all", token=token).status == 204
    assert api.call("GET", "/v1/users/me", token=key).status == 200
    kira = body["user"]["id"]
    assert api.call("PATCH", f"/v1/admin/users/{kira}", {"is_active": False}, token=root).status == 200
    assert api.call("GET", "/v1/users/me", token=key).status == 401
    assert api.call("PATCH", f"/v1/admin/users/{kira}", {"is_active": True}, token=root).status == 200
    assert api.call("GET", "/v1/users/me", token=key).status == 200


def _deactivate(api, db, make_role, user_id, token):
    _, root = api.with_role(make_role, "keyroot", "super_admin")
    assert api.call("PATCH", f"/v1/admin/users/{user_id}", {"is_active": False}, token=root).status == 200


def _change_password(api, db, make_role, user_id, token):
    change = {"current_password": PASSWORD, "new_password": "new password 1"}
    assert api.call("POST", "/v1/users/me/password", change, token=token).status == 200


def _logout_all(api, db, make_role, user_id, token):
    assert api.call("POST", "/v1/users/me/logout-all", token=token).status == 204


def _deactivate_keeping_the_version(api, db, make_role, user_id, token):
    # An operator's UPDATE: inactive, token version unchanged, so the active flag alone has to refuse.
    db.execute("UPDATE users SET is_active = false WHERE id = %s", (user_id,))


@pytest.mark.parametrize(
    "end_session",
    [_deactivate, _change_password, _logout_all, _deactivate_keeping_the_version],
    ids=["deactivated", "password_changed", "logout_all", "inactive_same_version"],
)
def test_a_stale_authorizer_answer_makes_no_api_key_once_its_session_has_ended(api, db, make_role, end_session):
    # In AWS the authorizer's Allow is cached for a minute: an access token whose account was deactivated, whose
    # password was changed or whose sessions were all ended still reaches the handler. A key made then would outlive
    # the change, so the creation reads the account again and refuses (401, as the authorizer will once its answer
    # expires), writing nothing.
    signed_up = api.signup("kent")
    user_id = signed_up["user"]["id"]
    end_session(api, db, make_role, user_id, signed_up["access_token"])
    stale = jwt_principal(uuid.UUID(user_id))  # the version the signup's token carries (0)
    refused = call("POST", "/v1/users/me/api-keys", stale, body={"name": "stolen"})
    assert refused.status == 401 and refused.headers["Content-Type"] == "application/problem+json", refused.body
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "key" not in refused.body
    assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    logged = "SELECT count(*) FROM connection_logs WHERE action = 'api_key_created'"
    assert db.execute(logged).fetchone() == (0,)


def test_a_current_access_token_still_makes_an_api_key_after_its_accounts_earlier_sessions_ended(api):
    # The check compares the token's version with the account's, so a session begun after a logout-all is fine.
    token = api.signup("kurt")["access_token"]
    assert api.call("POST", "/v1/users/me/logout-all", token=token).status == 204
    created = api.call("POST", "/v1/users/me/api-keys", {"name": "ci"}, token=api.login("kurt"))
    assert created.status == 201 and created.json["key"].startswith("cfb_")


def test_an_api_key_creation_waits_for_a_deactivation_in_flight_and_then_refuses(api, db, database_url):
    # The account is read FOR SHARE: a deactivation that has updated the row but not committed yet makes the creation
    # wait, and the creation then reads it deactivated. A plain read would see the row as it was before, and the key's
    # insert (its foreign key takes only a KEY SHARE lock) would not wait for the deactivation either.
    user_id = uuid.UUID(api.signup("kyle")["user"]["id"])
    out = {}

    def create():
        out["reply"] = call("POST", "/v1/users/me/api-keys", jwt_principal(user_id), body={"name": "k"})

    with psycopg.connect(database_url) as deactivating:
        deactivating.execute(
            "UPDATE users SET is_active = false, token_version = token_version + 1 WHERE id = %s", (user_id,)
        )
        creating = threading.Thread(target=create)
        creating.start()
        wait_for_a_lock_waiter(db)
        deactivating.commit()
    creating.join(10)
    assert out["reply"].status == 401, out["reply"].body
    assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_every_answer_carrying_a_key_or_an_anonymous_token_is_marked_no_store(api, make_role):
    # As a token pair's (RFC 6749, 5.1): no proxy or browser cache may keep an answer that shows a secret once.
    _, admin_token = api.with_role(make_role, "kyra", "admin")
    key = api.call("POST", "/v1/users/me/api-keys", {"name": "ci"}, token=admin_token)
    licence = api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 1}, token=admin_token)
    anonymous = api.call("POST", "/v1/anonymous/conversations", {})
    for reply, secret in ((key, "key"), (licence, "key"), (anonymous, "token")):
        assert reply.status == 201 and reply.json[secret], reply.json
        assert reply.headers["cache-control"] == "no-store"
    # An answer that shows no secret (a list: prefixes only) is left to the usual rules.
    listed = api.call("GET", "/v1/users/me/api-keys", token=admin_token)
    assert listed.status == 200 and "cache-control" not in listed.headers


def test_a_stale_authorizer_answer_for_a_deactivated_account_changes_no_password(api, db, make_role):
    # In AWS the authorizer's Allow is cached for a minute after a deactivation: the password change must refuse it
    # (401, as an account deletion does), or whoever held the credentials picks the password the account comes
    # back with, and gets a token pair.
    _, root = api.with_role(make_role, "root", "super_admin")
    held = api.signup("held")["user"]["id"]
    before = db.execute("SELECT password_hash FROM users WHERE id = %s", (held,)).fetchone()
    assert api.call("PATCH", f"/v1/admin/users/{held}", {"is_active": False}, token=root).status == 200
    change = {"current_password": PASSWORD, "new_password": "the thief's password"}
    refused = call("POST", "/v1/users/me/password", jwt_principal(uuid.UUID(held)), body=change)
    assert refused.status == 401 and refused.headers["Content-Type"] == "application/problem+json"
    assert "refresh_token" not in refused.body
    assert db.execute("SELECT password_hash FROM users WHERE id = %s", (held,)).fetchone() == before
    assert db.execute(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = %s AND revoked_at IS NULL", (held,)
    ).fetchone() == (0,)
