"""Opaque secrets (API keys, refresh tokens, licence keys, anonymous tokens): made here, only hashed at rest.

The secrets carry 256 bits of randomness, so one SHA-256 is enough (no stretching needed, unlike
passwords); comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_BYTES = 32


def new_secret() -> str:
    """A URL-safe random secret (43 characters, 256 bits)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(secret: str, stored_hash: str | None) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    if not stored_hash:
        hmac.compare_digest(hash_secret(secret), "0" * 64)
        return False
    return hmac.compare_digest(hash_secret(secret), stored_hash)
