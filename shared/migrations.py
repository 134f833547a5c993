"""Forward-only SQL migrations: applied in order, each once, each in a transaction, checksummed.

A session-level advisory lock on a direct (not proxied) connection makes concurrent runners safe:
the second runner waits, then finds everything applied. A file whose first line is
`-- confab:no-transaction` runs outside a transaction (for CREATE INDEX CONCURRENTLY) and holds exactly one
statement: PostgreSQL runs a multi-statement query as one implicit transaction, which CONCURRENTLY refuses.

Nothing undoes a failed no-transaction file. A failed CREATE INDEX CONCURRENTLY leaves an INVALID index of
that name behind (never used by queries, still updated by writes), so a rerun would fail with "already
exists": before running such a file again, the runner drops an invalid index of the very name the file
creates on the table it names, unless a build of it is in progress. Any other invalid index is only named in the error.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from shared.observability import logger

LOCK_KEY = 0x636F6E666162  # "confab"
NO_TRANSACTION_MARK = "-- confab:no-transaction"
# A transactional file that deadlocks with live traffic is applied again, this many times in all.
DEADLOCK_ATTEMPTS = 5
DEADLOCK_BACKOFF_S = 0.5
# How long a transactional file waits for each lock it takes. PostgreSQL queues every later request for a table
# behind a waiting ALTER TABLE: a migration waiting on a long transaction would stall all traffic to that table
# for as long. Past this it gives up, rolls back and tries again (with the deadlock attempts above).
LOCK_TIMEOUT_MS = 5000
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
HISTORY_EXISTS = "SELECT to_regclass('schema_migrations')"
SELECT_APPLIED = "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)"
CURRENT_VERSION = "SELECT max(version) FROM schema_migrations"
INVALID_INDEXES = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid ORDER BY 1, 2
"""
# The index of that name on that table (CREATE INDEX puts an index in its table's schema), when invalid and
# not being built.
ABANDONED_INDEX = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = to_regclass(%(table)s) AND c.relname = %(name)s AND NOT i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
"""
_NAME = r"(?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)"
CREATE_INDEX_NAME = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"({_NAME})\s+ON\s+(?:ONLY\s+)?({_NAME}(?:\.{_NAME})?)",
    re.IGNORECASE,
)


class MigrationError(Exception):
    """A migration file is malformed or failed, or the folder and the database disagree.

    The failing step of a transactional file was rolled back; the message says when it was not."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARK)

    @property
    def created_index(self) -> tuple[str, str] | None:
        """(index name as PostgreSQL stores it, table as written) of a no-transaction `CREATE INDEX
        CONCURRENTLY` file."""
        statements = split_statements(self.sql)
        match = CREATE_INDEX_NAME.match(statements[0]) if len(statements) == 1 else None
        if match is None:
            return None
        name = match.group(1)
        stored = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
        return stored, match.group(2)


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    state: str  # "applied", "pending", "changed" (file edited after it was applied), "missing" (file gone)


