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

# The file's upload URL stores bytes until it expires, deleted or not: its key is kept (migration 0600) for the
# uploads-in-progress count until then and for maintenance to delete late bytes after.
DELETE = """
WITH gone AS (DELETE FROM user_files WHERE id = %(id)s RETURNING storage_key, owner_id, created_at)
INSERT INTO user_file_deletions (storage_key, owner_id, url_expires_at)
SELECT storage_key, owner_id, created_at + make_interval(secs => %(ttl_s)s) FROM gone
"""

# Every file of an account being deleted, as DELETE deletes one: the keys stay for maintenance, which deletes the
# bytes once each upload URL has expired (at its next run for a file older than FILE_URL_TTL_SECONDS), so bytes go
# only after the rows, never before the deletion commits. No owner: the account goes in the same transaction.
# The messages that stay lose these files from their copy of what was attached (messages.attachments: id, name,
# type and size as sent), as they lose the message_attachments rows by the cascade: the others kept reading the
# names of the deleted account's files.
DELETE_ALL_OWNED = """
WITH owned AS (SELECT id FROM user_files WHERE owner_id = %(owner_id)s),
stripped AS (
    UPDATE messages m
    SET attachments = coalesce((SELECT jsonb_agg(a.value ORDER BY a.ordinality)
                                FROM jsonb_array_elements(m.attachments) WITH ORDINALITY a
                                WHERE (a.value ->> 'file_id')::uuid NOT IN (SELECT id FROM owned)), '[]'::jsonb)
    WHERE m.id IN (SELECT ma.message_id FROM message_attachments ma WHERE ma.file_id IN (SELECT id FROM owned))
),
gone AS (DELETE FROM user_files WHERE id IN (SELECT id FROM owned) RETURNING storage_key, created_at)
INSERT INTO user_file_deletions (storage_key, owner_id, url_expires_at)
SELECT storage_key, NULL, created_at + make_interval(secs => %(ttl_s)s) FROM gone
"""

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
# delete, meanwhile wins. The count is the files deleted.
SETTLE_STALE_UPLOADS = """
WITH outcome AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(sizes)s::bigint[]) AS o (id, size)
), confirmed AS (
    UPDATE user_files f SET status = 'uploaded', size = o.size
    FROM outcome o WHERE f.id = o.id AND o.size IS NOT NULL AND f.status = 'pending'
)
DELETE FROM user_files f USING outcome o WHERE f.id = o.id AND o.size IS NULL AND f.status = 'pending'
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

    def settle_stale_uploads(self, stored: dict[UUID, int | None]) -> int:
        """Confirm the stale uploads whose bytes are stored (their size) and delete those whose bytes are not
        (None); the number deleted."""
        params = {"ids": list(stored), "sizes": list(stored.values())}
        return self.conn.execute(SETTLE_STALE_UPLOADS, params).rowcount

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

    def delete(self, file_id: UUID, ttl_s: int) -> None:
        """Delete the record; its key is kept for maintenance until its upload URL (`ttl_s` long) has expired."""
        self.conn.execute(DELETE, {"id": file_id, "ttl_s": ttl_s})

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
