"""Who is calling: built by the authorizer, carried in the API Gateway authorizer context, trusted by handlers."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.errors import UnauthorizedError

CredentialKind = Literal["jwt", "api_key", "anonymous"]
Role = Literal["super_admin", "admin", "user"]


class Principal(BaseModel):
    """The caller. Anonymous-conversation callers have no user and a conversation scope."""

    model_config = ConfigDict(frozen=True)

    kind: CredentialKind
    user_id: UUID | None = None
    role: Role | None = None
    conversation_id: UUID | None = None  # the only conversation an anonymous token reaches
    api_key_id: UUID | None = None
    token_version: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "super_admin")

    @property
    def is_super_admin(self) -> bool:
        return self.role == "super_admin"

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    def require_user(self) -> UUID:
        """The user id; an anonymous caller is unauthorized on user-only routes."""
        if self.user_id is None:
            raise UnauthorizedError("This route needs a signed-in user or an API key.")
        return self.user_id

    def to_context(self) -> dict[str, str]:
        """API Gateway authorizer context: a flat map of strings (it allows no nesting and no nulls)."""
        values = self.model_dump(mode="json")
        return {key: "" if value is None else str(value) for key, value in values.items()}

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None) -> Principal:
        """Rebuild the principal from the authorizer context; missing or malformed context is a 401."""
        if not context or not context.get("kind"):
            raise UnauthorizedError("Missing credentials.")
        values = tuple(context.get(key) or None for key in _FIELDS)
        try:
            return _principal_of(values)
        except TypeError:  # a value that cannot be hashed: not one API Gateway sends, but still an answer
            return _validated(values)


_FIELDS = tuple(Principal.model_fields)


@lru_cache(maxsize=1024)
def _principal_of(values: tuple[Any, ...]) -> Principal:
    """The same context always makes the same (frozen) principal: a warm container parses each caller once."""
    return _validated(values)


def _validated(values: tuple[Any, ...]) -> Principal:
    try:
        return Principal.model_validate(dict(zip(_FIELDS, values, strict=True)))
    except ValueError as exc:
        raise UnauthorizedError("Malformed authorizer context.") from exc
