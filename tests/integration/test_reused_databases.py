"""The harness's own promise: every test's database is migrated, empty and unchanged, whoever used it before."""

from __future__ import annotations

import psycopg


def _take_used(reused_databases, change: str | None) -> str:
    url = reused_databases.take()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (username, email) VALUES ('left', 'left@example.com')")
        conn.execute(
            "INSERT INTO maintenance_runs (holder) VALUES (gen_random_uuid())"
        )  # a row with an identity to restart
        if change:
            conn.execute(change)
    reused_databases.give_back(url)
    return url


def test_a_database_given_back_is_handed_out_again_empty_with_its_sequences_restarted(reused_databases):
    used = _take_used(reused_databases, None)
    again = reused_databases.take()
    try:
        assert again == used
        with psycopg.connect(again, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0
            run = conn.execute("INSERT INTO maintenance_runs (holder) VALUES (gen_random_uuid()) RETURNING id")
            assert run.fetchone() == (1,)
    finally:
        reused_databases.give_back(again)


def test_a_database_whose_schema_a_test_changed_is_never_handed_out_again(reused_databases):
    changes = [
        "ALTER TABLE users ADD CONSTRAINT refuses_rows CHECK (false) NOT VALID",
        "CREATE INDEX users_odd ON users (created_at)",
        "ALTER TABLE messages DISABLE TRIGGER USER",
        "CREATE TABLE scratch (id int)",
        "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = ''Asia/Tokyo''', current_database()); END $$",
    ]
    for change in changes:
        used = _take_used(reused_databases, change)
        again = reused_databases.take()
        try:
            assert again != used, change
        finally:
            reused_databases.give_back(again)


def test_connections_a_test_left_open_are_closed_before_its_database_is_emptied(reused_databases):
    url = reused_databases.take()
    left_open = psycopg.connect(url)
    left_open.execute("INSERT INTO users (username, email) VALUES ('open', 'open@example.com')")  # holds a lock
    reused_databases.give_back(url)
    again = reused_databases.take()
    try:
        with psycopg.connect(again, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    finally:
        reused_databases.give_back(again)
        left_open.close()
