"""cdk-nag acknowledgments. Each names its reason; each is attached to the narrowest construct it concerns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from constructs import IConstruct

from infra.log_groups import LOG_RETENTION_PROVIDER
from shared import routes

if TYPE_CHECKING:
    from infra.stacks import StatefulStack, StatelessStack


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def suppress(stateful: StatefulStack, stateless: StatelessStack) -> None:
    """Acknowledge the AwsSolutions findings that do not fit Confab, with the reason each one does not."""
    config = stateful.config
    network = stateful.network
    for endpoint in network.endpoints.values():
        acknowledge(
            endpoint,
            "AwsSolutions-EC23",
            "The rule cannot evaluate the VPC CIDR token; the endpoint admits HTTPS from inside the VPC only.",
        )

    database = stateful.database
    acknowledge(
        database.instance,
        "AwsSolutions-RDS11",
        "A non-default port hides nothing from a scan inside the VPC; only the proxy, function and migration "
        "security groups may reach the port.",
    )
    if not config.multi_az:
        acknowledge(database.instance, "AwsSolutions-RDS3", "Single-AZ in dev to keep idle cost low; prod is Multi-AZ.")
    if not config.deletion_protection:
        acknowledge(
            database.instance,
            "AwsSolutions-RDS10",
            "dev databases are disposable; prod sets deletion protection (stage setting).",
        )
    acknowledge(
        database.jwt_secret,
        "AwsSolutions-SMG4",
        "Rotating the JWT signing key signs every caller out; it is rotated on purpose with the procedure in "
        "docs/deploy.md, not on a timer.",
    )
    acknowledge(
        stateful.files.bucket,
        "AwsSolutions-S1",
        "Objects are written through presigned URLs that the files route issues and records; CloudTrail data "
        "events can be switched on when object-level audit is needed, without a second bucket.",
    )

    for function in stateless.factory.functions.values():
        role = function.role
        assert role is not None
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "The AWS managed basic execution policy only lets the function write its own logs.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
            "The AWS managed VPC access policy only manages the network interfaces a VPC function needs.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (active tracing).",
        )

    http = stateless.api
    acknowledge(
        http.api,
        "AwsSolutions-APIG2",
        "Every handler validates its request with pydantic and answers problem+json with field details; an API "
        "Gateway validator would answer the same mistakes in another shape.",
    )
    acknowledge(
        http.api,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        "The account-level API Gateway logging role needs exactly this AWS managed policy.",
    )
    if not config.waf:
        acknowledge(
            http.api,
            "AwsSolutions-APIG3",
            "The stage runs without the web ACL (-c waf=false; dev by default) to save its ~$10 a month: stage "
            "throttling and the authorizer guard it. Prod has one (infra/waf.py).",
        )
    acknowledge(
        http.api,
        "AwsSolutions-COG4",
        "Callers authenticate with Confab's own JWTs, API keys and anonymous-chat tokens, checked by the "
        "Lambda REQUEST authorizer; there is no Cognito user pool.",
    )
    # CDK's log-retention function: it sets the retention of API Gateway's execution log group (infra/api.py).
    retention = stateless.node.find_child(LOG_RETENTION_PROVIDER[0])
    acknowledge(
        retention,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "The AWS managed basic execution policy only lets CDK's log-retention function write its own logs.",
    )
    acknowledge(
        retention,
        "AwsSolutions-IAM5[Resource::*]",
        "CDK's log-retention function: PutRetentionPolicy and DeleteRetentionPolicy only, on the log groups it is "
        "given (API Gateway's execution logs), at deploy time.",
    )
    if config.removal_policy_for_kept == cdk.RemovalPolicy.DESTROY:
        api_id = stateless.resolve(stateless.get_logical_id(http.api.node.default_child))
        acknowledge(
            retention,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            f"API-Gateway-Execution-Logs_<{api_id}>/{config.stage}:*]",
            "DeleteLogGroup on the execution log group alone, when the stack goes; ':*' is how IAM names a log group.",
        )
    for _, route in routes.all_routes():
        if route.auth == "public":
            method = http.api.root.resource_for_path(route.path).node.find_child(route.method)
            acknowledge(method, "AwsSolutions-APIG4", f"{route.method} {route.path} is public in the route table.")
