"""Keyset pagination shared by every list: opaque cursors, the limit rule and the page shape.

A cursor is the sort key of the last row of a page, JSON-encoded and base64url'd. It is opaque to
clients (they pass it back as `cursor`), never an offset. Repositories fetch `limit + 1` rows after the
key; `page_of` cuts the extra row and turns its predecessor's key into the next cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from shared.errors import InvalidRequestError

# Lambda hands API Gateway at most 6 MB of JSON, with the answer's body escaped inside it once more. A list of
# large records (a report's HTML, an execution's code and output) stops its page short of that, and a record
# that could not be answered at all is refused when written; the rest is room for the page and the headers.
ANSWER_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_CHARS = 1024
# Integer keys are bigint columns (message ids): a value outside that range is no key Confab issued, and
# passed on it would overflow in SQL (a 422 from the database instead of the 400 for a malformed cursor).
BIGINT_RANGE = range(-(2**63), 2**63)

T = TypeVar("T")
U = TypeVar("U")
M = TypeVar("M", bound=BaseModel)
KeyPart = type[str] | type[int] | type[UUID] | type[datetime]


class Page(BaseModel, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True)
class JsonPage:
    """A page whose items PostgreSQL already rendered as a JSON array (shaped like the route's Page[Model]): the
    route answers the text as it comes, so its rows never become Python objects."""

    items_json: str
    next_cursor: str | None

    @classmethod
    def of(cls, items_json: str, after: Sequence[Any] | None, scope: str | None = None) -> JsonPage:
        """The page from its items and, when there is more, the sort key the next page starts after; a page read
        under a filter names it (`scope`) in its cursor (decode_scoped_cursor)."""
        if after is None:
            return cls(items_json=items_json, next_cursor=None)
        return cls(items_json=items_json, next_cursor=encode_cursor(after if scope is None else (*after, scope)))

    def to_json(self) -> str:
        return '{"items":' + self.items_json + ',"next_cursor":' + json.dumps(self.next_cursor) + "}"


def page_limit(limit: int | None) -> int:
    """The limit to use: 50 when absent, at most 200; zero or negative is a 400."""
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1:
        raise InvalidRequestError("limit must be a positive integer.")
    return min(limit, MAX_LIMIT)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise TypeError(f"cursor keys hold str, int, UUID or datetime, not {type(value).__name__}")


def encode_cursor(key: Sequence[Any]) -> str:
    """The opaque cursor for a sort key (a tuple of str, int, UUID or datetime)."""
    raw = json.dumps([_plain(part) for part in key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def text_key(value: Any) -> str:
    """A text sort key read back from a cursor, if a text column could hold it; ValueError otherwise."""
    # PostgreSQL text has no NUL and UTF-8 no lone surrogate (JSON's "\ud800" decodes to one): neither is a key
    # Confab issued, and passed on it was a 422 from the database or a 500 from the driver, not the cursor's 400.
    if not isinstance(value, str):
        raise ValueError("not a string")
    if "\x00" in value:
        raise ValueError("NUL in text")
    value.encode()  # UnicodeEncodeError, a ValueError, on a lone surrogate
    return value


def _typed(value: Any, kind: KeyPart) -> Any:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not an int")
        if value not in BIGINT_RANGE:
            raise ValueError("beyond bigint")
        return value
    if not isinstance(value, str):
        raise ValueError("not a string")
    if kind is datetime:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime")
        return parsed
    if kind is UUID:
        return UUID(value)
    return text_key(value)


MALFORMED_CURSOR = "The cursor is malformed; pass back a next_cursor exactly as received."
CURSOR_SCOPE_MISMATCH = (
    "The cursor was made for a page of another filter: pass it with the filter of the page it came from, or start "
    "again without a cursor."
)


def _cursor_values(cursor: str) -> list[Any]:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError("too long")
    padded = cursor + "=" * (-len(cursor) % 4)
    values = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    if not isinstance(values, list):
        raise ValueError("wrong shape")
    return values


def _typed_key(values: list[Any], kinds: Sequence[KeyPart]) -> tuple[Any, ...]:
    if len(values) != len(kinds):
        raise ValueError("wrong shape")
    return tuple(_typed(value, kind) for value, kind in zip(values, kinds, strict=True))


def decode_cursor(cursor: str | None, kinds: Sequence[KeyPart]) -> tuple[Any, ...] | None:
    """The sort key inside a cursor, typed per `kinds`; None for no cursor; anything malformed is a 400."""
    if cursor is None or cursor == "":
        return None
    try:
        return _typed_key(_cursor_values(cursor), kinds)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequestError(MALFORMED_CURSOR) from exc


def decode_scoped_cursor(cursor: str | None, kinds: Sequence[KeyPart], scope: str | None) -> tuple[Any, ...] | None:
    """decode_cursor for a list read under a filter, `scope` (None: unfiltered): the cursor of a filtered page
    carries its filter after the sort key (JsonPage.of), and a cursor made under another filter, or under none, is a
    400 (reason `cursor_filter_mismatch`) rather than a page that starts somewhere in another list."""
    if cursor is None or cursor == "":
        return None
    try:
        values = _cursor_values(cursor)
        made_under = text_key(values.pop()) if len(values) == len(kinds) + 1 else None
        key = _typed_key(values, kinds)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequestError(MALFORMED_CURSOR) from exc
    if made_under != scope:
        raise InvalidRequestError(CURSOR_SCOPE_MISMATCH, reason="cursor_filter_mismatch")
    return key


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]]) -> Page[T]:
    """A page from up to `limit + 1` rows fetched after the cursor: the extra row only signals more."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(key(items[-1])) if len(rows) > limit and items else None
    return Page[T](items=items, next_cursor=next_cursor)


def page_as(page: Page[T], convert: Callable[[T], U]) -> Page[U]:
    """The same page with each item converted (rows to response models), the cursor kept."""
    return Page[U](items=[convert(item) for item in page.items], next_cursor=page.next_cursor)


def answer_bytes(model: BaseModel) -> int:
    """The most bytes `model` takes in Lambda's answer to API Gateway: its JSON as Powertools writes a body
    (non-ASCII as \\u escapes), escaped again as the answer's body string."""
    body = json.dumps(model.model_dump(mode="json"), separators=(",", ":"))
    return len(json.dumps(body))


def page_within(page: Page[M], key: Callable[[M], Sequence[Any]], max_bytes: int = ANSWER_MAX_BYTES) -> Page[M]:
    """The page cut after the items whose answer fits in `max_bytes` (one item at least), its cursor at the last
    item kept, so that the next page starts with the first one left out."""
    total = 0
    for n, item in enumerate(page.items):
        total += answer_bytes(item)
        if total > max_bytes and n > 0:
            kept = page.items[:n]
            return Page[M](items=kept, next_cursor=encode_cursor(key(kept[-1])))
    return page
