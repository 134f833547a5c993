"""Access tokens: HS256 JWTs of at most 15 minutes, algorithm pinned, every claim required."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, get_args
from uuid import UUID

import jwt

from shared.auth.principal import Role
from shared.errors import UnauthorizedError
from shared.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti", "sub", "role", "ver")
ROLES = frozenset(get_args(Role))
LEEWAY_S = 5


@dataclass(frozen=True)
class AccessClaims:
    user_id: UUID
    role: Role
    token_version: int
    jti: str
    expires_at: int


def issue_access_token(
    user_id: UUID, role: str, token_version: int, *, key: str, settings: Settings, now: float | None = None
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    issued = int(now if now is not None else time.time())
    ttl = settings.access_token_ttl_s
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": role,
        "ver": token_version,
        "iat": issued,
        "exp": issued + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"typ": "JWT"}), ttl


def verify_access_token(token: str, *, key: str, settings: Settings) -> AccessClaims:
    """The claims of a valid token; anything else (forged, expired, malformed) is UnauthorizedError."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
        return _claims(claims, settings)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise UnauthorizedError("Invalid or expired access token.") from exc


def _claims(claims: dict[str, Any], settings: Settings) -> AccessClaims:
    role, version, jti, exp, iat = claims["role"], claims["ver"], claims["jti"], claims["exp"], claims["iat"]
    if role not in ROLES:
        raise ValueError("unknown role")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError("bad token version")
    if not isinstance(jti, str) or not jti:
        raise ValueError("bad jti")
    if not isinstance(exp, int) or not isinstance(iat, int) or exp - iat > settings.access_token_ttl_s:
        # A token that claims a longer life than we ever issue was not made by us.
        raise ValueError("lifetime too long")
    return AccessClaims(user_id=UUID(str(claims["sub"])), role=role, token_version=version, jti=jti, expires_at=exp)
