"""Users: accounts, their credentials state and their properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from shared.models.identity import PREMIUM_TIERS
from shared.repositories.licenses import premium_of


@dataclass(frozen=True)
class UserRow:
    id: UUID
    username: str
    email: str
    password_hash: str | None
    name: str | None
    organization: str | None
    aws_region: str | None
    country: str | None
    profession: str | None
    avatar_url: str | None
    role: str
    is_active: bool
    is_ai: bool
    token_version: int
    last_login: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SignedInRow(UserRow):
    """The account as a sign-in (login, refresh, password change) reads it, with whether it has premium now, in the
    same statement (the user of a token pair has the shape of GET /v1/users/me)."""

    has_premium: bool


@dataclass(frozen=True)
class CredentialState:
    """What the authorizer needs to know about a token's user."""

    role: str
    is_active: bool
    token_version: int
    # With an API key's id: the key is still neither revoked nor expired (by the database clock).
    key_usable: bool = True


@dataclass(frozen=True)
class PropertiesRow:
    tone: str | None
    additional_info: str | None
    updated_at: datetime | None


PROFILE_FIELDS = frozenset({"name", "organization", "aws_region", "country", "profession", "avatar_url"})
# A UserRow's columns, in its order.
USER_COLUMNS = """id, username, email, password_hash, name, organization, aws_region, country, profession, avatar_url,
       role, is_active, is_ai, token_version, last_login, created_at, updated_at"""

