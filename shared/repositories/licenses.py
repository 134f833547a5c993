"""Licences and their seats. A seat assignment locks its licence row, so seats never exceed the licence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from shared.models.identity import PREMIUM_TIERS


@dataclass(frozen=True)
class LicenseRow:
    id: UUID
    owner_id: UUID
    key_prefix: str
    tier: str
    seats: int
    seats_used: int
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class LicenseLock:
    id: UUID
    owner_id: UUID
    seats: int
    is_expired: bool


@dataclass(frozen=True)
class SeatRow:
    license_id: UUID
    user_id: UUID
    created_at: datetime


@dataclass(frozen=True)
class HeldSeatRow:
    license_id: UUID
    tier: str
    expires_at: datetime | None
    created_at: datetime


INSERT = """
INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats, expires_at)
VALUES (%(owner_id)s, %(key_prefix)s, %(key_hash)s, %(tier)s, %(seats)s, %(expires_at)s)
RETURNING id, owner_id, key_prefix, tier, seats, 0 AS seats_used, expires_at, created_at
"""
LIST_PAGE = """
SELECT l.id, l.owner_id, l.key_prefix, l.tier, l.seats,
       (SELECT count(*) FROM license_seats s WHERE s.license_id = l.id)::int AS seats_used,
       l.expires_at, l.created_at
