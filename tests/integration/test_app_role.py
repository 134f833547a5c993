"""The application role (shared/app_role.py) on a real PostgreSQL: rows yes, schema no; and the migration
trigger creating it from its secret (moto)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import errors as pg_errors
from psycopg import sql

from functions import migrate as migrate_function
from shared import app_role
from shared.app_role import grant_app_role
from shared.db import translate_db_errors
from shared.errors import UnavailableError, problem_for
from shared.local.events import LocalContext
from shared.settings import get_settings

PASSWORD = "app-role-test-password"


@pytest.fixture
def role(database_url: str) -> Iterator[str]:
    """A unique role name (roles are cluster-wide); dropped with everything granted to it afterwards."""
    name = f"confab_app_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _as(database_url: str, role: str) -> psycopg.Connection[Any]:
    return psycopg.connect(psycopg.conninfo.make_conninfo(database_url, user=role, password=PASSWORD), autocommit=True)


def test_app_role_reads_and_writes_rows_and_calls_the_completion_functions_when_granted(
    database_url: str, db: psycopg.Connection[Any], role: str
):
    assert grant_app_role(db, role, PASSWORD) is True

    with _as(database_url, role) as app:
        user = app.execute("INSERT INTO users (username, email) VALUES ('r', 'r@example.com') RETURNING id").fetchone()[
            0
        ]
        conversation = app.execute(
            "INSERT INTO conversations (kind, user_id, created_by) VALUES ('assistant', %s, %s) RETURNING id",
            (user, user),
        ).fetchone()[0]
        app.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (conversation, user))
        thread = app.execute(
            "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%s, %s) RETURNING id",
            (conversation, user),
        ).fetchone()[0]
        recorded = app.execute(
            "SELECT created, user_message_id, id FROM confab_record_completion(%s, %s, %s, 'q', NULL, 'a', NULL, "
            "'{}'::jsonb)",
            (thread, conversation, user),
        ).fetchone()
        assert recorded is not None and recorded[0] is True and recorded[1] < recorded[2]
        context = app.execute(
            "SELECT history FROM confab_completion_context(%s, %s, NULL, NULL, 10, NULL)", (thread, user)
        ).fetchone()
        assert context == ([["ai", "a"], ["user", "q"]],)
        app.execute("UPDATE users SET username = 'r2' WHERE id = %s", (user,))
        app.execute("DELETE FROM conversations WHERE id = %s", (conversation,))
        assert app.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        # The migration history is readable (health reports the schema version).
        assert app.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0


def test_app_role_sessions_have_time_limits_and_a_statement_past_its_limit_is_a_503_when_granted(
    database_url: str, db: psycopg.Connection[Any], role: str, monkeypatch: pytest.MonkeyPatch
):
    grant_app_role(db, role, PASSWORD)
    with _as(database_url, role) as app:
        assert app.execute("SHOW statement_timeout").fetchone() == ("20s",)
        assert app.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
    with psycopg.connect(database_url, autocommit=True) as owner:  # the migrations' role has no such limit
        assert owner.execute("SHOW statement_timeout").fetchone() == ("0",)

    # A deploy sets them again; a statement past the limit is cancelled by the server and answered 503.
    monkeypatch.setattr(app_role, "SESSION_LIMITS", (("statement_timeout", "200ms"),))
    grant_app_role(db, role, PASSWORD)
    with _as(database_url, role) as app, pytest.raises(UnavailableError) as caught, translate_db_errors():
        app.execute("SELECT pg_sleep(5)")
    assert problem_for(caught.value).status == 503


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE messages",
        "TRUNCATE messages",
        "ALTER TABLE users ADD COLUMN intruder text",
        "CREATE INDEX intruder ON messages (content)",
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'x', 'x')",
        "DELETE FROM schema_migrations",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ],
)
def test_app_role_is_refused_when_it_touches_the_schema_or_the_migration_history(
    database_url: str, db: psycopg.Connection[Any], role: str, statement: str
):
    grant_app_role(db, role, PASSWORD)

    with _as(database_url, role) as app, pytest.raises(pg_errors.InsufficientPrivilege):
        app.execute(statement)


def test_tables_a_later_migration_creates_are_granted_when_the_owner_creates_them(
    database_url: str, db: psycopg.Connection[Any], role: str
):
    grant_app_role(db, role, PASSWORD)
    db.execute("CREATE TABLE later_table (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)")

    with _as(database_url, role) as app:
        app.execute("INSERT INTO later_table (note) VALUES ('granted by default')")
        assert app.execute("SELECT note FROM later_table").fetchone() == ("granted by default",)


class _RecordingConnection:
    """The owner's connection, keeping the text of every statement sent (what log_statement would log)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, query: Any, params: Any = None) -> Any:
        self.statements.append(query if isinstance(query, str) else query.as_string(self._conn))
        return self._conn.execute(query, params)


