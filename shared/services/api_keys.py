"""A user's API keys: created (shown once), listed, revoked."""

from __future__ import annotations

from uuid import UUID

from shared.auth.api_keys import issue_key
from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import CREDENTIALS_REFUSED, ForbiddenError, NotFoundError, UnauthorizedError
from shared.models.identity import ApiKey, ApiKeyCreate, ApiKeyCreated
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of
from shared.repositories.api_keys import ApiKeysRepository
from shared.repositories.users import UsersRepository
from shared.services.accounts import CURSOR_KINDS, Client, _log


def create_api_key(db: Database, principal: Principal, request: ApiKeyCreate, client: Client) -> ApiKeyCreated:
    """A new key, made from a signed-in session; the answer is the only place the key itself ever appears."""
    user_id = principal.require_user()
    if principal.kind != "jwt":
        # A key could otherwise mint keys: one given out with an expiry, or revoked after a leak, would leave
        # behind keys that never expire and that its revocation does not reach.
        raise ForbiddenError("API keys are created from a signed-in session, not with an API key.")
    issued = issue_key()

    def work(uow: UnitOfWork) -> ApiKeyCreated:
        _confirm_session(uow, principal, user_id)
        row = ApiKeysRepository(uow.conn).add(
            user_id=user_id,
            name=request.name,
            prefix=issued.prefix,
            key_hash=issued.key_hash,
            expires_at=request.expires_at,
        )
        _log(uow, "api_key_created", user_id, client)
        return ApiKeyCreated.model_validate({**row.__dict__, "key": issued.key})

    return db.transact(work)


def _confirm_session(uow: UnitOfWork, principal: Principal, user_id: UUID) -> None:
    """401 unless the access token's session is still live: the account active and its token version the token's.

    API Gateway may hand this route an authorizer answer cached for up to a minute (docs/deploy.md, "Authorizer
    caching"), made before the account was deactivated, its password changed or its sessions all ended. A key made
    then would outlive that change (keys survive it by design), so the account is read again here, FOR SHARE: such a
    change in flight is waited for and then read, and one that comes later waits until this key is committed."""
    state = UsersRepository(uow.conn).credential_state(user_id, for_share=True)
    if state is None:
        raise NotFoundError()  # deleted since: what any write naming the account gets (its foreign key's 404)
    if not state.is_active or state.token_version != principal.token_version:
        raise UnauthorizedError(CREDENTIALS_REFUSED)


def list_api_keys(db: Database, user_id: UUID, cursor: str | None, limit: int | None) -> Page[ApiKey]:
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)
    rows = db.read(lambda uow: ApiKeysRepository(uow.conn).list_page(user_id, after, size + 1))
    page = page_of(rows, size, key=lambda row: (row.created_at, row.id))
    return page_as(page, lambda row: ApiKey.model_validate(row, from_attributes=True))


def revoke_api_key(db: Database, user_id: UUID, key_id: UUID, client: Client) -> None:
    """Revoke one of the caller's keys; someone else's key is a 404 exactly like a random id."""

    def work(uow: UnitOfWork) -> None:
        if ApiKeysRepository(uow.conn).revoke(key_id, user_id) is None:
            raise NotFoundError()
        _log(uow, "api_key_revoked", user_id, client)

    db.transact(work)
