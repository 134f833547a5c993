"""Facts about the database itself."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.migrations import current_version

PING = "SELECT 1"


class MetaRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def ping(self) -> None:
        self.conn.execute(PING)

    def migration_version(self) -> int | None:
        return current_version(self.conn)
