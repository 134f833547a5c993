"""SQL for user files."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from shared.models.conversations import UserFile

FILE_COLUMNS = "id, owner_id, original_name, content_type, size, sha256, status, created_at, updated_at"

INSERT = """
INSERT INTO user_files (id, owner_id, original_name, content_type, size, storage_key, sha256)
VALUES (%(id)s, %(owner_id)s, %(original_name)s, %(content_type)s, %(size)s, %(storage_key)s, %(sha256)s)
RETURNING id, owner_id, original_name, content_type, size, sha256, status, created_at, updated_at
"""

GET_OWNED = """SELECT id, owner_id, original_name, content_type, size, sha256, status, created_at,
    updated_at, storage_key FROM user_files WHERE id = %(id)s AND owner_id = %(owner_id)s"""

# The owner, or a participant of a conversation where the file is attached to a message.
GET_READABLE = """SELECT f.id, f.owner_id, f.original_name, f.content_type, f.size, f.sha256, f.status, f.created_at,
    f.updated_at, f.storage_key FROM user_files f
WHERE f.id = %(id)s AND (f.owner_id = %(user_id)s OR EXISTS (
    SELECT 1 FROM message_attachments ma
    JOIN messages m ON m.id = ma.message_id
    JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = %(user_id)s
    WHERE ma.file_id = f.id))"""

LIST_OWNED = """
SELECT id, owner_id, original_name, content_type, size, sha256, status, created_at, updated_at FROM user_files
WHERE owner_id = %(owner_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""

MARK_UPLOADED = """
UPDATE user_files SET status = 'uploaded', size = %(size)s WHERE id = %(id)s RETURNING id, owner_id,
    original_name, content_type, size, sha256, status, created_at, updated_at
"""

# Deleting files, shared by a file's deletion and an account's: the rows of {files} go, their keys stay for maintenance
# (migration 0600: a file's upload URL stores bytes until it expires, deleted or not, so the key counts among the
# owner's uploads in progress until then, and maintenance deletes late bytes after), and the messages that attached
# them lose them from their copy of what was attached (messages.attachments: id, name, type and size as sent) as
# they lose the message_attachments rows by the cascade: the others kept reading the names of deleted files. {logged}
# is a CTE or nothing, the messages changed are `stripped`; {owner} the owner the key is kept for. Fixed text only.
_DELETE_FILES = """
WITH files AS ({files}),
stripped AS (
    UPDATE messages m
    SET attachments = coalesce((SELECT jsonb_agg(a.value ORDER BY a.ordinality)
                                FROM jsonb_array_elements(m.attachments) WITH ORDINALITY a
                                WHERE (a.value ->> 'file_id')::uuid NOT IN (SELECT id FROM files)), '[]'::jsonb)
    WHERE m.id IN (SELECT ma.message_id FROM message_attachments ma WHERE ma.file_id IN (SELECT id FROM files))
    RETURNING m.id, m.conversation_id
),{logged}
gone AS (DELETE FROM user_files WHERE id IN (SELECT id FROM files) RETURNING storage_key, owner_id, created_at)
INSERT INTO user_file_deletions (storage_key, owner_id, url_expires_at)
SELECT storage_key, {owner}, created_at + make_interval(secs => %(ttl_s)s) FROM gone
"""

# A file's deletion, once the conversations where it is attached are locked (LOCK_ATTACHING_CONVERSATIONS, then
# SEAL): each message that loses it is an 'edited' change of its conversation (it reads differently now), logged as an
# edit logs one, its position drawn under that lock and its earlier 'edited' entry replaced (both would read as the
# message now does). Nothing is deleted if the file is attached in a conversation not in %(locked)s: a send committed
# there after the lock was taken, and the deletion must start again (the service retries it) to draw that change in
# order too.
DELETE = _DELETE_FILES.format(
    files="""SELECT f.id FROM user_files f WHERE f.id = %(id)s
    AND NOT EXISTS (SELECT 1 FROM message_attachments ma JOIN messages m ON m.id = ma.message_id
                    WHERE ma.file_id = f.id AND m.conversation_id <> ALL(%(locked)s::uuid[]))""",
    logged="""
superseded AS (DELETE FROM message_changes ch USING stripped s WHERE ch.message_id = s.id AND ch.kind = 'edited'),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind)
    SELECT conversation_id, id, 'edited' FROM stripped ORDER BY id
),""",
    owner="owner_id",
)

# The conversations where the file is attached to a message, in id order and FOR NO KEY UPDATE, as an edit takes its
# conversation's row (DELETE logs a change in each). Before the file's row: a send takes its conversation's row and
# then, by the attachment's foreign key, the file's (FOR KEY SHARE); the other way round could deadlock with it.
LOCK_ATTACHING_CONVERSATIONS = """
SELECT c.id FROM conversations c
WHERE c.id IN (SELECT m.conversation_id FROM message_attachments ma JOIN messages m ON m.id = ma.message_id
               WHERE ma.file_id = %(id)s)
ORDER BY c.id
FOR NO KEY UPDATE
"""
# Then the file's row: a send attaching it that is in flight (FOR KEY SHARE of it) commits first, and one that comes
# later waits for the deletion and then fails on the foreign key. DELETE, a new statement, sees every attachment there
# will be.
SEAL = "SELECT 1 FROM user_files WHERE id = %(id)s FOR UPDATE"

# Every file of an account being deleted: the keys stay for maintenance, which deletes the bytes once each upload URL
# has expired (at its next run for a file older than FILE_URL_TTL_SECONDS), so bytes go only after the rows, never
# before the deletion commits. No owner: the account goes in the same transaction. No change is logged: nothing else
# of an account's deletion is in the change feed either (docs/conversations.md).
DELETE_ALL_OWNED = _DELETE_FILES.format(
    files="SELECT id FROM user_files WHERE owner_id = %(owner_id)s", logged="", owner="NULL"
)

# Keys of deleted files whose upload URL expired before `cutoff`, walked by (url_expires_at, storage_key).
EXPIRED_DELETIONS = """
SELECT storage_key, url_expires_at FROM user_file_deletions
WHERE url_expires_at < %(cutoff)s
  AND (%(after_ts)s::timestamptz IS NULL OR (url_expires_at, storage_key) > (%(after_ts)s, %(after_key)s::text))
ORDER BY url_expires_at, storage_key
LIMIT %(limit)s
"""
FORGET_DELETIONS = "DELETE FROM user_file_deletions WHERE storage_key = ANY(%(keys)s::text[])"

# Uploads whose URL expired before `cutoff` and that nobody confirmed, walked by (created_at, id)
# (user_files_pending_idx, migration 0534).
STALE_UPLOADS = """
SELECT id, storage_key, created_at FROM user_files
WHERE status = 'pending' AND created_at < %(cutoff)s
  AND (%(after_ts)s::timestamptz IS NULL OR (created_at, id) > (%(after_ts)s, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s
"""
# What storage said of each stale upload, in one statement: the size stored (the bytes arrived: confirmed) or
# NULL (they never did: deleted). Each only while the file is still pending: a GET that confirmed it, or a
# delete, meanwhile wins. A message may attach a pending file: one attached somewhere is left to be deleted with
# its copies in those messages (services/files.py, delete_with_copies), and its id answered with `attached` true.
# The other rows answered are the files deleted here.
SETTLE_STALE_UPLOADS = """
WITH outcome AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(sizes)s::bigint[]) AS o (id, size)
), confirmed AS (
    UPDATE user_files f SET status = 'uploaded', size = o.size
    FROM outcome o WHERE f.id = o.id AND o.size IS NOT NULL AND f.status = 'pending'
), abandoned AS (
    SELECT f.id, EXISTS (SELECT 1 FROM message_attachments ma WHERE ma.file_id = f.id) AS attached
    FROM user_files f JOIN outcome o ON o.id = f.id
    WHERE o.size IS NULL AND f.status = 'pending'
), gone AS (
    DELETE FROM user_files f USING abandoned a WHERE f.id = a.id AND NOT a.attached
)
SELECT id, attached FROM abandoned
"""

# The owner's file with these bytes: one per owner and digest (user_files_owner_sha256_key).
GET_OWNED_BY_SHA256 = "SELECT id FROM user_files WHERE owner_id = %(owner_id)s AND sha256 = %(sha256)s"

# The owner's row lock serializes their creates, so that the count below and the insert after it are one step.
LOCK_OWNER = "SELECT 1 FROM users WHERE id = %(owner_id)s FOR NO KEY UPDATE"

# When each of the owner's uploads still in progress (pending, its upload URL not yet expired) stops counting,
# soonest first (user_files_owner_idx).
# A deleted file's URL counts until it expires (user_file_deletions_owner_idx).
UPLOADS_IN_PROGRESS = """
SELECT created_at + make_interval(secs => %(ttl_s)s) AS ends FROM user_files
WHERE owner_id = %(owner_id)s AND status = 'pending' AND created_at > now() - make_interval(secs => %(ttl_s)s)
UNION ALL
SELECT url_expires_at FROM user_file_deletions WHERE owner_id = %(owner_id)s AND url_expires_at > now()
ORDER BY ends
"""


class StoredFile(UserFile):
    storage_key: str


class FilesRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def stale_uploads(
        self, cutoff: datetime, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[tuple[UUID, str, datetime]]:
        """(id, storage key, created_at) of pending files created before `cutoff`, after `after`, oldest first."""
        params = {
            "cutoff": cutoff,
            "after_ts": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        return [(row[0], row[1], row[2]) for row in self.conn.execute(STALE_UPLOADS, params)]

    def settle_stale_uploads(self, stored: dict[UUID, int | None]) -> tuple[int, list[UUID]]:
        """Confirm the stale uploads whose bytes are stored (their size) and delete those whose bytes are not
        (None), unless a message attached them: the number deleted, and the ids of those left for that."""
        params = {"ids": list(stored), "sizes": list(stored.values())}
        rows = self.conn.execute(SETTLE_STALE_UPLOADS, params).fetchall()
        return sum(1 for _, attached in rows if not attached), [file_id for file_id, attached in rows if attached]

    def uploads_in_progress(self, owner_id: UUID, ttl_s: int) -> list[datetime]:
        """When each of the owner's uploads in progress (deleted files' live URLs included) stops counting, soonest
        first; the owner is locked until the transaction ends."""
        self.conn.execute(LOCK_OWNER, {"owner_id": owner_id})
        return [row[0] for row in self.conn.execute(UPLOADS_IN_PROGRESS, {"owner_id": owner_id, "ttl_s": ttl_s})]

    def owned_by_sha256(self, owner_id: UUID, sha256: str) -> UUID | None:
        """The id of the owner's file with this digest, if they have one."""
        row = self.conn.execute(GET_OWNED_BY_SHA256, {"owner_id": owner_id, "sha256": sha256}).fetchone()
        return row[0] if row else None

    def insert(self, values: dict[str, Any]) -> UserFile:
        with self.conn.cursor(row_factory=class_row(UserFile)) as cur:
            row = cur.execute(INSERT, values).fetchone()
            assert row is not None
            return row

    def get_owned(self, file_id: UUID, owner_id: UUID) -> StoredFile | None:
        with self.conn.cursor(row_factory=class_row(StoredFile)) as cur:
            return cur.execute(GET_OWNED, {"id": file_id, "owner_id": owner_id}).fetchone()

    def get_readable(self, file_id: UUID, user_id: UUID) -> StoredFile | None:
        with self.conn.cursor(row_factory=class_row(StoredFile)) as cur:
            return cur.execute(GET_READABLE, {"id": file_id, "user_id": user_id}).fetchone()

    def list_owned(self, owner_id: UUID, after: tuple[Any, ...] | None, limit: int) -> list[UserFile]:
        params = {
            "owner_id": owner_id,
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        }
        with self.conn.cursor(row_factory=class_row(UserFile)) as cur:
            return cur.execute(LIST_OWNED, params).fetchall()

    def mark_uploaded(self, file_id: UUID, size: int) -> UserFile | None:
        """The file marked uploaded; None when it was deleted since it was read."""
        with self.conn.cursor(row_factory=class_row(UserFile)) as cur:
            return cur.execute(MARK_UPLOADED, {"id": file_id, "size": size}).fetchone()

    def lock_attaching_conversations(self, file_id: UUID) -> list[UUID]:
        """Lock the conversations where the file is attached to a message, as an edit locks one; their ids."""
        return [row[0] for row in self.conn.execute(LOCK_ATTACHING_CONVERSATIONS, {"id": file_id})]

    def seal(self, file_id: UUID) -> bool:
        """Lock the file's row (after lock_attaching_conversations): no send attaches it from here on. False when
        it is gone."""
        return self.conn.execute(SEAL, {"id": file_id}).fetchone() is not None

    def delete(self, file_id: UUID, ttl_s: int, locked: list[UUID]) -> bool:
        """Delete the record and its copies in messages, logging each message changed (in `locked`, the
        conversations locked before the file was sealed); its key is kept for maintenance until its upload URL
        (`ttl_s` long) has expired. False, with nothing written, when the file is also attached in a conversation
        not in `locked`."""
        return self.conn.execute(DELETE, {"id": file_id, "ttl_s": ttl_s, "locked": locked}).rowcount == 1

    def delete_all_owned(self, owner_id: UUID, ttl_s: int) -> int:
        """Delete every record of the owner, keeping their keys for maintenance as `delete` does; how many."""
        return self.conn.execute(DELETE_ALL_OWNED, {"owner_id": owner_id, "ttl_s": ttl_s}).rowcount

    def expired_deletions(
        self, cutoff: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[str, datetime]]:
        """(storage key, URL expiry) of deleted files whose upload URL expired before `cutoff`, oldest first."""
        params = {
            "cutoff": cutoff,
            "after_ts": after[0] if after else None,
            "after_key": after[1] if after else None,
            "limit": limit,
        }
        return [(row[0], row[1]) for row in self.conn.execute(EXPIRED_DELETIONS, params)]

    def forget_deletions(self, keys: list[str]) -> int:
        """Drop the kept keys whose bytes are gone; the number dropped."""
        return self.conn.execute(FORGET_DELETIONS, {"keys": keys}).rowcount
