"""API keys: `cfb_` + a random secret. The first characters are the stored, unique lookup prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.auth.opaque import hash_secret, new_secret

API_KEY_MARK = "cfb_"
PREFIX_CHARS = 12  # "cfb_" + 8 random characters: shown in lists, used to find the row
_SHAPE = re.compile(r"^cfb_[A-Za-z0-9_-]{40,64}$")
LICENSE_KEY_MARK = "cfl_"


@dataclass(frozen=True)
class IssuedKey:
    """A key as shown once to its owner, with what is stored of it."""

    key: str
    prefix: str
    key_hash: str


def issue_key(mark: str = API_KEY_MARK) -> IssuedKey:
    """A new key; only `prefix` and `key_hash` may be stored."""
    key = mark + new_secret()
    return IssuedKey(key=key, prefix=key[:PREFIX_CHARS], key_hash=hash_secret(key))


def is_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_MARK)


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed API key, or None for anything else."""
    return key[:PREFIX_CHARS] if _SHAPE.match(key) else None
