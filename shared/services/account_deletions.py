"""Deleting an account: by its user, who confirms with their password, or by an administrator, with the rights of a
change to the account (PATCH /v1/admin/users/{id}).

One transaction. What other people would lose with the account refuses the deletion (409: licences that seat
someone else); what is theirs to keep is handed over to them (conversations); the rest goes with the user row, by
the foreign keys (docs/schema.md, "Delete rules"), sessions and API keys included. The bytes of the account's
files are deleted by maintenance once the rows have gone (user_file_deletions, migration 0600).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, NotFoundError, UnauthorizedError
from shared.models.identity import AccountDeletion
from shared.observability import logger
from shared.repositories.account_deletions import AccountDeletionsRepository
from shared.repositories.files import FilesRepository
from shared.repositories.users import UserRow, UsersRepository
from shared.services.accounts import WRONG_PASSWORD, Client, confirm_current_password, still_checked
from shared.services.admin_rights import PRIVILEGED, confirm_admin, require_admin
from shared.settings import Settings

LAST_SUPER_ADMIN = "The last super_admin cannot be deleted: make another account super_admin first."
OTHERS_SEATS = (
    "The account owns licences that seat other users, whose seats would go with it: remove those seats "
    "(DELETE /v1/licenses/{id}/seats/{user_id}) or have the licences deleted first."
)


@dataclass(frozen=True)
class Deletion:
    """What a deletion did besides deleting the row, for the log."""

    conversations_deleted: int
    admins_given: int
    conversations_released: int
    files: int


def delete_own_account(
    db: Database, settings: Settings, principal: Principal, request: AccountDeletion, client: Client
) -> None:
    """The caller's account, once `request.current_password` is its password (403 as a password change answers,
    and counted with its wrong passwords)."""
    user_id = principal.require_user()
    checked = confirm_current_password(
        db, settings, user_id, request.current_password, client, detail={"during": "account_deletion"}
    )

    def work(uow: UnitOfWork) -> Deletion:
        # The super_admins first, in the order a role change takes them (shared/services/admin.py).
        super_admins = UsersRepository(uow.conn).lock_active_super_admins()
        target = AccountDeletionsRepository(uow.conn).lock_user(user_id)
        if target is None:
            raise NotFoundError()
        if not target.is_active:
            # Deactivated since the authorizer's answer was cached: that answer is no longer the account's.
            raise UnauthorizedError("Invalid or missing credentials.")
        if not still_checked(target, checked):
            raise ForbiddenError(WRONG_PASSWORD)  # changed while bcrypt ran
        return _delete(uow, settings, target, super_admins, actor_id=None)

    _logged(user_id, None, db.transact(work))


def delete_account(db: Database, settings: Settings, principal: Principal, target_id: UUID) -> None:
    """Another user's account, for administrators: a plain user's for any admin, an admin's or a super_admin's for
    a super_admin only, as for a change to the account; 404 for an unknown id."""
    actor = require_admin(principal)

    def work(uow: UnitOfWork) -> Deletion:
        # What a role change locks, in its order: the super_admins, the acting admin (FOR SHARE, reading its rights
        # again), the account.
        super_admins = UsersRepository(uow.conn).lock_active_super_admins()
        acting_role = confirm_admin(uow, principal, write=True)
        target = AccountDeletionsRepository(uow.conn).lock_user(target_id)
        if target is None:
            raise NotFoundError()
        if target.id == actor:
            # Deleting one's own account always asks for its password.
            raise ForbiddenError("Delete your own account with DELETE /v1/users/me, which asks for your password.")
        if target.role in PRIVILEGED and acting_role != "super_admin":
            raise ForbiddenError("Only a super_admin deletes an administrator account.")
        return _delete(uow, settings, target, super_admins, actor_id=actor)

    _logged(target_id, actor, db.transact(work))


def _delete(
    uow: UnitOfWork, settings: Settings, target: UserRow, super_admins: list[UUID], actor_id: UUID | None
) -> Deletion:
    if target.role == "super_admin" and target.is_active and super_admins == [target.id]:
        raise ConflictError(LAST_SUPER_ADMIN)
    repo = AccountDeletionsRepository(uow.conn)
    # Its conversations, then the account for good: nothing naming it is written from here on (a send in them
    # waits for their rows, anything else for the account's), so what is counted and handed over below is all.
    repo.lock_conversations(target.id)
    repo.seal(target.id)
    seated = repo.licenses_with_others_seats(target.id)
    if seated:
        raise ConflictError(OTHERS_SEATS, licenses_seating_others=seated)
    deleted, promoted, released = repo.hand_over_conversations(target.id)
    files = FilesRepository(uow.conn).delete_all_owned(target.id, settings.file_url_ttl_s)
    repo.record(target.id, target.role, actor_id)
    repo.delete_user(target.id)  # and with it, by the foreign keys, its sessions, keys and the rest
    return Deletion(deleted, promoted, released, files)


def _logged(user_id: UUID, actor_id: UUID | None, done: Deletion) -> None:
    logger.info(
        "account deleted",
        extra={
            "user_id": str(user_id),
            "actor_id": str(actor_id) if actor_id else None,
            "conversations_deleted": done.conversations_deleted,
            "conversation_admins_given": done.admins_given,
            "conversations_released": done.conversations_released,
            "files": done.files,
        },
    )
