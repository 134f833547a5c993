"""Fixed-window request counters kept in PostgreSQL (no cache service needed), one row per counted key (an IPv4
address, an IPv6 /64 or /48: shared/auth/addresses.py)."""

from __future__ import annotations

from typing import Any

import psycopg

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