def discover(folder: Path) -> list[Migration]:
    """The migration files in version order; a duplicate version or a stray .sql name is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_verb_noun.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used by {found[version].path.name} too")
        migration = Migration(version, match.group(2), path, path.read_text(encoding="utf-8"))
        count = 1 if migration.transactional else len(split_statements(migration.sql))
        if count != 1:
            raise MigrationError(
                f"{path.name}: a {NO_TRANSACTION_MARK} file holds exactly one statement (PostgreSQL runs "
                f"several sent at once as one transaction); found {count}. Put each statement in a file of its own."
            )
        found[version] = migration
    return [found[v] for v in sorted(found)]


def split_statements(text: str) -> list[str]:
    """The statements of a SQL script, split on semicolons outside quotes, dollar quotes and comments.

    Comments are dropped; blank statements are not returned."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            i = _block_comment_end(text, i)
            current.append(" ")
            continue
        if ch in "'\"":
            # E'...' (not the end of a longer word) takes backslash escapes: E'it\'s' is one string.
            escapes = ch == "'" and i > 0 and text[i - 1] in "eE" and not re.match(r"[A-Za-z0-9_]", text[i - 2 : i - 1])
            end = i + 1
            while True:
                found = text.find(ch, end)
                slash = text.find("\\", end) if escapes else -1
                if 0 <= slash < found:
                    end = slash + 2
                    continue
                end = found
                if end < 0:
                    end = n
                    break
                if text.startswith(ch * 2, end):  # a doubled quote stays inside
                    end += 2
                    continue
                end += 1
                break
            current.append(text[i:end])
            i = end
            continue
        dollar = re.match(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$", text[i:]) if ch == "$" else None
        if dollar and not (current and re.match(r"[A-Za-z0-9_]", current[-1][-1:])):
            tag = dollar.group(0)
            end = text.find(tag, i + len(tag))
            end = n if end < 0 else end + len(tag)
            current.append(text[i:end])
            i = end
            continue
        if ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def _block_comment_end(text: str, start: int) -> int:
    # PostgreSQL's block comments nest.
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str, datetime]]:
    if not _applied_table_exists(conn):
        return {}
    return {row[0]: (row[1], row[2], row[3]) for row in conn.execute(SELECT_APPLIED)}


def status(conn: psycopg.Connection[Any], folder: Path) -> list[MigrationStatus]:
    """Each migration, applied or not, and whether its file still matches what was applied."""
    applied = _applied(conn)
    rows: list[MigrationStatus] = []
    files = {m.version: m for m in discover(folder)}
    for version in sorted(set(files) | set(applied)):
        migration = files.get(version)
        if version not in applied:
            assert migration is not None
            rows.append(MigrationStatus(version, migration.name, None, "pending"))
            continue
        name, checksum, applied_at = applied[version]
        state = "missing" if migration is None else ("applied" if migration.checksum == checksum else "changed")
        rows.append(MigrationStatus(version, name, applied_at, state))
    return rows


def current_version(conn: psycopg.Connection[Any]) -> int | None:
    """The highest applied version, or None on an empty database."""
    if not _applied_table_exists(conn):
        return None
    row = conn.execute(CURRENT_VERSION).fetchone()
    return row[0] if row else None


def _applied_table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def migrate(conninfo: str | dict[str, Any], folder: Path) -> list[Migration]:
    """Apply every pending migration in order and return those applied by this call."""
    migrations = discover(folder)
    params = {"conninfo": conninfo} if isinstance(conninfo, str) else dict(conninfo)
    with psycopg.connect(autocommit=True, prepare_threshold=None, **params) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            # Only when missing: creating needs the CREATE privilege, which a role that only reads and writes
            # rows (shared/app_role.py) lacks, and such a role may still check that nothing is pending.
            if conn.execute(HISTORY_EXISTS).fetchone() == (None,):
                conn.execute(CREATE_TABLE)
            return _apply_pending(conn, migrations)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _apply_pending(conn: psycopg.Connection[Any], migrations: list[Migration]) -> list[Migration]:
    applied = _applied(conn)
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded and recorded[1] != migration.checksum:
            raise MigrationError(
                f"{migration.path.name} was changed after it was applied (checksum {recorded[1][:12]} in the "
                f"database, {migration.checksum[:12]} on disk). Applied migrations are never edited: "
                "restore the file and add a new migration instead."
            )
    done: list[Migration] = []
    newest = max(applied, default=None)
    for migration in migrations:
        if migration.version in applied:
            continue
        if newest is not None and migration.version < newest:
            # A file numbered below one already applied (branches merged in another order than numbered): it
            # is applied, after the later ones, which it must not depend on being before.
            logger.warning(
                "applying a migration older than the newest applied one",
                extra={"version": migration.version, "migration": migration.name, "newest_applied": newest},
            )
        logger.info("applying migration", extra={"version": migration.version, "migration": migration.name})
        try:
            if migration.transactional:
                _apply_in_transaction(conn, migration)
            else:
                _drop_abandoned_index(conn, migration)
                conn.execute(migration.sql.encode())
                conn.execute(INSERT_APPLIED, _record(migration))
        except psycopg.Error as exc:
            if migration.transactional:
                raise MigrationError(f"{migration.path.name} failed and was rolled back: {exc}") from exc
            raise MigrationError(_not_rolled_back(conn, migration, exc)) from exc
        done.append(migration)
    return done