def _scram_matches(verifier: str, password: str) -> bool:
    # RFC 5802 / 7677: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    method, rest = verifier.split("$", 1)
    counts, keys = rest.split("$")
    iterations, salt = counts.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return (
        method == "SCRAM-SHA-256"
        and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)
        and hmac.digest(salted, b"Server Key", "sha256") == base64.b64decode(server_key)
    )


def test_role_is_created_with_a_scram_verifier_and_never_the_password_in_a_statement_when_missing(
    database_url: str, db: psycopg.Connection[Any], role: str
):
    recording = _RecordingConnection(db)
    assert grant_app_role(recording, role, PASSWORD) is True  # type: ignore[arg-type]

    assert not [statement for statement in recording.statements if PASSWORD in statement]
    assert any(statement.startswith("CREATE ROLE") for statement in recording.statements)
    (stored,) = db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert _scram_matches(stored, PASSWORD) and not _scram_matches(stored, PASSWORD + "x")
    with _as(database_url, role) as app:
        assert app.execute("SELECT current_user").fetchone() == (role,)


def test_granting_again_keeps_the_role_and_its_password_when_it_exists(
    database_url: str, db: psycopg.Connection[Any], role: str
):
    grant_app_role(db, role, PASSWORD)
    before = db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()

    # A later deploy: the secret may hold another value mid-rotation; the role's password is left alone.
    assert grant_app_role(db, role, "another password") is False

    assert db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone() == before
    attributes = db.execute(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    assert attributes == (True, False, False, False)


def test_app_role_checks_for_pending_migrations_when_the_schema_is_current(database_url: str, role: str, db):
    from shared.migrations import migrate

    grant_app_role(db, role, PASSWORD)

    # What `confab serve` does on start: with nothing pending, a row-only role passes.
    assert (
        migrate(
            psycopg.conninfo.make_conninfo(database_url, user=role, password=PASSWORD), get_settings().migrations_dir
        )
        == []
    )


def test_migration_trigger_creates_the_app_role_from_its_secret_when_the_arn_is_set(
    database_url: str, role: str, monkeypatch: pytest.MonkeyPatch
):
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="confab-app", SecretString=json.dumps({"username": role, "password": PASSWORD})
        )["ARN"]
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("APP_DB_SECRET_ARN", arn)
        get_settings.cache_clear()
        try:
            result = migrate_function.lambda_handler(
                {}, LocalContext(function_name="confab-migrate", aws_request_id="trigger-1")
            )
        finally:
            get_settings.cache_clear()

    assert result == {"applied": [], "app_role_created": True}
    with _as(database_url, role) as app:
        assert app.execute("SELECT count(*) FROM users").fetchone() is not None


def test_cli_grants_the_app_role_with_a_password_from_stdin_when_run_as_the_owner(
    database_url: str, role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import io

    from shared.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    get_settings.cache_clear()
    try:
        assert main(["db", "grant-app-role", "--role", role, "--password-stdin"]) == 0
    finally:
        get_settings.cache_clear()

    assert f"created role {role}" in capsys.readouterr().out
    with _as(database_url, role) as app, pytest.raises(pg_errors.InsufficientPrivilege):
        app.execute("DROP TABLE users")
