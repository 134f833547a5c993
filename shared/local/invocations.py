"""One invocation as API Gateway makes it: the authorizer first (protected routes), then the route group's handler.

The same code runs in the local server's own process and in its worker processes (shared/local/workers.py).
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from shared import routes
from shared.errors import BEARER_CHALLENGE, CREDENTIALS_REFUSED, problem_body
from shared.local.events import LocalContext, authorizer_event
from shared.observability import logger

PROBLEM_JSON = "application/problem+json"

ModuleLoader = Callable[[str], ModuleType]


@dataclass
class LocalResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def problem(status: int, slug: str, title: str, detail: str = "") -> LocalResponse:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    return LocalResponse(status, [("Content-Type", PROBLEM_JSON)], body)


def internal_error() -> LocalResponse:
    return problem(500, "internal-error", "Internal server error")


@dataclass(frozen=True)
class Invocation:
    """What a handler call needs, all of it picklable: the event, and which handler behind which authorizer."""

    module: str
    function_name: str
    event: dict[str, Any]
    authorize: bool


def silence_empty_metrics_warning() -> None:
    """Powertools' warning that an invocation published no metric, in the process that runs invocations locally."""
    # Most routes record no business metric, so each process that runs handlers warns once; in Lambda that is a
    # line per cold start in CloudWatch, locally one per worker in the terminal, saying nothing about the request.
    # Powertools documents this filter for functions that do not always publish metrics.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def invoke(invocation: Invocation, load: ModuleLoader) -> LocalResponse:
    """Run the authorizer (when the route is protected), then the handler; the handler's answer as a response."""
    event = invocation.event
    if invocation.authorize:
        denied = _authorize(event, load)
        if denied is not None:
            return denied
    context = LocalContext(function_name=invocation.function_name, aws_request_id=event["requestContext"]["requestId"])
    return _to_local(load(invocation.module).lambda_handler(event, context))


def _authorize(event: dict[str, Any], load: ModuleLoader) -> LocalResponse | None:
    authorizer = load(routes.AUTHORIZER_MODULE)
    request = authorizer_event(event)
    context = LocalContext(function_name="confab-authorizer", aws_request_id=event["requestContext"]["requestId"])
    try:
        policy = authorizer.lambda_handler(request, context)
    except Exception as exc:
        # API Gateway answers 401 when the authorizer raises "Unauthorized"; anything else is a 500 there.
        if str(exc) == "Unauthorized":
            refused = problem(401, "unauthorized", "Unauthorized", CREDENTIALS_REFUSED)
            refused.headers.append(("WWW-Authenticate", BEARER_CHALLENGE))
            return refused
        logger.exception("authorizer failed")
        return internal_error()
    statements = policy.get("policyDocument", {}).get("Statement", [])
    if not statements or any(s.get("Effect") != "Allow" for s in statements):
        return problem(403, "forbidden", "Forbidden")
    event["requestContext"]["authorizer"] = {"principalId": policy.get("principalId"), **policy.get("context", {})}
    return None


def _to_local(result: dict[str, Any]) -> LocalResponse:
    headers: list[tuple[str, str]] = list((result.get("headers") or {}).items())
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((key, v) for v in values if (key, v) not in headers)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
    return LocalResponse(int(result.get("statusCode", 200)), headers, body)
