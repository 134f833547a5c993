"""Free-form JSON a client stores and every reader gets back: bounded in depth, and only what jsonb can hold.

Pydantic cannot write a response nested past its serialization depth (about 250), so deeper JSON would be
stored and then break every read of it (a 500 for the write and for every later list). JSON_MAX_DEPTH is far
below that and above any real document.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

JSON_MAX_DEPTH = 64


def check_storable_text(value: str, *, allow_nul: bool = False) -> None:
    """Refuse text PostgreSQL cannot store (in text or jsonb), naming why: a NUL character (U+0000) or a lone
    UTF-16 surrogate (U+D800 to U+DFFF, which no UTF-8 holds; JSON's escaped pair decodes to one character). Left
    to the database or the driver, they were a 422 that named no field, or a 500. `allow_nul`: text that is only
    hashed (a password) may hold a NUL."""
    if not allow_nul and "\x00" in value:
        raise ValueError("Text cannot hold a NUL character (\\u0000)")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("Text must be Unicode (it holds a lone surrogate)") from None


def _storable_scalar(value: Any) -> None:
    """Refuse what PostgreSQL's jsonb cannot hold: Python's JSON reader takes NaN, Infinity and numbers past a
    double's range (1e400 reads as infinity), none of which JSON has, and text check_storable_text refuses. They
    were a 422 naming no field, saying "a rule of the data model"."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("JSON numbers must be finite (no NaN, Infinity, or a number past 1e308)")
    if isinstance(value, str):
        check_storable_text(value)


def _within_json_depth(value: Any) -> Any:
    """The value, if no object or array in it lies deeper than JSON_MAX_DEPTH (walked without recursion) and every
    key and scalar in it can be stored (_storable_scalar)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, dict | list):
            _storable_scalar(item)
            continue
        if depth > JSON_MAX_DEPTH:
            raise ValueError(f"JSON may be nested at most {JSON_MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key in item:
                _storable_scalar(key)
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return value


JsonValue = Annotated[Any, AfterValidator(_within_json_depth)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_within_json_depth)]
JsonArray = Annotated[list[Any], AfterValidator(_within_json_depth)]
