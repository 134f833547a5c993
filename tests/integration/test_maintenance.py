"""Maintenance: what it deletes and what it never deletes, single-flight, resuming after running out of time."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from shared.repositories.maintenance import MaintenanceRepository
from shared.services.maintenance import LEASE_NAME, PURGE_JOBS, run_maintenance
from shared.settings import Settings
from shared.storage import local_storage, storage_key
from tests.helpers import FakeLambdaContext, load_event
from tests.usage_support import make_thread, make_user

NOW = datetime.now(UTC)


def _cache(db, n: int, ttl: datetime) -> None:
    db.execute(
        "INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, cost_estimate, ttl)"
        " SELECT 'm', md5(random()::text || g), 's', 'r', 1, 0, %s FROM generate_series(1, %s) g",
        (ttl, n),
    )


def _anonymous(db, created: datetime, last_message: datetime | None = None) -> uuid.UUID:
    row = db.execute(
        "INSERT INTO conversations (kind, created_at, last_message_at) VALUES ('anonymous', %s, %s) RETURNING id",
        (created, last_message),
    ).fetchone()
    thread = db.execute(
        "INSERT INTO conversation_threads (conversation_id) VALUES (%s) RETURNING id", (row[0],)
    ).fetchone()
    db.execute(
        "INSERT INTO messages (conversation_id, thread_id, content, created_at) VALUES (%s, %s, 'hi', %s)",
        (row[0], thread[0], created),
    )
    return row[0]


def _count(db, table: str, where: str = "TRUE") -> int:
    return db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


def _token(db, user, expires: datetime, revoked: datetime | None = None) -> None:
    db.execute(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, token_version, expires_at, revoked_at)"
        " VALUES (%s, gen_random_uuid(), md5(random()::text), 0, %s, %s)",
        (user, expires, revoked),
    )


@pytest.fixture
def arranged(db):
    """Rows on both sides of every retention line."""
    _cache(db, 30, NOW - timedelta(minutes=1))  # expired
    _cache(db, 7, NOW + timedelta(hours=1))  # fresh
    old = [_anonymous(db, NOW - timedelta(days=120)) for _ in range(4)]
    recent = _anonymous(db, NOW - timedelta(days=30))
    active = _anonymous(db, NOW - timedelta(days=120), last_message=NOW - timedelta(days=2))
    owner = make_user(db)
    owned, _ = make_thread(db, owner)
    db.execute("UPDATE conversations SET created_at = %s WHERE id = %s", (NOW - timedelta(days=400), owned))
    _token(db, owner, NOW - timedelta(days=30))  # expired past the grace
    _token(db, owner, NOW - timedelta(days=1))  # expired inside the grace
    _token(db, owner, NOW + timedelta(days=20), revoked=NOW - timedelta(days=30))  # revoked long ago
    _token(db, owner, NOW + timedelta(days=20))  # live
    db.execute(
        "INSERT INTO connection_logs (user_id, action, created_at) VALUES (%s, 'login', %s), (%s, 'login', %s)",
        (owner, NOW - timedelta(days=400), owner, NOW - timedelta(days=10)),
    )
    db.execute(
        "INSERT INTO anonymous_rate_limits (address, window_start, hits) VALUES ('192.0.2.1', %s, 3),"
        " ('192.0.2.2', %s, 1)",
        (NOW - timedelta(days=2), NOW - timedelta(seconds=10)),
    )
    db.execute("INSERT INTO ai_spend_months (user_id, month) VALUES (%s, date_trunc('month', now())::date)", (owner,))
    db.execute(
        "INSERT INTO ai_spend_reservations (user_id, month, amount_usd, expires_at)"
        " SELECT %s, date_trunc('month', now())::date, 0.5, e FROM unnest(%s::timestamptz[]) e",
        (owner, [NOW - timedelta(minutes=1), NOW - timedelta(days=3), NOW + timedelta(hours=1)]),
    )  # two calls cut off long ago, one in flight
    # The same for anonymous conversations' day (ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD).
    db.execute("INSERT INTO ai_anonymous_spend_days (day) VALUES ((now() AT TIME ZONE 'UTC')::date)")
    db.execute(
        "INSERT INTO ai_anonymous_spend_reservations (day, amount_usd, expires_at)"
        " SELECT (now() AT TIME ZONE 'UTC')::date, 0.5, e FROM unnest(%s::timestamptz[]) e",
        ([NOW - timedelta(minutes=1), NOW - timedelta(days=3), NOW + timedelta(hours=1)],),
    )
    # Uploads: two nobody confirmed long after their URL expired (the bytes of one arrived), one in progress.
    files = {}
    for name, age, stored in (
        ("arrived", timedelta(days=2), True),
        ("never", timedelta(days=2), False),
        ("in_progress", timedelta(minutes=1), False),
    ):
        file_id = uuid.uuid4()
        key = storage_key(owner, file_id)
        db.execute(
            "INSERT INTO user_files (id, owner_id, original_name, size, storage_key, created_at)"
            " VALUES (%s, %s, %s, 9, %s, %s)",
            (file_id, owner, name, key, NOW - age),
        )
        if stored:
            path = local_storage(Settings()).path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"12345")
        files[name] = file_id
    # Changes (edits, deletions) in the owned conversation: one past the retention (30 days), one inside it.
    db.execute(
        "INSERT INTO message_changes (conversation_id, message_id, kind, changed_at) VALUES (%s, 1, 'deleted', %s),"
        " (%s, 2, 'deleted', %s)",
        (owned, NOW - timedelta(days=31), owned, NOW - timedelta(days=29)),
    )
    return {"old": old, "recent": recent, "active": active, "owned": owned, "files": files}


def test_expired_rows_are_deleted_and_everything_else_kept_when_maintenance_runs(app_container, db, arranged):
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.status == "complete"
    assert result.deleted == {
        "ai_cache": 30,
        "ai_spend_reservations": 2,
        "ai_anonymous_spend_reservations": 2,
        "anonymous_conversations": 4,
        "refresh_tokens_expired": 1,
        "refresh_tokens_revoked": 1,
        "connection_logs": 1,
        "anonymous_rate_limits": 1,
        "message_changes": 1,
        "user_files_abandoned": 1,
        "user_file_bytes": 0,
    }
    assert _count(db, "ai_cache") == 7 and _count(db, "ai_cache", "ttl < now()") == 0
    kept = {r[0] for r in db.execute("SELECT id FROM conversations").fetchall()}
    assert kept == {arranged["recent"], arranged["active"], arranged["owned"]}
    # Everything under the deleted chats went with them.
    assert _count(db, "messages") == 2 and _count(db, "conversation_threads") == 3
    assert _count(db, "refresh_tokens") == 2 and _count(db, "connection_logs") == 1
    assert [r[0] for r in db.execute("SELECT address FROM anonymous_rate_limits").fetchall()] == ["192.0.2.2"]
    assert _count(db, "ai_spend_reservations") == 1 and _count(db, "ai_spend_reservations", "expires_at < now()") == 0
    live = _count(db, "ai_anonymous_spend_reservations", "expires_at > now()")
    assert _count(db, "ai_anonymous_spend_reservations") == live == 1
    assert _count(db, "ai_anonymous_spend_days") == 1  # the day's spend stays: it is what the ceiling counts
    files = dict(db.execute("SELECT original_name, status FROM user_files").fetchall())
    assert files == {"arrived": "uploaded", "in_progress": "pending"}  # "never" is gone
    assert db.execute("SELECT size FROM user_files WHERE original_name = 'arrived'").fetchone() == (5,)
    assert [r[0] for r in db.execute("SELECT message_id FROM message_changes").fetchall()] == [2]
    horizons = db.execute("SELECT conversation_id, purged_through FROM message_change_horizons").fetchall()
    assert [h[0] for h in horizons] == [arranged["owned"]] and horizons[0][1] < max(
        r[0] for r in db.execute("SELECT id FROM message_changes").fetchall()
    )


def test_second_run_deletes_nothing_when_the_first_completed(app_container, db, arranged):
    assert run_maintenance(app_container.db, app_container.settings).total_deleted == 44
    again = run_maintenance(app_container.db, app_container.settings)
    assert again.status == "complete" and again.total_deleted == 0
    assert _count(db, "maintenance_leases") == 0


def test_run_exits_at_once_as_busy_when_another_run_holds_the_lease(app_container, db, arranged):
    other = uuid.uuid4()
    db.execute(
        "INSERT INTO maintenance_leases (name, holder, expires_at) VALUES (%s, %s, now() + interval '5 minutes')",
        (LEASE_NAME, other),
    )
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.status == "busy" and result.total_deleted == 0
    assert _count(db, "ai_cache") == 37


def test_an_expired_lease_is_taken_over_when_its_run_crashed(app_container, db, arranged):
    db.execute(
        "INSERT INTO maintenance_leases (name, holder, expires_at) VALUES (%s, %s, now() - interval '1 second')",
        (LEASE_NAME, uuid.uuid4()),
    )
    assert run_maintenance(app_container.db, app_container.settings).status == "complete"


def test_two_concurrent_runs_do_the_work_once_when_started_together(app_container, db):
    _cache(db, 3000, NOW - timedelta(minutes=1))
    settings = Settings(MAINTENANCE_BATCH_SIZE=100)
    results = []
    start = threading.Barrier(2)

    def run():
        start.wait()
        results.append(run_maintenance(app_container.db, settings))

    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert sorted(r.status for r in results) in (["busy", "complete"], ["complete", "complete"])
    assert sum(r.deleted.get("ai_cache", 0) for r in results) == 3000
    assert _count(db, "ai_cache") == 0


def test_run_resumes_after_its_cursor_when_the_previous_run_ran_out_of_time(app_container, db):
    _cache(db, 1000, NOW - timedelta(hours=2))
    settings = Settings(MAINTENANCE_BATCH_SIZE=100)
    ticks = iter(range(1000))
    # A clock that advances one second per look: a 3.5 s budget allows exactly four batches.
    first = run_maintenance(app_container.db, settings, budget_s=3.5, clock=lambda: float(next(ticks)))
    assert first.status == "partial" and first.deleted["ai_cache"] == 300
    cursor = db.execute("SELECT after_ts, after_id FROM maintenance_cursors WHERE job = 'ai_cache'").fetchone()
    assert cursor is not None
    # A row below the cursor appears: the next run continues after the cursor, so it does not see it...
    _cache(db, 1, NOW - timedelta(hours=3))
    second = run_maintenance(app_container.db, settings)
    assert second.status == "complete" and second.deleted["ai_cache"] == 700
    assert _count(db, "ai_cache") == 1 and _count(db, "maintenance_cursors") == 0
    # ...and the pass after that starts from the top again.
    assert run_maintenance(app_container.db, settings).deleted["ai_cache"] == 1


def test_no_batch_is_applied_when_the_lease_was_taken_over_mid_run(app_container, db):
    _cache(db, 10, NOW - timedelta(minutes=1))
    looks = []

    def clock() -> float:
        # The first look sets the deadline; by the second (the lease is ours by then), another run took it over.
        if len(looks) == 1:
            assert db.execute("UPDATE maintenance_leases SET holder = gen_random_uuid()").rowcount == 1
        looks.append(1)
        return 0.0

    result = run_maintenance(app_container.db, app_container.settings, budget_s=60, clock=clock)
    assert result.status == "lease_lost" and result.total_deleted == 0
    assert _count(db, "ai_cache") == 10


def test_scheduled_event_returns_counts_when_invoked_by_eventbridge(app_container, db, arranged):
    from functions.maintenance import lambda_handler

    response = lambda_handler(load_event("eventbridge_maintenance"), FakeLambdaContext())
    assert response["status"] == "complete" and response["deleted"]["ai_cache"] == 30
    assert response["source"] == "aws.events"


def test_every_purge_job_walks_an_index_led_by_its_timestamp_when_listed(db):
    # A job added without such an index would scan the whole table for every batch.
    assert len({job.name for job in PURGE_JOBS}) == len(PURGE_JOBS)
    for job in PURGE_JOBS:
        leading = db.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = %s::regclass AND a.attname = %s",
            (job.target.table, job.target.ts_column),
        ).fetchone()[0]
        assert leading >= 1, job.name


def test_maintenance_lease_is_single_holder_when_acquired_twice(app_container, db):
    def acquire(holder):
        return app_container.db.transact(lambda uow: MaintenanceRepository(uow.conn).acquire_lease("x", holder, 60))

    assert acquire(uuid.uuid4()) is not None
    assert acquire(uuid.uuid4()) is None


def test_confab_maintenance_prints_what_the_function_returns_when_run_from_the_command_line(app_env, db, capsys):
    # docs/operations.md: the command prints the function's answer, run_id included (the maintenance_runs row).
    import json

    from shared.cli import main
    from shared.settings import get_settings

    _cache(db, 5, NOW - timedelta(minutes=1))
    get_settings.cache_clear()
    try:
        assert main(["maintenance"]) == 0
    finally:
        get_settings.cache_clear()
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "complete" and out["deleted"]["ai_cache"] == 5
    assert set(out) == {"status", "deleted", "batches", "run_id"}
    assert db.execute("SELECT count(*) FROM maintenance_runs WHERE id = %s", (out["run_id"],)).fetchone()[0] == 1


def test_the_other_jobs_still_run_when_one_job_fails(app_container, db, arranged, monkeypatch):
    from functions.maintenance import lambda_handler

    purge_batch = MaintenanceRepository.purge_batch

    def cache_purge_fails(self, target, **kwargs):
        if target.table == "ai_cache":
            raise RuntimeError("injected")
        return purge_batch(self, target, **kwargs)

    monkeypatch.setattr(MaintenanceRepository, "purge_batch", cache_purge_fails)
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.failed == ["ai_cache"] and result.status == "failed"
    assert _count(db, "ai_cache") == 37  # nothing of the failed job
    assert result.deleted["anonymous_conversations"] == 4 and result.deleted["user_files_abandoned"] == 1
    assert result.deleted["refresh_tokens_revoked"] == 1 and result.deleted["anonymous_rate_limits"] == 1
    assert db.execute("SELECT complete FROM maintenance_runs WHERE id = %s", (result.run_id,)).fetchone() == (False,)
    assert _count(db, "maintenance_leases") == 0
    # The scheduled function fails (its Errors alarm), after the other jobs ran.
    old = _anonymous(db, NOW - timedelta(days=120))
    with pytest.raises(RuntimeError, match="maintenance jobs failed: ai_cache"):
        lambda_handler(load_event("eventbridge_maintenance"), FakeLambdaContext())
    assert _count(db, "conversations", f"id = '{old}'") == 0


def test_confab_maintenance_reports_failed_and_exits_1_when_a_job_fails(app_env, db, capsys, monkeypatch):
    import json

    from shared.cli import main
    from shared.settings import get_settings

    def purge_fails(self, target, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(MaintenanceRepository, "purge_batch", purge_fails)
    get_settings.cache_clear()
    try:
        assert main(["maintenance"]) == 1
    finally:
        get_settings.cache_clear()
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Not "complete" beside a list of failures.
    assert out["status"] == "failed" and "ai_cache" in out["failed"]


def test_a_run_ended_by_a_lost_database_is_not_recorded_as_complete(app_container, db, arranged, monkeypatch):
    from shared.errors import UnavailableError

    def database_lost(self, target, **kwargs):
        raise UnavailableError("injected")

    monkeypatch.setattr(MaintenanceRepository, "purge_batch", database_lost)
    with pytest.raises(UnavailableError):
        run_maintenance(app_container.db, app_container.settings)
    assert db.execute("SELECT complete FROM maintenance_runs ORDER BY id DESC LIMIT 1").fetchone() == (False,)
    assert _count(db, "maintenance_leases") == 0


def test_an_abandoned_upload_a_message_attached_leaves_that_message_as_an_edit_when_maintenance_runs(app_container, db):
    # A message may attach a file still pending; when its bytes never come, maintenance deletes the file as its
    # owner's DELETE would: its name, type and size go from the message too, an 'edited' change of the conversation.
    owner = make_user(db)
    conversation, thread = make_thread(db, owner)
    files = {}
    for name in ("abandoned", "kept"):
        file_id = uuid.uuid4()
        db.execute(
            "INSERT INTO user_files (id, owner_id, original_name, size, storage_key, status, created_at)"
            " VALUES (%s, %s, %s, 9, %s, %s, %s)",
            (
                file_id,
                owner,
                name,
                storage_key(owner, file_id),
                "pending" if name == "abandoned" else "uploaded",
                NOW - timedelta(days=2),
            ),
        )
        files[name] = file_id
    attachments = [
        {"file_id": str(files[name]), "name": name, "content_type": "text/plain", "size": 9}
        for name in ("abandoned", "kept")
    ]
    message = db.execute(
        "INSERT INTO messages (conversation_id, thread_id, sender_id, content, attachments)"
        " VALUES (%s, %s, %s, 'see', %s::jsonb) RETURNING id",
        (conversation, thread, owner, json.dumps(attachments)),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO message_attachments (message_id, file_id) VALUES (%s, %s), (%s, %s)",
        (message, files["abandoned"], message, files["kept"]),
    )

    result = run_maintenance(app_container.db, app_container.settings)

    assert result.status == "complete" and result.deleted["user_files_abandoned"] == 1
    assert _count(db, "user_files", f"id = '{files['abandoned']}'") == 0
    assert db.execute("SELECT attachments FROM messages WHERE id = %s", (message,)).fetchone()[0] == attachments[1:]
    changes = db.execute(
        "SELECT conversation_id, message_id, kind FROM message_changes WHERE message_id = %s", (message,)
    ).fetchall()
    assert changes == [(conversation, message, "edited")]


@pytest.fixture
def cache_row_locked(database_url, db, arranged):
    """A long transaction elsewhere (a migration, a session left open) holding one expired cache entry."""
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM ai_cache WHERE ttl < now() ORDER BY id LIMIT 1 FOR UPDATE")
        yield
        other.rollback()


def _with_statement_timeout(monkeypatch, ms: int):
    """The app role's statement_timeout (20 s in AWS, shared/app_role.py), shortened, on every new connection."""
    monkeypatch.setenv("PGOPTIONS", f"-c statement_timeout={ms}")


