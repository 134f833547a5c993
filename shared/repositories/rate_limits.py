"""Fixed-window request counters kept in PostgreSQL (no cache service needed), one row per counted key (an IPv4
address, an IPv6 /64 or /48: shared/auth/addresses.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.auth.addresses import rate_limited_address, rate_limited_network
from shared.errors import RateLimitedError

# Counts this request in the current window and answers the count and the seconds left in the window.
HIT = """
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / %(window_s)s) * %(window_s)s) AS start
)
INSERT INTO anonymous_rate_limits AS r (address, window_start, hits)
SELECT %(address)s, w.start, 1 FROM w
ON CONFLICT (address) DO UPDATE
SET hits = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.hits + 1 ELSE 1 END,
    window_start = EXCLUDED.window_start
RETURNING hits, ceil(extract(epoch FROM window_start + make_interval(secs => %(window_s)s) - now()))::int
"""


class RateLimitsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def hit(self, address: str, window_s: int) -> tuple[int, int]:
        """(hits in the current window including this one, seconds until the window ends)."""
        row = self.conn.execute(HIT, {"address": address, "window_s": window_s}).fetchone()
        assert row is not None
        return int(row[0]), max(1, int(row[1]))

    def count_client(
        self, address: str, *, window_s: int, limit: int, network_limit: int, what: str, prefix: str = ""
    ) -> None:
        """One more hit for the client's address (an IPv6 client's /64) and, for IPv6, its /48, keyed after `prefix`
        (which keeps one count apart from another); 429 with Retry-After past `limit` or `network_limit`. Counted in
        the caller's transaction: a refused request's rollback takes its own hits back, so a /64 refused at its own
        limit spends no more of its /48's budget. The counter rows' locks make concurrent hits count one after
        another, always the /64's row before the /48's (no deadlock)."""
        hits, retry_after = self.hit(prefix + rate_limited_address(address), window_s)
        if hits > limit:
            raise RateLimitedError(f"Too many {what} from this address.", retry_after=retry_after)
        network = rate_limited_network(address)
        if network is not None:
            # The /48's key ("2001:db8:1::/48") never equals a /64's or an IPv4 address's: one table holds all.
            hits, retry_after = self.hit(prefix + network, window_s)
            if hits > network_limit:
                raise RateLimitedError(f"Too many {what} from this network.", retry_after=retry_after)
