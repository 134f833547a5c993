from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from shared.models.money import Money


class Priced(BaseModel):
    cost: Money
    maybe: Money | None = None


def test_money_is_plain_digits_in_json_when_zero_has_a_scale():
    assert Priced(cost=Decimal("0E-8")).model_dump(mode="json") == {"cost": "0.00000000", "maybe": None}


def test_money_keeps_every_digit_when_serialized():
    body = Priced(cost=Decimal("0.00012345"), maybe=Decimal("12.5")).model_dump_json()
    assert body == '{"cost":"0.00012345","maybe":"12.5"}'


def test_money_stays_a_decimal_in_python_when_not_serialized_to_json():
    assert Priced(cost=Decimal("1.10")).model_dump()["cost"] == Decimal("1.10")
