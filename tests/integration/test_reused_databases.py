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
        # What the fingerprint did not see: each left the next test a database that behaves otherwise.
        "CREATE RULE users_vanish AS ON INSERT TO users DO INSTEAD NOTHING",
        "CREATE OR REPLACE VIEW chat_messages AS SELECT m.id, m.conversation_id, m.thread_id, m.sender_id AS user_id,"
        " m.sender_kind AS role, m.content, m.created_at FROM messages m WHERE false",
        "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY nobody ON users USING (false)",
        "ALTER TABLE ai_spend_months ALTER COLUMN spent_usd TYPE numeric(10, 2)",
        'ALTER TABLE users ALTER COLUMN username TYPE text COLLATE "C"',
        "GRANT SELECT (email) ON users TO PUBLIC",
        "DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s INCREMENT BY 10',"
        " pg_get_serial_sequence('maintenance_runs', 'id')); END $$",
        "CREATE TYPE leftover AS ENUM ('a')",
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


def test_a_large_object_a_test_made_is_gone_when_its_database_is_handed_out_again(reused_databases):
    url = reused_databases.take()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(0, 'left behind')")
    reused_databases.give_back(url)
    again = reused_databases.take()
    try:
        with psycopg.connect(again, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
    finally:
        reused_databases.give_back(again)
