"""Signup, login, brute-force limits, refresh rotation and reuse detection, logout, token versions."""

from __future__ import annotations

import threading
import uuid

import bcrypt
import pytest

from shared.errors import CREDENTIALS_REFUSED, UnauthorizedError
from shared.services import accounts
from tests.integration.identity.conftest import PASSWORD


def test_signup_answers_201_with_user_and_token_pair_and_no_hash(api, db):
    body = api.signup("alice", name="Alice")
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 900
    assert body["user"]["username"] == "alice" and body["user"]["role"] == "user"
    assert "password_hash" not in body["user"] and "token_version" not in body["user"]
    stored = db.execute("SELECT password_hash FROM users WHERE username = 'alice'").fetchone()[0]
    assert stored.startswith("$2b$04$") and stored not in api.replies[-1].raw.decode()
    me = api.call("GET", "/v1/users/me", token=body["access_token"])
    assert me.status == 200 and me.json["id"] == body["user"]["id"]


@pytest.mark.parametrize(
    "extra", [{"role": "super_admin"}, {"is_active": False}, {"id": str(uuid.uuid4())}, {"password_hash": "$2b$x"}]
)
def test_signup_carrying_a_privileged_field_is_422_and_creates_nothing(api, db, extra):
    reply = api.call(
        "POST", "/v1/auth/signup", {"username": "eve", "email": "eve@example.com", "password": PASSWORD, **extra}
    )
    assert reply.status == 422 and reply.headers["content-type"] == "application/problem+json"
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0


@pytest.mark.parametrize("password", ["short", "x" * 73, "é" * 37])
def test_signup_password_under_8_chars_or_over_72_bytes_is_422(api, db, password):
    reply = api.call("POST", "/v1/auth/signup", {"username": "bob", "email": "bob@example.com", "password": password})
    assert reply.status == 422 and password not in reply.raw.decode()
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_signup_with_a_taken_email_or_username_in_another_case_is_409(api):
    api.signup("carol")
    again = api.call(
        "POST", "/v1/auth/signup", {"username": "other", "email": "CAROL@example.com", "password": PASSWORD}
    )
    assert again.status == 409
    again = api.call("POST", "/v1/auth/signup", {"username": "Carol", "email": "x@example.com", "password": PASSWORD})
    assert again.status == 409


def test_login_works_with_email_or_username_in_any_case(api):
    api.signup("dave")
    for login in ("dave", "DAVE@example.com"):
        reply = api.call("POST", "/v1/auth/login", {"login": login, "password": PASSWORD})
        assert reply.status == 200 and reply.json["user"]["username"] == "dave"


def test_unknown_login_and_wrong_password_get_the_same_answer(api, monkeypatch):
    from shared.auth import passwords

    api.signup("erin")
    calls = []
    real = passwords.bcrypt.checkpw
    monkeypatch.setattr(passwords.bcrypt, "checkpw", lambda *a: calls.append(1) or real(*a))
    wrong = api.call("POST", "/v1/auth/login", {"login": "erin", "password": "wrong password"})
    unknown = api.call("POST", "/v1/auth/login", {"login": "nobody", "password": "wrong password"})
    too_long = api.call("POST", "/v1/auth/login", {"login": "erin", "password": "x" * 500})
    assert wrong.status == unknown.status == too_long.status == 401
    assert wrong.raw == unknown.raw == too_long.raw
    assert calls == [1, 1, 1]  # one hash check each, whether or not the account exists


def test_ten_failures_give_429_with_retry_after_for_real_and_unknown_accounts_alike(api):
    api.signup("frank")
    answers = {}
    for login in ("frank", "ghost"):
        for _ in range(10):
            assert (
                api.call(
                    "POST",
                    "/v1/auth/login",
                    {"login": login, "password": "bad password"},
                    ip=f"198.51.100.{len(answers)}",
                ).status
                == 401
            )
        answers[login] = api.call("POST", "/v1/auth/login", {"login": login, "password": PASSWORD}, ip="192.0.2.99")
    assert answers["frank"].status == answers["ghost"].status == 429
    assert answers["frank"].raw == answers["ghost"].raw
    assert 0 < int(answers["frank"].headers["retry-after"]) <= 900


def _fail(api, login, times, ip):
    for _ in range(times):
        assert api.call("POST", "/v1/auth/login", {"login": login, "password": "bad password"}, ip=ip).status == 401


