"""Two stacks split by lifecycle: stateful (data that outlives deploys) and stateless (code and wiring)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.api import Api
from infra.config import AGGREGATOR_TIMEOUT, APP_DB_USER, DB_NAME, DB_USER, StageConfig
from infra.database import PORT, Database
from infra.functions import FunctionFactory
from infra.migration import MIGRATE_TIMEOUT, MigrationTrigger
from infra.monitoring import Monitoring
from infra.nag import acknowledge
from infra.network import Network
from infra.queue import UsageQueue
from infra.schedules import Schedules
from infra.storage import FilesBucket, files_bucket_name
from infra.waf import ApiFirewall
from shared import routes

# Bedrock model and inference-profile invocations; the AI group picks the model at run time.
BEDROCK_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
BEDROCK_NAG_ARNS = (
    "arn:<AWS::Partition>:bedrock:*::foundation-model/*",
    "arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:inference-profile/*",
)
FILES_NAG_FINDINGS = (
    "Action::s3:Abort*",
    "Action::s3:DeleteObject*",
    "Action::s3:GetBucket*",
    "Action::s3:GetObject*",
    "Action::s3:List*",
    "Resource::arn:<AWS::Partition>:s3:::confab-{stage}-files-<AWS::AccountId>-<AWS::Region>/*",
)
SAGEMAKER_ACTIONS = ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]
# What `-c reserved_concurrency` may name besides the route groups (docs/deploy.md).
BACKGROUND_FUNCTIONS = ("authorizer", "usage_aggregator", "maintenance", "migrate")
# A model call's deadline in the functions that make them: API Gateway's 29 s less 5 s to connect and a few
# seconds for the turn's database work, so the handler answers (a 504 problem, spend settled) before it is cut.
PROVIDER_TIMEOUT_S = 20


def provider_secret_name(stage: str) -> str:
    """The name prefix under which a stage's model API-key secrets are kept (docs/deploy.md)."""
    return f"confab/{stage}/providers/"


