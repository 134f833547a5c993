"""Parameters that many routes share: the keyset page a list starts after and its size, and the Idempotency-Key
header of the routes that store what a client may retry (a send, a thread completion)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from shared.errors import UnprocessableError

# No length limit here: a cursor Confab did not issue (too long, not base64, wrong shape) is a 400 from
# shared.pagination.decode_cursor, one answer for every kind of malformed cursor.
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page, exactly as received")]
Limit = Annotated[int | None, Query(description="page size, default 50, at most 200")]

# As the body's field: 1 to 200 characters (an empty header was stored as a key), no NUL (no text column holds one).
IdempotencyKeyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[^\x00]*$")
]


def idempotency_key_of(in_body: str | None, in_header: str | None) -> str | None:
    """The request's idempotency key, from its body or its Idempotency-Key header; both, and different, is a 422
    naming the header (before, the body's won silently, and a client that meant the header's retried nothing)."""
    if in_body is not None and in_header is not None and in_body != in_header:
        message = "The Idempotency-Key header and the body's idempotency_key differ: send one, or the same in both."
        raise UnprocessableError(
            message, errors=[{"loc": ["header", "idempotency-key"], "type": "idempotency_key_mismatch", "msg": message}]
        )
    return in_body if in_body is not None else in_header
