from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.migrations import MigrationError, discover, migrate, split_statements, status
from tests.conftest import MIGRATIONS


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


TWO = {
    "0001_create_things.sql": "CREATE TABLE things (id bigint PRIMARY KEY, name text NOT NULL);",
    "0002_add_colour.sql": "ALTER TABLE things ADD COLUMN colour text;",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_migrating_twice_is_a_no_op_when_nothing_changed(empty_database_url, tmp_path):
    folder = _folder(tmp_path, TWO)
    assert [m.version for m in migrate(empty_database_url, folder)] == [1, 2]
    assert migrate(empty_database_url, folder) == []
    with psycopg.connect(empty_database_url) as conn:
        assert [row.state for row in status(conn, folder)] == ["applied", "applied"]


def test_a_migration_numbered_below_an_applied_one_is_applied_with_a_warning(empty_database_url, tmp_path, caplog):
    folder = _folder(tmp_path, {"0001_create_things.sql": TWO["0001_create_things.sql"]})
    (folder / "0003_add_size.sql").write_text("ALTER TABLE things ADD COLUMN size int;")
    migrate(empty_database_url, folder)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (folder / "0002_add_colour.sql").write_text(TWO["0002_add_colour.sql"])  # merged late from another branch
    assert [m.version for m in migrate(empty_database_url, folder)] == [2]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.version, r.newest_applied) for r in warnings] == [(2, 3)]  # type: ignore[attr-defined]


def test_real_migrations_apply_once_and_then_are_a_no_op(empty_database_url):
    applied = migrate(empty_database_url, MIGRATIONS)
    assert len(applied) == len(discover(MIGRATIONS))
    assert migrate(empty_database_url, MIGRATIONS) == []


def _migrated_before(url: str, tmp_path: Path, version: str) -> Path:
    """A folder holding the real migrations numbered below `version`, applied to `url`: the schema a later one
    meets in a deployed database."""
    folder = _folder(tmp_path, {})
    for earlier in MIGRATIONS.glob("*.sql"):
        if earlier.name < version:
            shutil.copy(earlier, folder)
    migrate(url, folder)
    return folder


def test_demoted_user_of_a_direct_conversation_is_its_admin_again_when_0502_applies(empty_database_url, tmp_path):
    # Before 0502 either user could demote the other and leave; the one left could not administer the conversation.
    folder = _migrated_before(empty_database_url, tmp_path, "0502")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        user = conn.execute("INSERT INTO users (username, email) VALUES ('b', 'b@x.io') RETURNING id").fetchone()[0]
        direct = conn.execute("INSERT INTO conversations (kind) VALUES ('direct') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id, role) VALUES (%s, %s, 'member')", (direct, user)
        )
        shutil.copy(next(MIGRATIONS.glob("0502_*.sql")), folder)
        migrate(empty_database_url, folder)
        assert conn.execute("SELECT role FROM participants WHERE user_id = %s", (user,)).fetchone() == ("admin",)


def _user_group_and_message(conn: psycopg.Connection[Any]) -> tuple[Any, Any, Any]:
    """A user, a group and a message in it, inserted as the schema of the moment allows."""
    user = conn.execute("INSERT INTO users (username, email) VALUES ('b', 'b@x.io') RETURNING id").fetchone()[0]
    group = conn.execute("INSERT INTO conversations (kind) VALUES ('group') RETURNING id").fetchone()[0]
    message = conn.execute(
        "INSERT INTO messages (conversation_id, content) VALUES (%s, 'hi') RETURNING id", (group,)
    ).fetchone()[0]
    return user, group, message


