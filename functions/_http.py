"""What every HTTP handler module shares: the resolver with its error table and the Lambda entry decorator."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import _validation
from functions._logging import LogContext
from shared import cors
from shared.auth.principal import Principal
from shared.errors import (
    AppError,
    InvalidRequestError,
    PayloadTooLargeError,
    Problem,
    UnsupportedMediaTypeError,
    problem_body,
    problem_for,
)
from shared.observability import get_tracer, logger, metrics
from shared.services.admin_rights import ADMINS_ONLY, require_admin
from shared.settings import Settings, get_settings

PROBLEM_JSON = "application/problem+json"


def problem_response(problem: Problem) -> Response[str]:
    return Response(
        status_code=problem.status,
        content_type=PROBLEM_JSON,
        body=json.dumps(problem.body),
        headers=problem.headers,
    )


def proxy_problem(error: AppError) -> dict[str, Any]:
    """The API Gateway proxy response for an error found before the resolver runs."""
    return proxy_problem_of(problem_for(error))


def proxy_problem_of(problem: Problem) -> dict[str, Any]:
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": PROBLEM_JSON, **problem.headers},
        "body": json.dumps(problem.body),
        "isBase64Encoded": False,
    }


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Field path, error type and pydantic's message only: never the submitted value (it may be a password).
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "type": error.get("type"), "msg": error.get("msg", "")}
        for error in exc.errors()
    ]


def make_resolver() -> APIGatewayRestResolver:
    """A REST resolver with pydantic validation and every error answered as problem+json."""
    app = APIGatewayRestResolver(enable_validation=True)
    _validation.install(app)

    @app.exception_handler(AppError)
    def handle_app_error(exc: AppError) -> Response[str]:
        problem = problem_for(exc)
        if problem.status >= 500:
            logger.warning("request failed", extra={"problem": problem.body["type"], "status": problem.status})
        return problem_response(problem)

    @app.exception_handler(RequestValidationError)
    def handle_validation_error(exc: RequestValidationError) -> Response[str]:
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            body = problem_body(400, "invalid-request", "Invalid request", "The request body is not valid JSON.")
            return problem_response(Problem(400, body))
        body = problem_body(
            422,
            "validation-error",
            "Validation error",
            "The request does not match the schema.",
            errors=_validation_errors(exc),
        )
        return problem_response(Problem(422, body))

    @app.exception_handler(RequestUnsupportedContentType)
    def handle_unsupported_content_type(exc: RequestUnsupportedContentType) -> Response[str]:
        return problem_response(problem_for(UnsupportedMediaTypeError("Send the request body as application/json.")))

    @app.exception_handler(RouteNotFound)
    def handle_route_not_found(exc: RouteNotFound) -> Response[str]:
        return problem_response(Problem(404, problem_body(404, "not-found", "Not found")))

    @app.exception_handler(ServiceError)
    def handle_service_error(exc: ServiceError) -> Response[str]:
        status = exc.status_code if 400 <= exc.status_code < 500 else 500
        return problem_response(Problem(status, problem_body(status, "http-error", "Request error")))

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return problem_response(problem_for(exc))

    return app


def principal_of(app: APIGatewayRestResolver) -> Principal:
    """The caller as the authorizer described it; handlers trust nothing else."""
    request_context = app.current_event.raw_event.get("requestContext") or {}
    return Principal.from_context(request_context.get("authorizer"))


Route = TypeVar("Route", bound=Callable[..., Any])


def admins_first(detail: str = ADMINS_ONLY) -> Callable[[Route], Route]:
    """Mark a route for administrators: a caller whose credentials do not claim admin gets its 403 (with `detail`, as
    the service would give it) before the request is validated, so a bad query or body from anyone else is a 403, not
    a 422 that reads as if the request could succeed once fixed. Put it under the route's `@app` decorator. The
    service still confirms the rights in the transaction that uses them (shared/services/admin_rights.py)."""

    def mark(route: Route) -> Route:
        _validation.FIRST_CHECKS[route] = lambda app: require_admin(principal_of(app), detail)
        return route

    return mark


def _body_is_json_typed(event: dict[str, Any]) -> bool:
    """Whether the body (if any) is declared as JSON; a body with no Content-Type is taken as JSON."""
    if not event.get("body"):
        return True
    headers = event.get("headers") or {}
    declared = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    media_type = declared.split(";", 1)[0].strip().lower()
    return media_type in ("", "application/json")


def _body_is_text(event: dict[str, Any]) -> bool:
    """Whether a base64-encoded body (API Gateway's form for binary payloads) decodes to UTF-8 text."""
    body = event.get("body")
    if not body or not event.get("isBase64Encoded"):
        return True
    try:
        base64.b64decode(body).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


def with_cors(event: dict[str, Any], response: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    """The response with CORS headers when the request came from an allowed origin. API Gateway answers the
    preflight (OPTIONS) itself, but with a proxy integration the actual response's headers are the function's:
    without these, a browser reads none of the API's answers."""
    headers = event.get("headers") or {}
    added = cors.origin_headers(next((str(v) for k, v in headers.items() if k.lower() == "origin"), None), allowed)
    if not added:
        return response
    if "multiValueHeaders" in response:
        multi = response["multiValueHeaders"]
        for name, value in added.items():
            multi[name] = [value]
    else:
        response["headers"] = {**(response.get("headers") or {}), **added}
    return response


def lambda_entry(
    app: APIGatewayRestResolver, *, body_limited: bool = False
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point for a resolver, with logging context (LogContext), tracing, metrics and CORS.

    body_limited: a body over REQUEST_BODY_MAX_BYTES is a 413 before anything parses it (validation would
    otherwise read it first). The tracer wraps the handler only when tracing is on: a disabled tracer's
    wrapper still costs tens of microseconds a request and records nothing.
    """
    inner = metrics.log_metrics(lambda event, context: app.resolve(event, context))
    tracer = get_tracer()
    traced = inner if tracer.disabled else tracer.capture_lambda_handler(capture_response=False)(inner)
    log_context = LogContext()

    def answer(event: dict[str, Any], context: LambdaContext, settings: Settings) -> dict[str, Any]:
        if body_limited and _body_size(event) > settings.request_body_max_bytes:
            return proxy_problem(
                PayloadTooLargeError(f"The request body is over {settings.request_body_max_bytes} bytes.")
            )
        # Every route takes JSON: other bodies are refused here, before Powertools tries to parse them
        # (a multipart body without a boundary, or bytes that are not UTF-8, would fail deep inside it).
        if not _body_is_json_typed(event):
            return proxy_problem(UnsupportedMediaTypeError("Send the request body as application/json."))
        if not _body_is_text(event):
            return proxy_problem(InvalidRequestError("The request body is not UTF-8 text."))
        result: dict[str, Any] = traced(event, context)
        return result

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        log_context(event, context)
        try:
            settings = get_settings()
        except Exception as exc:  # a misconfigured function: answered as problem+json, never a stack trace
            logger.exception("the function's configuration is unusable")
            return proxy_problem_of(problem_for(exc))
        return with_cors(event, answer(event, context, settings), settings.cors_origin_list)

    return handler
