"""Who may see and change what in a conversation: the one place the rules of access live.

Whoever is not a participant gets the same 404 as for an id that does not exist; platform admins are
no exception. An anonymous-conversation token reaches its own conversation only and acts as its admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from shared.auth.principal import Principal
from shared.errors import ForbiddenError, NotFoundError
from shared.repositories.conversations import ConversationsRepository, RowLock

ANONYMOUS_ROLE = "anonymous"


def not_found() -> NotFoundError:
    """The one 404 of this capability: the same body as a route that does not exist."""
    return NotFoundError()


@dataclass(frozen=True)
class Access:
    conversation_id: UUID
    kind: str
    role: str  # admin, member, ai, or anonymous (an anonymous-conversation token)

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", ANONYMOUS_ROLE)


def role_in(principal: Principal, conversation_id: UUID, kind: str, role: str | None) -> str | None:
    """The caller's role in a conversation of `kind`, or None when the caller may not see it."""
    if principal.is_anonymous:
        ok = principal.conversation_id == conversation_id and kind == "anonymous"
        return ANONYMOUS_ROLE if ok else None
    return role


def conversation_access(
    repo: ConversationsRepository, principal: Principal, conversation_id: UUID, lock: RowLock | None = None
) -> Access:
    """The caller's access to a conversation; 404 when the caller may not see it.

    A write passes `lock` (how it holds the conversation's row): the caller's participant row is then locked too,
    until the write commits, so a removal cannot commit between this check and the write, and a check that waited
    for a removal to commit finds the caller gone (ConversationsRepository.access)."""
    if principal.is_anonymous and principal.conversation_id != conversation_id:
        raise not_found()
    row = repo.access(conversation_id, principal.user_id, lock)
    role = role_in(principal, conversation_id, row.kind, row.role) if row else None
    if row is None or role is None:
        raise not_found()
    return Access(conversation_id=row.id, kind=row.kind, role=role)


def require_admin(access: Access) -> None:
    """Participants may know the conversation exists, so a non-admin change is a 403, not a 404."""
    if not access.is_admin:
        raise ForbiddenError("Only a conversation admin may do this.")