def test_two_spellings_of_one_reaction_are_folded_into_the_earliest_when_0550_applies(empty_database_url, tmp_path):
    # Before 0550 a heart with and without U+FE0F, or an NFD and an NFC letter, were two reactions by one person.
    folder = _migrated_before(empty_database_url, tmp_path, "0550")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        user, group, message = _user_group_and_message(conn)
        for emoji, age in (("\u2764", 3), ("\u2764\ufe0f", 2), ("e\u0301", 2), ("\u00e9", 1)):
            conn.execute(
                "INSERT INTO message_reactions (message_id, user_id, emoji, created_at) "
                "VALUES (%s, %s, %s, now() - make_interval(mins => %s))",
                (message, user, emoji, age),
            )
        shutil.copy(next(MIGRATIONS.glob("0550_*.sql")), folder)
        migrate(empty_database_url, folder)
        rows = conn.execute("SELECT emoji FROM message_reactions ORDER BY created_at").fetchall()
        assert rows == [("\u2764",), ("\u00e9",)]  # the earliest of each, in NFC
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES (%s, %s, %s)",
                (message, user, "\u2764\ufe0f"),
            )


def test_last_message_at_moves_to_the_newest_remaining_message_when_0591_applies(empty_database_url, tmp_path):
    # Before 0591 deleting a conversation's newest message left last_message_at at the deleted message's time.
    folder = _migrated_before(empty_database_url, tmp_path, "0591")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:

        def conversation(last_message_at):
            query = "INSERT INTO conversations (kind, last_message_at) VALUES ('group', %s) RETURNING id"
            return conn.execute(query, (last_message_at,)).fetchone()[0]

        def message(conversation_id, minutes_ago):
            return conn.execute(
                "INSERT INTO messages (conversation_id, content, created_at) "
                "VALUES (%s, 'hi', now() - make_interval(mins => %s)) RETURNING created_at",
                (conversation_id, minutes_ago),
            ).fetchone()[0]

        stale = conversation(None)
        message(stale, 30)
        kept = message(stale, 20)  # the newest left; a newer one was deleted
        conn.execute("UPDATE conversations SET last_message_at = now() WHERE id = %s", (stale,))
        emptied = conversation(None)
        conn.execute("UPDATE conversations SET last_message_at = now() WHERE id = %s", (emptied,))
        right = conversation(None)
        newest = message(right, 5)
        conn.execute("UPDATE conversations SET last_message_at = %s WHERE id = %s", (newest, right))
        shutil.copy(next(MIGRATIONS.glob("0591_*.sql")), folder)
        migrate(empty_database_url, folder)
        rows = dict(conn.execute("SELECT id, last_message_at FROM conversations").fetchall())
        assert rows == {stale: kept, emptied: None, right: newest}


def test_participants_added_after_messages_get_a_read_cursor_where_they_joined_when_0610_applies(
    empty_database_url, tmp_path
):
    # Before 0610 an added participant (a group's later member, a direct conversation's user back after leaving) had
    # no read cursor: the whole history counted as unread for them.
    folder = _migrated_before(empty_database_url, tmp_path, "0610")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conversation = conn.execute("INSERT INTO conversations (kind, title) VALUES ('group', 'g') RETURNING id")
        conversation_id = conversation.fetchone()[0]

        def user(name):
            query = "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id"
            return conn.execute(query, (name, f"{name}@example.test")).fetchone()[0]

        def message(minutes_ago):
            return conn.execute(
                "INSERT INTO messages (conversation_id, content, created_at) "
                "VALUES (%s, 'hi', now() - make_interval(mins => %s)) RETURNING id",
                (conversation_id, minutes_ago),
            ).fetchone()[0]

        def joined(user_id, minutes_ago, cursor=None):
            conn.execute(
                "INSERT INTO participants (conversation_id, user_id, joined_at, last_read_message_id) "
                "VALUES (%s, %s, now() - make_interval(mins => %s), %s)",
                (conversation_id, user_id, minutes_ago, cursor),
            )

        first, second = message(50), message(40)
        after = message(10)
        founder, late, reader = user("founder"), user("late"), user("reader")
        joined(founder, 60)  # before any message: no cursor to give
        joined(late, 30)  # after first and second, before `after`
        joined(reader, 30, cursor=first)  # has marked something read: left alone
        shutil.copy(next(MIGRATIONS.glob("0610_*.sql")), folder)
        migrate(empty_database_url, folder)
        rows = dict(conn.execute("SELECT user_id, last_read_message_id FROM participants").fetchall())
        assert rows == {founder: None, late: second, reader: first}
        assert after > second


