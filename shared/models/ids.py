"""Ids in request paths: a malformed id is simply not found, with the same 404 as a random well-formed id.

Route handlers type their path parameters with these instead of plain `UUID`/`int`, so Powertools'
validation never answers 422 for a path id. The validators raise `NotFoundError`, which pydantic does not
turn into a validation error (it only wraps ValueError and AssertionError): it reaches the resolver's error
table as it is. The OpenAPI document still says `uuid` / `integer`.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BeforeValidator

from shared.errors import NotFoundError

MAX_BIGINT = 2**63 - 1


def parse_uuid(value: Any) -> UUID:
    """A path id as a UUID; anything else is not found."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFoundError() from None


def parse_message_id(value: Any) -> int:
    """A message id (a positive bigint in decimal ASCII digits); anything else is not found."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_BIGINT:
        raise NotFoundError()
    return int(text)


PathId = Annotated[UUID, BeforeValidator(parse_uuid)]
MessageId = Annotated[int, BeforeValidator(parse_message_id)]
