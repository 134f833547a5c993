"""Free-form JSON a client stores and every reader gets back: bounded in depth.

Pydantic cannot write a response nested past its serialization depth (about 250), so deeper JSON would be
stored and then break every read of it (a 500 for the write and for every later list). JSON_MAX_DEPTH is far
below that and above any real document.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

JSON_MAX_DEPTH = 64


def _within_json_depth(value: Any) -> Any:
    """The value, if no object or array in it lies deeper than JSON_MAX_DEPTH (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > JSON_MAX_DEPTH:
            raise ValueError(f"JSON may be nested at most {JSON_MAX_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


JsonValue = Annotated[Any, AfterValidator(_within_json_depth)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_within_json_depth)]
JsonArray = Annotated[list[Any], AfterValidator(_within_json_depth)]
