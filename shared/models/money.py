"""Money in API answers: a Decimal written out in plain digits, never in exponent form."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def plain_digits(value: Decimal) -> str:
    """Decimal('0E-8') -> '0.00000000': what str() gives for a zero with a scale is valid JSON but unreadable."""
    return format(value, "f")


# JSON carries money as a string so no client parses it into a float on the way.
Money = Annotated[Decimal, PlainSerializer(plain_digits, return_type=str, when_used="json")]

# No cost, at the scale of every per-request and reported cost (numeric(14, 8), numeric(18, 8)): written out as
# "0.00000000" beside the others, not "0".
NO_COST = Decimal("0E-8")
