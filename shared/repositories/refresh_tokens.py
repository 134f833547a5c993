"""Refresh tokens: one row per issued token, grouped in families by login; only secret hashes stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class RefreshTokenState:
    id: UUID
    user_id: UUID
    family_id: UUID
    token_hash: str
    token_version: int
    is_revoked: bool
    is_expired: bool
    is_used: bool
    used_within_grace: bool


INSERT = """
INSERT INTO refresh_tokens (id, user_id, family_id, parent_id, token_hash, token_version, expires_at, created_ip,
                            user_agent)
VALUES (%(id)s, %(user_id)s, %(family_id)s, %(parent_id)s, %(token_hash)s, %(token_version)s,
        now() + make_interval(secs => %(ttl_s)s), %(created_ip)s, %(user_agent)s)
"""
# FOR UPDATE: concurrent refreshes of one token take turns, so exactly one of them spends it first.
GET_FOR_UPDATE = """
SELECT id, user_id, family_id, token_hash, token_version,
       revoked_at IS NOT NULL AS is_revoked,
       expires_at <= now() AS is_expired,
       used_at IS NOT NULL AS is_used,
       (used_at IS NOT NULL AND used_at > clock_timestamp() - make_interval(secs => %(grace_s)s)) AS used_within_grace
FROM refresh_tokens WHERE id = %(id)s
FOR UPDATE
"""
MARK_USED = "UPDATE refresh_tokens SET used_at = clock_timestamp() WHERE id = %(id)s AND used_at IS NULL"
REVOKE_FAMILY = "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %(family_id)s AND revoked_at IS NULL"
REVOKE_FOR_USER = "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %(user_id)s AND revoked_at IS NULL"
# Only the tokens of the version being replaced: an older one is dead by its version alone (a child that escaped
# a revocation, migration 0501) and must stay so.
REBIND_FOR_USER = """
UPDATE refresh_tokens SET token_version = %(token_version)s
WHERE user_id = %(user_id)s AND revoked_at IS NULL AND token_version = %(from_version)s
"""


class RefreshTokensRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def add(
        self,
        *,
        token_id: UUID,
        user_id: UUID,
        family_id: UUID,
        parent_id: UUID | None,
        token_hash: str,
        token_version: int,
        ttl_s: int,
        created_ip: str | None,
        user_agent: str | None,
    ) -> None:
        self.conn.execute(
            INSERT,
            {
                "id": token_id,
                "user_id": user_id,
                "family_id": family_id,
                "parent_id": parent_id,
                "token_hash": token_hash,
                "token_version": token_version,
                "ttl_s": ttl_s,
                "created_ip": created_ip,
                "user_agent": user_agent,
            },
        )

    def get_for_update(self, token_id: UUID, grace_s: int) -> RefreshTokenState | None:
        with self.conn.cursor(row_factory=class_row(RefreshTokenState)) as cur:
            return cur.execute(GET_FOR_UPDATE, {"id": token_id, "grace_s": grace_s}).fetchone()

    def mark_used(self, token_id: UUID) -> None:
        self.conn.execute(MARK_USED, {"id": token_id})

    def revoke_family(self, family_id: UUID) -> int:
        """Revoke every token of the family, the children of refreshes in flight included, until a pass finds none.

        A refresh holding one of the family's rows makes a pass wait on that row; once the refresh commits, the pass
        re-checks only the rows it had found, never the child inserted meanwhile (as in migration 0501). The next
        statement sees that child. A pass that revokes nothing waited on nothing, and a refresh that would lock a row
        this transaction has revoked waits for its commit and then finds it revoked: nothing is left behind."""
        total = 0
        while revoked := self.conn.execute(REVOKE_FAMILY, {"family_id": family_id}).rowcount:
            total += revoked
        return total

    def revoke_for_user(self, user_id: UUID) -> int:
        return self.conn.execute(REVOKE_FOR_USER, {"user_id": user_id}).rowcount

    def rebind_for_user(self, user_id: UUID, from_version: int, token_version: int) -> int:
        """Move the user's live tokens of `from_version` to a new token version (a change that ends no session)."""
        params = {"user_id": user_id, "from_version": from_version, "token_version": token_version}
        return self.conn.execute(REBIND_FOR_USER, params).rowcount