class StatefulStack(Stack):
    """Network, database, proxy, secrets, bucket and queues."""

    def __init__(self, scope: Construct, id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config
        self.network = Network(self, "Network", config=config)
        self.database = Database(self, "Database", config=config, network=self.network)
        self.files = FilesBucket(self, "Files", config=config)
        self.usage = UsageQueue(self, "Usage", config=config)


class StatelessStack(Stack):
    """Functions, API, schedules, the migration trigger and monitoring."""

    def __init__(
        self, scope: Construct, id: str, *, config: StageConfig, stateful: StatefulStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config
        _check_reserved_concurrency(config)
        reserved = config.reserved_concurrency
        database = stateful.database
        self.factory = FunctionFactory(
            self,
            "Functions",
            config=config,
            network=stateful.network,
            environment={
                **self._database_environment(stateful),
                "CORS_ORIGINS": ",".join(config.cors_origins),
                # The catalog refuses a model's API-key secret the model-calling functions could not read.
                "PROVIDER_SECRET_ARN_PREFIX": self._provider_secret_prefix(),
            },
        )
        self.files_bucket = s3.Bucket.from_bucket_name(self, "FilesBucket", files_bucket_name(config.stage))
        self.group_functions: dict[str, lambda_.Function] = {}
        for group in routes.ROUTE_GROUPS:
            function = self.factory.make(
                _camel(group.name),
                group.module,
                description=f"Confab route group {group.name}",
                reserved_concurrency=reserved.get(group.name),
            )
            self._grant_needs(function, group.needs, stateful)
            self.group_functions[group.name] = function

        self.authorizer = self.factory.make(
            "Authorizer",
            routes.AUTHORIZER_MODULE,
            timeout=Duration.seconds(10),
            memory_mb=512,
            reserved_concurrency=reserved.get("authorizer"),
        )
        self._grant_needs(self.authorizer, frozenset({routes.NEEDS_SIGNING_KEY}), stateful)

        self.aggregator = self.factory.make(
            "UsageAggregator",
            routes.USAGE_AGGREGATOR_MODULE,
            timeout=AGGREGATOR_TIMEOUT,
            reserved_concurrency=reserved.get("usage_aggregator"),
        )
        self._grant_database(self.aggregator, stateful)
        self.aggregator.add_event_source(
            event_sources.SqsEventSource(
                stateful.usage.queue,
                batch_size=100,
                max_batching_window=Duration.seconds(5),
                report_batch_item_failures=True,
                # Few concurrent batches: each holds a proxy connection, and the API needs the rest.
                max_concurrency=config.aggregator_max_concurrency,
            )
        )

        self.maintenance = self.factory.make(
            "Maintenance",
            routes.MAINTENANCE_MODULE,
            timeout=Duration.minutes(5),
            reserved_concurrency=reserved.get("maintenance"),
        )
        self._grant_database(self.maintenance, stateful)
        # Maintenance settles uploads nobody confirmed: it asks the bucket whether their bytes arrived (HeadObject
        # needs s3:GetObject); and it deletes the bytes of deleted files once their upload URL has expired. Only the
        # keys uploads are stored under. s3:ListBucket too: without it S3 answers HeadObject on a missing key 403,
        # not 404, and an upload that never came is never settled.
        iam.Grant.add_to_principal(
            grantee=self.maintenance,
            actions=["s3:GetObject", "s3:DeleteObject"],
            resource_arns=[self.files_bucket.arn_for_objects("users/*")],
        )
        iam.Grant.add_to_principal(
            grantee=self.maintenance, actions=["s3:ListBucket"], resource_arns=[self.files_bucket.bucket_arn]
        )
        self.maintenance.add_environment("FILES_BUCKET", self.files_bucket.bucket_name)
        acknowledge(
            self.maintenance,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::confab-{config.stage}-files-<AWS::AccountId>-"
            "<AWS::Region>/users/*]",
            "s3:GetObject and s3:DeleteObject on the files bucket's upload keys, to see whether an unconfirmed upload "
            "arrived and to delete what arrived for a deleted file; keys are "
            "per-upload ids, so they cannot be listed in advance.",
        )
        self.schedules = Schedules(self, "Schedules", maintenance=self.maintenance)

        self.migrate = self.factory.make(
            "Migrate",
            routes.MIGRATE_MODULE,
            timeout=MIGRATE_TIMEOUT,
            security_group=stateful.network.migrate_sg,
            reserved_concurrency=reserved.get("migrate"),
            environment={
                # Straight to the instance with the master secret: never through the proxy.
                "DB_HOST": database.instance.db_instance_endpoint_address,
                "DB_USER": DB_USER,
                "DB_SECRET_ARN": database.secret.secret_arn,
                "DB_IAM_AUTH": "false",
                # The role every other function connects as: created and granted after the migrations.
                "APP_DB_SECRET_ARN": database.app_secret.secret_arn,
            },
        )
        database.secret.grant_read(self.migrate)
        database.app_secret.grant_read(self.migrate)
        self.migration = MigrationTrigger(
            self,
            "Migration",
            config=config,
            function=self.migrate,
            execute_before=[*self.group_functions.values(), self.authorizer, self.aggregator, self.maintenance],
        )

        self.api = Api(
            self,
            "Http",
            config=config,
            authorizer_function=self.authorizer,
            group_functions=self.group_functions,
        )
        # Per-address rate limit and managed rules in front of the stage (infra/waf.py), where the stage has it.
        self.firewall = (
            ApiFirewall(self, "Firewall", config=config, stage_arn=self.api.api.deployment_stage.stage_arn)
            if config.waf
            else None
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            api=self.api.api,
            functions={name: fn for name, fn in self.factory.functions.items()},
            queue=stateful.usage.queue,
            dead_letters=stateful.usage.dead_letters,
            instance=database.instance,
            proxy=database.proxy,
            schedules=[self.schedules.maintenance_rule],
            web_acl_name=self.firewall.web_acl.name if self.firewall is not None else None,
        )

    def _database_environment(self, stateful: StatefulStack) -> dict[str, str]:
        database = stateful.database
        env = {
            "DB_HOST": database.endpoint_for_functions,
            "DB_PORT": str(PORT),
            "DB_NAME": DB_NAME,
            "DB_USER": APP_DB_USER,
            "DB_SSLMODE": "require",
        }
        if database.proxy is not None:
            env["DB_IAM_AUTH"] = "true"
        else:
            env["DB_SECRET_ARN"] = database.app_secret.secret_arn
        return env

    def _grant_database(self, function: lambda_.Function, stateful: StatefulStack) -> None:
        database = stateful.database
        if database.proxy is not None:
            database.proxy.grant_connect(function, APP_DB_USER)
        else:
            database.app_secret.grant_read(function)

    def _grant_needs(self, function: lambda_.Function, needs: frozenset[str], stateful: StatefulStack) -> None:
        """The database, plus exactly what the route table says the group needs."""
        self._grant_database(function, stateful)
        unknown = needs - KNOWN_NEEDS
        if unknown:
            raise ValueError(f"{function.node.id}: unknown needs {sorted(unknown)}")
        if routes.NEEDS_SIGNING_KEY in needs:
            stateful.database.jwt_secret.grant_read(function)
            function.add_environment("JWT_SECRET_ARN", stateful.database.jwt_secret.secret_arn)
        if routes.NEEDS_USAGE_QUEUE in needs:
            stateful.usage.queue.grant_send_messages(function)
            function.add_environment("USAGE_QUEUE_URL", stateful.usage.queue.queue_url)
        if routes.NEEDS_FILES_BUCKET in needs:
            self.files_bucket.grant_read_write(function)
            function.add_environment("FILES_BUCKET", self.files_bucket.bucket_name)
            for finding in FILES_NAG_FINDINGS:
                acknowledge(
                    function,
                    f"AwsSolutions-IAM5[{finding.format(stage=self.config.stage)}]",
                    "grant_read_write on the files bucket: object actions on this bucket's keys only; keys are "
                    "per-upload ids the function chooses, so they cannot be listed in advance.",
                )
        if routes.NEEDS_BEDROCK in needs:
            for arn in BEDROCK_NAG_ARNS:
                acknowledge(
                    function,
                    f"AwsSolutions-IAM5[Resource::{arn}]",
                    "The model is chosen per request from the catalog in the database; only Invoke actions.",
                )
            iam.Grant.add_to_principal(
                grantee=function,
                actions=BEDROCK_ACTIONS,
                resource_arns=[
                    f"arn:{self.partition}:bedrock:*::foundation-model/*",
                    f"arn:{self.partition}:bedrock:{self.region}:{self.account}:inference-profile/*",
                ],
            )
        if needs & {routes.NEEDS_BEDROCK, routes.NEEDS_SAGEMAKER}:
            self._grant_model_calls(function)
        if routes.NEEDS_SAGEMAKER in needs:
            acknowledge(
                function,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/*]",
                "The endpoint is chosen per request from the model catalog; only InvokeEndpoint actions.",
            )
            iam.Grant.add_to_principal(
                grantee=function,
                actions=SAGEMAKER_ACTIONS,
                resource_arns=[f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:endpoint/*"],
            )

    def _provider_secret_prefix(self) -> str:
        name = provider_secret_name(self.config.stage)
        return f"arn:{self.partition}:secretsmanager:{self.region}:{self.account}:secret:{name}"

    def _grant_model_calls(self, function: lambda_.Function) -> None:
        """A function that calls models: a provider deadline that leaves the function time to answer, and the
        API-key secrets of OpenAI-compatible models, read under one name prefix only (the catalog refuses others)."""
        function.add_environment("PROVIDER_TIMEOUT_SECONDS", str(PROVIDER_TIMEOUT_S))
        name = provider_secret_name(self.config.stage)
        prefix = self._provider_secret_prefix()
        acknowledge(
            function,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{name}*]",
            "A model's API-key secret is chosen per request from the catalog, which accepts names under this "
            "prefix only; GetSecretValue only.",
        )
        iam.Grant.add_to_principal(
            grantee=function, actions=["secretsmanager:GetSecretValue"], resource_arns=[f"{prefix}*"]
        )


KNOWN_NEEDS = frozenset(
    {
        routes.NEEDS_BEDROCK,
        routes.NEEDS_SAGEMAKER,
        routes.NEEDS_USAGE_QUEUE,
        routes.NEEDS_FILES_BUCKET,
        routes.NEEDS_SIGNING_KEY,
    }
)


def _check_reserved_concurrency(config: StageConfig) -> None:
    """Refuse, before any function is built, a reservation for a function the stack does not have, and one that
    would throttle the usage queue's own batches."""
    known = sorted([group.name for group in routes.ROUTE_GROUPS] + list(BACKGROUND_FUNCTIONS))
    unknown = sorted(set(config.reserved_concurrency) - set(known))
    if unknown:
        raise ValueError(f"reserved_concurrency names unknown function(s) {unknown}: the functions are {known}")
    aggregator = config.reserved_concurrency.get("usage_aggregator")
    if aggregator is not None and aggregator < config.aggregator_max_concurrency:
        # SQS would keep invoking up to its maximum and have the extra batches throttled back to the queue.
        raise ValueError(
            f"reserved_concurrency['usage_aggregator'] is {aggregator}, under the usage queue's maximum concurrency "
            f"{config.aggregator_max_concurrency}: reserve at least that many"
        )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
