"""The caller's premium on GET /v1/users/me."""

from __future__ import annotations

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
    # Only the account's own reply says it: a login's `user` is the plain account.
    login = api.call("POST", "/v1/auth/login", {"login": "pia", "password": PASSWORD}).json
    assert "has_premium" not in login["user"]
