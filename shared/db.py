"""Connections, units of work and the translation of driver errors into domain errors.

Made for Lambda behind RDS Proxy: one connection per warm container, opened lazily, reused,
replaced after a failure. No client-side pool (the proxy is the pool), no server-side prepared
statements and no session-level SET, both of which would pin a proxy connection.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format, TransactionStatus

from shared.errors import (
    ConflictError,
    NotFoundError,
    RetryableError,
    TimedOutError,
    UnavailableError,
    UnprocessableError,
)
from shared.observability import logger

T = TypeVar("T")

ConninfoFactory = Callable[[], dict[str, Any]]


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn psycopg errors raised inside the block into domain errors."""
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        raise ConflictError(
            "A resource with the same unique value already exists.", constraint=_constraint(exc)
        ) from exc
    except pg_errors.ForeignKeyViolation as exc:
        raise NotFoundError("A referenced resource does not exist.") from exc
    except (
        pg_errors.CheckViolation,
        pg_errors.NotNullViolation,
        pg_errors.StringDataRightTruncation,
        pg_errors.NumericValueOutOfRange,
        pg_errors.InvalidTextRepresentation,
    ) as exc:
        raise UnprocessableError("A value breaks a rule of the data model.", constraint=_constraint(exc)) from exc
    except psycopg.DataError as exc:
        # Every other data exception is a value PostgreSQL cannot take (a NUL byte in text, a date out of
        # range...): the caller sent it, so it is a 422, never a 500. The value itself is not echoed.
        raise UnprocessableError("A value cannot be stored (for example, text with a NUL byte).") from exc
    except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as exc:
        raise RetryableError("The transaction conflicted with another; retry it.") from exc
    except (pg_errors.QueryCanceled, pg_errors.LockNotAvailable) as exc:
        raise TimedOutError("The database took too long to answer.") from exc
    except psycopg.OperationalError as exc:
        raise UnavailableError("The database cannot be reached.") from exc


def _constraint(exc: psycopg.Error) -> str | None:
    return exc.diag.constraint_name if exc.diag else None


class UtcTimestamptzLoader(Loader):
    """timestamptz values in UTC whatever the session's TimeZone, so that every body writes them alike ("Z").

    PostgreSQL sends them in the session's TimeZone: UTC on RDS, but an embedded server made on a laptop takes
    the machine's zone (and a DATABASE_URL server may have any). SQL that depends on the zone names it
    (`AT TIME ZONE 'UTC'`); this only makes the values Python sees uniform. It wraps psycopg's own loader (a C
    type, which cannot be subclassed)."""

    def __init__(self, oid: int, context: AdaptContext | None = None):
        super().__init__(oid, context)
        inner = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert inner is not None
        self._inner = inner(oid, context)

    def load(self, data: Buffer) -> datetime:
        loaded: datetime = self._inner.load(data)
        return loaded.astimezone(UTC)