def test_the_change_log_takes_participant_entries_without_a_message_and_keeps_its_rows_when_0611_applies(
    empty_database_url, tmp_path
):
    # Before 0611 every entry named a message (NOT NULL) and only a mark named a user: a participant change had no
    # place in the feed.
    folder = _migrated_before(empty_database_url, tmp_path, "0611")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        user, group, message = _user_group_and_message(conn)
        conn.execute(
            "INSERT INTO message_changes (conversation_id, message_id, kind, user_id, moved_statuses) "
            "VALUES (%s, %s, 'edited', NULL, NULL), (%s, %s, 'read', %s, true)",
            (group, message, group, message, user),
        )
        shutil.copy(next(MIGRATIONS.glob("0611_*.sql")), folder)
        migrate(empty_database_url, folder)
        kinds = conn.execute("SELECT kind FROM message_changes ORDER BY id").fetchall()
        assert kinds == [("edited",), ("read",)]
        insert = "INSERT INTO message_changes (conversation_id, message_id, kind, user_id) VALUES (%s, %s, %s, %s)"
        conn.execute(insert, (group, None, "participants", user))
        for refused in ((message, "participants", user), (None, "edited", None), (message, "edited", user)):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(insert, (group, *refused))
        # A participant entry outlives its account, naming nobody, as a mark's does.
        conn.execute("DELETE FROM users WHERE id = %s", (user,))
        rows = conn.execute("SELECT kind, user_id FROM message_changes WHERE message_id IS NULL").fetchall()
        assert rows == [("participants", None)]


def test_participants_take_their_conversations_kind_and_the_list_filters_by_it_when_0624_to_0627_apply(
    empty_database_url, tmp_path
):
    # Before 0624 a participant row did not say its conversation's kind; rows already there take it, and the list's
    # function, called as code deployed before 0627 calls it, answers as before.
    folder = _migrated_before(empty_database_url, tmp_path, "0624")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        user = conn.execute("INSERT INTO users (username, email) VALUES ('b', 'b@x.io') RETURNING id").fetchone()[0]
        made = {}
        for kind in ("direct", "group", "room", "assistant"):
            made[kind] = conn.execute("INSERT INTO conversations (kind) VALUES (%s) RETURNING id", (kind,)).fetchone()[
                0
            ]
            conn.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (made[kind], user))
        before = conn.execute("SELECT items FROM confab_conversation_page(%s, 51, NULL, NULL)", (user,)).fetchone()
        # More rows than 0625 fills in one batch (5,000), of another user: every batch, the last short one included.
        other = conn.execute("INSERT INTO users (username, email) VALUES ('o', 'o@x.io') RETURNING id").fetchone()[0]
        conn.execute(
            "WITH made AS (INSERT INTO conversations (kind) SELECT 'group' FROM generate_series(1, 10001) "
            "RETURNING id) "
            "INSERT INTO participants (conversation_id, user_id) SELECT id, %s FROM made",
            (other,),
        )
        for name in ("0624", "0625", "0626", "0627"):
            shutil.copy(next(MIGRATIONS.glob(f"{name}_*.sql")), folder)
        migrate(empty_database_url, folder)
        rows = dict(
            conn.execute("SELECT conversation_id, conversation_kind FROM participants WHERE user_id = %s", (user,))
        )
        assert rows == {conversation_id: kind for kind, conversation_id in made.items()}
        others = conn.execute(
            "SELECT conversation_kind, count(*) FROM participants WHERE user_id = %s GROUP BY 1", (other,)
        ).fetchall()
        assert others == [("group", 10001)]
        assert (
            conn.execute("SELECT items FROM confab_conversation_page(%s, 51, NULL, NULL)", (user,)).fetchone() == before
        )
        page = "SELECT items FROM confab_conversation_page(%s, 51, NULL, NULL, %s)"
        rooms = conn.execute(page, (user, ["room", "direct"])).fetchone()[0]
        assert {item["id"] for item in json.loads(rooms)} == {str(made["room"]), str(made["direct"])}


