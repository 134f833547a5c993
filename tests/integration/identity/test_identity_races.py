"""Races between a refresh, a sign-in or a password change and what ends a user's sessions (password change,
logout-all, deactivation): whichever commits first, no session begun before the end outlives it."""

from __future__ import annotations

import threading
import uuid

import bcrypt
import pytest

from shared.auth.principal import Principal
from shared.errors import ForbiddenError, UnauthorizedError
from shared.models.identity import AdminUserPatch, LoginRequest, PasswordChange
from shared.services import account_deletions, accounts, admin
from tests.helpers import wait_for_a_lock_waiter
from tests.integration.identity.conftest import PASSWORD

NEW_PASSWORD = "a brand new password"


def _change_password(built, user_id):
    accounts.change_password(
        built.db,
        built.settings,
        user_id,
        PasswordChange(current_password=PASSWORD, new_password=NEW_PASSWORD),
        accounts.Client(),
    )


def _logout_everywhere(built, user_id):
    accounts.logout_everywhere(built.db, user_id, accounts.Client())


def _deactivate(built, user_id):
    made = "INSERT INTO users (username, email, role) VALUES (%s, %s, 'super_admin') RETURNING id"
    name = f"root-{uuid.uuid4().hex[:8]}"
    root_id = built.db.transact(lambda uow: uow.conn.execute(made, (name, f"{name}@example.com")).fetchone()[0])
    root = Principal(kind="jwt", user_id=root_id, role="super_admin")
    admin.update_user(built.db, root, uuid.UUID(user_id), AdminUserPatch(is_active=False), accounts.Client())


def _delete_account(built, user_id):
    made = "INSERT INTO users (username, email, role) VALUES (%s, %s, 'super_admin') RETURNING id"
    name = f"root-{uuid.uuid4().hex[:8]}"
    root_id = built.db.transact(lambda uow: uow.conn.execute(made, (name, f"{name}@example.com")).fetchone()[0])
    root = Principal(kind="jwt", user_id=root_id, role="super_admin")
    account_deletions.delete_account(built.db, built.settings, root, uuid.UUID(user_id))


ENDINGS = pytest.mark.parametrize(
    "end_sessions",
    [_change_password, _logout_everywhere, _deactivate, _delete_account],
    ids=["password_change", "logout_all", "deactivation", "deletion"],
)


def _refresh_while(built, db, monkeypatch, refresh_token, act):
    """Refresh `refresh_token`, pausing inside its transaction after it has spent the token and inserted the
    child; meanwhile run `act` until it waits on a lock; then let both finish. The refresh's new pair."""
    paused, resume = threading.Event(), threading.Event()
    real_pair = accounts._pair

    def pausing_pair(*args, **kwargs):
        issued = real_pair(*args, **kwargs)
        if threading.current_thread().name == "refresher":
            paused.set()
            resume.wait(10)
        return issued

    monkeypatch.setattr(accounts, "_pair", pausing_pair)
    out = {}

    def refresher():
        out["pair"] = accounts.refresh(built.db, built.settings, refresh_token, accounts.Client())

    refreshing = threading.Thread(target=refresher, name="refresher")
    refreshing.start()
    assert paused.wait(10)
    acting = threading.Thread(target=act)
    acting.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    refreshing.join(10)
    acting.join(10)
    monkeypatch.setattr(accounts, "_pair", real_pair)
    return out["pair"]


@ENDINGS
def test_refresh_in_flight_is_refused_afterwards_when_sessions_end_while_it_commits(
    api, app_container, db, monkeypatch, end_sessions
):
    pair = api.signup("victim")
    user_id = pair["user"]["id"]
    # The revocation waits on the row lock of the token being spent.
    child = _refresh_while(
        app_container, db, monkeypatch, pair["refresh_token"], lambda: end_sessions(app_container, user_id)
    )
    assert api.call("GET", "/v1/users/me", token=child.access_token).status == 401
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": child.refresh_token}).status == 401


