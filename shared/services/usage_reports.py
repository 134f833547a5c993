"""Usage reports, served from the daily rollups (never by scanning per-request rows)."""

from __future__ import annotations

import base64
import binascii
import calendar
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import InvalidRequestError, UnprocessableError
from shared.models.money import NO_COST, Money
from shared.pagination import text_key
from shared.repositories.usage import UsageRepository
from shared.services import admin_rights

GroupBy = Literal["day", "model"]
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# A cursor's cost is a sum of usage_daily.cost_usd, numeric(18, 8): its exponent is far inside +-100.
MAX_COST_EXPONENT = 100


class UsageTotals(BaseModel):
    requests: int = 0
    cache_hits: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached: int = 0
    tokens_total: int = 0
    cost_usd: Money = NO_COST
    cost_avoided_usd: Money = NO_COST


class DayUsage(UsageTotals):
    day: date


class ModelUsage(UsageTotals):
    model: str
    provider: str


class ModelUsageWithUsers(ModelUsage):
    users: int


class MyUsage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    group_by: GroupBy
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    items: list[DayUsage] | list[ModelUsage]
    totals: UsageTotals


class UserMonthlyUsage(UsageTotals):
    rank: int
    user_id: UUID | None
    username: str | None
    email: str | None


class MonthlyUsage(BaseModel):
    month: str
    users: list[UserMonthlyUsage]
    next_cursor: str | None = None


class ModelsUsage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    models: list[ModelUsageWithUsers]
    totals: UsageTotals


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    """Inclusive UTC day range, last 30 days by default; at most a year."""
    end = end or datetime.now(UTC).date()
    if start is None:
        if (end - date.min).days < DEFAULT_RANGE_DAYS - 1:
            raise UnprocessableError(
                f"'to' leaves no room for the default {DEFAULT_RANGE_DAYS} days before it; give 'from'.",
                errors=[{"loc": ["query", "to"], "type": "range"}],
            )
        start = end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise UnprocessableError("'from' is after 'to'.", errors=[{"loc": ["query", "from"], "type": "date_order"}])
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise UnprocessableError(
            f"The range is longer than {MAX_RANGE_DAYS} days.", errors=[{"loc": ["query", "to"], "type": "range"}]
        )
    return start, end


def _sum(items: list[DayUsage] | list[ModelUsage] | list[ModelUsageWithUsers]) -> UsageTotals:
    totals = UsageTotals()
    for item in items:
        for name in UsageTotals.model_fields:
            setattr(totals, name, getattr(totals, name) + getattr(item, name))
    return totals


REPORT_ADMINS = "Usage reports across users are for administrators."


def my_usage(db: Database, principal: Principal, group_by: GroupBy, start: date | None, end: date | None) -> MyUsage:
    """The caller's own usage per UTC day or per model over a date range."""
    user_id = principal.require_user()
    first, last = _range(start, end)

    def work(uow: UnitOfWork) -> MyUsage:
        repo = UsageRepository(uow.conn)
        items: list[DayUsage] | list[ModelUsage]
        if group_by == "day":
            items = [DayUsage.model_validate(row) for row in repo.user_by_day(user_id, first, last)]
        else:
            items = [ModelUsage.model_validate(row) for row in repo.user_by_model(user_id, first, last)]
        return MyUsage(group_by=group_by, start=first, end=last, items=items, totals=_sum(items))

    return db.read(work)


def _encode_cursor(cost: Decimal, key: str, rank: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"c": str(cost), "k": key, "r": rank}).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[Decimal, str, int]:
    """(cost, user key, rank) of the last row of the previous page; the rank carries on across pages."""
    # Only what _encode_cursor writes: a cost as a finite decimal string PostgreSQL's numeric can take, a key of
    # text, a rank from 0. Anything else is the cursor's 400: a rank of 1e400 was a 500 (int() of infinity), a
    # lone surrogate in the key a 500 from the driver, and a NaN cost a 200 that listed everyone again.
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        cost, key, rank = data["c"], text_key(data["k"]), data["r"]
        if not isinstance(cost, str) or isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise ValueError("not a cursor this route wrote")
        amount = Decimal(cost)
        if not amount.is_finite() or not -MAX_COST_EXPONENT <= amount.adjusted() <= MAX_COST_EXPONENT:
            raise ValueError("no cost a page ends on")
        return amount, key, rank
    except (ValueError, KeyError, TypeError, InvalidOperation, binascii.Error) as exc:
        raise InvalidRequestError("The cursor is malformed.") from exc


def _month_bounds(month: str) -> tuple[date, date]:
    """The first and last days of a YYYY-MM month (the last, not the next month's first: 9999-12 has none)."""
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except ValueError as exc:  # the route's pattern lets year 0000 through
        raise UnprocessableError(
            "month must be YYYY-MM.", errors=[{"loc": ["query", "month"], "type": "value_error"}]
        ) from exc
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def monthly_usage(db: Database, principal: Principal, month: str, *, limit: int, cursor: str | None) -> MonthlyUsage:
    """Users ranked by cost over one calendar month (UTC), with tokens and requests; admins only."""
    admin_rights.require_admin(principal, REPORT_ADMINS)
    first, last_day = _month_bounds(month)
    after: tuple[Decimal, str] | None = None
    offset_rank = 0
    if cursor:
        cost, key, offset_rank = _decode_cursor(cursor)
        after = (cost, key)

    def work(uow: UnitOfWork) -> MonthlyUsage:
        admin_rights.confirm_admin(uow, principal, write=False, detail=REPORT_ADMINS)
        repo = UsageRepository(uow.conn)
        rows = repo.monthly_by_user(first, last_day, limit=limit + 1, after=after)
        page = rows[:limit]
        users = [UserMonthlyUsage.model_validate({**row, "rank": offset_rank + i + 1}) for i, row in enumerate(page)]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(last["cost_usd"], last["user_key"], offset_rank + len(page))
        return MonthlyUsage(month=month, users=users, next_cursor=next_cursor)

    return db.read(work)


def models_usage(db: Database, principal: Principal, start: date | None, end: date | None) -> ModelsUsage:
    """Usage per model and provider over a date range; admins only."""
    admin_rights.require_admin(principal, REPORT_ADMINS)
    first, last = _range(start, end)

    def work(uow: UnitOfWork) -> ModelsUsage:
        admin_rights.confirm_admin(uow, principal, write=False, detail=REPORT_ADMINS)
        rows = UsageRepository(uow.conn).by_model(first, last)
        models = [ModelUsageWithUsers.model_validate(row) for row in rows]
        return ModelsUsage(start=first, end=last, models=models, totals=_sum(models))

    return db.read(work)
