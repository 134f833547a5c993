"""Forward-only SQL migrations: applied in order, each once, each in a transaction, checksummed.

A session-level advisory lock on a direct (not proxied) connection makes concurrent runners safe:
the second runner waits, then finds everything applied. A file whose first line is
`-- confab:no-transaction` runs outside a transaction (for CREATE INDEX CONCURRENTLY).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from shared.observability import logger

LOCK_KEY = 0x636F6E666162  # "confab"
NO_TRANSACTION_MARK = "-- confab:no-transaction"
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


class MigrationError(Exception):
    """The migrations folder and the database disagree; nothing was changed by the failing step."""


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
        found[version] = Migration(version, match.group(2), path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


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
    for migration in migrations:
        if migration.version in applied:
            continue
        logger.info("applying migration", extra={"version": migration.version, "migration": migration.name})
        try:
            if migration.transactional:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(INSERT_APPLIED, _record(migration))
            else:
                conn.execute(migration.sql.encode())
                conn.execute(INSERT_APPLIED, _record(migration))
        except psycopg.Error as exc:
            raise MigrationError(f"{migration.path.name} failed and was rolled back: {exc}") from exc
        done.append(migration)
    return done


def _record(migration: Migration) -> dict[str, Any]:
    return {"version": migration.version, "name": migration.name, "checksum": migration.checksum}
