"""Free-form JSON a client stores and every reader gets back: bounded in depth, and only what jsonb can hold.

Pydantic cannot write a response nested past its serialization depth (about 250), so deeper JSON would be
stored and then break every read of it (a 500 for the write and for every later list). JSON_MAX_DEPTH is far
below that and above any real document.

Some JSON parses but cannot be stored as jsonb: a number too large for a float (`1e400` reads as infinity, as do
the `Infinity` and `NaN` Python's parser takes), and text (a value or a key) holding `\u0000` or a lone UTF-16
surrogate such as `\ud83d`. The database refused them with a 422 that named no field; they are refused here instead,
naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

JSON_MAX_DEPTH = 64


# NUL, and a surrogate code point (only a lone one can reach a str from JSON: a pair decodes to one character).
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def _check_scalar(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("JSON numbers must be finite (at most about 1.8e308)")
    if isinstance(value, str) and _UNSTORABLE_TEXT.search(value):
        raise ValueError("JSON text may not hold \\u0000 or a lone UTF-16 surrogate")


def _within_json_depth(value: Any) -> Any:
    """The value, if no object or array in it lies deeper than JSON_MAX_DEPTH and every number, string and key in it
    can be stored as jsonb (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    _check_scalar(value)
    while pending:
        item, depth = pending.pop()
        if depth > JSON_MAX_DEPTH:
            raise ValueError(f"JSON may be nested at most {JSON_MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key in item:
                _check_scalar(key)
            children = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
            else:
                _check_scalar(child)
    return value


JsonValue = Annotated[Any, AfterValidator(_within_json_depth)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_within_json_depth)]
JsonArray = Annotated[list[Any], AfterValidator(_within_json_depth)]