def test_throttle_answers_another_alias_of_an_account_like_an_unknown_name_when_one_alias_is_throttled(api):
    api.signup("bob")
    _fail(api, "bob", 10, ip="198.51.100.1")
    _fail(api, "nobody", 10, ip="198.51.100.2")
    # Failures are counted per typed login either way: a 429 here would tell that "bob" is bob@example.com.
    real = api.call("POST", "/v1/auth/login", {"login": "bob@example.com", "password": "bad password"}, ip="192.0.2.1")
    unknown = api.call(
        "POST", "/v1/auth/login", {"login": "nobody@example.com", "password": "bad password"}, ip="192.0.2.2"
    )
    assert real.status == unknown.status == 401 and real.raw == unknown.raw


def test_login_rehashes_a_password_stored_at_another_cost_and_keeps_the_sessions_when_it_succeeds(api, db):
    signed_up = api.signup("rhea")
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    db.execute("UPDATE users SET password_hash = %s WHERE username = 'rhea'", (old,))
    version = db.execute("SELECT token_version FROM users WHERE username = 'rhea'").fetchone()[0]
    # A failed login changes nothing.
    assert api.call("POST", "/v1/auth/login", {"login": "rhea", "password": "wrong password"}).status == 401
    assert db.execute("SELECT password_hash FROM users WHERE username = 'rhea'").fetchone()[0] == old
    assert api.call("POST", "/v1/auth/login", {"login": "rhea", "password": PASSWORD}).status == 200
    stored, after = db.execute("SELECT password_hash, token_version FROM users WHERE username = 'rhea'").fetchone()
    assert stored.startswith("$2b$04$") and bcrypt.checkpw(PASSWORD.encode(), stored.encode())  # BCRYPT_ROUNDS=4
    # The same password: no session ends.
    assert after == version and api.call("GET", "/v1/users/me", token=signed_up["access_token"]).status == 200
    assert api.call("POST", "/v1/auth/login", {"login": "rhea", "password": PASSWORD}).status == 200
    assert db.execute("SELECT password_hash FROM users WHERE username = 'rhea'").fetchone()[0] == stored


def test_unknown_login_checks_a_dummy_hash_of_the_configured_cost(api, monkeypatch):
    # A dummy of another cost would take another time than a real account's check, and tell them apart.
    from shared.auth import passwords

    targets = []
    real = passwords.bcrypt.checkpw
    monkeypatch.setattr(passwords.bcrypt, "checkpw", lambda pw, target: targets.append(target) or real(pw, target))
    assert api.call("POST", "/v1/auth/login", {"login": "nobody", "password": "wrong password"}).status == 401
    assert [target[:7] for target in targets] == [b"$2b$04$"]  # BCRYPT_ROUNDS=4


def test_successful_login_clears_the_failures_of_the_login_it_used_when_counting_again(api, reconfigure):
    reconfigure(LOGIN_MAX_FAILURES_PER_ACCOUNT="3")
    api.signup("cleo")
    _fail(api, "cleo", 2, ip="198.51.100.3")
    _fail(api, "cleo@example.com", 3, ip="198.51.100.3")
    assert api.call("POST", "/v1/auth/login", {"login": "CLEO", "password": PASSWORD}).status == 200
    _fail(api, "cleo", 3, ip="198.51.100.3")
    again = {"password": "bad password"}
    assert api.call("POST", "/v1/auth/login", {"login": "cleo", **again}, ip="198.51.100.3").status == 429
    # Another login's count is its own: the sign-in as "CLEO" did not clear it.
    assert api.call("POST", "/v1/auth/login", {"login": "cleo@example.com", **again}, ip="198.51.100.3").status == 429


def test_per_address_limit_gives_429_across_accounts_when_reached(api, reconfigure):
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    for name in ("a1", "a2", "a3"):
        assert (
            api.call("POST", "/v1/auth/login", {"login": name, "password": "bad password"}, ip="198.51.100.7").status
            == 401
        )
    blocked = api.call("POST", "/v1/auth/login", {"login": "a4", "password": "bad password"}, ip="198.51.100.7")
    assert blocked.status == 429 and "retry-after" in blocked.headers
    assert (
        api.call("POST", "/v1/auth/login", {"login": "a4", "password": "bad password"}, ip="198.51.100.8").status == 401
    )


