"""API keys: stored as prefix + hash; found by prefix, then compared by hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class ApiKeyRow:
    """An API key as its owner may see it (never the hash)."""

    id: UUID
    name: str
    prefix: str
    expires_at: datetime | None
    last_used: datetime | None
    revoked_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyCredential:
    """An API key joined with its owner, for the authorizer."""

    id: UUID
    user_id: UUID
    key_hash: str
    is_usable: bool  # not revoked, not expired (by the database clock)
    needs_touch: bool  # last_used is older than the touch interval
    role: str
    is_active: bool
    token_version: int


INSERT = """
INSERT INTO api_keys (user_id, name, prefix, key_hash, expires_at)
VALUES (%(user_id)s, %(name)s, %(prefix)s, %(key_hash)s, %(expires_at)s)
RETURNING id, name, prefix, expires_at, last_used, revoked_at, created_at
"""
FIND_BY_PREFIX = """
SELECT k.id, k.user_id, k.key_hash,
       (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS is_usable,
       (k.last_used IS NULL OR k.last_used < now() - make_interval(secs => %(touch_s)s)) AS needs_touch,
       u.role, u.is_active, u.token_version
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.prefix = %(prefix)s
"""
# The condition makes "at most once a minute" hold even when many requests race.
TOUCH = """
UPDATE api_keys SET last_used = now()
WHERE id = %(id)s AND (last_used IS NULL OR last_used < now() - make_interval(secs => %(touch_s)s))
"""
LIST_PAGE = """
SELECT id, name, prefix, expires_at, last_used, revoked_at, created_at FROM api_keys
WHERE user_id = %(user_id)s
  AND (%(after_created)s::timestamptz IS NULL OR (created_at, id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""
# Owner in the WHERE clause: another user's key id behaves exactly like a random one.
REVOKE = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id, name, prefix, expires_at, last_used, revoked_at, created_at
"""


class ApiKeysRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def add(self, *, user_id: UUID, name: str, prefix: str, key_hash: str, expires_at: datetime | None) -> ApiKeyRow:
        params = {"user_id": user_id, "name": name, "prefix": prefix, "key_hash": key_hash, "expires_at": expires_at}
        with self.conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
            row = cur.execute(INSERT, params).fetchone()
        assert row is not None
        return row

    def find_by_prefix(self, prefix: str, touch_interval_s: int) -> ApiKeyCredential | None:
        with self.conn.cursor(row_factory=class_row(ApiKeyCredential)) as cur:
            return cur.execute(FIND_BY_PREFIX, {"prefix": prefix, "touch_s": touch_interval_s}).fetchone()

    def touch(self, key_id: UUID, touch_interval_s: int) -> None:
        self.conn.execute(TOUCH, {"id": key_id, "touch_s": touch_interval_s})

    def list_page(self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int) -> list[ApiKeyRow]:
        params = {
            "user_id": user_id,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
            return cur.execute(LIST_PAGE, params).fetchall()

    def revoke(self, key_id: UUID, user_id: UUID) -> ApiKeyRow | None:
        with self.conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
            return cur.execute(REVOKE, {"id": key_id, "user_id": user_id}).fetchone()
