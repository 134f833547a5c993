"""Administrator rights as the account holds them when it acts, not as the authorizer's answer says.

API Gateway caches the authorizer's Allow, with the role in its context, for up to a minute (docs/deploy.md,
"Authorizer caching"). An admin demoted or deactivated within that minute still arrives with role=admin, so an
admin-only action reads the caller's role and active flag again, in the transaction that does the work: one
indexed read by primary key, paid only by callers whose context claims admin (user routes never pay it).
"""

from __future__ import annotations

from uuid import UUID

from shared.auth.principal import Principal
from shared.db import UnitOfWork
from shared.errors import ForbiddenError

PRIVILEGED = frozenset({"admin", "super_admin"})
ADMINS_ONLY = "This route is for administrators."


def require_admin(principal: Principal, detail: str = ADMINS_ONLY) -> UUID:
    """The caller's id when the authorizer's answer says admin; 403 otherwise. A first filter that costs no
    database read: the rights themselves are confirmed by confirm_admin in the transaction that uses them."""
    user_id = principal.require_user()
    if not principal.is_admin:
        raise ForbiddenError(detail)
    return user_id


def admin_role_now(uow: UnitOfWork, principal: Principal, *, write: bool) -> str | None:
    """The caller's stored role when the context claims admin and the account is still an active admin; None
    otherwise (a context that does not claim admin costs no read). `write`: the row is read FOR SHARE, so a
    role change or deactivation waits for this transaction, and this write cannot land after it has answered."""
    if principal.user_id is None or not principal.is_admin:
        return None
    # Imported here: every function imports require_admin (functions/_http.admins_first), few read the row.
    from shared.repositories.users import UsersRepository

    state = UsersRepository(uow.conn).admin_state(principal.user_id, principal.api_key_id, for_share=write)
    if state is None or not state.is_active or state.role not in PRIVILEGED:
        return None
    if not state.key_usable:
        # An API key revoked (or expired) since the authorizer's answer was cached keeps no admin rights.
        return None
    if principal.kind == "jwt" and principal.token_version not in (None, state.token_version):
        # An access token from before a logout-all or a password change (read in the same row, at no cost): a
        # stolen admin token keeps no admin rights for the minute the authorizer's answer is cached.
        return None
    return state.role


def confirm_admin(uow: UnitOfWork, principal: Principal, *, write: bool, detail: str = ADMINS_ONLY) -> str:
    """The caller's stored role (admin or super_admin); 403 when the account is no longer an active admin."""
    role = admin_role_now(uow, principal, write=write)
    if role is None:
        raise ForbiddenError(detail)
    return role
