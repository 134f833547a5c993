"""The base of every request body Confab reads (the OpenAI-compatible API's excepted: OpenAI's clients send
fields Confab does not use)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from shared.errors import UnprocessableError
from shared.models.json_values import check_storable_text

# In a field's Annotated metadata: text that is only hashed, never stored (a password), may hold a NUL.
HASHED_ONLY = object()


class Strict(BaseModel):
    """A field the body's model does not name is a 422 that changes nothing: one a caller may not set (role,
    is_active, an id, a hash) as much as a misspelt one, which would otherwise be dropped and answered 200.

    And text that PostgreSQL cannot store (a NUL character, a lone surrogate), anywhere in a field (in a list, in
    JSON, keys included), is a 422 naming that field, before anything is written: left to the database it was a 422
    that named no field ("A value cannot be stored"), and to the driver a 500."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        allow_nul = field is not None and any(marker is HASHED_ONLY for marker in field.metadata)
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                check_storable_text(item, allow_nul=allow_nul)
            elif isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list | tuple | set | frozenset):
                pending.extend(item)
        return value

    def refuse_nulls(self, *fields: str) -> None:
        """422 naming each of `fields` (never null in the database) that a PATCH sets to null, before anything is
        written: not a 200 that changed nothing, nor a bare constraint error. A field left out stays as it was."""
        nulls = [name for name in fields if name in self.model_fields_set and getattr(self, name) is None]
        if nulls:
            raise UnprocessableError("These fields cannot be null.", errors=[{"loc": ["body", name]} for name in nulls])
