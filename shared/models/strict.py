"""The base of every request body Confab reads (the OpenAI-compatible API's excepted: OpenAI's clients send
fields Confab does not use)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A field the body's model does not name is a 422 that changes nothing: one a caller may not set (role,
    is_active, an id, a hash) as much as a misspelt one, which would otherwise be dropped and answered 200."""

    model_config = ConfigDict(extra="forbid")