FROM licenses l
WHERE (%(owner_id)s::uuid IS NULL OR l.owner_id = %(owner_id)s)
  AND (%(after_created)s::timestamptz IS NULL OR (l.created_at, l.id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY l.created_at DESC, l.id DESC
LIMIT %(limit)s
"""
# The row lock is what keeps 20 concurrent assignments from all seeing the last free seat.
LOCK = """
SELECT id, owner_id, seats, (expires_at IS NOT NULL AND expires_at <= now()) AS is_expired
FROM licenses WHERE id = %(id)s
FOR UPDATE
"""
COUNT_SEATS = "SELECT count(*) FROM license_seats WHERE license_id = %(license_id)s"
SEATS_TAKEN = """
SELECT count(*), coalesce(bool_or(user_id = %(user_id)s), false),
       EXISTS (SELECT 1 FROM users WHERE id = %(user_id)s)
FROM license_seats WHERE license_id = %(license_id)s
"""
OWNER = "SELECT owner_id FROM licenses WHERE id = %(id)s"
SEATS_PAGE = """
SELECT license_id, user_id, created_at FROM license_seats
WHERE license_id = %(license_id)s
  AND (%(after_created)s::timestamptz IS NULL OR (created_at, user_id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY created_at DESC, user_id DESC
LIMIT %(limit)s
"""
# A user's seats, newest first: license_seats_user_idx finds them (a user holds a few), and (created_at,
# license_id) is unique per user, as (license_id, user_id) is.
HELD_SEATS_PAGE = """
SELECT s.license_id, l.tier, l.expires_at, s.created_at
FROM license_seats s JOIN licenses l ON l.id = s.license_id
WHERE s.user_id = %(user_id)s
  AND (%(after_created)s::timestamptz IS NULL
       OR (s.created_at, s.license_id) < (%(after_created)s, %(after_id)s::uuid))
ORDER BY s.created_at DESC, s.license_id DESC
LIMIT %(limit)s
"""
UPDATE = """
UPDATE licenses l
SET seats = coalesce(%(seats)s, l.seats),
    tier = coalesce(%(tier)s, l.tier),
    expires_at = CASE WHEN %(set_expiry)s THEN %(expires_at)s::timestamptz ELSE l.expires_at END
WHERE l.id = %(id)s
RETURNING l.id, l.owner_id, l.key_prefix, l.tier, l.seats,
          (SELECT count(*) FROM license_seats s WHERE s.license_id = l.id)::int AS seats_used,
          l.expires_at, l.created_at
"""


# A licence the user owns or holds a seat of, of a premium tier, not expired. Two EXISTS, one per index
# (licenses_owner_idx, license_seats_user_idx): an OR across a join would read every licence. lower(): rows
# written before tiers were validated may hold "Premium".
def premium_of(user_id: str) -> str:
    """SQL: whether the user `user_id` (fixed SQL text: a parameter or a column) has premium now; it takes %(tiers)s
    (list(PREMIUM_TIERS)). A login or a refresh carries it in the statement that reads the account."""
    return f"""(EXISTS (
    SELECT 1 FROM licenses l
    WHERE l.owner_id = {user_id}
      AND lower(l.tier) = ANY(%(tiers)s)
      AND (l.expires_at IS NULL OR l.expires_at > now())
) OR EXISTS (
    SELECT 1 FROM license_seats s JOIN licenses l ON l.id = s.license_id
    WHERE s.user_id = {user_id}
      AND lower(l.tier) = ANY(%(tiers)s)
      AND (l.expires_at IS NULL OR l.expires_at > now())
))"""  # noqa: S608 (fixed text)


HAS_PREMIUM = f"SELECT {premium_of('%(user_id)s')}"
# Its seats go with it (ON DELETE CASCADE).
DELETE = "DELETE FROM licenses WHERE id = %(id)s"
ADD_SEAT = """
INSERT INTO license_seats (license_id, user_id) VALUES (%(license_id)s, %(user_id)s)
ON CONFLICT (license_id, user_id) DO NOTHING
RETURNING license_id, user_id, created_at
"""
REMOVE_SEAT = """
DELETE FROM license_seats WHERE license_id = %(license_id)s AND user_id = %(user_id)s
RETURNING license_id, user_id, created_at
"""


class LicensesRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def add(
        self, *, owner_id: UUID, key_prefix: str, key_hash: str, tier: str, seats: int, expires_at: datetime | None
    ) -> LicenseRow:
        params = {
            "owner_id": owner_id,
            "key_prefix": key_prefix,
            "key_hash": key_hash,
            "tier": tier,
            "seats": seats,
            "expires_at": expires_at,
        }
        with self.conn.cursor(row_factory=class_row(LicenseRow)) as cur:
            row = cur.execute(INSERT, params).fetchone()
        assert row is not None
        return row

    def list_page(self, owner_id: UUID | None, after: tuple[datetime, UUID] | None, limit: int) -> list[LicenseRow]:
        """A page of the owner's licences, newest first (every owner's when `owner_id` is None)."""
        params = {
            "owner_id": owner_id,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(LicenseRow)) as cur:
            return cur.execute(LIST_PAGE, params).fetchall()

    def lock(self, license_id: UUID) -> LicenseLock | None:
        with self.conn.cursor(row_factory=class_row(LicenseLock)) as cur:
            return cur.execute(LOCK, {"id": license_id}).fetchone()

    def update(
        self, license_id: UUID, *, seats: int | None, tier: str | None, expiry: tuple[datetime | None] | None
    ) -> LicenseRow | None:
        """Change what is given; `expiry` is None to keep the expiry, (None,) to clear it."""
        params = {
            "id": license_id,
            "seats": seats,
            "tier": tier,
            "set_expiry": expiry is not None,
            "expires_at": expiry[0] if expiry is not None else None,
        }
        with self.conn.cursor(row_factory=class_row(LicenseRow)) as cur:
            return cur.execute(UPDATE, params).fetchone()

    def delete(self, license_id: UUID) -> bool:
        return self.conn.execute(DELETE, {"id": license_id}).rowcount > 0

    def count_seats(self, license_id: UUID) -> int:
        row = self.conn.execute(COUNT_SEATS, {"license_id": license_id}).fetchone()
        return int(row[0]) if row else 0

    def seats_taken(self, license_id: UUID, user_id: UUID) -> tuple[int, bool, bool]:
        """How many seats of the licence are assigned, whether `user_id` holds one of them, and whether it names a
        user at all."""
        row = self.conn.execute(SEATS_TAKEN, {"license_id": license_id, "user_id": user_id}).fetchone()
        assert row is not None  # an aggregate answers one row
        return int(row[0]), bool(row[1]), bool(row[2])

    def add_seat(self, license_id: UUID, user_id: UUID) -> SeatRow | None:
        with self.conn.cursor(row_factory=class_row(SeatRow)) as cur:
            return cur.execute(ADD_SEAT, {"license_id": license_id, "user_id": user_id}).fetchone()

    def remove_seat(self, license_id: UUID, user_id: UUID) -> SeatRow | None:
        with self.conn.cursor(row_factory=class_row(SeatRow)) as cur:
            return cur.execute(REMOVE_SEAT, {"license_id": license_id, "user_id": user_id}).fetchone()

    def owner_of(self, license_id: UUID) -> UUID | None:
        row = self.conn.execute(OWNER, {"id": license_id}).fetchone()
        return row[0] if row else None

    def seats_page(self, license_id: UUID, after: tuple[datetime, UUID] | None, limit: int) -> list[SeatRow]:
        params = {
            "license_id": license_id,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(SeatRow)) as cur:
            return cur.execute(SEATS_PAGE, params).fetchall()

    def held_seats_page(self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int) -> list[HeldSeatRow]:
        """A page of the licences the user holds a seat of, by the seat's creation, newest first."""
        params = {
            "user_id": user_id,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(HeldSeatRow)) as cur:
            return cur.execute(HELD_SEATS_PAGE, params).fetchall()

    def has_premium(self, user_id: UUID) -> bool:
        """Whether the user owns or holds a seat of an unexpired licence of a premium tier (PREMIUM_TIERS)."""
        row = self.conn.execute(HAS_PREMIUM, {"user_id": user_id, "tiers": list(PREMIUM_TIERS)}).fetchone()
        return bool(row and row[0])
