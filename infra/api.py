"""The REST API, built from the route table: one resource/method per route, one integration per group."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig
from shared import routes

CORS_HEADERS = ["Authorization", "Content-Type", "X-Api-Key", "Idempotency-Key", "X-Request-Id"]


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
            self, "AccessLogs", retention=config.log_retention, removal_policy=config.removal_policy_for_logs
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
        # Errors answered by API Gateway itself (authorizer denials, throttling) carry CORS headers too,
        # or a browser could not read them.
        for response_id, response_type in (
            ("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigw.ResponseType.DEFAULT_5_XX),
        ):
            self.api.add_gateway_response(
                response_id,
                type=response_type,
                response_headers={
                    "Access-Control-Allow-Origin": "'*'"
                    if "*" in config.cors_origins
                    else f"'{config.cors_origins[0]}'",
                    "Access-Control-Allow-Headers": "'" + ",".join(CORS_HEADERS) + "'",
                },
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