def test_a_refresh_in_flight_keeps_its_session_when_an_admin_changes_the_role_meanwhile(
    api, app_container, db, monkeypatch
):
    # A role change rebinds the user's live refresh tokens to the new token version. A refresh in flight has
    # inserted its child with the old version; the role change's lock on the user waits for that refresh to
    # commit (its inserts hold a key-share lock on the user), so the rebind sees the child.
    pair = api.signup("rolf")
    user_id = pair["user"]["id"]

    def promote():
        made = (
            "INSERT INTO users (username, email, role) VALUES ('root-r', 'root-r@example.com', 'super_admin') "
            "RETURNING id"
        )
        root_id = app_container.db.transact(lambda uow: uow.conn.execute(made).fetchone()[0])
        root = Principal(kind="jwt", user_id=root_id, role="super_admin")
        admin.update_user(app_container.db, root, uuid.UUID(user_id), AdminUserPatch(role="admin"), accounts.Client())

    child = _refresh_while(app_container, db, monkeypatch, pair["refresh_token"], promote)
    assert db.execute("SELECT role FROM users WHERE id = %s", (user_id,)).fetchone() == ("admin",)
    again = api.call("POST", "/v1/auth/refresh", {"refresh_token": child.refresh_token})
    assert again.status == 200
    assert api.call("GET", "/v1/users/me", token=again.json["access_token"]).json["role"] == "admin"


