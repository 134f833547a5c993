"""Scheduled maintenance: purge what has outlived its retention, in bounded batches, single-flight.

How a run works (docs/operations.md has the longer story):
- single-flight through a lease row (maintenance_leases) taken and released in short transactions; each
  batch transaction renews it and deletes nothing if it is no longer ours. No session advisory lock:
  that would pin an RDS Proxy connection for the whole run.
- each purge job walks its key (timestamp, id) in bounded batches, one short transaction per batch, and
  saves where it stopped in the same transaction, so a run that runs out of time stops cleanly and the
  next run continues there instead of scanning from the top again. A job that reaches its end clears
  its cursor: the next run starts a fresh pass.
- a job that fails is logged and named in the result, and the others still run; only a lost database ends
  the run at once (every job would fail the same way).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar
from uuid import UUID, uuid4

from shared.db import Database, UnitOfWork
from shared.errors import TimedOutError, UnavailableError
from shared.observability import logger
from shared.repositories.files import FilesRepository
from shared.repositories.maintenance import MaintenanceRepository, PurgeTarget
from shared.services.files import delete_with_copies
from shared.settings import Settings
from shared.storage import storage_for

LEASE_NAME = "maintenance"


@dataclass(frozen=True)
class PurgeJob:
    """One kind of row to purge: what (the target) and after how long (the retention, from settings)."""

    name: str
    target: PurgeTarget
    retention: Callable[[Settings], timedelta]
    batch_size: Callable[[Settings], int] = lambda s: s.maintenance_batch_size


# The extension point: a table with expiring rows (rate-limit windows, reservations...) is one more entry
# here, with an index on (timestamp column, id). Jobs run in this order.
PURGE_JOBS: list[PurgeJob] = [
    PurgeJob("ai_cache", PurgeTarget("ai_cache", "ttl"), lambda s: timedelta(0)),
    # A spend reservation stops counting when it expires (a call cut off never settles it); the row goes here.
    PurgeJob("ai_spend_reservations", PurgeTarget("ai_spend_reservations", "expires_at"), lambda s: timedelta(0)),
    PurgeJob(
        "ai_anonymous_spend_reservations",
        PurgeTarget("ai_anonymous_spend_reservations", "expires_at"),
        lambda s: timedelta(0),
    ),
    PurgeJob(
        "anonymous_conversations",
        # Deleting the conversation cascades to its threads, messages and everything under them. A chat
        # still written to inside the window is kept even if it was created before it.
        PurgeTarget(
            "conversations",
            "created_at",
            condition="kind = 'anonymous' AND user_id IS NULL AND coalesce(last_message_at, created_at) < %(cutoff)s",
        ),
        lambda s: timedelta(days=s.anonymous_retention_days),
        lambda s: s.maintenance_conversation_batch_size,
    ),
    PurgeJob(
        "refresh_tokens_expired",
        PurgeTarget("refresh_tokens", "expires_at"),
        lambda s: timedelta(days=s.refresh_token_grace_days),
    ),
    PurgeJob(
        "refresh_tokens_revoked",
        PurgeTarget("refresh_tokens", "revoked_at"),
        lambda s: timedelta(days=s.refresh_token_grace_days),
    ),
    PurgeJob(
        "connection_logs",
        PurgeTarget("connection_logs", "created_at"),
        lambda s: timedelta(days=s.connection_log_retention_days),
    ),
    # A window that ended is reset by the next hit anyway; rows of addresses that never came back go here.
    PurgeJob(
        "anonymous_rate_limits",
        PurgeTarget("anonymous_rate_limits", "window_start", id_column="address"),
        # The longer window: a row is never purged while its window (creation's or completions') still counts.
        lambda s: timedelta(seconds=max(s.anonymous_create_window_s, s.anonymous_ai_window_s)),
    ),
]

# complete: every job ran to the end; failed: every job ran, and the ones in `failed` raised; partial: the time
# budget ran out first; lease_lost: another run took over; busy: another run was active, nothing ran.
Status = Literal["complete", "failed", "partial", "busy", "lease_lost"]


@dataclass
class MaintenanceResult:
    status: Status
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_transaction_ms: float = 0.0
    run_id: int | None = None
    failed: list[str] = field(default_factory=list)  # jobs that raised; the others ran

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())


def run_maintenance(
    db: Database,
    settings: Settings,
    *,
    budget_s: float | None = None,
    jobs: list[PurgeJob] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> MaintenanceResult:
    """Run every purge job until done or out of time; a second run while one is active returns 'busy' at once."""
    budget = budget_s if budget_s is not None else settings.maintenance_time_budget_s
    deadline = clock() + budget
    holder = uuid4()
    # Longer than the budget so it never lapses mid-run; renewed by every batch anyway.
    lease_ttl_s = budget + 60

    def acquire(uow: UnitOfWork) -> tuple[datetime, int] | None:
        repo = MaintenanceRepository(uow.conn)
        now = repo.acquire_lease(LEASE_NAME, holder, lease_ttl_s)
        return None if now is None else (now, repo.start_run(holder))

    taken = db.transact(acquire)
    if taken is None:
        logger.info("maintenance already running elsewhere; exiting")
        return MaintenanceResult(status="busy")
    started_at, run_id = taken
    result = MaintenanceResult(status="complete", run_id=run_id)
    run = _Run(db, settings, holder, lease_ttl_s, started_at, deadline, clock, result)

    ended = False  # False when an error (a lost database) ends the run
    try:
        for job in jobs if jobs is not None else PURGE_JOBS:
            status = _attempt(result, job.name, functools.partial(_run_job, run, job))
            if status != "complete":
                result.status = status
                break
        other_jobs = (
            (MESSAGE_CHANGES_JOB, _purge_message_changes),
            ("user_files_abandoned", _settle_stale_uploads),
            ("user_file_bytes", _delete_late_bytes),
        )
        for name, other_job in other_jobs if jobs is None else ():
            if result.status == "complete":
                result.status = _attempt(result, name, functools.partial(other_job, run))
        if result.failed and result.status == "complete":
            result.status = "failed"
        ended = True
    finally:

        def finish(uow: UnitOfWork) -> None:
            repo = MaintenanceRepository(uow.conn)
            repo.finish_run(run_id, complete=ended and result.status == "complete", deleted=result.deleted)
            repo.release_lease(LEASE_NAME, holder)

        db.transact(finish)
    logger.info(
        "maintenance run finished",
        extra={
            "status": result.status,
            "deleted": result.deleted,
            "failed": result.failed,
            "batches": result.batches,
            "run_id": run_id,
        },
    )
    return result


def _attempt(result: MaintenanceResult, name: str, step: Callable[[], Status]) -> Status:
    """Run one job. One job's failure (a row it cannot delete, storage refusing, a lock held elsewhere) must not
    starve the jobs after it, run after run: it is named in `result.failed`; only a lost database ends the run."""
    try:
        return step()
    except TimedOutError:
        # A statement cancelled (the app role's statement_timeout, waiting on a lock a long transaction holds): the
        # database is there, and the other jobs' rows are most likely free. This job's batch rolled back; it
        # continues from its cursor next run.
        logger.exception("maintenance job timed out; running the others", extra={"job": name})
    except UnavailableError:
        raise
    except Exception:
        logger.exception("maintenance job failed; running the others", extra={"job": name})
    result.failed.append(name)
    return "complete"


@dataclass(frozen=True)
class _Run:
    """What every job of one run shares: the database, the lease it holds, its time and what it has done."""

    db: Database
    settings: Settings
    holder: UUID
    lease_ttl_s: float
    started_at: datetime
    deadline: float
    clock: Callable[[], float]
    result: MaintenanceResult

    def out_of_time(self) -> bool:
        return self.clock() >= self.deadline

    def renew_lease(self, uow: UnitOfWork) -> bool:
        """Whether the lease is still ours (renewed in the batch's transaction, which writes nothing if not)."""
        return MaintenanceRepository(uow.conn).renew_lease(LEASE_NAME, self.holder, self.lease_ttl_s)

    def lease_lost(self, job: str) -> Status:
        logger.warning("maintenance lease lost; stopping", extra={"job": job})
        return "lease_lost"


def _leased_batches(
    run: _Run, name: str, step: Callable[[UnitOfWork, Any], tuple[int, Any]], after: Any = None
) -> Status:
    """A job whose batches are each one transaction that renews the lease. `step` deletes one batch after `after`
    (None at first, unless given) and answers how many it deleted and where the next batch starts: None when this
    one was the last. That cursor is taken only once the batch has committed."""
    result = run.result
    result.deleted.setdefault(name, 0)
    while not run.out_of_time():

        def batch(uow: UnitOfWork, after: Any = after) -> tuple[int, Any] | None:
            return step(uow, after) if run.renew_lease(uow) else None

        began = time.perf_counter()
        outcome = run.db.transact(batch)
        result.longest_transaction_ms = max(result.longest_transaction_ms, (time.perf_counter() - began) * 1000)
        if outcome is None:
            return run.lease_lost(name)
        deleted, after = outcome
        result.batches += 1
        result.deleted[name] += deleted
        if after is None:
            return "complete"
    return "partial"


def _run_job(run: _Run, job: PurgeJob) -> Status:
    cutoff = run.started_at - job.retention(run.settings)
    limit = job.batch_size(run.settings)

    def step(uow: UnitOfWork, after: tuple[datetime, str] | None) -> tuple[int, tuple[datetime, str] | None]:
        repo = MaintenanceRepository(uow.conn)
        found = repo.purge_batch(job.target, cutoff=cutoff, limit=limit, after=after)
        repo.set_cursor(job.name, found.last)  # None once finished
        return found.deleted, found.last

    start = run.db.read(lambda uow: MaintenanceRepository(uow.conn).cursor(job.name))
    return _leased_batches(run, job.name, step, start)


MESSAGE_CHANGES_JOB = "message_changes"


def _purge_message_changes(run: _Run) -> Status:
    """Changes (edits, deletions, reactions, read and delivered marks) older than MESSAGE_CHANGE_RETENTION_DAYS leave
    the change feed, batch by batch, each batch recording per conversation how far it purged (message_change_horizons):
    a client polling from before that is answered 410 and resyncs, never missing a change silently. The oldest go
    first, so no cursor is kept: a batch that deleted something is followed by another, until one deletes nothing."""
    cutoff = run.started_at - timedelta(days=run.settings.message_change_retention_days)
    limit = run.settings.maintenance_batch_size

    def step(uow: UnitOfWork, _: object) -> tuple[int, bool | None]:
        deleted = MaintenanceRepository(uow.conn).purge_message_changes(cutoff=cutoff, limit=limit)
        return deleted, (True if deleted else None)

    return _leased_batches(run, MESSAGE_CHANGES_JOB, step)


Row = TypeVar("Row")
Done = TypeVar("Done")

STALE_UPLOAD_BATCH = 100  # a storage call each: smaller than the purges' batches
STALE_UPLOAD_GRACE = timedelta(hours=1)  # an upload begun just before its URL expired may still be arriving


def _storage_batches(
    run: _Run,
    name: str,
    find: Callable[[UnitOfWork, Any], list[Row]],
    ask_storage: Callable[[list[Row]], Done],
    settle: Callable[[UnitOfWork, Done], int],
    cursor_of: Callable[[Row], Any],
) -> Status:
    """A job that needs storage, batch by batch: rows found in one read, storage called for each outside any
    transaction (a slow storage holds no lock), then what it answered settled in a transaction that renews the
    lease. `find` takes the cursor after the previous batch (None at first). `ask_storage` checks the time before
    each call: a storage slow to answer (up to three attempts of a few seconds each) would otherwise make one batch of
    a hundred calls outlast the budget and the function's own timeout, ending the run without releasing its lease."""
    result = run.result
    result.deleted.setdefault(name, 0)
    after: Any = None
    while not run.out_of_time():

        def read(uow: UnitOfWork, after: Any = after) -> list[Row]:
            return find(uow, after)

        batch = run.db.read(read)
        if not batch:
            return "complete"
        done = ask_storage(batch)

        def commit(uow: UnitOfWork, done: Done = done) -> int | None:
            return settle(uow, done) if run.renew_lease(uow) else None

        count = run.db.transact(commit)
        if count is None:
            return run.lease_lost(name)
        result.batches += 1
        result.deleted[name] += count
        after = cursor_of(batch[-1])
    return "partial"


def _settle_stale_uploads(run: _Run) -> Status:
    """Uploads nobody confirmed (a GET does) once their URL has expired: storage is asked, outside any
    transaction, whether the bytes came; if they did the record is marked uploaded, if not it is deleted (with its
    copies in the messages that attached it, each an 'edited' change). A file storage cannot answer for is left
    for the next run."""
    storage = storage_for(run.settings)
    cutoff = run.started_at - timedelta(seconds=run.settings.file_url_ttl_s) - STALE_UPLOAD_GRACE

    def find(uow: UnitOfWork, after: tuple[datetime, UUID] | None) -> list[tuple[UUID, str, datetime]]:
        return FilesRepository(uow.conn).stale_uploads(cutoff, after, STALE_UPLOAD_BATCH)

    def sizes_of(stale: list[tuple[UUID, str, datetime]]) -> dict[UUID, int | None]:
        sizes: dict[UUID, int | None] = {}
        for file_id, key, _ in stale:
            if run.out_of_time():
                break  # the files not asked about are left for the next run
            try:
                sizes[file_id] = storage.stored_size(key)
            except Exception:
                logger.exception("storage could not say whether an upload arrived", extra={"storage_key": key})
        return sizes

    def settle(uow: UnitOfWork, sizes: dict[UUID, int | None]) -> int:
        deleted, attached = FilesRepository(uow.conn).settle_stale_uploads(sizes)
        # A file a message attached leaves with its copies in those messages, as a deletion by its owner does.
        return deleted + sum(delete_with_copies(uow, file_id, run.settings.file_url_ttl_s) for file_id in attached)

    return _storage_batches(run, "user_files_abandoned", find, sizes_of, settle, lambda row: (row[2], row[0]))


def _delete_late_bytes(run: _Run) -> Status:
    """Bytes of deleted files, once their upload URL has expired (whatever arrived through it meanwhile, or what a
    failed delete left): deleted from storage outside any transaction, then their keys forgotten. A key storage
    refuses is kept for the next run."""
    storage = storage_for(run.settings)
    cutoff = run.started_at - STALE_UPLOAD_GRACE

    def find(uow: UnitOfWork, after: tuple[datetime, str] | None) -> list[tuple[str, datetime]]:
        return FilesRepository(uow.conn).expired_deletions(cutoff, after, STALE_UPLOAD_BATCH)

    def delete(expired: list[tuple[str, datetime]]) -> list[str]:
        gone: list[str] = []
        for key, _ in expired:
            if run.out_of_time():
                break  # the keys not deleted are kept for the next run
            try:
                storage.delete(key)
                gone.append(key)
            except Exception:
                logger.exception("file bytes left behind", extra={"storage_key": key})
        return gone

    def forget(uow: UnitOfWork, gone: list[str]) -> int:
        return FilesRepository(uow.conn).forget_deletions(gone)

    return _storage_batches(run, "user_file_bytes", find, delete, forget, lambda row: (row[1], row[0]))
