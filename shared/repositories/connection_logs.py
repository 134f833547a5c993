"""Connection logs: the security trail (sign-ins, refreshes, keys, role changes), and failed-login counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from shared.auth.addresses import rate_limited_address, rate_limited_network


@dataclass(frozen=True)
class ConnectionLogRow:
    id: UUID
    user_id: UUID | None
    action: str
    ip_address: str | None
    user_agent: str | None
    actor_id: UUID | None
    detail: dict[str, Any] | None
    created_at: datetime


# A user deleted meanwhile is logged as no user, as ON DELETE SET NULL would have left the row: a sign-in whose
# account was deleted during its bcrypt check failed the foreign key, a 404 instead of the login's 401. FOR KEY
# SHARE waits for a deletion in flight (it holds the row FOR UPDATE) and then finds no row.
INSERT = """
INSERT INTO connection_logs (user_id, action, ip_address, address_key, network_key, user_agent, login_key, actor_id,
                             detail)
VALUES ((SELECT id FROM users WHERE id = %(user_id)s FOR KEY SHARE), %(action)s, %(ip_address)s, %(address_key)s,
        %(network_key)s, %(user_agent)s, %(login_key)s, %(actor_id)s, %(detail)s)
"""


# Each query below returns at most `limit` failure times, newest first: enough to know whether the limit is
# reached and, from the oldest of them, when the next attempt may be made. Served by the (key, action,
# created_at) indexes.
def _failures_since_success(key: str, failed: str, succeeded: str) -> str:
    """Failures of one key in the window since its last success (GREATEST ignores the NULL when there is none).
    Fixed names only."""
    return f"""
SELECT created_at FROM connection_logs
WHERE {key} = %(key)s AND action = '{failed}'
  AND created_at > GREATEST(%(since)s, (
      SELECT max(created_at) FROM connection_logs
      WHERE {key} = %(key)s AND action = '{succeeded}' AND created_at > %(since)s))
ORDER BY created_at DESC LIMIT %(limit)s
"""  # noqa: S608


# A login's failures count from its last successful login; wrong current passwords given to a password change
# from the account's last change (connection_logs_user_idx).
RECENT_FAILURES_FOR_LOGIN = _failures_since_success("login_key", "login_failed", "login")
RECENT_FAILED_PASSWORD_CHANGES = _failures_since_success("user_id", "password_change_failed", "password_changed")


def _failures_in_window(key: str, failed: str) -> str:
    """Failures of one key in the window, whatever succeeded meanwhile (a network's). Fixed names only."""
    return f"""
SELECT created_at FROM connection_logs
WHERE {key} = %(key)s AND action = '{failed}' AND created_at > %(since)s
ORDER BY created_at DESC LIMIT %(limit)s
"""  # noqa: S608


# Per client network (address_key, network_key: shared/auth/addresses.py): connection_logs_failed_network_idx,
# connection_logs_failed_ipv6_48_idx, connection_logs_failed_signup_network_idx and
# connection_logs_failed_signup_ipv6_48_idx. Signups refused as taken are counted apart from failed logins.
RECENT_FAILURES_FOR_ADDRESS = _failures_in_window("address_key", "login_failed")
RECENT_FAILURES_FOR_NETWORK = _failures_in_window("network_key", "login_failed")
RECENT_SIGNUP_FAILURES_FOR_ADDRESS = _failures_in_window("address_key", "signup_failed")
RECENT_SIGNUP_FAILURES_FOR_NETWORK = _failures_in_window("network_key", "signup_failed")
LIST_PAGE = """
SELECT id, user_id, action, ip_address, user_agent, actor_id, detail, created_at FROM connection_logs
WHERE (%(user_id)s::uuid IS NULL OR user_id = %(user_id)s)
  AND (%(after_created)s::timestamptz IS NULL OR (created_at, id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""
NOW = "SELECT now()"


class ConnectionLogsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def add(
        self,
        action: str,
        *,
        user_id: UUID | None,
        ip_address: str | None,
        user_agent: str | None,
        login_key: str | None = None,
        actor_id: UUID | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            INSERT,
            {
                "user_id": user_id,
                "action": action,
                "ip_address": ip_address,
                "address_key": rate_limited_address(ip_address) if ip_address else None,
                "network_key": rate_limited_network(ip_address) if ip_address else None,
                "user_agent": user_agent,
                "login_key": login_key,
                "actor_id": actor_id,
                "detail": Jsonb(detail) if detail is not None else None,
            },
        )

    def now(self) -> datetime:
        row = self.conn.execute(NOW).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def _failures(self, query: str, key: Any, since: datetime, limit: int) -> list[datetime]:
        return [row[0] for row in self.conn.execute(query, {"key": key, "since": since, "limit": limit})]

    def recent_failures_for_login(self, login_key: str, since: datetime, limit: int) -> list[datetime]:
        return self._failures(RECENT_FAILURES_FOR_LOGIN, login_key, since, limit)

    def recent_failed_password_changes(self, user_id: UUID, since: datetime, limit: int) -> list[datetime]:
        return self._failures(RECENT_FAILED_PASSWORD_CHANGES, user_id, since, limit)

    def recent_failures_for_address(self, address: str, since: datetime, limit: int) -> list[datetime]:
        """Failed logins from the address's network (its /64 for IPv6)."""
        return self._failures(RECENT_FAILURES_FOR_ADDRESS, rate_limited_address(address), since, limit)

    def _network_failures(self, query: str, address: str, since: datetime, limit: int) -> list[datetime]:
        """Failures from the address's IPv6 /48; none for an IPv4 address, which has no wider count."""
        network = rate_limited_network(address)
        return [] if network is None else self._failures(query, network, since, limit)

    def recent_failures_for_network(self, address: str, since: datetime, limit: int) -> list[datetime]:
        """Failed logins from the address's IPv6 /48."""
        return self._network_failures(RECENT_FAILURES_FOR_NETWORK, address, since, limit)

    def recent_signup_failures_for_address(self, address: str, since: datetime, limit: int) -> list[datetime]:
        """Signups refused as taken from the address's network (its /64 for IPv6)."""
        return self._failures(RECENT_SIGNUP_FAILURES_FOR_ADDRESS, rate_limited_address(address), since, limit)

    def recent_signup_failures_for_network(self, address: str, since: datetime, limit: int) -> list[datetime]:
        """Signups refused as taken from the address's IPv6 /48."""
        return self._network_failures(RECENT_SIGNUP_FAILURES_FOR_NETWORK, address, since, limit)

    def list_page(
        self, user_id: UUID | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[ConnectionLogRow]:
        params = {
            "user_id": user_id,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(ConnectionLogRow)) as cur:
            return cur.execute(LIST_PAGE, params).fetchall()