def use_utc_timestamps(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_loader("timestamptz", UtcTimestamptzLoader)


def _hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection has something to read. Nothing is owed to it between units of work, so that is
    the server or RDS Proxy closing it (a closed socket reads as end of file) or saying why it will: RDS Proxy
    closes a client connection left idle past its timeout, while a Lambda container sleeps. One poll, no round
    trip; a dead connection is replaced before anything is sent on it."""
    if conn.pgconn.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class ConnectionProvider:
    """Hands out the container's one connection, opening or replacing it as needed."""

    def __init__(self, conninfo: ConninfoFactory, *, connect_timeout_s: int = 5, application_name: str = "confab"):
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s
        self._application_name = application_name
        # One connection per thread: Lambda has one thread; the local server a small fixed pool.
        self._local = threading.local()

    def _open(self) -> psycopg.Connection[Any]:
        params = self._conninfo()
        params.setdefault("connect_timeout", self._connect_timeout_s)
        params.setdefault("application_name", self._application_name)
        started = time.perf_counter()
        conn = psycopg.connect(autocommit=False, prepare_threshold=None, **params)
        use_utc_timestamps(conn)
        logger.debug("database connection opened", extra={"ms": round((time.perf_counter() - started) * 1000, 1)})
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The live connection for the duration of one unit of work."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        self._local.reused = True
        if (
            conn is None
            or conn.closed
            or conn.broken
            or conn.pgconn.transaction_status == TransactionStatus.UNKNOWN
            or _hung_up(conn)
        ):
            self.discard()
            with translate_db_errors():
                conn = self._local.conn = self._open()
            self._local.reused = False
        try:
            yield conn
        except BaseException:
            if conn.broken or conn.closed:
                self.discard()
            raise

    @property
    def last_was_reused(self) -> bool:
        """Whether this thread's last unit of work ran on a connection opened by an earlier one."""
        return bool(getattr(self._local, "reused", False))

    def discard(self) -> None:
        """Drop this thread's connection so the next unit of work opens a fresh one."""
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg.Error:
                logger.debug("closing a broken connection failed")

    def close(self) -> None:
        self.discard()


class UnitOfWork:
    """One connection, one transaction. Leaving the block without commit() rolls back."""

    def __init__(self, conn: psycopg.Connection[Any], pipeline: ExitStack | None = None):
        self.conn = conn
        self.committed = False
        self._pipeline = pipeline

    def commit(self) -> None:
        """Commit. In a pipelined unit of work the COMMIT joins the queued statements and they all go out
        together (their results can be fetched afterwards); that ends the unit of work's transaction and a
        second commit() does nothing."""
        with translate_db_errors():
            if self._pipeline is None:
                self.conn.commit()
            elif not self.committed:
                # Leaving pipeline mode sends one Sync and collects every queued result: one round trip.
                self.conn.execute("COMMIT")
                self._pipeline.close()
        self.committed = True


class Database:
    """Entry point of the data layer: units of work over a ConnectionProvider."""

    def __init__(self, provider: ConnectionProvider):
        self.provider = provider

    @contextmanager
    def unit_of_work(self, *, autocommit: bool = False, pipelined: bool = False) -> Iterator[UnitOfWork]:
        """A transaction; domain errors come out, driver errors never do.

        pipelined: the transaction runs in libpq pipeline mode. BEGIN is queued rather than sent on its own,
        and statements go out together until a result is fetched or commit() is called, so a unit of work
        whose statements do not depend on each other's results costs one round trip, COMMIT included.
        """
        with self.provider.connection() as conn:
            try:
                with translate_db_errors():
                    if conn.autocommit != (autocommit or pipelined):
                        conn.autocommit = autocommit or pipelined
                    if pipelined:
                        # psycopg sends the BEGIN it injects with a Sync of its own; one issued here is queued.
                        pipeline = ExitStack()
                        pipeline.enter_context(conn.pipeline())
                        uow = UnitOfWork(conn, pipeline)
                        try:
                            conn.execute("BEGIN")
                            yield uow
                        finally:
                            if not uow.committed:
                                try:
                                    pipeline.close()
                                except psycopg.Error:
                                    logger.debug("a queued statement failed; rolling back")
                    else:
                        uow = UnitOfWork(conn)
                        yield uow
            finally:
                if not conn.closed:
                    try:
                        in_transaction = conn.pgconn.transaction_status != TransactionStatus.IDLE
                        if pipelined and in_transaction:
                            conn.execute("ROLLBACK")
                        elif not autocommit and in_transaction:
                            conn.rollback()
                    except psycopg.Error:
                        self.provider.discard()

    def transact(self, work: Callable[[UnitOfWork], T], *, attempts: int = 3) -> T:
        """Run `work` in a unit of work and commit it.

        Retried as a whole on serialization failures and deadlocks: both rolled back before anything was
        written, so running `work` again is safe. A connection lost part-way is not retried (503): its COMMIT
        may have been carried out, and running a write again could store it twice. A connection closed while
        the container was idle is replaced before the work starts (ConnectionProvider), so this is rare.
        """
        return self._run(work, commit=True, attempts=attempts)

    def pipelined(self, work: Callable[[UnitOfWork], T], *, attempts: int = 3) -> T:
        """transact() in pipeline mode (see unit_of_work): `work` may call uow.commit() itself before it fetches
        its results, so that the statements and the COMMIT share one round trip."""
        return self._run(work, commit=True, attempts=attempts, pipelined=True)

    def read(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run read-only `work` in a unit of work (rolled back at the end), with the same retries, and once more
        on a reused connection found dead part-way (nothing it did was kept)."""
        return self._run(work, commit=False, attempts=3)

    def statement(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` whose statements each stand alone, in autocommit.

        PostgreSQL runs a lone statement as its own transaction (atomic, committed once), so this saves the
        BEGIN and COMMIT (or ROLLBACK) round trips of transact() and read(). Each further statement is its own
        transaction with its own snapshot: only for work with at most one write, and reads that need no common
        snapshot (a page answered by one statement). Retried like transact().
        """
        return self._run(work, commit=False, attempts=3, autocommit=True)

    def _run(
        self,
        work: Callable[[UnitOfWork], T],
        *,
        commit: bool,
        attempts: int,
        autocommit: bool = False,
        pipelined: bool = False,
    ) -> T:
        stale_retry = True
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.unit_of_work(autocommit=autocommit, pipelined=pipelined) as uow:
                    result = work(uow)
                    if commit:
                        uow.commit()
                    return result
            except RetryableError:
                if attempt >= attempts:
                    raise
                time.sleep(0.01 * attempt)
            except UnavailableError as exc:
                lost = isinstance(exc.__cause__, psycopg.OperationalError) and not isinstance(exc, TimedOutError)
                # Only read-only work is run again: a write's statement or COMMIT may have been carried out.
                read_only = not commit and not autocommit
                if not (read_only and stale_retry and lost and self.provider.last_was_reused):
                    raise
                stale_retry = False
                logger.info("reopening a stale database connection")

    def close(self) -> None:
        self.provider.close()