def test_0591_leaves_the_time_of_a_send_that_commits_while_it_waits_for_the_conversation(empty_database_url, tmp_path):
    # The repair read each conversation's newest message, then waited for a send holding the row: once the send
    # committed, the UPDATE re-checked the row against what it had read before and wrote the older time over the
    # send's, and the conversation sorted too low until its next message.
    from tests.helpers import wait_for_a_lock_waiter

    folder = _migrated_before(empty_database_url, tmp_path, "0591")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        busy = conn.execute("INSERT INTO conversations (kind) VALUES ('group') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO messages (conversation_id, content, created_at) VALUES (%s, 'old', now() - interval '1 hour')",
            (busy,),
        )
        conn.execute("UPDATE conversations SET last_message_at = now() WHERE id = %s", (busy,))  # a deleted newer one
        shutil.copy(next(MIGRATIONS.glob("0591_*.sql")), folder)
        with psycopg.connect(empty_database_url) as sender:
            sent = sender.execute(
                "INSERT INTO messages (conversation_id, content) VALUES (%s, 'new') RETURNING created_at", (busy,)
            ).fetchone()[0]
            sender.execute("UPDATE conversations SET last_message_at = %s WHERE id = %s", (sent, busy))
            migration = threading.Thread(target=migrate, args=(empty_database_url, folder))
            migration.start()
            wait_for_a_lock_waiter(conn)
            sender.commit()
        migration.join(20)
        assert not migration.is_alive()
        assert conn.execute("SELECT last_message_at FROM conversations WHERE id = %s", (busy,)).fetchone() == (sent,)


def test_a_migration_waiting_on_a_long_transaction_gives_up_and_rolls_back_instead_of_stalling_the_table(
    empty_database_url, tmp_path, monkeypatch
):
    # An ALTER TABLE waiting for a long transaction's lock queues every later request for that table behind it:
    # without a lock timeout the deploy's migration held all traffic to the table for as long as it waited.
    import shared.migrations as runner

    monkeypatch.setattr(runner, "LOCK_TIMEOUT_MS", 200)
    monkeypatch.setattr(runner, "DEADLOCK_ATTEMPTS", 2)
    monkeypatch.setattr(runner, "DEADLOCK_BACKOFF_S", 0.05)
    folder = _folder(tmp_path, {"0001_create_things.sql": TWO["0001_create_things.sql"]})
    migrate(empty_database_url, folder)
    (folder / "0002_add_colour.sql").write_text(TWO["0002_add_colour.sql"])
    with psycopg.connect(empty_database_url) as long_reader:
        long_reader.execute("SELECT count(*) FROM things").fetchone()  # its transaction stays open
        started = time.monotonic()
        with pytest.raises(MigrationError, match="could not take its locks within 200 ms"):
            migrate(empty_database_url, folder)
        assert time.monotonic() - started < 5
        long_reader.rollback()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
    # Once that transaction has ended, the same deploy goes through.
    assert [m.version for m in migrate(empty_database_url, folder)] == [2]


def test_0530_is_applied_when_a_login_that_updated_its_user_writes_the_trail_meanwhile(empty_database_url, tmp_path):
    # 0530 takes connection_logs (ADD COLUMN), then users (the foreign key). A login updates users, then writes
    # connection_logs: the reverse order. Caught between its two statements, the pair deadlocked and the deploy's
    # migration was the one PostgreSQL aborted.
    folder = _folder(tmp_path, {})
    for earlier in MIGRATIONS.glob("0[0-5][0-2]*.sql"):
        shutil.copy(earlier, folder)
    assert max(m.version for m in discover(folder)) < 530
    migrate(empty_database_url, folder)
    failures: list[BaseException] = []
    with psycopg.connect(empty_database_url) as login, psycopg.connect(empty_database_url, autocommit=True) as watch:
        user = login.execute("INSERT INTO users (username, email) VALUES ('u', 'u@x.io') RETURNING id").fetchone()[0]
        login.commit()
        login.execute("UPDATE users SET last_login = now() WHERE id = %s", (user,))

        def run() -> None:
            try:
                migrate(empty_database_url, MIGRATIONS)
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        for _ in range(200):
            if watch.execute(waiting).fetchone() != (0,):
                break
            time.sleep(0.05)
        login.execute("INSERT INTO connection_logs (user_id, action) VALUES (%s, 'login')", (user,))
        login.commit()
        runner.join(timeout=60)
        assert failures == []
        assert watch.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] >= 531