def _apply_in_transaction(conn: psycopg.Connection[Any], migration: Migration) -> None:
    """Apply a transactional file, again after a deadlock with live traffic (PostgreSQL rolled it back whole).

    A file that locks two tables (an ALTER TABLE, then a foreign key to another table) takes them in an order a
    request may take them in reverse (a login updates users, then writes connection_logs); when the two meet,
    PostgreSQL aborts one, often the migration, and the deploy failed. The request side retries deadlocks too
    (Database.transact)."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_MS}ms")))
                conn.execute(migration.sql.encode())
                conn.execute(INSERT_APPLIED, _record(migration))
            return
        except pg_errors.LockNotAvailable as exc:
            if attempt == DEADLOCK_ATTEMPTS:
                raise MigrationError(
                    f"{migration.path.name} could not take its locks within {LOCK_TIMEOUT_MS} ms in "
                    f"{DEADLOCK_ATTEMPTS} attempts (a long transaction holds a table it changes) and was rolled back: "
                    "nothing was changed. Deploy again once that transaction has ended (pg_stat_activity shows it)."
                ) from exc
            logger.warning(
                "a migration waited too long for a lock held by live traffic and was rolled back; applying it again",
                extra={"version": migration.version, "migration": migration.name, "attempt": attempt},
            )
            time.sleep(DEADLOCK_BACKOFF_S * attempt)
        except pg_errors.DeadlockDetected:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning(
                "a migration deadlocked with live traffic and was rolled back; applying it again",
                extra={"version": migration.version, "migration": migration.name, "attempt": attempt},
            )
            time.sleep(DEADLOCK_BACKOFF_S * attempt)


def _drop_abandoned_index(conn: psycopg.Connection[Any], migration: Migration) -> None:
    # Only the index this pending file creates, only when invalid (no query uses it) and not being built:
    # what a failed earlier run of this very file left behind. A valid index of that name is left alone.
    created = migration.created_index
    if created is None:
        return
    name, table = created
    row = conn.execute(ABANDONED_INDEX, {"name": name, "table": table}).fetchone()
    if row is None:
        return
    logger.warning(
        "dropping the invalid index a failed run of this migration left",
        extra={"version": migration.version, "migration": migration.name, "index": f"{row[0]}.{row[1]}"},
    )
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(row[0], row[1])))


def _not_rolled_back(conn: psycopg.Connection[Any], migration: Migration, exc: psycopg.Error) -> str:
    message = (
        f"{migration.path.name} failed and was NOT rolled back (it runs outside a transaction; "
        f"what it did before failing stays): {exc}"
    )
    try:
        invalid = conn.execute(INVALID_INDEXES).fetchall()
    except psycopg.Error:
        return f"{message}. Look for invalid indexes it may have left: pg_index rows WHERE NOT indisvalid."
    if not invalid:
        return message
    drops = " ".join(
        sql.SQL("DROP INDEX CONCURRENTLY {};").format(sql.Identifier(schema, name)).as_string(conn)
        for schema, name in invalid
    )
    names = ", ".join(f"{schema}.{name}" for schema, name in invalid)
    return (
        f"{message}. Invalid indexes in the database (a failed CONCURRENTLY build leaves one; queries never use "
        f"it, writes still pay for it): {names}. Fix the cause and migrate again (the runner drops an invalid "
        f"index of the name this file creates), or drop them by hand: {drops}"
    )


def _record(migration: Migration) -> dict[str, Any]:
    return {"version": migration.version, "name": migration.name, "checksum": migration.checksum}
