"""The route table: every route group, its handler module and its method/path pairs.

The local server and the CDK API are both built from this one table, and a test checks that the
OpenAPI document of each handler module describes exactly these paths. Each route also names the problem
statuses of its own (`problems`), which the merged OpenAPI document lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# public: no authorizer; user: JWT or API key; any: also an anonymous-conversation token.
Auth = Literal["public", "user", "any"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway resource path, parameters in braces: /v1/conversations/{id}
    auth: Auth = "user"
    # The problem statuses this route answers beyond those every route of its shape may answer, which the OpenAPI
    # document derives (shared/local/server.py, _problem_replies: 400 for a body or page parameters to read, 401
    # with credentials, 404 with a path id or a write with credentials, 413 and 415 with a body, 422 with input,
    # 429, 500, 503): 403 where a service raises ForbiddenError on this route's path, 409 for ConflictError (a
    # UniqueViolation included), 410 for GoneError, 502 and 504 for a model provider's failure, 401 on a public route
    # that checks credentials of its own, 404 on a read of the caller's own account (deleted while the authorizer's
    # answer is still cached). tests/observed_problems.py holds the document to what the handlers answer in tests.
    problems: tuple[int, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


@dataclass(frozen=True)
class RouteGroup:
    name: str  # functions/<name>.py holds the handler
    routes: tuple[Route, ...]
    # Which AWS permissions the group's function needs; infra grants only these.
    needs: frozenset[str] = frozenset()

    @property
    def module(self) -> str:
        return f"functions.{self.name}"


# What a group's function may touch in AWS besides the database; infra grants exactly these.
NEEDS_BEDROCK = "bedrock"
NEEDS_SAGEMAKER = "sagemaker"
NEEDS_USAGE_QUEUE = "usage_queue"
NEEDS_FILES_BUCKET = "files_bucket"
# Reads the JWT signing key (JWT_SECRET_ARN): only groups that issue tokens, plus the authorizer.
NEEDS_SIGNING_KEY = "signing_key"

ROUTE_GROUPS: tuple[RouteGroup, ...] = (
    RouteGroup("health", (Route("GET", "/v1/health", auth="public"),)),
    # Each later route group is one entry below, in its own block.
    # Conversations and messaging (issue 4): "any" where an anonymous-conversation token may reach it.
    RouteGroup(
        "conversations",
        (
            Route("GET", "/v1/conversations"),
            Route("POST", "/v1/conversations", problems=(409,)),
            Route("GET", "/v1/conversations/{id}", auth="any"),
            Route("PATCH", "/v1/conversations/{id}", auth="any", problems=(403,)),
            Route("DELETE", "/v1/conversations/{id}", auth="any", problems=(403,)),
            Route("GET", "/v1/conversations/{id}/participants"),
            Route("POST", "/v1/conversations/{id}/participants", problems=(403, 409)),
            Route("PATCH", "/v1/conversations/{id}/participants/{user_id}", problems=(403, 409)),
            Route("DELETE", "/v1/conversations/{id}/participants/{user_id}", problems=(403, 409)),
            Route("POST", "/v1/conversations/{id}/read"),
            Route("GET", "/v1/conversations/{id}/threads", auth="any"),
            Route("POST", "/v1/conversations/{id}/threads", auth="any", problems=(409,)),
            Route("GET", "/v1/threads/{id}", auth="any"),
            Route("GET", "/v1/conversations/{id}/panels"),
            Route("POST", "/v1/conversations/{id}/panels"),
            Route("PATCH", "/v1/panels/{id}", problems=(403,)),
            Route("DELETE", "/v1/panels/{id}", problems=(403,)),
            Route("GET", "/v1/conversations/{id}/data-refs"),
            Route("POST", "/v1/conversations/{id}/data-refs"),
            Route("DELETE", "/v1/data-refs/{id}", problems=(403,)),
        ),
    ),
    RouteGroup(
        "messages",
        (
            Route("GET", "/v1/conversations/{id}/messages", auth="any"),
            Route("POST", "/v1/conversations/{id}/messages", auth="any", problems=(409,)),
            Route("GET", "/v1/conversations/{id}/changes", auth="any", problems=(410,)),
            Route("PATCH", "/v1/messages/{id}", auth="any", problems=(403, 409)),
            Route("DELETE", "/v1/messages/{id}", auth="any", problems=(403,)),
            Route("GET", "/v1/messages/{id}/edits", auth="any"),
            Route("GET", "/v1/messages/{id}/reactions"),
            Route("POST", "/v1/messages/{id}/reactions", problems=(409,)),
            Route("DELETE", "/v1/messages/{id}/reactions/{emoji}"),
            Route("PUT", "/v1/messages/{id}/feedback"),
            Route("GET", "/v1/messages/{id}/feedback"),
            Route("GET", "/v1/threads/{id}/messages", auth="any"),
            Route("GET", "/v1/search/messages"),
        ),
    ),
    RouteGroup("anonymous", (Route("POST", "/v1/anonymous/conversations", auth="public"),)),
    RouteGroup(
        "files",
        (
            Route("POST", "/v1/files", problems=(409,)),
            Route("GET", "/v1/files"),
            Route("GET", "/v1/files/{id}"),
            Route("DELETE", "/v1/files/{id}", problems=(403,)),
        ),
        needs=frozenset({NEEDS_FILES_BUCKET}),
    ),
    # identity: accounts and sessions ------------------------------------------------------------------------
    RouteGroup(
        "auth",
        (
            Route("POST", "/v1/auth/signup", auth="public", problems=(409,)),
            Route("POST", "/v1/auth/login", auth="public", problems=(401,)),
            Route("POST", "/v1/auth/refresh", auth="public", problems=(401,)),
            Route("POST", "/v1/auth/logout", auth="public"),
        ),
        needs=frozenset({NEEDS_SIGNING_KEY}),  # signs access tokens
    ),
    RouteGroup(
        "users",
        (
            Route("GET", "/v1/users/me", problems=(404,)),
            Route("PATCH", "/v1/users/me"),
            Route("DELETE", "/v1/users/me", problems=(403, 409)),
            Route("POST", "/v1/users/me/password", problems=(403,)),
            Route("POST", "/v1/users/me/logout-all"),
            Route("GET", "/v1/users/me/properties"),
            Route("PUT", "/v1/users/me/properties"),
            Route("GET", "/v1/users/me/api-keys"),
            Route("POST", "/v1/users/me/api-keys", problems=(403,)),
            Route("DELETE", "/v1/users/me/api-keys/{id}"),
            Route("GET", "/v1/users/me/connection-logs"),
        ),
        needs=frozenset({NEEDS_SIGNING_KEY}),  # a password change answers with a new token pair
    ),
    RouteGroup(
        "admin",
        (
            Route("GET", "/v1/admin/users", problems=(403,)),
            Route("PATCH", "/v1/admin/users/{id}", problems=(403, 409)),
            Route("DELETE", "/v1/admin/users/{id}", problems=(403, 409)),
            Route("GET", "/v1/admin/connection-logs", problems=(403,)),
        ),
    ),
    RouteGroup(
        "licenses",
        (
            Route("POST", "/v1/licenses", problems=(403,)),
            Route("GET", "/v1/licenses", problems=(403,)),
            Route("PATCH", "/v1/licenses/{id}", problems=(403, 409)),
            Route("DELETE", "/v1/licenses/{id}", problems=(403,)),
            Route("GET", "/v1/licenses/{id}/seats"),
            Route("POST", "/v1/licenses/{id}/seats", problems=(409,)),
            Route("DELETE", "/v1/licenses/{id}/seats/{user_id}"),
            Route("GET", "/v1/users/me/seats"),
            Route("DELETE", "/v1/users/me/seats/{id}"),
        ),
    ),
    RouteGroup(
        "usage",
        (
            Route("GET", "/v1/usage/me"),
            Route("GET", "/v1/admin/usage/monthly", problems=(403,)),
            Route("GET", "/v1/admin/usage/models", problems=(403,)),
        ),
    ),
    # ai: model catalog, deployed resources, agent templates and the caller's template preferences.
    RouteGroup(
        "catalog",
        (
            Route("GET", "/v1/model-configurations"),
            Route("POST", "/v1/model-configurations", problems=(403, 409)),
            Route("PATCH", "/v1/model-configurations/{id}", problems=(403, 409)),
            Route("GET", "/v1/deployed-resources", problems=(403,)),
            Route("POST", "/v1/deployed-resources", problems=(403,)),
            Route("GET", "/v1/deployed-resources/{id}", problems=(403,)),
            Route("PATCH", "/v1/deployed-resources/{id}", problems=(403, 409)),
            Route("DELETE", "/v1/deployed-resources/{id}", problems=(403, 409)),
            Route("GET", "/v1/agent-templates"),
            Route("POST", "/v1/agent-templates", problems=(403, 409)),
            Route("PATCH", "/v1/agent-templates/{id}", problems=(403, 409)),
            Route("GET", "/v1/users/me/agent-templates/{id}"),
            Route("PUT", "/v1/users/me/agent-templates/{id}"),
        ),
    ),
    # ai: code-execution records and deep-analysis reports.
    RouteGroup(
        "records",
        (
            Route("GET", "/v1/code-executions"),
            Route("POST", "/v1/code-executions"),
            Route("GET", "/v1/code-executions/{id}"),
            Route("PATCH", "/v1/code-executions/{id}"),
            Route("GET", "/v1/analysis-reports"),
            Route("POST", "/v1/analysis-reports", problems=(409,)),
            Route("GET", "/v1/analysis-reports/{id}"),
            Route("PATCH", "/v1/analysis-reports/{id}", problems=(409,)),
        ),
    ),
    # ai: completions in a thread.
    RouteGroup(
        "completions",
        (Route("POST", "/v1/threads/{id}/completions", auth="any", problems=(403, 409, 502, 504)),),
        needs=frozenset({NEEDS_BEDROCK, NEEDS_SAGEMAKER, NEEDS_USAGE_QUEUE}),
    ),
    # ai: the OpenAI-compatible API.
    RouteGroup(
        "openai",
        (
            Route("POST", "/v1/chat/completions", problems=(502, 504)),
            Route("GET", "/v1/models"),
            Route("GET", "/v1/models/{id}"),
        ),
        needs=frozenset({NEEDS_BEDROCK, NEEDS_SAGEMAKER, NEEDS_USAGE_QUEUE}),
    ),
)

# Functions that are not behind API Gateway routes.
AUTHORIZER_MODULE = "functions.authorizer"
USAGE_AGGREGATOR_MODULE = "functions.usage_aggregator"
MAINTENANCE_MODULE = "functions.maintenance"
MIGRATE_MODULE = "functions.migrate"


def all_routes() -> list[tuple[RouteGroup, Route]]:
    """Every (group, route) pair in table order."""
    return [(group, route) for group in ROUTE_GROUPS for route in group.routes]


def match(method: str, path: str) -> tuple[RouteGroup, Route, dict[str, str]] | None:
    """The route for a concrete request path, or None; a path that matches with another method is not a match."""
    candidates = []
    for group, route in all_routes():
        found = route.pattern.match(path) if route.method == method else None
        if found:
            candidates.append((group, route, found.groupdict()))
    # A literal segment beats a parameter, as in API Gateway: /v1/users/me before /v1/users/{id}.
    return max(candidates, key=lambda c: -len(c[2]), default=None)


def path_exists(path: str) -> bool:
    """Whether any route serves this path, whatever the method (404 vs 405)."""
    return bool(methods_of(path))


def methods_of(path: str) -> list[str]:
    """The methods this path is served with, OPTIONS (the preflight) included, sorted; empty for an unknown path."""
    methods = {route.method for _, route in all_routes() if route.pattern.match(path)}
    return sorted(methods | {"OPTIONS"}) if methods else []
