"""Who is calling: the authorizer's rules for JWTs, API keys and anonymous-conversation tokens."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from shared.auth.anonymous import is_anonymous_token, parse_anonymous_token, verify_anonymous_token
from shared.auth.api_keys import api_key_prefix, is_api_key
from shared.auth.keys import signing_key
from shared.auth.opaque import same_hash
from shared.auth.principal import Principal
from shared.auth.tokens import verify_access_token
from shared.db import Database
from shared.errors import UnauthorizedError
from shared.observability import logger
from shared.repositories.anonymous_tokens import AnonymousTokensRepository
from shared.repositories.api_keys import ApiKeysRepository
from shared.repositories.users import UsersRepository
from shared.settings import Settings

MAX_CREDENTIAL_CHARS = 4096


def credential_from_headers(headers: Mapping[str, str] | None) -> str | None:
    """`Authorization: Bearer <credential>` or `x-api-key: <key>`; header names are case-insensitive."""
    lowered = {key.lower(): value for key, value in (headers or {}).items() if isinstance(value, str)}
    authorization = lowered.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None
    api_key = lowered.get("x-api-key", "").strip()
    return api_key or None


def _refuse(reason: str) -> UnauthorizedError:
    # The reason goes to the log (never the credential); the caller sees one plain 401.
    logger.info("credential refused", extra={"reason": reason})
    return UnauthorizedError("Invalid or missing credentials.")


def authenticate(credential: str | None, *, db: Database, settings: Settings, allow_anonymous: bool) -> Principal:
    """The principal for a credential; UnauthorizedError for anything missing, forged, expired or revoked."""
    if not credential:
        raise _refuse("missing")
    if len(credential) > MAX_CREDENTIAL_CHARS:
        raise _refuse("oversized")
    if is_api_key(credential):
        return _api_key_principal(credential, db, settings)
    if is_anonymous_token(credential):
        if not allow_anonymous:
            raise _refuse("anonymous token on a user route")
        return _anonymous_principal(credential, db)
    return _jwt_principal(credential, db, settings)


def _jwt_principal(token: str, db: Database, settings: Settings) -> Principal:
    try:
        claims = verify_access_token(token, key=signing_key(settings), settings=settings)
    except UnauthorizedError:
        raise _refuse("invalid jwt") from None
    state = db.read(lambda uow: UsersRepository(uow.conn).credential_state(claims.user_id))
    if state is None or not state.is_active:
        raise _refuse("user missing or inactive")
    if state.token_version != claims.token_version or state.role != claims.role:
        raise _refuse("token version superseded")
    return Principal(kind="jwt", user_id=claims.user_id, role=claims.role, token_version=claims.token_version)


def _api_key_principal(key: str, db: Database, settings: Settings) -> Principal:
    prefix = api_key_prefix(key)
    if prefix is None:
        raise _refuse("malformed api key")
    interval = settings.api_key_touch_interval_s
    found = db.read(lambda uow: ApiKeysRepository(uow.conn).find_by_prefix(prefix, interval))
    if not same_hash(key, found.key_hash if found else None) or found is None:
        raise _refuse("unknown api key")
    if not found.is_usable or not found.is_active:
        raise _refuse("api key revoked, expired or owner inactive")
    if found.needs_touch:
        db.transact(lambda uow: ApiKeysRepository(uow.conn).touch(found.id, interval))
    return Principal(
        kind="api_key",
        user_id=found.user_id,
        role=found.role,  # the CHECK constraint keeps it one of Role
        api_key_id=found.id,
        token_version=found.token_version,
    )


def _anonymous_principal(token: str, db: Database) -> Principal:
    parsed = parse_anonymous_token(token)
    if parsed is None:
        raise _refuse("malformed anonymous token")
    conversation_id: UUID = parsed[0]
    stored = db.read(lambda uow: AnonymousTokensRepository(uow.conn).token_hash(conversation_id))
    if not verify_anonymous_token(token, conversation_id, stored):
        raise _refuse("unknown anonymous token")
    return Principal(kind="anonymous", conversation_id=conversation_id)