def test_per_address_limit_counts_an_ipv6_client_by_its_network_when_it_rotates_addresses(api, reconfigure, db):
    # An IPv6 client holds a whole /64: each attempt from another address in it was counted apart, forever fresh.
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    bad = {"password": "bad password"}
    for i, name in enumerate(("b1", "b2", "b3")):
        reply = api.call("POST", "/v1/auth/login", {"login": name, **bad}, ip=f"2001:db8:5:7::{i + 1:x}")
        assert reply.status == 401
    blocked = api.call("POST", "/v1/auth/login", {"login": "b4", **bad}, ip="2001:db8:5:7:ffff::9")
    assert blocked.status == 429
    # The next /64 is another client; the trail keeps each address as it was.
    assert api.call("POST", "/v1/auth/login", {"login": "b4", **bad}, ip="2001:db8:5:8::1").status == 401
    logged = db.execute("SELECT ip_address FROM connection_logs WHERE action = 'login_failed' ORDER BY created_at")
    assert [row[0] for row in logged.fetchall()][:3] == ["2001:db8:5:7::1", "2001:db8:5:7::2", "2001:db8:5:7::3"]


def _login_failed(api, name, ip):
    return api.call("POST", "/v1/auth/login", {"login": name, "password": "bad password"}, ip=ip)


def test_per_network_limit_gives_429_when_an_ipv6_client_rotates_its_64s_within_one_48(api, reconfigure):
    # A routed /56 or /48 holds 256 or 65536 /64s, each with a per-address budget of its own: the /48 bounds them.
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="2", LOGIN_MAX_FAILURES_PER_IPV6_48="5")
    # One /64 spends its own budget and keeps trying: its refused attempts take no more of the /48's.
    assert [_login_failed(api, f"c{i}", "2001:db8:5:1::1").status for i in range(4)] == [401, 401, 429, 429]
    rotated = [_login_failed(api, f"d{n}", f"2001:db8:5:{n:x}00::1").status for n in range(2, 6)]
    assert rotated == [401, 401, 401, 429]
    blocked = _login_failed(api, "e1", "2001:db8:5:ffff:1:2:3:4")
    assert blocked.status == 429 and blocked.headers["content-type"] == "application/problem+json"
    assert 0 < int(blocked.headers["retry-after"]) <= 900 and blocked.json["type"].endswith("rate-limited")
    # Another /48, even the next one, is another client.
    assert _login_failed(api, "e1", "2001:db8:6::1").status == 401
    assert _login_failed(api, "e1", "2001:db8:4:ffff::1").status == 401


def test_per_network_limit_leaves_ipv4_and_ipv4_mapped_clients_counted_per_address_when_ipv6_is_grouped(
    api, reconfigure, db
):
    # Below the per-address limit on purpose: were IPv4 counted by any wider network, the third attempt would stop.
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="3", LOGIN_MAX_FAILURES_PER_IPV6_48="2")
    assert [_login_failed(api, f"f{i}", "198.51.100.20").status for i in range(4)] == [401, 401, 401, 429]
    # IPv4-mapped IPv6 addresses all sit in ::ffff:0:0/96: they are IPv4 clients, not one /48.
    mapped = [_login_failed(api, f"g{n}", f"::ffff:198.51.100.{n}").status for n in range(30, 34)]
    assert mapped == [401, 401, 401, 401]
    assert _login_failed(api, "g9", "::ffff:198.51.100.20").status == 429  # its IPv4 address's count
    # While two /64s of one /48 reach the (low) per-network limit.
    assert _login_failed(api, "h1", "2001:db8:9:1::1").status == 401
    assert _login_failed(api, "h2", "2001:db8:9:2::1").status == 401
    assert _login_failed(api, "h3", "2001:db8:9:3::1").status == 429
    keys = db.execute(
        "SELECT ip_address, network_key FROM connection_logs WHERE action = 'login_failed' ORDER BY created_at"
    ).fetchall()
    assert {network for address, network in keys if "." in address} == {None}
    assert {network for address, network in keys if "." not in address} == {"2001:db8:9::/48"}