def test_a_job_blocked_by_a_lock_fails_alone_and_the_others_run_when_a_long_transaction_holds_its_rows(
    app_container, db, cache_row_locked, monkeypatch
):
    # The cache purge waits for the locked row until statement_timeout cancels it: the database is still there, so
    # the jobs after it (every one: ai_cache is first) run, instead of the run ending as if the database were lost.
    _with_statement_timeout(monkeypatch, 300)
    result = run_maintenance(app_container.db, app_container.settings)
    assert result.failed == ["ai_cache"] and result.status == "failed"
    assert _count(db, "ai_cache") == 37  # its batch rolled back whole
    assert result.deleted["anonymous_conversations"] == 4 and result.deleted["refresh_tokens_expired"] == 1
    assert result.deleted["refresh_tokens_revoked"] == 1 and result.deleted["connection_logs"] == 1
    assert result.deleted["user_files_abandoned"] == 1
    assert _count(db, "maintenance_leases") == 0
    assert db.execute("SELECT complete FROM maintenance_runs WHERE id = %s", (result.run_id,)).fetchone() == (False,)


class _SlowStorage:
    """Storage that takes ten seconds of the run's clock per call (S3 answering slowly, or retrying)."""

    def __init__(self, clock: list[float]):
        self.clock = clock
        self.calls = 0

    def stored_size(self, key: str) -> int | None:
        self.calls += 1
        self.clock[0] += 10
        return None

    def delete(self, key: str) -> None:
        self.calls += 1
        self.clock[0] += 10


