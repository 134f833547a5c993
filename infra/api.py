"""The REST API, built from the route table: one resource/method per route, one integration per group."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig
from infra.log_groups import keep_service_logs
from shared import cors, routes
from shared.errors import (
    BEARER_CHALLENGE,
    CREDENTIALS_REFUSED,
    PROBLEM_BASE,
    AppError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
    spec_for,
)

CORS_HEADERS = list(cors.REQUEST_HEADERS)


def gateway_cors_origin(origins: tuple[str, ...]) -> dict[str, str]:
    """Access-Control-Allow-Origin of API Gateway's own answers (an expired token's 401, throttling's 429).

    Their headers are fixed per stage, not chosen per request as the handlers' are: with one origin (or "*") it
    is that origin; with several, the request's Origin is echoed (and Vary says so), or a browser app on any
    origin but the first could not read why its call failed. These answers carry nothing but the error.
    """
    if "*" in origins:
        return {"Access-Control-Allow-Origin": "'*'"}
    if len(origins) == 1:
        return {"Access-Control-Allow-Origin": f"'{origins[0]}'"}
    return {"Access-Control-Allow-Origin": "method.request.header.Origin", "Vary": "'Origin'"}


@dataclass(frozen=True)
class GatewayProblem:
    """The problem+json answer to an error API Gateway gives without reaching a handler."""

    error: type[AppError]
    # False for the DEFAULT_* families: API Gateway picks the status, so the body does not claim one.
    fixed_status: bool = True
    retry_after_s: int | None = None
    # A fixed detail, for an answer whose API Gateway message says nothing more than its title.
    detail: str | None = None

    @property
    def status(self) -> int | None:
        return spec_for(self.error).status if self.fixed_status else None

    def template(self) -> str:
        spec = spec_for(self.error)
        body: dict[str, object] = {"type": PROBLEM_BASE + spec.slug, "title": spec.title}
        if self.status:
            body["status"] = self.status
        if self.detail:
            return json.dumps({**body, "detail": self.detail})
        # $context.error.messageString is API Gateway's own message, already a quoted JSON string.
        return json.dumps(body)[:-1] + ', "detail": $context.error.messageString}'


GATEWAY_PROBLEMS: list[tuple[str, apigw.ResponseType, GatewayProblem]] = [
    ("Unauthorized", apigw.ResponseType.UNAUTHORIZED, GatewayProblem(UnauthorizedError, detail=CREDENTIALS_REFUSED)),
    # The authorizer only ever allows; a deny still means "these credentials do not let you in".
    ("AccessDenied", apigw.ResponseType.ACCESS_DENIED, GatewayProblem(UnauthorizedError, detail=CREDENTIALS_REFUSED)),
    # The authorizer failed (say the database is down): the same 503 the handlers give, not a 500.
    ("AuthorizerFailure", apigw.ResponseType.AUTHORIZER_FAILURE, GatewayProblem(UnavailableError, retry_after_s=5)),
    (
        "AuthorizerConfigurationError",
        apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR,
        GatewayProblem(UnavailableError, retry_after_s=5),
    ),
    ("Throttled", apigw.ResponseType.THROTTLED, GatewayProblem(RateLimitedError, retry_after_s=1)),
    ("RequestTooLarge", apigw.ResponseType.REQUEST_TOO_LARGE, GatewayProblem(PayloadTooLargeError)),
    # API Gateway answers a path no route serves with 403 "Missing Authentication Token": a 404 here.
    ("MissingAuthenticationToken", apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, GatewayProblem(NotFoundError)),
    ("Default4xx", apigw.ResponseType.DEFAULT_4_XX, GatewayProblem(InvalidRequestError, fixed_status=False)),
    ("Default5xx", apigw.ResponseType.DEFAULT_5_XX, GatewayProblem(UnavailableError, fixed_status=False)),
]


def identity_sources(cache_ttl_s: int) -> list[str]:
    """What the authorizer's cached result is keyed by.

    An anonymous-chat token reaches one conversation only, so a result cached for one path must never
    answer for another: the cache key holds the credential and the concrete path and method. With
    caching off there is no key, and API Gateway invokes the authorizer for every request whatever
    headers it carries (which also lets callers use X-Api-Key instead of Authorization).
    """
    if cache_ttl_s == 0:
        return []
    return [
        apigw.IdentitySource.header("Authorization"),
        apigw.IdentitySource.context("httpMethod"),
        apigw.IdentitySource.context("path"),
    ]


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StageConfig,
        authorizer_function: lambda_.IFunction,
        group_functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=config.log_retention, removal_policy=config.removal_policy_for_kept
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"confab-{config.stage}",
            description="Confab HTTP API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                throttling_rate_limit=config.throttle_rate,
                throttling_burst_limit=config.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # would log request bodies: prompts and passwords
                tracing_enabled=True,
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(config.cors_origins),
                allow_methods=apigw.Cors.ALL_METHODS,
                allow_headers=CORS_HEADERS,
                max_age=Duration.hours(1),
            ),
        )
        # Execution logs (ERROR level) go to a group API Gateway makes itself, without a retention.
        self.execution_logs = keep_service_logs(
            self,
            "ExecutionLogsRetention",
            f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{config.stage}",
            config=config,
        )
        # Errors answered by API Gateway itself (authorizer denials, throttling, unknown paths) are
        # problem+json like the handlers' own, and carry CORS headers, or a browser could not read them.
        for response_id, response_type, problem in GATEWAY_PROBLEMS:
            headers = {
                **gateway_cors_origin(config.cors_origins),
                "Access-Control-Allow-Headers": "'" + ",".join(CORS_HEADERS) + "'",
                # Else a browser reads neither Retry-After nor the 401's challenge (the handlers expose them too).
                "Access-Control-Expose-Headers": f"'{cors.EXPOSED_HEADERS}'",
                "Content-Type": "'application/problem+json'",
            }
            if problem.retry_after_s:
                headers["Retry-After"] = f"'{problem.retry_after_s}'"
            if problem.status == 401:
                headers["WWW-Authenticate"] = f"'{BEARER_CHALLENGE}'"
            self.api.add_gateway_response(
                response_id,
                type=response_type,
                status_code=str(problem.status) if problem.status else None,
                response_headers=headers,
                templates={"application/json": problem.template()},
            )
        # Created only when a route uses it: API Gateway rejects an authorizer attached to no method.
        self.authorizer: apigw.RequestAuthorizer | None = None
        if any(route.auth != "public" for _, route in routes.all_routes()):
            self.authorizer = apigw.RequestAuthorizer(
                self,
                "Authorizer",
                handler=authorizer_function,
                identity_sources=identity_sources(config.authorizer_cache_ttl_s),
                results_cache_ttl=Duration.seconds(config.authorizer_cache_ttl_s),
            )
        for group in routes.ROUTE_GROUPS:
            # One Lambda permission per group for the whole API instead of one per method.
            integration = apigw.LambdaIntegration(
                group_functions[group.name], proxy=True, scope_permission_to_method=False
            )
            for route in group.routes:
                resource = self.api.root.resource_for_path(route.path)
                if route.auth == "public":
                    resource.add_method(route.method, integration, authorization_type=apigw.AuthorizationType.NONE)
                else:
                    resource.add_method(
                        route.method,
                        integration,
                        authorizer=self.authorizer,
                        authorization_type=apigw.AuthorizationType.CUSTOM,
                    )