def test_signups_refused_as_taken_are_limited_per_address_like_failed_logins(api, reconfigure, db):
    # A 409 tells that an e-mail address has an account, which login's uniform 401 and its limits hide: without
    # a limit of its own, signup was an unthrottled way to test addresses.
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    api.signup("known")
    for name in ("probe1", "probe2", "probe3"):
        body = {"username": name, "email": "known@example.com", "password": PASSWORD}
        assert api.call("POST", "/v1/auth/signup", body, ip="2001:db8:9:1::1").status == 409
    # Then every signup from that network waits, whether or not the name is taken: 201 against 429 would tell too.
    for email in ("known@example.com", "fresh@example.com"):
        body = {"username": "probe4", "email": email, "password": PASSWORD}
        blocked = api.call("POST", "/v1/auth/signup", body, ip="2001:db8:9:1::2")
        assert blocked.status == 429 and "retry-after" in blocked.headers
    fresh = {"username": "probe4", "email": "fresh@example.com", "password": PASSWORD}
    assert api.call("POST", "/v1/auth/signup", fresh, ip="198.51.100.9").status == 201
    trail = db.execute("SELECT user_id, ip_address FROM connection_logs WHERE action = 'signup_failed'").fetchall()
    assert len(trail) == 3 and {row[0] for row in trail} == {None}


def test_signups_refused_as_taken_are_limited_per_ipv6_48_when_a_client_rotates_its_64s(api, reconfigure, db):
    # As for failed logins: each /64 of a routed /48 has a per-address budget of its own, so the /48 bounds them,
    # or signup stays a way to test 65536 times more addresses than login.
    reconfigure(LOGIN_MAX_FAILURES_PER_ADDRESS="2", LOGIN_MAX_FAILURES_PER_IPV6_48="3")
    api.signup("known")

    def probe(n, ip, email="known@example.com"):
        body = {"username": f"probe{n}", "email": email, "password": PASSWORD}
        return api.call("POST", "/v1/auth/signup", body, ip=ip).status

    assert [probe(n, f"2001:db8:7:{n:x}::1") for n in range(1, 4)] == [409, 409, 409]
    assert probe(4, "2001:db8:7:ffff::1") == 429
    assert probe(5, "2001:db8:7:ffff::1", email="fresh@example.com") == 429
    # Another /48, and IPv4 clients, are other networks.
    assert probe(6, "2001:db8:8::1") == 409
    assert probe(7, "198.51.100.10", email="fresh@example.com") == 201
    networks = db.execute("SELECT DISTINCT network_key FROM connection_logs WHERE action = 'signup_failed'")
    assert {row[0] for row in networks} == {"2001:db8:7::/48", "2001:db8:8::/48"}


def test_refresh_rotates_and_replaying_the_spent_token_revokes_the_family(api, db):
    first = api.signup("gina")["refresh_token"]
    second = api.call("POST", "/v1/auth/refresh", {"refresh_token": first})
    assert second.status == 200 and second.json["refresh_token"] != first
    # Outside the grace window: the spent token comes back.
    db.execute("UPDATE refresh_tokens SET used_at = now() - interval '11 seconds' WHERE used_at IS NOT NULL")
    replay = api.call("POST", "/v1/auth/refresh", {"refresh_token": first})
    assert replay.status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": second.json["refresh_token"]}).status == 401
    assert db.execute("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL").fetchone()[0] == 0
    actions = [r[0] for r in db.execute("SELECT action FROM connection_logs ORDER BY created_at")]
    assert "refresh_reuse_detected" in actions


def test_refresh_with_a_wrong_secret_is_401_and_revokes_nothing(api):
    token = api.signup("hank")["refresh_token"]
    token_id = token.split(".")[0]
    for forged in (f"{token_id}.wrong-secret", f"{token_id}.", "not-a-token", f"{uuid.uuid4()}.x"):
        assert api.call("POST", "/v1/auth/refresh", {"refresh_token": forged}).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": token}).status == 200


def _race(n, fn):
    barrier = threading.Barrier(n)
    results = []

    def run():
        barrier.wait()
        try:
            results.append(fn())
        except Exception as exc:  # collected, not raised: the test counts outcomes
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_refreshes_inside_the_grace_window_all_get_pairs(api, app_container):
    token = api.signup("ivy")["refresh_token"]
    from shared.services.accounts import Client

    results = _race(4, lambda: accounts.refresh(app_container.db, app_container.settings, token, Client()))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.refresh_token for r in results}) == 4
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": results[0].refresh_token}).status == 200


