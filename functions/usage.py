"""Usage reports: the caller's own usage, and (admins) monthly usage by user and usage by model."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from functions._http import admins_first, lambda_entry, make_resolver, principal_of
from shared.bootstrap import container
from shared.models.days import Day
from shared.services.usage_reports import (
    REPORT_ADMINS,
    GroupBy,
    ModelsUsage,
    MonthlyUsage,
    MyUsage,
    models_usage,
    monthly_usage,
    my_usage,
)

app = make_resolver()

FromDate = Annotated[Day | None, Query(alias="from", description="first UTC day (default: 29 days before 'to')")]
ToDate = Annotated[Day | None, Query(alias="to", description="last UTC day, inclusive (default: today)")]


@app.get("/v1/usage/me", summary="My usage by day or by model", tags=["usage"])
def get_my_usage(group_by: GroupBy = "day", start: FromDate = None, end: ToDate = None) -> MyUsage:
    return my_usage(container().db, principal_of(app), group_by, start, end)


@app.get("/v1/admin/usage/monthly", summary="Users ranked by cost over a month (admins)", tags=["usage"])
@admins_first(REPORT_ADMINS)
def get_monthly_usage(
    month: Annotated[str, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC)")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> MonthlyUsage:
    return monthly_usage(container().db, principal_of(app), month, limit=limit, cursor=cursor)


@app.get("/v1/admin/usage/models", summary="Usage by model (admins)", tags=["usage"])
@admins_first(REPORT_ADMINS)
def get_models_usage(start: FromDate = None, end: ToDate = None) -> ModelsUsage:
    return models_usage(container().db, principal_of(app), start, end)


lambda_handler = lambda_entry(app)
