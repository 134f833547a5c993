"""The stored hash of an anonymous conversation's token, for the authorizer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

TOKEN_HASH = "SELECT anonymous_token_hash FROM conversations WHERE id = %(id)s"


class AnonymousTokensRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def token_hash(self, conversation_id: UUID) -> str | None:
        row = self.conn.execute(TOKEN_HASH, {"id": conversation_id}).fetchone()
        return row[0] if row else None