def test_spent_token_retried_from_another_address_within_the_grace_window_gets_its_own_pair(api):
    first = api.signup("gus")["refresh_token"]
    # The response to this refresh is lost; the phone switches from Wi-Fi to mobile data and retries.
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": first}, ip="203.0.113.10").status == 200
    retry = api.call(
        "POST", "/v1/auth/refresh", {"refresh_token": first}, ip="198.51.100.66", headers={"User-Agent": "other/1.0"}
    )
    assert retry.status == 200
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": retry.json["refresh_token"]}).status == 200


def test_concurrent_refreshes_outside_the_grace_window_revoke_the_family(api, reconfigure, db):
    built = reconfigure(REFRESH_REUSE_GRACE_SECONDS="0")
    token = api.signup("jack")["refresh_token"]
    from shared.services.accounts import Client

    results = _race(4, lambda: accounts.refresh(built.db, built.settings, token, Client()))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, UnauthorizedError) for r in results if r not in winners)
    # The family is gone, the winner's new token with it.
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": winners[0].refresh_token}).status == 401


def test_logout_revokes_the_family_and_answers_204_whatever_the_token(api):
    pair = api.signup("kate")
    rotated = api.call("POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}).json
    assert api.call("POST", "/v1/auth/logout", {"refresh_token": rotated["refresh_token"]}).status == 204
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]}).status == 401
    assert api.call("POST", "/v1/auth/logout", {"refresh_token": "garbage"}).status == 204


def test_password_change_and_logout_all_end_old_tokens_at_once(api):
    pair = api.signup("liam")
    old_access, old_refresh = pair["access_token"], pair["refresh_token"]
    short = api.call(
        "POST", "/v1/users/me/password", {"current_password": PASSWORD, "new_password": "short"}, token=old_access
    )
    assert short.status == 422
    wrong = api.call(
        "POST",
        "/v1/users/me/password",
        {"current_password": "not it!!", "new_password": "new password 1"},
        token=old_access,
    )
    assert wrong.status == 403
    changed = api.call(
        "POST",
        "/v1/users/me/password",
        {"current_password": PASSWORD, "new_password": "new password 1"},
        token=old_access,
    )
    assert changed.status == 200
    assert api.call("GET", "/v1/users/me", token=old_access).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": old_refresh}).status == 401
    assert api.call("POST", "/v1/auth/login", {"login": "liam", "password": PASSWORD}).status == 401
    fresh = changed.json["access_token"]
    assert api.call("GET", "/v1/users/me", token=fresh).status == 200
    assert api.call("POST", "/v1/users/me/logout-all", token=fresh).status == 204
    assert api.call("GET", "/v1/users/me", token=fresh).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": changed.json["refresh_token"]}).status == 401


def test_protected_route_without_credentials_is_a_401_problem(api):
    reply = api.call("GET", "/v1/users/me")
    assert reply.status == 401 and reply.headers["content-type"] == "application/problem+json"


def test_wrong_current_passwords_are_limited_like_logins_when_a_token_keeps_guessing(api, reconfigure):
    reconfigure(LOGIN_MAX_FAILURES_PER_ACCOUNT="3")
    token = api.signup("mona")["access_token"]

    def change(current: str):
        body = {"current_password": current, "new_password": "new password 2"}
        return api.call("POST", "/v1/users/me/password", body, token=token)

    assert [change(f"guess {i}").status for i in range(3)] == [403, 403, 403]
    blocked = change(PASSWORD)  # even the right one: the guesses are not told apart from the owner
    assert blocked.status == 429 and int(blocked.headers["retry-after"]) > 0
    actions = [row["action"] for row in api.call("GET", "/v1/users/me/connection-logs", token=token).json["items"]]
    assert actions.count("password_change_failed") == 3


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "POST",
            "/v1/auth/signup",
            {"username": "nul\x00x", "email": "n@example.com", "password": PASSWORD},
            "username",
        ),
        (
            "POST",
            "/v1/auth/signup",
            {"username": "lone", "email": "l@example.com", "password": PASSWORD + "\ud800"},
            "password",
        ),
        ("POST", "/v1/auth/login", {"login": "someone\x00", "password": PASSWORD}, "login"),
        ("POST", "/v1/users/me/api-keys", {"name": "ci\x00"}, "name"),
        ("PATCH", "/v1/users/me", {"name": "x\ud83d"}, "name"),
    ],
)
def test_text_postgresql_cannot_store_is_a_422_naming_its_field_on_every_route(api, db, method, path, body, field):
    # A NUL (JSON "\u0000") or a lone surrogate (JSON "\ud800") anywhere in a Strict body's field: the 422 names the
    # field, and nothing is written (before, the database's 422 named no field, or the driver's encoding error a 500).
    token = api.login(api.signup("holder")["user"]["username"])
    counts = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys), (SELECT max(name) FROM users)"
    before = db.execute(counts).fetchone()
    reply = api.call(method, path, body, token=None if path.startswith("/v1/auth") else token)
    assert reply.status == 422, reply.json
    assert reply.headers["content-type"] == "application/problem+json"
    assert [error["loc"][:2] for error in reply.json["errors"]] == [["body", field]]
    assert db.execute(counts).fetchone() == before


