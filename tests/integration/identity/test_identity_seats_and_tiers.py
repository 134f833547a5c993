"""A seat holder's own seats (GET /v1/users/me/seats), the caller's premium on GET /v1/users/me, and licence tiers
checked against the one tier list."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import get_args

import psycopg

from shared.models.identity import PREMIUM_TIERS, LicenseTier
from shared.repositories.licenses import LicensesRepository
from tests.integration.identity.conftest import PASSWORD


def _admin(api, make_role, name="root"):
    user_id = api.signup(name)["user"]["id"]
    make_role(user_id, "admin")
    return api.call("POST", "/v1/auth/login", {"login": name, "password": PASSWORD}).json["access_token"]


def _licence(api, admin, owner_id, tier="premium", **extra):
    reply = api.call("POST", "/v1/licenses", {"tier": tier, "seats": 5, "owner_id": owner_id, **extra}, token=admin)
    assert reply.status == 201, reply.json
    return reply.json


def _seat(api, token, licence_id, user_id):
    assert api.call("POST", f"/v1/licenses/{licence_id}/seats", {"user_id": user_id}, token=token).status == 201


def _premium(api, token):
    return api.call("GET", "/v1/users/me", token=token).json["has_premium"]


def test_a_seat_holder_pages_through_its_seats_newest_first_and_sees_no_key_owner_or_seat_count(api, make_role, db):
    admin = _admin(api, make_role)
    owner = api.signup("olive")
    holder = api.signup("hugo")
    other = api.signup("otto")["user"]["id"]
    made = [
        _licence(api, admin, owner["user"]["id"], "premium"),
        _licence(api, admin, owner["user"]["id"], "pro", expires_at="2099-01-01T00:00:00Z"),
        _licence(api, admin, owner["user"]["id"], "enterprise"),
    ]
    for licence in made:
        _seat(api, owner["access_token"], licence["id"], holder["user"]["id"])
    unseated = _licence(api, admin, owner["user"]["id"])
    _seat(api, owner["access_token"], unseated["id"], other)

    first = api.call("GET", "/v1/users/me/seats?limit=2", token=holder["access_token"])
    assert first.status == 200 and first.json["next_cursor"]
    rest = api.call("GET", f"/v1/users/me/seats?cursor={first.json['next_cursor']}", token=holder["access_token"])
    items = first.json["items"] + rest.json["items"]
    assert rest.json["next_cursor"] is None
    assert [item["license_id"] for item in items] == [licence["id"] for licence in reversed(made)]
    assert [(item["tier"], item["expires_at"]) for item in items] == [
        ("enterprise", None),
        ("pro", "2099-01-01T00:00:00Z"),
        ("premium", None),
    ]
    assert all(set(item) == {"license_id", "tier", "expires_at", "created_at"} for item in items)
    seated_at = db.execute(
        "SELECT created_at FROM license_seats WHERE license_id = %s AND user_id = %s",
        (made[0]["id"], holder["user"]["id"]),
    ).fetchone()[0]
    assert datetime.fromisoformat(items[-1]["created_at"]) == seated_at
    # Nothing of the key (the key, its prefix, its hash) and nothing of the owner reaches the seat holder.
    raw = first.raw.decode() + rest.raw.decode()
    hashes = [row[0] for row in db.execute("SELECT key_hash FROM licenses").fetchall()]
    secrets = [*(licence["key"] for licence in made), *(licence["key_prefix"] for licence in made), *hashes]
    assert not [secret for secret in secrets if secret in raw]
    assert owner["user"]["id"] not in raw

    # Seats only: the owner holds none, and a stranger none either.
    assert api.call("GET", "/v1/users/me/seats", token=owner["access_token"]).json == {"items": [], "next_cursor": None}
    stranger = api.signup("sven")["access_token"]
    assert api.call("GET", "/v1/users/me/seats", token=stranger).json["items"] == []
    assert api.call("GET", "/v1/users/me/seats?cursor=nope", token=holder["access_token"]).status == 400


def test_a_seat_holder_and_a_stranger_still_get_the_random_id_404_for_the_licence_itself(api, make_role):
    admin = _admin(api, make_role)
    owner = api.signup("olga")
    holder = api.signup("hank")
    licence = _licence(api, admin, owner["user"]["id"])
    _seat(api, owner["access_token"], licence["id"], holder["user"]["id"])
    stranger = api.signup("stan")["access_token"]
    for token in (holder["access_token"], stranger):
        for method, suffix, body in (
            ("GET", "/seats", None),
            ("POST", "/seats", {"user_id": holder["user"]["id"]}),
            ("DELETE", f"/seats/{holder['user']['id']}", None),
            ("PATCH", "", {"seats": 9}),
            ("DELETE", "", None),
        ):
            mine = api.call(method, f"/v1/licenses/{licence['id']}{suffix}", body, token=token)
            random = api.call(method, f"/v1/licenses/{uuid.uuid4()}{suffix}", body, token=token)
            assert mine.status == random.status == 404 and mine.raw == random.raw, (method, suffix)
        # Owned licences are listed to their owner only: the seat is not one of them.
        assert api.call("GET", "/v1/licenses", token=token).json["items"] == []
    held = api.call("GET", "/v1/users/me/seats", token=holder["access_token"]).json["items"]
    assert [item["license_id"] for item in held] == [licence["id"]]


def test_a_seat_leaves_the_holders_list_when_it_is_taken_back_or_the_licence_deleted_and_stays_when_it_expires(
    api, make_role, db
):
    admin = _admin(api, make_role)
    owner = api.signup("opal")
    holder = api.signup("hera")
    kept, taken = _licence(api, admin, owner["user"]["id"]), _licence(api, admin, owner["user"]["id"])
    for licence in (kept, taken):
        _seat(api, owner["access_token"], licence["id"], holder["user"]["id"])

    def held():
        reply = api.call("GET", "/v1/users/me/seats", token=holder["access_token"])
        return [(item["license_id"], item["expires_at"]) for item in reply.json["items"]]

    path = f"/v1/licenses/{taken['id']}/seats/{holder['user']['id']}"
    assert api.call("DELETE", path, token=owner["access_token"]).status == 204
    assert held() == [(kept["id"], None)]
    # An expired licence keeps its seats (a renewal gives them back): the holder sees it with its expiry.
    db.execute("UPDATE licenses SET expires_at = '2020-01-01T00:00:00Z' WHERE id = %s", (kept["id"],))
    assert held() == [(kept["id"], "2020-01-01T00:00:00Z")] and not _premium(api, holder["access_token"])
    assert api.call("DELETE", f"/v1/licenses/{kept['id']}", token=admin).status == 204
    assert held() == []


def test_me_says_whether_the_caller_has_premium_as_a_premium_templates_use_decides(api, make_role, db):
    admin = _admin(api, make_role)
    user = api.signup("pia")
    token, user_id = user["access_token"], user["user"]["id"]
    assert _premium(api, token) is False
    _licence(api, admin, user_id, "basic")
    assert _premium(api, token) is False
    elsewhere = _licence(api, admin, api.signup("paul")["user"]["id"], "enterprise")
    _seat(api, admin, elsewhere["id"], user_id)
    assert _premium(api, token) is True
    patched = api.call("PATCH", "/v1/users/me", {"name": "Pia"}, token=token)
    assert patched.status == 200 and patched.json["has_premium"] is True and patched.json["name"] == "Pia"
    db.execute("UPDATE licenses SET expires_at = now() - interval '1 second' WHERE id = %s", (elsewhere["id"],))
    assert _premium(api, token) is False
    assert api.call("PATCH", f"/v1/licenses/{elsewhere['id']}", {"expires_at": None}, token=admin).status == 200
    assert _premium(api, token) is True


def test_every_token_pair_answers_its_user_as_get_me_does_with_has_premium_read_in_the_same_statement(
    api, make_role, db, monkeypatch
):
    # Signup, login, refresh and a password change answer the `user` GET /v1/users/me answers, has_premium
    # included; a login, refresh or password change reads it in the statement that reads the account.
    admin = _admin(api, make_role)
    signed_up = api.signup("pia")
    user_id = signed_up["user"]["id"]

    def me(token):
        reply = api.call("GET", "/v1/users/me", token=token)
        assert reply.status == 200, reply.json
        return reply.json

    assert signed_up["user"] == me(signed_up["access_token"]) and signed_up["user"]["has_premium"] is False
    owned = _licence(api, admin, user_id, "premium")

    def no_second_query(self, user):
        raise AssertionError("a token pair read has_premium with a query of its own")

    monkeypatch.setattr(LicensesRepository, "has_premium", no_second_query)
    login = api.call("POST", "/v1/auth/login", {"login": "pia", "password": PASSWORD}).json
    refreshed = api.call("POST", "/v1/auth/refresh", {"refresh_token": login["refresh_token"]}).json
    changed = api.call(
        "POST",
        "/v1/users/me/password",
        {"current_password": PASSWORD, "new_password": PASSWORD + "!"},
        token=refreshed["access_token"],
    ).json
    monkeypatch.undo()
    assert login["user"]["has_premium"] is refreshed["user"]["has_premium"] is changed["user"]["has_premium"] is True
    assert login["user"] == refreshed["user"] == changed["user"] == me(changed["access_token"])
    # Premium through a seat counts as it does for /v1/users/me, and an expired licence grants none.
    db.execute("UPDATE licenses SET expires_at = now() - interval '1 second' WHERE id = %s", (owned["id"],))
    expired = api.call("POST", "/v1/auth/login", {"login": "pia", "password": PASSWORD + "!"}).json
    assert expired["user"]["has_premium"] is False and expired["user"] == me(expired["access_token"])
    elsewhere = _licence(api, admin, api.signup("paul")["user"]["id"], "enterprise")
    _seat(api, admin, elsewhere["id"], user_id)
    seated = api.call("POST", "/v1/auth/refresh", {"refresh_token": expired["refresh_token"]}).json
    assert seated["user"]["has_premium"] is True and seated["user"] == me(seated["access_token"])


def test_every_known_tier_is_accepted_and_exactly_the_premium_tiers_grant_premium(api, make_role):
    admin = _admin(api, make_role)
    tiers = get_args(LicenseTier)
    assert set(PREMIUM_TIERS) < set(tiers)
    for tier in tiers:
        owner = api.signup(f"own-{tier}")
        assert _licence(api, admin, owner["user"]["id"], tier)["tier"] == tier
        assert _premium(api, owner["access_token"]) is (tier in PREMIUM_TIERS), tier


def test_an_unknown_tier_is_a_422_naming_the_allowed_tiers_on_create_and_change_and_writes_nothing(api, make_role, db):
    admin = _admin(api, make_role)
    for bad in ("premum", "Premium", " premium", "", 7):
        reply = api.call("POST", "/v1/licenses", {"tier": bad, "seats": 1}, token=admin)
        assert reply.status == 422 and reply.headers["content-type"] == "application/problem+json", bad
        (error,) = reply.json["errors"]
        assert error["loc"] == ["body", "tier"] and all(f"'{tier}'" in error["msg"] for tier in get_args(LicenseTier))
    assert db.execute("SELECT count(*) FROM licenses").fetchone()[0] == 0
    licence = _licence(api, admin, None, "pro")
    reply = api.call("PATCH", f"/v1/licenses/{licence['id']}", {"tier": "premum", "seats": 3}, token=admin)
    assert reply.status == 422 and reply.json["errors"][0]["loc"] == ["body", "tier"]
    assert db.execute("SELECT tier, seats FROM licenses").fetchone() == ("pro", 5)


def test_a_licence_with_a_tier_from_before_validation_is_read_renewed_and_moved_to_a_known_tier(api, make_role, db):
    admin = _admin(api, make_role)
    owner = api.signup("theo")
    holder = api.signup("tina")
    licence = db.execute(
        "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats) VALUES (%s, 'cfl_old', 'old', 'team', 2)"
        " RETURNING id",
        (owner["user"]["id"],),
    ).fetchone()[0]
    _seat(api, owner["access_token"], licence, holder["user"]["id"])
    assert [item["tier"] for item in api.call("GET", "/v1/licenses", token=owner["access_token"]).json["items"]] == [
        "team"
    ]
    assert [
        item["tier"] for item in api.call("GET", "/v1/users/me/seats", token=holder["access_token"]).json["items"]
    ] == ["team"]
    renewal = {"seats": 4, "expires_at": "2099-01-01T00:00:00Z"}
    renewed = api.call("PATCH", f"/v1/licenses/{licence}", renewal, token=admin)
    assert renewed.status == 200 and (renewed.json["tier"], renewed.json["seats"]) == ("team", 4)
    assert _premium(api, holder["access_token"]) is False
    moved = api.call("PATCH", f"/v1/licenses/{licence}", {"tier": "premium"}, token=admin)
    assert moved.status == 200 and moved.json["tier"] == "premium"
    assert _premium(api, holder["access_token"]) is True
    # A row from before that spelled a premium tier in capitals kept its premium (the check ignores case).
    db.execute("UPDATE licenses SET tier = 'Enterprise' WHERE id = %s", (licence,))
    assert _premium(api, holder["access_token"]) is True


def test_a_seat_holder_gives_up_its_own_seat_and_anyone_elses_or_an_unknown_licence_is_the_random_id_404(
    api, make_role, db
):
    admin = _admin(api, make_role)
    owner = api.signup("oona")
    holder, stranger = api.signup("hana"), api.signup("sven")
    licence = _licence(api, admin, owner["user"]["id"], "premium")
    _seat(api, owner["access_token"], licence["id"], holder["user"]["id"])
    assert _premium(api, holder["access_token"])
    random_body = api.call("DELETE", f"/v1/users/me/seats/{uuid.uuid4()}", token=holder["access_token"]).json

    # Neither the owner (who holds no seat of its licence) nor a stranger nor an admin can give it up for the holder.
    for token in (owner["access_token"], stranger["access_token"], admin):
        reply = api.call("DELETE", f"/v1/users/me/seats/{licence['id']}", token=token)
        assert (reply.status, reply.json) == (404, random_body)
    assert api.call("DELETE", "/v1/users/me/seats/not-a-uuid", token=holder["access_token"]).status == 404

    reply = api.call("DELETE", f"/v1/users/me/seats/{licence['id']}", token=holder["access_token"])
    assert reply.status == 204, reply.json
    assert api.call("GET", "/v1/users/me/seats", token=holder["access_token"]).json["items"] == []
    assert not _premium(api, holder["access_token"])
    seats = api.call("GET", f"/v1/licenses/{licence['id']}/seats", token=owner["access_token"]).json["items"]
    assert seats == []
    # Given up once, it is gone: a second call is the 404.
    again = api.call("DELETE", f"/v1/users/me/seats/{licence['id']}", token=holder["access_token"])
    assert (again.status, again.json) == (404, random_body)


def test_giving_up_a_seat_waits_for_an_assignment_holding_the_licence(api, make_role, database_url):
    admin = _admin(api, make_role)
    owner = api.signup("oda")
    holder = api.signup("hal")
    licence = _licence(api, admin, owner["user"]["id"], "basic")
    _seat(api, owner["access_token"], licence["id"], holder["user"]["id"])
    out: dict[str, int] = {}
    with psycopg.connect(database_url) as assigning:
        assigning.execute("SELECT 1 FROM licenses WHERE id = %s FOR UPDATE", (licence["id"],))
        releasing = threading.Thread(
            target=lambda: out.update(
                status=api.call("DELETE", f"/v1/users/me/seats/{licence['id']}", token=holder["access_token"]).status
            )
        )
        releasing.start()
        releasing.join(1.0)
        assert releasing.is_alive(), "giving up the seat did not wait for the licence's lock"
        assigning.commit()
    releasing.join(10)
    assert out["status"] == 204
