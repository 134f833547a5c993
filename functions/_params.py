"""Query parameters that many routes share: the keyset page a list starts after and its size."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

# No length limit here: a cursor Confab did not issue (too long, not base64, wrong shape) is a 400 from
# shared.pagination.decode_cursor, one answer for every kind of malformed cursor.
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page, exactly as received")]
Limit = Annotated[int | None, Query(description="page size, default 50, at most 200")]
