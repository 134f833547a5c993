"""Usage reports from the rollups: my usage by day/model, admin monthly ranking and usage by model."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.auth.principal import Principal
from shared.events.usage import UsageEvent
from shared.services.usage import record_usage
from tests.helpers import FakeLambdaContext, body_of, header, load_event
from tests.usage_support import make_user


def _request(path: str, query: dict[str, str] | None, principal: Principal | None) -> dict:
    event = load_event("usage_me_get")
    event["resource"] = event["path"] = event["requestContext"]["resourcePath"] = path
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["requestContext"] = copy.deepcopy(event["requestContext"])
    event["requestContext"]["authorizer"] = (
        {"principalId": str(principal.user_id), **principal.to_context()} if principal else None
    )
    from functions.usage import lambda_handler

    return lambda_handler(event, FakeLambdaContext())


def _use(db_, user, model, day, tokens, cost):
    return UsageEvent(
        user_id=user,
        model=model,
        provider="bedrock",
        tokens_input=tokens,
        tokens_output=tokens // 2,
        cost_usd=Decimal(cost),
        occurred_at=datetime(2026, 11, day, 12, tzinfo=UTC),
    )


@pytest.fixture
def usage(app_container, db):
    alice, bob, admin = make_user(db), make_user(db), make_user(db, role="admin")
    events = [
        _use(db, alice, "m-large", 3, 1000, "0.50000000"),
        _use(db, alice, "m-large", 3, 10, "0.00500000"),
        _use(db, alice, "m-small", 4, 100, "0.01000000"),
        _use(db, bob, "m-small", 4, 200, "0.02000000"),
        _use(db, bob, "m-small", 4, 200, "0.02000000"),
        _use(db, bob, "m-large", 30, 50, "0.90000000"),
        _use(db, alice, "m-large", 1, 10, "0.10000000") .model_copy(
            update={"occurred_at": datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)}
        ),  # next month
    ]  # fmt: skip
    record_usage(app_container.db, events)
    return {"alice": alice, "bob": bob, "admin": admin}


def _user(user_id, role="user") -> Principal:
    return Principal(kind="jwt", user_id=user_id, role=role, token_version=0)


def test_my_usage_by_day_sums_each_utc_day_when_grouped_by_day(usage):
    response = _request("/v1/usage/me", {"from": "2026-11-01", "to": "2026-11-30"}, _user(usage["alice"]))
    assert response["statusCode"] == 200
    body = body_of(response)
    assert body["from"] == "2026-11-01" and body["to"] == "2026-11-30" and body["group_by"] == "day"
    days = {item["day"]: item for item in body["items"]}
    assert set(days) == {"2026-11-03", "2026-11-04"}
    assert days["2026-11-03"]["requests"] == 2 and days["2026-11-03"]["tokens_input"] == 1010
    assert Decimal(days["2026-11-03"]["cost_usd"]) == Decimal("0.505")
    assert body["totals"]["requests"] == 3 and Decimal(body["totals"]["cost_usd"]) == Decimal("0.515")


def test_my_usage_by_model_lists_each_model_when_grouped_by_model(usage):
    query = {"group_by": "model", "from": "2026-11-01", "to": "2026-12-31"}
    body = body_of(_request("/v1/usage/me", query, _user(usage["alice"])))
    assert [(i["model"], i["requests"]) for i in body["items"]] == [("m-large", 3), ("m-small", 1)]


def test_my_usage_is_422_when_from_is_after_to(usage):
    response = _request("/v1/usage/me", {"from": "2026-11-10", "to": "2026-11-01"}, _user(usage["alice"]))
    assert response["statusCode"] == 422


def test_my_usage_is_422_naming_to_when_the_default_range_would_start_before_year_one(usage):
    response = _request("/v1/usage/me", {"to": "0001-01-05"}, _user(usage["alice"]))
    assert response["statusCode"] == 422
    assert body_of(response)["errors"][0]["loc"] == ["query", "to"]
    first_day = _request("/v1/usage/me", {"from": "0001-01-01", "to": "0001-01-05"}, _user(usage["alice"]))
    assert first_day["statusCode"] == 200 and body_of(first_day)["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        {"to": "0"},  # a Unix timestamp to a lax date: 1970-01-01, answered as if meant
        {"from": "2026-11-01T00:00:00"},  # a midnight datetime
        {"from": "٢٠٢٦-١١-٠١"},  # Arabic-Indic digits
        {"from": "2026-11-31"},
        {"from": "20261101"},
    ],
)
def test_my_usage_is_422_unless_days_are_iso_dates(usage, query):
    response = _request("/v1/usage/me", query, _user(usage["alice"]))
    assert response["statusCode"] == 422, response["body"]
    assert body_of(response)["errors"][0]["loc"] == ["query", next(iter(query))]


def test_my_usage_is_422_when_group_by_is_unknown(usage):
    response = _request("/v1/usage/me", {"group_by": "week"}, _user(usage["alice"]))
    assert response["statusCode"] == 422


def test_my_usage_is_401_when_the_caller_is_anonymous(usage):
    anonymous = Principal(kind="anonymous", conversation_id=usage["alice"])
    assert _request("/v1/usage/me", None, anonymous)["statusCode"] == 401
    assert _request("/v1/usage/me", None, None)["statusCode"] == 401


def test_monthly_usage_ranks_users_by_cost_when_the_caller_is_admin(usage):
    response = _request("/v1/admin/usage/monthly", {"month": "2026-11"}, _user(usage["admin"], "admin"))
    assert response["statusCode"] == 200
    users = body_of(response)["users"]
    assert [(u["rank"], u["user_id"], u["requests"]) for u in users] == [
        (1, str(usage["bob"]), 3),
        (2, str(usage["alice"]), 3),
    ]
    assert Decimal(users[0]["cost_usd"]) == Decimal("0.94") and users[0]["tokens_input"] == 450
    assert users[0]["username"] and users[0]["email"]


def test_monthly_usage_pages_with_a_cursor_when_limit_is_smaller_than_the_ranking(usage):
    admin = _user(usage["admin"], "super_admin")
    first = body_of(_request("/v1/admin/usage/monthly", {"month": "2026-11", "limit": "1"}, admin))
    assert [u["user_id"] for u in first["users"]] == [str(usage["bob"])] and first["next_cursor"]
    query = {"month": "2026-11", "limit": "1", "cursor": first["next_cursor"]}
    second = body_of(_request("/v1/admin/usage/monthly", query, admin))
    assert [(u["rank"], u["user_id"]) for u in second["users"]] == [(2, str(usage["alice"]))]
    assert second["next_cursor"] is None


def test_monthly_usage_counts_the_last_day_of_the_month_when_usage_is_on_it(usage):
    response = _request("/v1/admin/usage/monthly", {"month": "2026-11"}, _user(usage["admin"], "admin"))
    bob = body_of(response)["users"][0]
    assert bob["user_id"] == str(usage["bob"]) and Decimal(bob["cost_usd"]) == Decimal("0.94")  # 0.90 on the 30th


def test_monthly_usage_is_an_empty_ranking_when_the_month_is_the_last_a_date_can_have(usage):
    response = _request("/v1/admin/usage/monthly", {"month": "9999-12"}, _user(usage["admin"], "admin"))
    assert response["statusCode"] == 200 and body_of(response)["users"] == []


def test_monthly_usage_is_403_when_the_caller_is_not_admin(usage):
    response = _request("/v1/admin/usage/monthly", {"month": "2026-11"}, _user(usage["alice"]))
    assert response["statusCode"] == 403


def test_monthly_usage_is_400_or_422_when_the_month_or_cursor_is_malformed(usage):
    admin = _user(usage["admin"], "admin")
    assert _request("/v1/admin/usage/monthly", {"month": "2026-13"}, admin)["statusCode"] == 422
    assert _request("/v1/admin/usage/monthly", {"month": "٢٠٢٦-11"}, admin)["statusCode"] == 422  # ASCII digits only
    year_zero = _request("/v1/admin/usage/monthly", {"month": "0000-01"}, admin)
    assert year_zero["statusCode"] == 422 and body_of(year_zero)["errors"][0]["loc"] == ["query", "month"]
    bad_cursor = {"month": "2026-11", "cursor": "not-a-cursor"}
    assert _request("/v1/admin/usage/monthly", bad_cursor, admin)["statusCode"] == 400


def _monthly_cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "raw",
    [
        '{"c": "0.5", "k": "x", "r": 1e400}',  # a rank that is no integer (float infinity: was a 500)
        '{"c": "0.5", "k": "x", "r": Infinity}',
        '{"c": "0.5", "k": "x", "r": 1.5}',
        '{"c": "0.5", "k": "x", "r": -1}',
        '{"c": "0.5", "k": "x\\ud800", "r": 1}',  # a lone surrogate: text PostgreSQL cannot take (was a 500)
        '{"c": "0.5", "k": "x\\u0000", "r": 1}',  # NUL (was a 422 from the database)
        '{"c": "NaN", "k": "x", "r": 1}',  # no cost a page ends on (was a 200 listing everyone from rank 2)
        '{"c": "1e999999999", "k": "x", "r": 1}',  # beyond numeric (was a 422 from the database)
        '{"c": 0.5, "k": "x", "r": 1}',
        '{"c": "0.5", "k": 7, "r": 1}',
        '["0.5", "x", 1]',
    ],
)
def test_monthly_usage_is_400_when_the_cursor_holds_values_no_page_gave(usage, raw):
    query = {"month": "2026-11", "cursor": _monthly_cursor(raw)}
    response = _request("/v1/admin/usage/monthly", query, _user(usage["admin"], "admin"))
    assert response["statusCode"] == 400, response["body"]
    assert header(response, "Content-Type") == "application/problem+json"


def test_models_usage_sums_every_user_per_model_when_the_caller_is_admin(usage):
    query = {"from": "2026-11-01", "to": "2026-11-30"}
    body = body_of(_request("/v1/admin/usage/models", query, _user(usage["admin"], "admin")))
    models = {m["model"]: m for m in body["models"]}
    assert models["m-large"]["requests"] == 3 and models["m-large"]["users"] == 2
    assert models["m-small"]["requests"] == 3 and Decimal(models["m-small"]["cost_usd"]) == Decimal("0.05")
    assert body["totals"]["requests"] == 6


def _models(usage, start="2026-11-01", end="2026-11-30"):
    response = _request("/v1/admin/usage/models", {"from": start, "to": end}, _user(usage["admin"], "admin"))
    assert response["statusCode"] == 200
    return body_of(response)


def test_models_usage_of_a_past_period_is_unchanged_when_its_users_delete_their_accounts(usage, app_container, db):
    # Deleted users' rollups were merged into one NULL-user row per day and model, which count(DISTINCT user_id)
    # skips: every period a deleted user had used a model in counted one user fewer from then on.
    carol = make_user(db)
    record_usage(
        app_container.db,
        [
            _use(db, carol, "m-large", 3, 20, "0.01000000"),  # the day and model alice used too
            _use(db, carol, "m-large", 5, 20, "0.01000000"),  # a second day of the same model: still one user
            _use(db, carol, "m-small", 4, 20, "0.01000000"),  # the day and model bob used too
        ],
    )
    periods = [("2026-11-01", "2026-11-30"), ("2026-11-03", "2026-11-04"), ("2026-11-01", "2026-12-31")]
    before = [_models(usage, *period) for period in periods]
    assert {m["model"]: m["users"] for m in before[0]["models"]} == {"m-large": 3, "m-small": 3}

    # Bob and carol both used m-small on the 4th: two deleted users on one day, model and provider stay two people.
    gone_ids = [usage["bob"], carol]
    db.execute("DELETE FROM users WHERE id = ANY(%s)", (gone_ids,))

    assert [_models(usage, *period) for period in periods] == before
    # Nothing left names them: no user id, and no key that is one or is shared between a person's models.
    assert db.execute("SELECT count(*) FROM usage_daily WHERE user_id = ANY(%s)", (gone_ids,)).fetchone() == (0,)
    keys = db.execute(
        "SELECT model_name, array_agg(DISTINCT deleted_user_key) FROM usage_daily WHERE user_id IS NULL"
        " GROUP BY model_name ORDER BY model_name"
    ).fetchall()
    assert [(model, len(found)) for model, found in keys] == [("m-large", 2), ("m-small", 2)]
    everyone = {key for _, found in keys for key in found}
    assert len(everyone) == 4 and everyone.isdisjoint([*gone_ids, usage["alice"]])
    # The monthly ranking still shows the deleted users as one row with no user.
    ranking = body_of(_request("/v1/admin/usage/monthly", {"month": "2026-11"}, _user(usage["admin"], "admin")))
    gone = [u for u in ranking["users"] if u["user_id"] is None]
    assert len(gone) == 1 and gone[0]["requests"] == 6 and gone[0]["username"] is None


def test_usage_recorded_after_its_user_was_deleted_adds_to_the_totals_and_to_no_ones_users(usage, app_container, db):
    # The event names an account that is gone: it is stored with no user, and nothing ties it to the deleted user's
    # keyed rows (that would need the account's id), so it counts in the totals and not among the users.
    before = _models(usage)
    db.execute("DELETE FROM users WHERE id = %s", (usage["bob"],))
    late = _use(db, usage["bob"], "m-large", 30, 10, "0.10000000")
    assert record_usage(app_container.db, [late]).inserted == 1
    after = _models(usage)
    large = {m["model"]: m for m in after["models"]}["m-large"]
    assert large["users"] == 2 and large["requests"] == 4
    assert after["totals"]["requests"] == before["totals"]["requests"] + 1
    unkeyed = "SELECT requests_count FROM usage_daily WHERE user_id IS NULL AND deleted_user_key IS NULL"
    assert db.execute(unkeyed).fetchall() == [(1,)]


def test_models_usage_is_403_when_the_caller_is_not_admin(usage):
    assert _request("/v1/admin/usage/models", None, _user(usage["bob"]))["statusCode"] == 403
