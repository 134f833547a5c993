"""The base of every request body Confab reads (the OpenAI-compatible API's excepted: OpenAI's clients send
fields Confab does not use)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.errors import UnprocessableError


class Strict(BaseModel):
    """A field the body's model does not name is a 422 that changes nothing: one a caller may not set (role,
    is_active, an id, a hash) as much as a misspelt one, which would otherwise be dropped and answered 200."""

    model_config = ConfigDict(extra="forbid")

    def refuse_nulls(self, *fields: str) -> None:
        """422 naming each of `fields` (never null in the database) that a PATCH sets to null, before anything is
        written: not a 200 that changed nothing, nor a bare constraint error. A field left out stays as it was."""
        nulls = [name for name in fields if name in self.model_fields_set and getattr(self, name) is None]
        if nulls:
            raise UnprocessableError("These fields cannot be null.", errors=[{"loc": ["body", name]} for name in nulls])