def test_storage_jobs_stop_calling_storage_when_the_run_is_out_of_time(app_container, db, monkeypatch):
    from shared.services import maintenance

    owner = make_user(db)
    db.execute(
        "INSERT INTO user_files (owner_id, original_name, size, storage_key, created_at)"
        " SELECT %s, 'f', 9, 'users/' || g, %s FROM generate_series(1, 20) g",
        (owner, NOW - timedelta(days=2)),
    )
    db.execute(
        "INSERT INTO user_file_deletions (storage_key, url_expires_at) SELECT 'gone/' || g, %s"
        " FROM generate_series(1, 20) g",
        (NOW - timedelta(days=2),),
    )
    clock = [0.0]
    storage = _SlowStorage(clock)
    monkeypatch.setattr(maintenance, "storage_for", lambda settings: storage)
    # 60 s of budget: the purges take none of it, then six storage calls fit; a batch of 20 would take 200 s.
    result = run_maintenance(app_container.db, app_container.settings, budget_s=60, clock=lambda: clock[0])
    assert result.status == "partial"
    assert storage.calls == 6 and clock[0] <= 60
    # What storage answered is settled; the files it was not asked about wait for the next run.
    assert result.deleted["user_files_abandoned"] == 6
    assert _count(db, "user_files") == 14
    assert _count(db, "maintenance_leases") == 0
