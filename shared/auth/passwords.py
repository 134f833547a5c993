"""Password hashing with bcrypt: length rules, constant work for unknown accounts, no 500 on long input."""

from __future__ import annotations

from functools import cache

import bcrypt

from shared.errors import UnprocessableError

MIN_CHARS = 8
MAX_BYTES = 72  # bcrypt reads at most 72 bytes; longer passwords would be silently truncated


def check_password_rules(password: str, *, field: str = "password") -> None:
    """A 422 for a password under 8 characters or over 72 bytes (UTF-8)."""
    problem = None
    if len(password) < MIN_CHARS:
        problem = f"The password needs at least {MIN_CHARS} characters."
    elif len(password.encode()) > MAX_BYTES:
        problem = f"The password may be at most {MAX_BYTES} bytes (UTF-8)."
    if problem:
        raise UnprocessableError(problem, errors=[{"loc": ["body", field], "type": "password_rules", "msg": problem}])


def hash_password(password: str, rounds: int) -> str:
    """The bcrypt hash of a password that passed check_password_rules."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def needs_rehash(password_hash: str, rounds: int) -> bool:
    """Whether a bcrypt hash was made at another cost than `rounds` ("$2b$12$..." was made at 12)."""
    parts = password_hash.split("$")
    cost = parts[2] if len(parts) > 3 else ""
    return not (cost.isascii() and cost.isdigit() and int(cost) == rounds)


@cache
def dummy_hash(rounds: int) -> str:
    """A hash of nothing anyone knows, checked when the account does not exist so the work is the same: made at
    the configured cost, as every hash is once its account has signed in (login rehashes)."""
    return hash_password("confab-dummy-password-never-matches", rounds)


def verify_password(password: str, password_hash: str | None, rounds: int) -> bool:
    """Whether `password` matches; always one bcrypt check, whatever the input or the stored hash."""
    candidate = password.encode()
    too_long = len(candidate) > MAX_BYTES
    target = password_hash if password_hash and not too_long else dummy_hash(rounds)
    try:
        matched = bcrypt.checkpw(candidate[:MAX_BYTES], target.encode())
    except ValueError:
        # A malformed stored hash: treated as a mismatch, after the same work on the dummy.
        bcrypt.checkpw(candidate[:MAX_BYTES], dummy_hash(rounds).encode())
        return False
    return matched and not too_long and bool(password_hash)