GET = f"""
SELECT {USER_COLUMNS}
FROM users WHERE id = %(id)s
"""  # noqa: S608 (fixed columns)
GET_SIGNED_IN = f"""
SELECT {USER_COLUMNS}, {premium_of("users.id")} AS has_premium
FROM users WHERE id = %(id)s
"""  # noqa: S608 (fixed columns)
GET_FOR_UPDATE = f"""
SELECT {USER_COLUMNS}
FROM users WHERE id = %(id)s FOR UPDATE
"""  # noqa: S608 (fixed columns)
# Both unique indexes are on lower(): this is an index lookup either way.
GET_BY_LOGIN = f"""
SELECT {USER_COLUMNS}
FROM users WHERE lower(email) = lower(%(login)s) OR lower(username) = lower(%(login)s)
ORDER BY lower(email) = lower(%(login)s) DESC
LIMIT 1
"""  # noqa: S608 (fixed columns)
CREDENTIAL_STATE = "SELECT role, is_active, token_version FROM users WHERE id = %(id)s"
# FOR SHARE: a write that must not outlive the session it was made from (an API key) reads the account this way, so a
# deactivation, password change or logout-all (each an UPDATE of the row) in flight is waited for and then read.
CREDENTIAL_STATE_FOR_SHARE = CREDENTIAL_STATE + " FOR SHARE"
# An admin acting: its user, and when it acts with an API key, whether that key still works. FOR SHARE (the
# `_FOR_SHARE` form): a role change or deactivation (an UPDATE of the row) waits for the admin write that read
# it, and the admin write that comes after it reads its result.
ADMIN_STATE = """
SELECT u.role, u.is_active, u.token_version,
       %(key_id)s::uuid IS NULL OR EXISTS (
           SELECT 1 FROM api_keys k
           WHERE k.id = %(key_id)s AND k.user_id = u.id AND k.revoked_at IS NULL
             AND (k.expires_at IS NULL OR k.expires_at > now())
       ) AS key_usable
FROM users u WHERE u.id = %(id)s
"""
ADMIN_STATE_FOR_SHARE = ADMIN_STATE + "FOR SHARE OF u"
INSERT = f"""
INSERT INTO users (username, email, password_hash, name, organization, aws_region, country, profession, role)
VALUES (%(username)s, %(email)s, %(password_hash)s, %(name)s, %(organization)s, %(aws_region)s, %(country)s,
        %(profession)s, %(role)s)
RETURNING {USER_COLUMNS}
"""  # noqa: S608 (fixed columns)
UPDATE_PROFILE = f"""
UPDATE users SET
    name = CASE WHEN %(set_name)s THEN %(name)s ELSE name END,
    organization = CASE WHEN %(set_organization)s THEN %(organization)s ELSE organization END,
    aws_region = CASE WHEN %(set_aws_region)s THEN %(aws_region)s ELSE aws_region END,
    country = CASE WHEN %(set_country)s THEN %(country)s ELSE country END,
    profession = CASE WHEN %(set_profession)s THEN %(profession)s ELSE profession END,
    avatar_url = CASE WHEN %(set_avatar_url)s THEN %(avatar_url)s ELSE avatar_url END
WHERE id = %(id)s
RETURNING {USER_COLUMNS}
"""  # noqa: S608 (fixed columns)
# Compare-and-set: only if the password is still the one the caller checked, so of two changes that each checked
# the current password, the slower one finds it changed and fails. The password is unchanged while the hash is
# the one checked, or while the token version is: this statement is the only one that changes the password, and
# it bumps the version; a login's rehash of the same password (TOUCH_LAST_LOGIN) replaces the hash without one.
# And only while the account is active: one deactivated meanwhile keeps the password it will be reactivated with.
SET_PASSWORD = f"""
UPDATE users SET password_hash = %(password_hash)s, token_version = token_version + 1
WHERE id = %(id)s AND (password_hash = %(checked_hash)s OR token_version = %(checked_version)s) AND is_active
RETURNING {USER_COLUMNS}, {premium_of("users.id")} AS has_premium
"""  # noqa: S608 (fixed columns)
BUMP_TOKEN_VERSION = "UPDATE users SET token_version = token_version + 1 WHERE id = %(id)s"
SET_ROLE_AND_ACTIVE = f"""
UPDATE users SET role = %(role)s, is_active = %(is_active)s, token_version = token_version + 1
WHERE id = %(id)s
RETURNING {USER_COLUMNS}
"""  # noqa: S608 (fixed columns)
# The password was checked outside any transaction: the sign-in counts only if that hash is still the account's
# and the account still active, and the pair is built from this row, not from the one read before the check.
# A rehash of the same password at the current cost replaces the hash in the same statement (no version bump:
# the password has not changed, so no session ends). The password is still the one checked if the hash is, or if
# the version is (see SET_PASSWORD): a concurrent login of the same account may have rehashed it first, and then
# its hash is kept.
TOUCH_LAST_LOGIN = f"""
UPDATE users SET last_login = now(),
    password_hash = CASE WHEN password_hash = %(checked_hash)s THEN coalesce(%(rehashed)s, password_hash)
                         ELSE password_hash END
WHERE id = %(id)s AND (password_hash = %(checked_hash)s OR token_version = %(checked_version)s) AND is_active
RETURNING {USER_COLUMNS}, {premium_of("users.id")} AS has_premium
"""  # noqa: S608 (fixed columns)
# Locks every active super_admin row: two concurrent demotions cannot both see "another one remains".
LOCK_ACTIVE_SUPER_ADMINS = "SELECT id FROM users WHERE role = 'super_admin' AND is_active ORDER BY id FOR UPDATE"
LIST_PAGE = f"""
SELECT {USER_COLUMNS}
FROM users
WHERE (%(after_created)s::timestamptz IS NULL OR (created_at, id) > (%(after_created)s, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s
"""  # noqa: S608 (fixed columns)
GET_PROPERTIES = "SELECT tone, additional_info, updated_at FROM user_properties WHERE user_id = %(user_id)s"
PUT_PROPERTIES = """
INSERT INTO user_properties (user_id, tone, additional_info)
VALUES (%(user_id)s, %(tone)s, %(additional_info)s)
ON CONFLICT (user_id) DO UPDATE SET tone = EXCLUDED.tone, additional_info = EXCLUDED.additional_info
RETURNING tone, additional_info, updated_at
"""


def _checked(row: UserRow) -> dict[str, Any]:
    return {"checked_hash": row.password_hash, "checked_version": row.token_version}


class UsersRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def _one(self, query: str, params: dict[str, Any]) -> UserRow | None:
        with self.conn.cursor(row_factory=class_row(UserRow)) as cur:
            return cur.execute(query, params).fetchone()

    def get(self, user_id: UUID, *, for_update: bool = False) -> UserRow | None:
        return self._one(GET_FOR_UPDATE if for_update else GET, {"id": user_id})

    def _signed_in(self, query: str, params: dict[str, Any]) -> SignedInRow | None:
        with self.conn.cursor(row_factory=class_row(SignedInRow)) as cur:
            return cur.execute(query, {**params, "tiers": list(PREMIUM_TIERS)}).fetchone()

    def get_signed_in(self, user_id: UUID) -> SignedInRow | None:
        """The account with whether it has premium now (a refresh's user), in one statement."""
        return self._signed_in(GET_SIGNED_IN, {"id": user_id})

    def get_by_login(self, login: str) -> UserRow | None:
        return self._one(GET_BY_LOGIN, {"login": login})

    def credential_state(self, user_id: UUID, *, for_share: bool = False) -> CredentialState | None:
        query = CREDENTIAL_STATE_FOR_SHARE if for_share else CREDENTIAL_STATE
        with self.conn.cursor(row_factory=class_row(CredentialState)) as cur:
            return cur.execute(query, {"id": user_id}).fetchone()

    def admin_state(self, user_id: UUID, api_key_id: UUID | None, *, for_share: bool) -> CredentialState | None:
        """The acting account's state, and whether the API key it acts with (if any) still works."""
        query = ADMIN_STATE_FOR_SHARE if for_share else ADMIN_STATE
        with self.conn.cursor(row_factory=class_row(CredentialState)) as cur:
            return cur.execute(query, {"id": user_id, "key_id": api_key_id}).fetchone()

    def add(
        self, *, username: str, email: str, password_hash: str | None, role: str = "user", **profile: Any
    ) -> UserRow:
        params = {field: profile.get(field) for field in PROFILE_FIELDS}
        params.update(username=username, email=email, password_hash=password_hash, role=role)
        row = self._one(INSERT, params)
        assert row is not None
        return row

    def update_profile(self, user_id: UUID, changes: dict[str, Any]) -> UserRow | None:
        params: dict[str, Any] = {"id": user_id}
        for field in PROFILE_FIELDS:
            params[f"set_{field}"] = field in changes
            params[field] = changes.get(field)
        return self._one(UPDATE_PROFILE, params)

    def set_password(self, user_id: UUID, password_hash: str, *, checked: UserRow) -> SignedInRow | None:
        """Replace the hash and bump the token version; None when the account is inactive or its password is no longer
        the one whose hash `checked` (the row read before the check) holds."""
        params = {"id": user_id, "password_hash": password_hash, **_checked(checked)}
        return self._signed_in(SET_PASSWORD, params)

    def bump_token_version(self, user_id: UUID) -> None:
        self.conn.execute(BUMP_TOKEN_VERSION, {"id": user_id})

    def set_role_and_active(self, user_id: UUID, role: str, is_active: bool) -> UserRow | None:
        return self._one(SET_ROLE_AND_ACTIVE, {"id": user_id, "role": role, "is_active": is_active})

    def touch_last_login(self, checked: UserRow, *, rehashed: str | None = None) -> SignedInRow | None:
        """Record a sign-in (storing `rehashed` when given); None when the account is inactive or its password is
        no longer the one whose hash `checked` (the row read before the check) holds."""
        return self._signed_in(TOUCH_LAST_LOGIN, {"id": checked.id, "rehashed": rehashed, **_checked(checked)})

    def lock_active_super_admins(self) -> list[UUID]:
        return [row[0] for row in self.conn.execute(LOCK_ACTIVE_SUPER_ADMINS).fetchall()]

    def list_page(self, after: tuple[datetime, UUID] | None, limit: int) -> list[UserRow]:
        params = {"after_created": after[0] if after else None, "after_id": after[1] if after else None, "limit": limit}
        with self.conn.cursor(row_factory=class_row(UserRow)) as cur:
            return cur.execute(LIST_PAGE, params).fetchall()

    def get_properties(self, user_id: UUID) -> PropertiesRow | None:
        with self.conn.cursor(row_factory=class_row(PropertiesRow)) as cur:
            return cur.execute(GET_PROPERTIES, {"user_id": user_id}).fetchone()

    def put_properties(self, user_id: UUID, tone: str | None, additional_info: str | None) -> PropertiesRow:
        with self.conn.cursor(row_factory=class_row(PropertiesRow)) as cur:
            row = cur.execute(
                PUT_PROPERTIES, {"user_id": user_id, "tone": tone, "additional_info": additional_info}
            ).fetchone()
        assert row is not None
        return row
