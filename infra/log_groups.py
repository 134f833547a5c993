"""Logs that expire, for what the function factory does not build: CDK's own custom-resource providers, the
secret-rotation functions from the Serverless Application Repository, and API Gateway's execution logs.

Every group gets the stage's retention and removal policy, like the factory's (infra/functions.py). Lambda
writes to `/aws/lambda/<function name>` unless told otherwise, and creates that group, without a retention,
the first time the function logs; a group of that name created by CloudFormation afterwards fails as already
existing. So a function we cannot configure either writes to a group of ours (LoggingConfig), or, where even
that is out of reach, gets its default group made before it runs, under a name it never had.
"""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sam as sam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import StageConfig

# The functions CDK makes once per stack for its own custom resources: (provider id, the function's id in it).
TRIGGER_PROVIDER = ("AWSCDK.TriggerCustomResourceProviderCustomResourceProvider", "Handler")
LOG_RETENTION_PROVIDER = ("LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8a", "Resource")


def stage_log_group(scope: Construct, id: str, *, config: StageConfig, name: str | None = None) -> logs.LogGroup:
    """A log group with the stage's retention and removal policy."""
    return logs.LogGroup(
        scope,
        id,
        log_group_name=name,
        retention=config.log_retention,
        removal_policy=config.removal_policy_for_kept,
    )


def log_provider_function(stack: Stack, provider: tuple[str, str], *, config: StageConfig) -> logs.LogGroup:
    """The log group of one of `stack`'s CDK provider functions, made on the first call.

    These providers take no log group setting (custom_resources.CustomResourceConfig reaches singleton functions,
    not these), so the function's LoggingConfig is set on the template, where Lambda reads it for the factory's.
    """
    provider_id, function_id = provider
    provider_construct = stack.node.find_child(provider_id)
    existing = provider_construct.node.try_find_child("Logs")
    if isinstance(existing, logs.LogGroup):
        return existing
    function = provider_construct.node.find_child(function_id)
    if not (isinstance(function, CfnResource) and function.cfn_resource_type == "AWS::Lambda::Function"):
        raise TypeError(f"{provider_id}/{function_id} is no longer a Lambda function resource")
    log_group = stage_log_group(provider_construct, "Logs", config=config)
    # Its name is a Ref, so CloudFormation makes the group before it updates the function.
    function.add_property_override("LoggingConfig.LogGroup", log_group.log_group_name)
    return log_group


def log_rotation_function(
    scope: Construct, id: str, rotation: secretsmanager.SecretRotation, *, function_name: str, config: StageConfig
) -> logs.LogGroup:
    """Name a rotation function from the Serverless Application Repository and make its log group first.

    Its template is not ours, so its group can only be the default one. CDK names the function after the construct
    path, and on a stack deployed before the function has run (the master's rotates on creation), so that group
    exists already: a name of our own gives a group CloudFormation can create, on a new stack and on one deployed
    before, where the function is replaced under the new name (docs/operations.md, Logs).
    """
    application = rotation.node.default_child
    if not isinstance(application, sam.CfnApplication):
        raise TypeError(f"{rotation.node.path} no longer deploys a Serverless Application Repository application")
    application.add_property_override("Parameters.functionName", function_name)
    log_group = stage_log_group(scope, id, config=config, name=f"/aws/lambda/{function_name}")
    application.node.add_dependency(log_group)
    return log_group


def keep_service_logs(scope: Construct, id: str, log_group_name: str, *, config: StageConfig) -> logs.LogRetention:
    """The stage's retention on a group an AWS service creates itself, which may exist before the stack has it.

    A LogGroup resource of that name fails where the service made the group already; CDK's log-retention custom
    resource creates it unless it exists and sets its retention either way. Its own function, one per stack, logs
    to a group of ours too.
    """
    retention = logs.LogRetention(
        scope,
        id,
        log_group_name=log_group_name,
        retention=config.log_retention,
        removal_policy=config.removal_policy_for_kept,
    )
    log_provider_function(Stack.of(scope), LOG_RETENTION_PROVIDER, config=config)
    return retention
