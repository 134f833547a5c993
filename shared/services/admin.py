"""What admins do with accounts: list them, (de)activate them, and (super_admin only) change roles."""

from __future__ import annotations

from uuid import UUID

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, NotFoundError
from shared.models.identity import AdminUserPatch, ConnectionLog, User
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of
from shared.repositories.connection_logs import ConnectionLogRow, ConnectionLogsRepository
from shared.repositories.refresh_tokens import RefreshTokensRepository
from shared.repositories.users import UserRow, UsersRepository
from shared.services.accounts import CURSOR_KINDS, Client, _log, to_user
from shared.services.admin_rights import PRIVILEGED, confirm_admin, require_admin


def list_users(db: Database, principal: Principal, cursor: str | None, limit: int | None) -> Page[User]:
    require_admin(principal)
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)

    def read(uow: UnitOfWork) -> list[UserRow]:
        confirm_admin(uow, principal, write=False)
        return UsersRepository(uow.conn).list_page(after, size + 1)

    page = page_of(db.read(read), size, key=lambda row: (row.created_at, row.id))
    return page_as(page, to_user)


def list_connection_logs(
    db: Database, principal: Principal, cursor: str | None, limit: int | None
) -> Page[ConnectionLog]:
    """Everyone's connection log, newest first."""
    require_admin(principal)
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)

    def read(uow: UnitOfWork) -> list[ConnectionLogRow]:
        confirm_admin(uow, principal, write=False)
        return ConnectionLogsRepository(uow.conn).list_page(None, after, size + 1)

    page = page_of(db.read(read), size, key=lambda row: (row.created_at, row.id))
    return page_as(page, lambda row: ConnectionLog.model_validate(row, from_attributes=True))


def update_user(db: Database, principal: Principal, target_id: UUID, patch: AdminUserPatch, client: Client) -> User:
    """Change a user's role or active flag. Only a super_admin touches admin rights or admin accounts,
    and the last active super_admin can be neither demoted nor deactivated."""
    actor = require_admin(principal)
    patch.refuse_nulls("role", "is_active")

    def work(uow: UnitOfWork) -> User:
        users = UsersRepository(uow.conn)
        # Locked first, in one order, so two concurrent changes to super_admins serialize.
        super_admins = users.lock_active_super_admins()
        # Rights are what the account holds now, not what a cached authorizer answer says (admin_rights). Read
        # after the lock above, which every change that could take them (a super_admin's) also holds.
        acting_role = confirm_admin(uow, principal, write=True)
        target = users.get(target_id, for_update=True)
        if target is None:
            raise NotFoundError()
        role = patch.role if patch.role is not None else target.role
        active = patch.is_active if patch.is_active is not None else target.is_active
        if role == target.role and active == target.is_active:
            return to_user(target)
        touches_rights = role != target.role or target.role in PRIVILEGED
        if touches_rights and acting_role != "super_admin":
            raise ForbiddenError("Only a super_admin changes roles or administrator accounts.")
        losing_super = target.role == "super_admin" and target.is_active and (role != "super_admin" or not active)
        if losing_super and super_admins == [target.id]:
            raise ConflictError("The last super_admin cannot be demoted or deactivated.")
        updated = users.set_role_and_active(target.id, role, active)  # bumps the token version
        assert updated is not None
        tokens = RefreshTokensRepository(uow.conn)
        if not active:
            tokens.revoke_for_user(target.id)
        else:
            # A role change ends no session: the next refresh issues an access token with the new role.
            tokens.rebind_for_user(target.id, target.token_version, updated.token_version)
        if role != target.role:
            _log(uow, "role_changed", target.id, client, actor_id=actor, detail={"from": target.role, "to": role})
        if active != target.is_active:
            _log(uow, "reactivated" if active else "deactivated", target.id, client, actor_id=actor)
        return to_user(updated)

    return db.transact(work)
