"""Domain errors and the one table that turns each into an application/problem+json answer (RFC 9457)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM_BASE = "https://confab.dev/problems/"


# A problem's extra members go into its JSON body as they are: a UUID or a datetime would make the error answer
# itself fail, so the type admits only what JSON holds (pass str(id)).
ProblemMember = str | int | float | bool | None


class AppError(Exception):
    """Base of every error the API answers on purpose."""

    def __init__(self, detail: str = "", **extra: ProblemMember) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidRequestError(AppError):
    """The request cannot be read (a malformed cursor, a bad query parameter)."""


class UnprocessableError(AppError):
    """The request is well-formed but breaks a rule about its content."""

    def __init__(self, detail: str = "", errors: list[dict[str, Any]] | None = None, **extra: ProblemMember) -> None:
        super().__init__(detail, **extra)
        # Each item reads as a schema error does ({loc, type, msg}), so a client shows every 422 one way.
        self.errors = [
            {**error, "type": error.get("type", "value_error"), "msg": error.get("msg", detail or "Invalid value")}
            for error in errors or []
        ]


class UnauthorizedError(AppError):
    """No valid credentials."""


class ForbiddenError(AppError):
    """Credentials are valid but the action is not allowed (only where existence is not a secret)."""


class NotFoundError(AppError):
    """The resource does not exist or the caller may not see it (the two are indistinguishable)."""


class ConflictError(AppError):
    """The change conflicts with the current state (a duplicate, a rule about the last admin)."""


class GoneError(AppError):
    """What the request asks for is no longer kept (a position before a purge): the client starts over."""


class PayloadTooLargeError(AppError):
    """The request body or an upload is over its limit."""


class UnsupportedMediaTypeError(AppError):
    """The request body is in a media type the route does not take (it takes JSON)."""


class RateLimitedError(AppError):
    """Too many requests; `retry_after` says how many seconds to wait."""

    def __init__(self, detail: str = "", retry_after: int = 60, **extra: ProblemMember) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class UpstreamError(AppError):
    """A model provider failed; never carries the provider's body."""

    def __init__(self, detail: str = "", status: int = 502, **extra: ProblemMember) -> None:
        super().__init__(detail, **extra)
        self.status = status if status in (502, 503, 504) else 502


class UnavailableError(AppError):
    """A dependency (the database) cannot be reached; the client may retry."""

    def __init__(self, detail: str = "", retry_after: int = 5, **extra: ProblemMember) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class TimedOutError(UnavailableError):
    """The database is there but gave up on a statement: it ran past statement_timeout, or waited past lock_timeout
    for a lock another transaction holds. Answered like UnavailableError; unlike a lost database, the next statement
    (another table, another row) may well succeed."""


class RetryableError(AppError):
    """A serialization failure or deadlock: the whole transaction may be run again."""


@dataclass(frozen=True)
class ProblemSpec:
    status: int
    slug: str
    title: str


# The one mapping from error class to status and problem type. Lookup walks the MRO,
# so a subclass inherits its parent's row unless it has its own.
PROBLEMS: dict[type[AppError], ProblemSpec] = {
    InvalidRequestError: ProblemSpec(400, "invalid-request", "Invalid request"),
    UnauthorizedError: ProblemSpec(401, "unauthorized", "Unauthorized"),
    ForbiddenError: ProblemSpec(403, "forbidden", "Forbidden"),
    NotFoundError: ProblemSpec(404, "not-found", "Not found"),
    ConflictError: ProblemSpec(409, "conflict", "Conflict"),
    GoneError: ProblemSpec(410, "gone", "Gone"),
    PayloadTooLargeError: ProblemSpec(413, "payload-too-large", "Payload too large"),
    UnsupportedMediaTypeError: ProblemSpec(415, "unsupported-media-type", "Unsupported media type"),
    UnprocessableError: ProblemSpec(422, "validation-error", "Validation error"),
    RateLimitedError: ProblemSpec(429, "rate-limited", "Too many requests"),
    UpstreamError: ProblemSpec(502, "upstream-error", "Model provider error"),
    UnavailableError: ProblemSpec(503, "unavailable", "Service unavailable"),
    RetryableError: ProblemSpec(503, "unavailable", "Service unavailable"),
    AppError: ProblemSpec(500, "internal-error", "Internal server error"),
}

INTERNAL = ProblemSpec(500, "internal-error", "Internal server error")
# What every 401 says it takes (RFC 9110, 15.5.2: a 401 must carry a WWW-Authenticate challenge; some HTTP clients
# fail on one without). API Gateway's own 401s carry it too (infra/api.py).
BEARER_CHALLENGE = "Bearer"
# The detail of the authorizer's 401 (the local server's and API Gateway's own, whose message is only "Unauthorized"):
# what the caller should do. The authorizer tells no more (which check refused goes to its log only).
CREDENTIALS_REFUSED = "Missing, invalid, expired or revoked credentials: refresh the access token, or sign in again."


@dataclass(frozen=True)
class Problem:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def spec_for(error_type: type[BaseException]) -> ProblemSpec:
    """The problem row for an error class, inherited along the MRO; unknown errors are 500."""
    for klass in error_type.__mro__:
        if klass in PROBLEMS:
            return PROBLEMS[klass]
    return INTERNAL


def problem_body(status: int, slug: str, title: str, detail: str = "", **members: Any) -> dict[str, Any]:
    """An RFC 9457 body with a stable type URI."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(members)
    return body


def problem_for(error: BaseException) -> Problem:
    """The problem+json answer for any exception; anything not an AppError leaks nothing."""
    if not isinstance(error, AppError):
        return Problem(500, problem_body(500, INTERNAL.slug, INTERNAL.title))
    spec = spec_for(type(error))
    status = error.status if isinstance(error, UpstreamError) else spec.status
    members: dict[str, Any] = dict(error.extra)
    if isinstance(error, UnprocessableError) and error.errors:
        members["errors"] = error.errors
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitedError | UnavailableError):
        headers["Retry-After"] = str(error.retry_after)
    if spec.status == 401:
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    # A 404 is one body everywhere, whichever service raised it: the answer for an id the caller may not see
    # (or a malformed one) must equal the answer for a random id, so it carries no detail and no members.
    if spec.status == 404:
        return Problem(404, problem_body(404, spec.slug, spec.title))
    detail = error.detail if spec.status != 500 else ""
    return Problem(status, problem_body(status, spec.slug, spec.title, detail, **members), headers)