def test_five_concurrent_runners_apply_the_schema_once_when_the_database_is_empty(empty_database_url, tmp_path):
    folder = _folder(tmp_path, {**TWO, "0003_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE slow (id int);"})
    results: list[list[int]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append([m.version for m in migrate(empty_database_url, folder)])
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert sorted(results, key=len) == [[], [], [], [], [1, 2, 3]]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (3,)


def test_failing_migration_leaves_the_schema_as_it_was_when_it_breaks_part_way(empty_database_url, tmp_path):
    folder = _folder(
        tmp_path,
        {
            "0001_create_things.sql": TWO["0001_create_things.sql"],
            "0002_break.sql": "CREATE TABLE half (id int); INSERT INTO things VALUES (1, NULL);",
        },
    )
    with pytest.raises(MigrationError, match="0002_break.sql failed and was rolled back"):
        migrate(empty_database_url, folder)
    assert "half" not in _tables(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        assert [r.state for r in status(conn, folder)] == ["applied", "pending"]


def test_edited_applied_file_is_refused_with_a_clear_message(empty_database_url, tmp_path):
    folder = _folder(tmp_path, TWO)
    migrate(empty_database_url, folder)
    (folder / "0002_add_colour.sql").write_text("ALTER TABLE things ADD COLUMN color text;")
    (folder / "0003_more.sql").write_text("CREATE TABLE more (id int);")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_database_url, folder)
    assert "more" not in _tables(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        assert [r.state for r in status(conn, folder)] == ["applied", "changed", "pending"]


def test_status_reports_missing_when_an_applied_file_is_deleted(empty_database_url, tmp_path):
    folder = _folder(tmp_path, TWO)
    migrate(empty_database_url, folder)
    (folder / "0002_add_colour.sql").unlink()
    with psycopg.connect(empty_database_url) as conn:
        assert [r.state for r in status(conn, folder)] == ["applied", "missing"]


def test_no_transaction_file_runs_outside_a_transaction_when_marked(empty_database_url, tmp_path):
    folder = _folder(
        tmp_path,
        {
            **TWO,
            "0003_index_things.sql": (
                "-- confab:no-transaction\nCREATE INDEX CONCURRENTLY things_name ON things (name);"
            ),
        },
    )
    assert [m.version for m in migrate(empty_database_url, folder)] == [1, 2, 3]


DUPLICATES = {
    "0001_create_things.sql": "CREATE TABLE things (id bigint PRIMARY KEY, name text);\n"
    "INSERT INTO things VALUES (1, 'a'), (2, 'a');",
    "0002_index_things.sql": "-- confab:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY things_name ON things (name);",
}


def _invalid_indexes(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
        ).fetchall()
    return [r[0] for r in rows]


def test_failed_no_transaction_file_is_reported_not_rolled_back_with_its_invalid_index_when_it_fails(
    empty_database_url, tmp_path
):
    folder = _folder(tmp_path, DUPLICATES)
    with pytest.raises(MigrationError) as failed:
        migrate(empty_database_url, folder)
    message = str(failed.value)
    assert "0002_index_things.sql failed and was NOT rolled back" in message
    assert _invalid_indexes(empty_database_url) == ["things_name"]
    assert 'DROP INDEX CONCURRENTLY "public"."things_name";' in message
    with psycopg.connect(empty_database_url) as conn:
        assert [r.state for r in status(conn, folder)] == ["applied", "pending"]


def test_no_transaction_index_is_built_on_a_rerun_when_the_cause_of_its_failure_is_fixed(empty_database_url, tmp_path):
    folder = _folder(tmp_path, DUPLICATES)
    with pytest.raises(MigrationError):
        migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM things WHERE id = 2")  # the operator fixes the data
    # The invalid index the failed build left is dropped first; otherwise the rerun fails with "already exists".
    assert [m.version for m in migrate(empty_database_url, folder)] == [2]
    assert _invalid_indexes(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT indisunique FROM pg_index WHERE indexrelid = 'things_name'::regclass").fetchone()
        assert [r.state for r in status(conn, folder)] == ["applied", "applied"]


def test_valid_index_of_the_same_name_is_kept_when_a_no_transaction_file_would_create_it(empty_database_url, tmp_path):
    folder = _folder(tmp_path, {"0001_create_things.sql": DUPLICATES["0001_create_things.sql"]})
    migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE INDEX things_name ON things (id)")  # made by hand, valid: not the runner's to drop
    (folder / "0002_index_things.sql").write_text(DUPLICATES["0002_index_things.sql"])
    with pytest.raises(MigrationError, match="already exists"):
        migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'things_name'::regclass").fetchone()


def test_no_transaction_file_with_two_statements_is_an_error_when_discovered(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "0001_index_things.sql": "-- confab:no-transaction\n"
            "CREATE INDEX CONCURRENTLY things_x ON things (x);\nCREATE INDEX CONCURRENTLY things_y ON things (y);\n"
        },
    )
    with pytest.raises(
        MigrationError, match="0001_index_things.sql: a -- confab:no-transaction file holds exactly one"
    ):
        discover(folder)


def test_statements_are_split_only_outside_quotes_and_comments_when_a_file_is_read():
    text = (
        "-- a comment; with a semicolon\n"
        "SELECT 'it''s; one' AS \"a;b\" /* block; /* nested; */ still; */;\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;;\n"
    )
    statements = split_statements(text)
    assert len(statements) == 2
    assert statements[0].startswith("SELECT 'it''s; one' AS \"a;b\"")
    assert statements[1].endswith("$body$ SELECT 1; $body$")


def test_an_escape_string_with_an_escaped_quote_stays_one_statement_when_split():
    text = "CREATE INDEX CONCURRENTLY t_x ON t (x) WHERE x <> E'it\\'s; odd' AND y <> 'plain\\'"
    assert split_statements(text + ";") == [text]


def test_an_invalid_index_of_the_same_name_on_another_table_is_left_alone_when_a_file_builds_its_own(
    empty_database_url, tmp_path
):
    setup = (
        "CREATE TABLE things (id bigint PRIMARY KEY, name text); INSERT INTO things VALUES (1, 'a'), (2, 'a');\n"
        "CREATE SCHEMA audit; CREATE TABLE audit.events (name text);"
    )
    folder = _folder(tmp_path, {"0001_create_things.sql": setup})
    migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY name_idx ON things (name)")  # an operator's, kept invalid
    index = "-- confab:no-transaction\nCREATE INDEX CONCURRENTLY name_idx ON audit.events (name);"
    (folder / "0002_index_events.sql").write_text(index)
    migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            "SELECT n.nspname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'name_idx' ORDER BY 1"
        ).fetchall()
    assert rows == [("audit", True), ("public", False)]


def test_badly_named_file_is_an_error_when_discovered(tmp_path):
    folder = _folder(tmp_path, {"add_things.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="NNNN_verb_noun.sql"):
        discover(folder)


def test_cli_migrate_and_status_work_on_a_database_url(empty_database_url, tmp_path, monkeypatch, capsys):
    from shared import cli
    from shared.settings import get_settings

    folder = tmp_path / "m"
    shutil.copytree(_folder(tmp_path, TWO), folder)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    monkeypatch.setenv("CONFAB_MIGRATIONS_DIR", str(folder))
    get_settings.cache_clear()
    try:
        assert cli.main(["db", "migrate"]) == 0
        assert cli.main(["db", "status"]) == 0
        (folder / "0001_create_things.sql").write_text("SELECT 1;")
        assert cli.main(["db", "migrate"]) == 2
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert "2 migration(s) applied" in out.out
    assert "0002  applied" in out.out
    assert "was changed after it was applied" in out.err


def test_refresh_tokens_take_their_users_token_version_when_0501_binds_them(empty_database_url, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in discover(MIGRATIONS):
        if migration.version < 501:
            shutil.copy(migration.path, folder)
    migrate(empty_database_url, folder)
    with psycopg.connect(empty_database_url) as conn:
        user = conn.execute(
            "INSERT INTO users (username, email, token_version) VALUES ('u', 'u@example.com', 3) RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)"
            " VALUES (%s, gen_random_uuid(), 'th', now() + interval '1 day')",
            (user,),
        )
    shutil.copy(MIGRATIONS / "0501_bind_refresh_tokens_to_token_version.sql", folder)
    assert [m.version for m in migrate(empty_database_url, folder)] == [501]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT token_version FROM refresh_tokens").fetchall() == [(3,)]
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'refresh_tokens' AND column_name = 'token_version'"
        ).fetchone()
        assert nullable == ("NO",)


@pytest.mark.parametrize("command", [["db", "status"], ["db", "migrate"]])
def test_cli_prints_one_line_without_the_password_when_the_database_is_unreachable(command, monkeypatch, capsys):
    from shared import cli
    from shared.settings import get_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe is closed
    monkeypatch.setenv("DATABASE_URL", f"postgresql://confab:hunter2@127.0.0.1:{port}/confab?connect_timeout=5")
    get_settings.cache_clear()
    try:
        assert cli.main(command) == 2
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert out.err.startswith("confab: cannot use the database: ") and out.err.count("\n") == 1
    assert f"port {port} failed" in out.err
    assert "hunter2" not in out.out + out.err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://confab:hunter2%zz@127.0.0.1/confab",  # a password with a % that was not encoded
        "postgresql://confab:hunter2@[::1/confab",  # libpq quotes the whole URL
        "postgresql://confab:hun/ter2@127.0.0.1/confab",  # a / that was not encoded: "hun" becomes the port
        # An @ not encoded: libpq ends the password at the first one and quotes the rest, its tail included.
        "postgresql://confab:hun@t/er2%zz@127.0.0.1/confab",
        "postgresql://confab@127.0.0.1/confab?password=hunter2%zz",  # the password as a URI parameter
        "postgresql://confab@127.0.0.1/confab?password=hunter2&sslpassword=hun%ter2",
    ],
)
def test_cli_prints_one_line_without_the_password_when_database_url_is_malformed(url, monkeypatch, capsys):
    from shared import cli
    from shared.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert cli.main(["db", "status"]) == 2
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert out.err.startswith("confab: ") and out.err.count("\n") == 1, out.err
    for piece in ("hunter2", "hun", "ter2", "er2%zz", "hun%ter2"):
        assert piece not in out.out + out.err, out.err


def test_cli_gives_up_after_db_connect_timeout_when_the_port_accepts_and_never_answers(monkeypatch, capsys):
    from shared import cli
    from shared.settings import get_settings

    # What a tunnel (ssh -L, kubectl port-forward) to a stopped server looks like: the connection is accepted,
    # then nothing. psycopg's own default waits 130 s.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        monkeypatch.setenv("DATABASE_URL", f"postgresql://confab:hunter2@127.0.0.1:{port}/confab")
        monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
        get_settings.cache_clear()
        started = time.monotonic()
        try:
            assert cli.main(["db", "status"]) == 2
        finally:
            get_settings.cache_clear()
        assert time.monotonic() - started < 10
    out = capsys.readouterr()
    assert out.err.startswith("confab: cannot use the database: ")
    assert "hunter2" not in out.out + out.err