def test_refresh_token_is_refused_and_revokes_nothing_when_the_token_version_moved_on(api, db):
    pair = api.signup("wanda")
    # What a revocation that missed this token leaves behind: a live row, a newer version on the user.
    db.execute("UPDATE users SET token_version = token_version + 1 WHERE id = %s", (pair["user"]["id"],))
    reply = api.call("POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert reply.status == 401 and reply.json["detail"] == accounts.REFRESH_FAILED
    assert db.execute("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL").fetchone() == (1,)
    assert [row[0] for row in db.execute("SELECT action FROM connection_logs")] == ["signup"]


def _during_the_password_check(monkeypatch, act):
    """Run `act` once, between the bcrypt check of a request and what that request then writes."""
    real_verify = accounts.verify_password
    pending = [act]

    def verify_then_act(*args, **kwargs):
        matched = real_verify(*args, **kwargs)
        while pending:
            pending.pop()()
        return matched

    monkeypatch.setattr(accounts, "verify_password", verify_then_act)


@pytest.mark.parametrize(
    "end_sessions",
    [_change_password, _deactivate, _delete_account],
    ids=["password_change", "deactivation", "deletion"],
)
def test_login_with_the_old_password_is_401_when_the_account_changes_during_its_check(
    api, app_container, db, monkeypatch, end_sessions
):
    user_id = api.signup("victim")["user"]["id"]
    _during_the_password_check(monkeypatch, lambda: end_sessions(app_container, user_id))
    with pytest.raises(UnauthorizedError) as refused:
        accounts.login(
            app_container.db,
            app_container.settings,
            LoginRequest(login="victim", password=PASSWORD),
            accounts.Client(),
        )
    assert refused.value.detail == accounts.LOGIN_FAILED
    assert [row[0] for row in db.execute("SELECT action FROM connection_logs WHERE action LIKE 'login%'")] == [
        "login_failed"
    ]


def test_password_change_is_403_when_another_change_commits_during_its_check(api, app_container, monkeypatch):
    user_id = api.signup("victim")["user"]["id"]
    _during_the_password_check(monkeypatch, lambda: _change_password(app_container, user_id))
    with pytest.raises(ForbiddenError):
        accounts.change_password(
            app_container.db,
            app_container.settings,
            user_id,
            PasswordChange(current_password=PASSWORD, new_password="the slower change"),
            accounts.Client(),
        )
    assert api.call("POST", "/v1/auth/login", {"login": "victim", "password": NEW_PASSWORD}).status == 200
    assert api.call("POST", "/v1/auth/login", {"login": "victim", "password": "the slower change"}).status == 401


def test_a_refresh_token_that_escaped_a_logout_all_stays_dead_when_an_admin_later_changes_the_role(
    api, app_container, db, monkeypatch
):
    # The child of a refresh that commits while logout-all waits escapes the revocation and is held off by its
    # old token version alone (migration 0501). A later role change moves live tokens to the new version: it
    # must move only those of the version it replaces, or it brings the escaped child back to life.
    pair = api.signup("esca")
    user_id = pair["user"]["id"]
    child = _refresh_while(
        app_container, db, monkeypatch, pair["refresh_token"], lambda: _logout_everywhere(app_container, user_id)
    )
    made = "INSERT INTO users (username, email, role) VALUES ('re', 're@example.com', 'super_admin') RETURNING id"
    root_id = app_container.db.transact(lambda uow: uow.conn.execute(made).fetchone()[0])
    root = Principal(kind="jwt", user_id=root_id, role="super_admin")
    admin.update_user(app_container.db, root, uuid.UUID(user_id), AdminUserPatch(role="admin"), accounts.Client())
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": child.refresh_token}).status == 401


def _store_at_another_cost(db, username):
    # A hash from before BCRYPT_ROUNDS (4 in tests) changed: the next successful login replaces it.
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    db.execute("UPDATE users SET password_hash = %s WHERE username = %s", (old, username))


def _login(built, login):
    return accounts.login(built.db, built.settings, LoginRequest(login=login, password=PASSWORD), accounts.Client())


def test_login_succeeds_when_a_concurrent_login_rehashes_the_password_during_its_check(
    api, app_container, db, monkeypatch
):
    # Two sign-ins of one account at once (a phone and a browser) after a cost change: the first replaces the
    # hash with one of the same password; the second, checked against the old hash, is still a correct login.
    api.signup("twin")
    _store_at_another_cost(db, "twin")
    _during_the_password_check(monkeypatch, lambda: _login(app_container, "twin"))
    assert _login(app_container, "twin").user.username == "twin"
    actions = db.execute("SELECT action FROM connection_logs WHERE action LIKE 'login%' ORDER BY created_at")
    assert [row[0] for row in actions] == ["login", "login"]
    stored = db.execute("SELECT password_hash FROM users WHERE username = 'twin'").fetchone()[0]
    assert stored.startswith("$2b$04$") and bcrypt.checkpw(PASSWORD.encode(), stored.encode())


def test_password_change_succeeds_when_a_login_rehashes_the_password_during_its_check(
    api, app_container, db, monkeypatch
):
    # The login stored the same password at the current cost: the current password checked is still the one.
    user_id = api.signup("turn")["user"]["id"]
    _store_at_another_cost(db, "turn")
    _during_the_password_check(monkeypatch, lambda: _login(app_container, "turn"))
    _change_password(app_container, user_id)
    assert api.call("POST", "/v1/auth/login", {"login": "turn", "password": NEW_PASSWORD}).status == 200
    assert api.call("POST", "/v1/auth/login", {"login": "turn", "password": PASSWORD}).status == 401


@pytest.mark.parametrize("end_family", ["logout", "reuse"])
def test_a_refresh_in_flight_is_refused_afterwards_when_another_token_of_its_family_ends_the_family(
    api, reconfigure, db, monkeypatch, end_family
):
    # A logout with (or the replay of) an earlier token of the family revokes the family's rows while a refresh of
    # the current token holds that token's row: the revocation waits for it, and the child the refresh inserts
    # meanwhile must not outlive the family (a tab signing out while another refreshes; a thief refreshing while
    # its owner's replay is detected).
    built = reconfigure(REFRESH_REUSE_GRACE_SECONDS="0")
    first = api.signup("fiona")["refresh_token"]
    current = api.call("POST", "/v1/auth/refresh", {"refresh_token": first}).json["refresh_token"]

    def end() -> None:
        if end_family == "logout":
            accounts.logout(built.db, first, accounts.Client())
        else:
            with pytest.raises(UnauthorizedError):
                accounts.refresh(built.db, built.settings, first, accounts.Client())

    child = _refresh_while(built, db, monkeypatch, current, end)
    assert api.call("POST", "/v1/auth/refresh", {"refresh_token": child.refresh_token}).status == 401
    assert db.execute("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL").fetchone() == (0,)


def test_password_change_is_401_and_changes_nothing_when_the_account_is_deactivated_during_its_check(
    api, app_container, db, monkeypatch
):
    # Deactivating an account whose credentials were stolen must not leave the thief a password of its choosing for
    # when the account is reactivated.
    user_id = api.signup("victim")["user"]["id"]
    before = db.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,)).fetchone()
    _during_the_password_check(monkeypatch, lambda: _deactivate(app_container, user_id))
    with pytest.raises(UnauthorizedError):
        accounts.change_password(
            app_container.db,
            app_container.settings,
            uuid.UUID(user_id),
            PasswordChange(current_password=PASSWORD, new_password=NEW_PASSWORD),
            accounts.Client(),
        )
    assert db.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,)).fetchone() == before
    assert db.execute("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM connection_logs WHERE action = 'password_changed'").fetchone() == (0,)
