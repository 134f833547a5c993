"""No log line carries a password, token or key; no response carries a hash or, after creation, a raw key."""

from __future__ import annotations

import io
import logging
import sys

from tests.integration.identity.conftest import PASSWORD

CANARY_PASSWORD = "canary-password-9f3a"
CANARY_WRONG = "canary-wrong-password-77"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}")


def test_flows_leave_no_secret_in_logs_and_no_hash_in_responses(api, make_role, db, monkeypatch, capfd):
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    confab = logging.getLogger("confab")
    confab.addHandler(capture)
    previous = confab.level
    confab.setLevel(logging.DEBUG)
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    secrets: list[str] = [CANARY_PASSWORD, CANARY_WRONG, PASSWORD]
    try:
        pair = api.signup("canary", password=CANARY_PASSWORD)
        secrets += [pair["access_token"], pair["refresh_token"], pair["refresh_token"].split(".")[1]]
        api.call("POST", "/v1/auth/login", {"login": "canary", "password": CANARY_WRONG})
        api.call("POST", "/v1/auth/login", {"login": "nobody-canary", "password": CANARY_WRONG})
        login = api.call("POST", "/v1/auth/login", {"login": "canary", "password": CANARY_PASSWORD}).json
        secrets += [login["access_token"], login["refresh_token"]]
        rotated = api.call("POST", "/v1/auth/refresh", {"refresh_token": login["refresh_token"]}).json
        secrets += [rotated["access_token"], rotated["refresh_token"]]
        db.execute("UPDATE refresh_tokens SET used_at = now() - interval '1 minute' WHERE used_at IS NOT NULL")
        api.call("POST", "/v1/auth/refresh", {"refresh_token": login["refresh_token"]})  # reuse: family revoked
        token = api.call("POST", "/v1/auth/login", {"login": "canary", "password": CANARY_PASSWORD}).json[
            "access_token"
        ]
        secrets.append(token)
        key = api.call("POST", "/v1/users/me/api-keys", {"name": "canary"}, token=token).json
        secrets.append(key["key"])
        api.call("GET", "/v1/users/me", headers={"x-api-key": key["key"]})
        api.call("GET", "/v1/users/me", headers={"x-api-key": key["key"][:-1] + "Z"})
        api.call("GET", "/v1/users/me", token=token[:-3] + "abc")
        api.call("GET", "/v1/users/me/api-keys", token=token)
        api.call("DELETE", f"/v1/users/me/api-keys/{key['id']}", token=token)
        api.call(
            "POST", "/v1/users/me/password", {"current_password": CANARY_PASSWORD, "new_password": "x"}, token=token
        )
        api.call("POST", "/v1/auth/signup", {"username": "c2", "email": "c2@example.com", "password": "x" * 80})
        make_role(pair["user"]["id"], "admin")
        admin = api.call("POST", "/v1/auth/login", {"login": "canary", "password": CANARY_PASSWORD}).json
        secrets += [admin["access_token"], admin["refresh_token"]]
        lic = api.call("POST", "/v1/licenses", {"tier": "pro", "seats": 1}, token=admin["access_token"]).json
        secrets.append(lic["key"])
        api.call("GET", "/v1/licenses", token=admin["access_token"])
        api.call("GET", "/v1/admin/users", token=admin["access_token"])
        api.call("GET", "/v1/admin/connection-logs", token=admin["access_token"])
        api.call("POST", "/v1/auth/logout", {"refresh_token": admin["refresh_token"]})
    finally:
        root.removeHandler(capture)
        confab.removeHandler(capture)
        confab.setLevel(previous)
    logs = "\n".join(capture.lines) + stdout.getvalue() + "".join(capfd.readouterr())
    assert capture.lines, "the flows should have logged something"
    leaked = [secret[:12] for secret in secrets if secret in logs]
    assert leaked == []

    hashes = [row[0] for row in db.execute("SELECT password_hash FROM users WHERE password_hash IS NOT NULL")]
    hashes += [row[0] for row in db.execute("SELECT token_hash FROM refresh_tokens")]
    hashes += [row[0] for row in db.execute("SELECT key_hash FROM api_keys UNION ALL SELECT key_hash FROM licenses")]
    assert len(hashes) >= 6
    bodies = [reply.raw.decode() for reply in api.replies]
    assert not [h for h in hashes if any(h in body for body in bodies)]
    assert not [b for b in bodies if "password_hash" in b or "key_hash" in b or "token_hash" in b]
    # A raw key appears in exactly one answer: the one that created it.
    assert sum(key["key"] in body for body in bodies) == 1
    assert sum(lic["key"] in body for body in bodies) == 1
