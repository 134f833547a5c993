"""SQL of scheduled maintenance: the single-flight lease, per-job cursors, run records and keyset purges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

# Taken only when free or expired (a run that crashed frees it when its lease runs out).
ACQUIRE_LEASE = """
INSERT INTO maintenance_leases AS l (name, holder, acquired_at, expires_at)
VALUES (%(name)s, %(holder)s, now(), now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now()
RETURNING now()
"""

# Run inside every batch transaction: no lease, no delete (a run whose lease was taken over stops).
RENEW_LEASE = """
UPDATE maintenance_leases
SET expires_at = now() + make_interval(secs => %(ttl_s)s)
WHERE name = %(name)s AND holder = %(holder)s AND expires_at >= now()
"""

RELEASE_LEASE = "DELETE FROM maintenance_leases WHERE name = %(name)s AND holder = %(holder)s"

GET_CURSOR = "SELECT after_ts, after_id FROM maintenance_cursors WHERE job = %(job)s"
SET_CURSOR = """
INSERT INTO maintenance_cursors (job, after_ts, after_id) VALUES (%(job)s, %(after_ts)s, %(after_id)s)
ON CONFLICT (job) DO UPDATE SET after_ts = EXCLUDED.after_ts, after_id = EXCLUDED.after_id, updated_at = now()
"""
CLEAR_CURSOR = "DELETE FROM maintenance_cursors WHERE job = %(job)s"

START_RUN = "INSERT INTO maintenance_runs (holder) VALUES (%(holder)s) RETURNING id"
FINISH_RUN = """
UPDATE maintenance_runs SET finished_at = now(), complete = %(complete)s, deleted = %(deleted)s WHERE id = %(id)s
"""


# Message changes (migration 0601) are purged conversation by conversation, each leaving how far it went in
# message_change_horizons, so a client polling from before it is told to resync instead of missing a change. The
# conversations' rows are taken FOR KEY SHARE first, as the horizon's foreign key takes them anyway: taken after the
# change rows, a conversation's deletion (its row FOR UPDATE, then its change rows by cascade) could deadlock with
# the purge. SKIP LOCKED: a conversation being deleted takes its changes with it.
LOCK_CHANGED_CONVERSATIONS = """
SELECT c.id FROM conversations c
WHERE c.id IN (SELECT ch.conversation_id FROM message_changes ch WHERE ch.changed_at < %(cutoff)s
               ORDER BY ch.changed_at, ch.id LIMIT %(limit)s)
ORDER BY c.id
FOR KEY SHARE SKIP LOCKED
"""

# A change an edit, a delete, a reaction or a read mark removed meanwhile is skipped (and needs no horizon: a later
# change supersedes it).
PURGE_CHANGES = """
WITH gone AS (
    DELETE FROM message_changes
    WHERE id IN (SELECT id FROM message_changes
                 WHERE changed_at < %(cutoff)s AND conversation_id = ANY(%(conversations)s::uuid[])
                 ORDER BY changed_at, id LIMIT %(limit)s)
      AND changed_at < %(cutoff)s
    RETURNING conversation_id, id
),
horizons AS (
    INSERT INTO message_change_horizons AS h (conversation_id, purged_through)
    SELECT conversation_id, max(id) FROM gone GROUP BY conversation_id
    ON CONFLICT (conversation_id) DO UPDATE SET purged_through = greatest(h.purged_through, EXCLUDED.purged_through)
)
SELECT count(*) FROM gone
"""


@dataclass(frozen=True)
class PurgeTarget:
    """Rows of `table` whose `ts_column` is before a cutoff and that match `condition`, walked by (ts, id).

    The names and the condition are code, never input: this dataclass is the allow-list of what may be
    purged. The condition may use %(cutoff)s and must name columns unqualified. An index on
    (ts_column, id_column) (partial on the condition is fine) keeps each batch an index range scan.
    """

    table: str
    ts_column: str
    id_column: str = "id"
    condition: str = "TRUE"


@dataclass(frozen=True)
class PurgeBatch:
    deleted: int
    last: tuple[datetime, str] | None  # the key the batch ended at; None: nothing is left after the cursor


# A batch is a key range: first find where it ends (the limit-th key after the cursor, read from the index
# alone), then delete that range in one index range scan, so each row's heap tuple is visited once.
_BOUND = """
SELECT {ts}, {id}::text
FROM {table}
WHERE {ts} < %(cutoff)s AND ({condition}) {after}
ORDER BY {ts}, {id}
OFFSET %(offset)s LIMIT 1
"""

# The conditions are part of the DELETE itself: a row that changed since the bound was read (a cache
# entry refreshed, a chat claimed by a user) no longer matches and is left alone.
_DELETE = """
DELETE FROM {table}
WHERE {ts} < %(cutoff)s AND ({condition}) {after} {upto}
"""


def _statement(template: str, target: PurgeTarget, *, resume: bool, bounded: bool = False) -> sql.Composed:
    ts, ident = sql.Identifier(target.ts_column), sql.Identifier(target.id_column)
    after = sql.SQL("AND ({}, {}) > (%(after_ts)s, %(after_id)s)").format(ts, ident) if resume else sql.SQL("")
    upto = sql.SQL("AND ({}, {}) <= (%(upto_ts)s, %(upto_id)s)").format(ts, ident) if bounded else sql.SQL("")
    return sql.SQL(template).format(
        ts=ts, id=ident, table=sql.Identifier(target.table), condition=sql.SQL(target.condition), after=after, upto=upto
    )


class MaintenanceRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def acquire_lease(self, name: str, holder: UUID, ttl_s: float) -> datetime | None:
        """The database's now() when the lease was taken, or None when another run holds it."""
        row = self.conn.execute(ACQUIRE_LEASE, {"name": name, "holder": holder, "ttl_s": ttl_s}).fetchone()
        return row[0] if row else None

    def renew_lease(self, name: str, holder: UUID, ttl_s: float) -> bool:
        cur = self.conn.execute(RENEW_LEASE, {"name": name, "holder": holder, "ttl_s": ttl_s})
        return cur.rowcount == 1

    def release_lease(self, name: str, holder: UUID) -> None:
        self.conn.execute(RELEASE_LEASE, {"name": name, "holder": holder})

    def cursor(self, job: str) -> tuple[datetime, str] | None:
        row = self.conn.execute(GET_CURSOR, {"job": job}).fetchone()
        return (row[0], row[1]) if row else None

    def set_cursor(self, job: str, after: tuple[datetime, str] | None) -> None:
        if after is None:
            self.conn.execute(CLEAR_CURSOR, {"job": job})
        else:
            self.conn.execute(SET_CURSOR, {"job": job, "after_ts": after[0], "after_id": after[1]})

    def start_run(self, holder: UUID) -> int:
        row = self.conn.execute(START_RUN, {"holder": holder}).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, *, complete: bool, deleted: dict[str, int]) -> None:
        from psycopg.types.json import Jsonb

        self.conn.execute(FINISH_RUN, {"id": run_id, "complete": complete, "deleted": Jsonb(deleted)})

    def purge_message_changes(self, *, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` changes older than `cutoff`, moving their conversations' horizons; 0 when none is left
        (or only ones of conversations being deleted)."""
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        conversations = [row[0] for row in self.conn.execute(LOCK_CHANGED_CONVERSATIONS, params).fetchall()]
        if not conversations:
            return 0
        row = self.conn.execute(PURGE_CHANGES, {**params, "conversations": conversations}).fetchone()
        return int(row[0]) if row else 0

    def purge_batch(
        self, target: PurgeTarget, *, cutoff: datetime, limit: int, after: tuple[datetime, str] | None
    ) -> PurgeBatch:
        """Delete up to `limit` matching rows after the cursor; `last` is None when the walk reached the end."""
        params: dict[str, Any] = {"cutoff": cutoff, "offset": limit - 1}
        if after is not None:
            params.update(after_ts=after[0], after_id=after[1])
        resume = after is not None
        bound = self.conn.execute(_statement(_BOUND, target, resume=resume), params).fetchone()
        if bound is not None:
            params.update(upto_ts=bound[0], upto_id=bound[1])
        deleted = self.conn.execute(_statement(_DELETE, target, resume=resume, bounded=bound is not None), params)
        last = (bound[0], bound[1]) if bound is not None else None
        return PurgeBatch(deleted.rowcount, last)
