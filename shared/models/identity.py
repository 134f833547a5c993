"""API models for accounts, tokens, API keys, admin and licences. Requests forbid unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from shared.models.strict import HASHED_ONLY, Strict
from shared.models.web_url import WebUrl

Username = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
# Length rules for passwords are checked by shared.auth.passwords (422 with a clear message); this bound
# only keeps absurd bodies out before hashing.
# Passwords are only hashed (bcrypt takes every byte, a NUL included), never stored as text: Strict lets them hold a
# NUL, and refuses only a lone surrogate, which has no UTF-8 to hash.
Password = Annotated[str, Field(min_length=1, max_length=1024), HASHED_ONLY]
ShortText = Annotated[str, StringConstraints(max_length=255)]


def _future_instant(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (use UTC, e.g. 2030-01-01T00:00:00Z)")
    try:
        # What is stored and answered is the instant in UTC: 9999-12-31T23:59:59-12:00 is in the year 10000 there,
        # which the database stores but the driver cannot read back (a 422 that named no field).
        instant = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("must be before 10000-01-01T00:00:00Z") from exc
    if instant <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return instant


# When a key or a licence stops working: an instant (a time without a zone would be read in the database's),
# and a later one than now (an already expired credential is a mistake).
Expiry = Annotated[datetime, AfterValidator(_future_instant)]


class SignupRequest(Strict):
    username: Username
    email: Email
    password: Password
    name: ShortText | None = None
    organization: ShortText | None = None
    aws_region: ShortText | None = None
    country: ShortText | None = None
    profession: ShortText | None = None


class LoginRequest(Strict):
    login: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    password: Password


class RefreshRequest(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class ProfilePatch(Strict):
    name: ShortText | None = None
    organization: ShortText | None = None
    aws_region: ShortText | None = None
    country: ShortText | None = None
    profession: ShortText | None = None
    avatar_url: WebUrl | None = None


class PasswordChange(Strict):
    current_password: Password
    new_password: Password


class AccountDeletion(Strict):
    current_password: Password


class PropertiesPut(Strict):
    tone: ShortText | None = None
    additional_info: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class Properties(BaseModel):
    tone: str | None = None
    additional_info: str | None = None
    updated_at: datetime | None = None


class User(BaseModel):
    """An account as the API shows it: never a password hash or a token version."""

    id: UUID
    username: str
    email: str
    name: str | None = None
    organization: str | None = None
    aws_region: str | None = None
    country: str | None = None
    profession: str | None = None
    avatar_url: str | None = None
    role: str
    is_active: bool
    last_login: datetime | None = None
    created_at: datetime


class Me(User):
    """The caller's own account (GET and PATCH /v1/users/me): a User and what only its holder is told."""

    # The check a premium template's use makes (docs/ai.md), so a client knows whether to offer them.
    has_premium: bool = Field(
        description="Whether the caller owns or holds a seat of an unexpired licence of a premium tier now"
    )


class TokenPair(BaseModel):
    user: Me  # the shape GET /v1/users/me answers, has_premium included
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class ApiKeyCreate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = "default"
    expires_at: Expiry | None = None


class ApiKey(BaseModel):
    id: UUID
    name: str
    prefix: str
    expires_at: datetime | None = None
    last_used: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime


class ApiKeyCreated(ApiKey):
    """The one answer that carries the key itself."""

    key: str


class AdminUserPatch(Strict):
    role: Literal["super_admin", "admin", "user"] | None = None
    is_active: bool | None = None


class ConnectionLog(BaseModel):
    id: UUID
    user_id: UUID | None = None
    action: str
    ip_address: str | None = None
    user_agent: str | None = None
    actor_id: UUID | None = None  # the administrator who acted, when it was not the user
    detail: dict[str, Any] | None = None  # what changed, e.g. {"from": "user", "to": "admin"} for a role
    created_at: datetime


# The licence tiers, in one place: requests are validated against LicenseTier (a 422 naming the allowed values),
# and the premium check (shared/repositories/licenses.py) grants premium to PREMIUM_TIERS. Rows written before
# tiers were validated may hold other text: they are read as they are and grant no premium (docs/auth.md).
LicenseTier = Literal["free", "basic", "pro", "premium", "enterprise"]
PREMIUM_TIERS: tuple[LicenseTier, ...] = ("premium", "enterprise")


class LicenseCreate(Strict):
    owner_id: UUID | None = None  # defaults to the calling admin
    tier: LicenseTier
    seats: Annotated[int, Field(ge=1, le=100_000)]
    expires_at: Expiry | None = None


class LicensePatch(Strict):
    """What an admin may change: seats (never below those assigned), tier, expiry (null: never expires)."""

    seats: Annotated[int, Field(ge=1, le=100_000)] | None = None
    tier: LicenseTier | None = None
    expires_at: Expiry | None = None


class License(BaseModel):
    id: UUID
    owner_id: UUID
    key_prefix: str
    # A str, not LicenseTier: a licence written before tiers were validated is read with the tier it holds.
    tier: str = Field(description="One of the tiers a create accepts, or an older licence's own text")
    seats: int
    seats_used: int
    expires_at: datetime | None = None
    created_at: datetime


class LicenseCreated(License):
    key: str


class SeatAssign(Strict):
    user_id: UUID


class Seat(BaseModel):
    license_id: UUID
    user_id: UUID
    created_at: datetime


class HeldSeat(BaseModel):
    """A seat the caller holds, as its holder sees it: the licence's id, tier and expiry. Never its key or key
    prefix, nor its owner or seat counts: those are for the licence's owner and admins (GET /v1/licenses)."""

    license_id: UUID
    tier: str = Field(description="As License.tier")
    expires_at: datetime | None = None  # the licence's: once past, the seat grants no premium until a renewal
    created_at: datetime  # when the seat was given
