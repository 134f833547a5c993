"""A calendar day in a query string: exactly YYYY-MM-DD in ASCII digits.

Pydantic's lax `date` also takes a Unix timestamp (`to=0` is 1970-01-01) and a midnight datetime, which a
report would answer as if they were meant; ISO days only, anything else is 422.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator

ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(value: Any) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not ISO_DAY.fullmatch(value):
        raise ValueError("a day is YYYY-MM-DD")
    return date.fromisoformat(value)


Day = Annotated[date, BeforeValidator(parse_day)]