def test_every_401_carries_a_bearer_challenge_that_a_browser_may_read(api):
    pair = api.signup("wendy")
    origin = {"Origin": "http://localhost:3000"}
    refused = [
        api.call("GET", "/v1/users/me", headers=origin),  # the authorizer: no credentials
        api.call("GET", "/v1/users/me", token="not-a-token", headers=origin),  # the authorizer: a bad one
        api.call("POST", "/v1/auth/login", {"login": "wendy", "password": "wrong password"}, headers=origin),
        api.call("POST", "/v1/auth/refresh", {"refresh_token": f"{uuid.uuid4()}.x"}, headers=origin),
    ]
    assert api.call("GET", "/v1/users/me", token=pair["access_token"]).status == 200
    for reply in refused:
        assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer", reply.headers
        assert "WWW-Authenticate" in reply.headers["access-control-expose-headers"]
    # The authorizer's refusal says what to do, as API Gateway's does (infra/api.py), not only "Unauthorized".
    assert refused[0].json["detail"] == refused[1].json["detail"] == CREDENTIALS_REFUSED


def test_every_answer_carrying_a_token_pair_is_marked_no_store(api):
    # RFC 6749, 5.1: a response with tokens must not be kept by any cache (a proxy's, the browser's disk cache).
    signup = api.call("POST", "/v1/auth/signup", {"username": "xavi", "email": "x@example.com", "password": PASSWORD})
    login = api.call("POST", "/v1/auth/login", {"login": "xavi", "password": PASSWORD})
    refresh = api.call("POST", "/v1/auth/refresh", {"refresh_token": login.json["refresh_token"]})
    change = api.call(
        "POST",
        "/v1/users/me/password",
        {"current_password": PASSWORD, "new_password": "another long password"},
        token=refresh.json["access_token"],
    )
    for reply, status in ((signup, 201), (login, 200), (refresh, 200), (change, 200)):
        assert reply.status == status and reply.json["refresh_token"], reply.json
        assert reply.headers["cache-control"] == "no-store"


def test_logout_logs_only_a_logout_that_ended_something(api, db):
    # A logout answers 204 whatever the token, and anyone holding a dead one may send it again and again: only the
    # one that revoked something is in the user's connection log.
    pair = api.signup("yann")
    for _ in range(3):
        assert api.call("POST", "/v1/auth/logout", {"refresh_token": pair["refresh_token"]}).status == 204
    other = api.call("POST", "/v1/auth/login", {"login": "yann", "password": PASSWORD}).json
    changed = api.call(
        "POST",
        "/v1/users/me/password",
        {"current_password": PASSWORD, "new_password": "another long password"},
        token=other["access_token"],
    )
    assert changed.status == 200
    assert api.call("POST", "/v1/auth/logout", {"refresh_token": other["refresh_token"]}).status == 204
    logouts = db.execute("SELECT count(*) FROM connection_logs WHERE action = 'logout'").fetchone()
    assert logouts == (1,)


def test_a_password_may_hold_a_nul_since_it_is_only_hashed(api):
    # bcrypt hashes every byte, a NUL included, and a password is never stored as text: Strict refuses a NUL in any
    # other field, not in a password (an account whose password holds one signs in as any other).
    password = "correct\x00horse battery"
    api.signup("nulpass", password=password)
    assert api.call("POST", "/v1/auth/login", {"login": "nulpass", "password": password}).status == 200
    assert api.call("POST", "/v1/auth/login", {"login": "nulpass", "password": "correct"}).status == 401
