"""`confab users create-admin`: the only way to make a super_admin."""

from __future__ import annotations

import io

from shared.cli import main


def test_create_admin_makes_a_super_admin_who_can_sign_in(app_container, db, api, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a strong password\n"))
    assert main(["users", "create-admin", "--username", "root", "--email", "root@example.com", "--password-stdin"]) == 0
    assert "a strong password" not in capsys.readouterr().out
    assert db.execute("SELECT role FROM users WHERE username = 'root'").fetchone()[0] == "super_admin"
    reply = api.call("POST", "/v1/auth/login", {"login": "root", "password": "a strong password"})
    assert reply.status == 200 and reply.json["user"]["role"] == "super_admin"


def test_create_admin_refuses_a_short_password_or_a_taken_name_with_exit_2(app_container, db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "create-admin", "--username", "r", "--email", "r@example.com", "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a strong password\n"))
    assert main(["users", "create-admin", "--username", "root", "--email", "x@example.com", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a strong password\n"))
    assert main(["users", "create-admin", "--username", "ROOT", "--email", "y@example.com", "--password-stdin"]) == 2
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
