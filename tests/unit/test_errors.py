from __future__ import annotations

import pytest

from shared import errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequestError("bad cursor"), 400),
        (errors.UnauthorizedError(), 401),
        (errors.ForbiddenError(), 403),
        (errors.NotFoundError(), 404),
        (errors.ConflictError(), 409),
        (errors.PayloadTooLargeError(), 413),
        (errors.UnprocessableError(), 422),
        (errors.RateLimitedError(retry_after=30), 429),
        (errors.UpstreamError(status=504), 504),
        (errors.UnavailableError(), 503),
    ],
)
def test_problem_status_follows_the_error_table_when_error_is_a_domain_error(error: errors.AppError, status: int):
    problem = errors.problem_for(error)
    assert problem.status == status
    assert problem.body["status"] == status
    assert problem.body["type"].startswith(errors.PROBLEM_BASE)


def test_retry_after_header_is_set_when_error_is_rate_limited_or_unavailable():
    assert errors.problem_for(errors.RateLimitedError(retry_after=42)).headers == {"Retry-After": "42"}
    assert errors.problem_for(errors.UnavailableError(retry_after=5)).headers == {"Retry-After": "5"}


def test_every_401_carries_a_bearer_challenge_when_answered():
    # RFC 9110, 15.5.2: a 401 must carry WWW-Authenticate; some HTTP clients fail on a 401 without one.
    assert errors.problem_for(errors.UnauthorizedError("expired")).headers == {"WWW-Authenticate": "Bearer"}
    assert "WWW-Authenticate" not in errors.problem_for(errors.ForbiddenError()).headers


def test_unknown_exception_leaks_nothing_when_answered():
    problem = errors.problem_for(KeyError("secret-column-name"))
    assert problem.status == 500
    assert "secret" not in str(problem.body)
    assert "detail" not in problem.body


def test_builtin_exceptions_never_map_to_4xx_when_raised():
    for exc in (ValueError("x"), PermissionError("x"), LookupError("x")):
        assert errors.problem_for(exc).status == 500


def test_subclass_inherits_parent_status_when_it_has_no_row():
    class SeatLimitReached(errors.ConflictError):
        pass

    assert errors.problem_for(SeatLimitReached("full")).status == 409


def test_upstream_error_never_uses_a_non_gateway_status_when_given_one():
    assert errors.problem_for(errors.UpstreamError(status=418)).status == 502
