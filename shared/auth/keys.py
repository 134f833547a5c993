"""The JWT signing key: Secrets Manager in AWS, JWT_SECRET or a generated, persisted key in local mode."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from shared.settings import MIN_KEY_BYTES as MIN_KEY_BYTES
from shared.settings import Settings

KEY_FILE = "jwt_secret"


def signing_key(settings: Settings) -> str:
    """The HS256 key. Secrets Manager values are cached by Powertools (5 minutes), so rotation lands."""
    if settings.jwt_secret_arn:
        from shared.secrets import secret_text

        key = secret_text(settings.jwt_secret_arn)
        # Held to JWT_SECRET's rule on every read, not only the first: a rotation may bring a short value. Raised,
        # never signed or checked with: the first request of a cold start fails (500, logged) until it is fixed.
        if len(key.encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"The JWT signing key in JWT_SECRET_ARN's secret must be at least {MIN_KEY_BYTES} bytes, as "
                "JWT_SECRET must: store a longer random value (for example `openssl rand -base64 48`)"
            )
        return key
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.is_local:
        return local_key(settings.local_state_dir)
    raise ValueError("No JWT signing key: set JWT_SECRET_ARN (AWS) or JWT_SECRET (local)")


def local_key(state_dir: Path) -> str:
    """A key generated on first use and kept in `state_dir`, so local restarts keep sessions."""
    path = state_dir / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: link fails if another process won, and nobody reads a half file.
    scratch = state_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(scratch, path)
    except FileExistsError:
        pass
    finally:
        scratch.unlink()
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(f"{path} holds a key shorter than {MIN_KEY_BYTES} bytes")
    return key
