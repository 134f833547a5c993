from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from shared.bootstrap import build_container
from shared.db import ConnectionProvider, Database
from shared.errors import ConflictError, RetryableError, UnavailableError, UnprocessableError, problem_for
from shared.settings import Settings


@pytest.fixture
def scratch(db):
    db.execute("CREATE TABLE scratch (id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''))")
    return db


@pytest.fixture
def database(settings: Settings):
    built = build_container(settings)
    yield built.db
    built.db.close()


def test_unit_of_work_rolls_back_when_left_without_commit(scratch, database):
    with database.unit_of_work() as uow:
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_unit_of_work_rolls_back_when_the_block_raises_part_way(scratch, database):
    with pytest.raises(ConflictError), database.unit_of_work() as uow:
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'b')")
        uow.commit()
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_transact_commits_when_work_returns(scratch, database):
    database.transact(lambda uow: uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')"))
    assert scratch.execute("SELECT name FROM scratch").fetchone() == ("a",)


def test_unique_violation_becomes_conflict_409_when_a_duplicate_is_inserted(scratch, database):
    scratch.execute("INSERT INTO scratch VALUES (1, 'a')")
    with pytest.raises(ConflictError) as caught:
        database.transact(lambda uow: uow.conn.execute("INSERT INTO scratch VALUES (1, 'b')"))
    assert problem_for(caught.value).status == 409
    assert caught.value.extra["constraint"] == "scratch_pkey"


def test_check_violation_becomes_422_when_a_rule_is_broken(scratch, database):
    with pytest.raises(Exception) as caught:
        database.transact(lambda uow: uow.conn.execute("INSERT INTO scratch VALUES (1, '')"))
    assert problem_for(caught.value).status == 422


def test_connection_is_reused_across_units_of_work_when_healthy(database):
    first = database.read(lambda uow: uow.conn.execute("SELECT pg_backend_pid()").fetchone())
    second = database.read(lambda uow: uow.conn.execute("SELECT pg_backend_pid()").fetchone())
    assert first == second


def test_dead_connection_is_replaced_when_the_server_closed_it(database, db):
    pid = database.read(lambda uow: uow.conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    new_pid = database.read(lambda uow: uow.conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert new_pid != pid


def test_no_server_side_prepared_statements_when_a_query_repeats(database):
    def run(uow):
        for _ in range(10):
            uow.conn.execute("SELECT %s::int", (1,))
        return uow.conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]

    assert database.read(run) == 0


def test_unreachable_database_is_unavailable_when_connecting(tmp_path):
    settings = Settings(CONFAB_STAGE="test", DATABASE_URL="postgresql://confab@127.0.0.1:1/none", DB_CONNECT_TIMEOUT=1)
    broken = build_container(settings).db
    with pytest.raises(UnavailableError):
        broken.read(lambda uow: uow.conn.execute("SELECT 1"))


def test_serialization_failure_is_retried_when_transacting(scratch, database):
    calls = []

    def work(uow):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.errors.SerializationFailure("conflict")
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")

    database.transact(work)
    assert len(calls) == 2
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (1,)


def test_retryable_error_surfaces_when_attempts_run_out(database):
    def work(uow):
        raise psycopg.errors.DeadlockDetected("deadlock")

    with pytest.raises(RetryableError):
        database.transact(work, attempts=2)


def test_pipelined_unit_commits_queued_statements_and_leaves_the_connection_ordinary_when_work_returns(
    scratch, database
):
    def work(uow):
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")
        pending = uow.conn.execute("INSERT INTO scratch VALUES (2, 'b') RETURNING name")
        uow.commit()
        return pending.fetchone()

    assert database.pipelined(work) == ("b",)
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (2,)
    with database.unit_of_work() as uow:
        assert uow.conn.autocommit is False and uow.conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF


def test_pipelined_unit_rolls_back_everything_when_a_queued_statement_fails(scratch, database):
    def work(uow):
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'b')")
        uow.commit()

    with pytest.raises(ConflictError):
        database.pipelined(work)
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (0,)
    assert database.transact(lambda uow: uow.conn.execute("SELECT 1").fetchone()) == (1,)


def test_pipelined_unit_rolls_back_when_work_raises_before_commit(scratch, database):
    def work(uow):
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'a')")
        assert uow.conn.execute("SELECT count(*) FROM scratch").fetchone() == (1,)
        raise ConflictError("changed my mind")

    with pytest.raises(ConflictError):
        database.pipelined(work)
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_text_with_a_nul_byte_is_a_422_when_stored(scratch, database):
    with pytest.raises(UnprocessableError) as caught:
        database.transact(lambda uow: uow.conn.execute("INSERT INTO scratch VALUES (1, %s)", ("a\x00b",)))
    assert problem_for(caught.value).status == 422
    assert "\x00" not in str(problem_for(caught.value).body)


def test_timestamps_come_back_in_utc_when_the_session_time_zone_is_not_utc(database_url):
    # An embedded server made on a laptop takes the machine's zone; bodies must still write "Z".
    provider = ConnectionProvider(lambda: {"conninfo": database_url, "options": "-c TimeZone=Asia/Kolkata"})
    database = Database(provider)
    try:
        zone, stamp, stamps = database.read(
            lambda uow: uow.conn.execute(
                "SELECT current_setting('TimeZone'), '2026-01-01 10:00:00.5+05:30'::timestamptz, "
                "ARRAY['2026-06-01 00:00:00+00'::timestamptz]"
            ).fetchone()
        )
    finally:
        database.close()
    assert zone == "Asia/Kolkata"
    assert stamp == datetime(2026, 1, 1, 4, 30, 0, 500000, tzinfo=UTC) and stamp.utcoffset() == timedelta(0)
    assert stamps[0].utcoffset() == timedelta(0)


def test_a_write_is_not_run_twice_when_its_connection_is_lost_after_it_committed(scratch, database):
    database.read(lambda uow: uow.conn.execute("SELECT 1"))  # the next unit of work reuses the connection

    def write_then_lose_the_connection(uow):
        uow.conn.execute("INSERT INTO scratch VALUES (1, 'once')")  # autocommit: committed here
        uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(UnavailableError):
        database.statement(write_then_lose_the_connection)
    assert scratch.execute("SELECT count(*) FROM scratch").fetchone()[0] == 1
    assert database.read(lambda uow: uow.conn.execute("SELECT 1").fetchone()) == (1,)


def test_a_connection_the_server_closed_while_idle_is_replaced_before_a_write_is_sent(scratch, database, db):
    pid = database.read(lambda uow: uow.conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the server's goodbye reaches the idle socket
    database.transact(lambda uow: uow.conn.execute("INSERT INTO scratch VALUES (2, 'sent once')"))
    assert scratch.execute("SELECT name FROM scratch").fetchall() == [("sent once",)]
