"""The one function factory: runtime, architecture, tracing, JSON logs with retention, Powertools environment."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import code_dir, dependencies_dir
from infra.config import ARCHITECTURE, METRICS_NAMESPACE, RUNTIME, SERVICE_NAME, StageConfig
from infra.network import Network

# API Gateway gives up on an integration after 29 s; a route function never needs longer.
API_TIMEOUT = Duration.seconds(29)


class FunctionFactory(Construct):
    """Builds every Confab function the same way; each function differs only by handler, size and env."""

    def __init__(
        self, scope: Construct, id: str, *, config: StageConfig, network: Network, environment: Mapping[str, str]
    ) -> None:
        super().__init__(scope, id)
        self.config = config
        self.network = network
        self.environment = {
            "CONFAB_STAGE": config.stage,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **config.settings,
            **environment,
        }
        self.code = lambda_.Code.from_asset(str(code_dir()))
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(dependencies_dir(bundle=config.bundle))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Confab runtime dependencies (manylinux arm64 wheels)",
        )
        self.functions: dict[str, lambda_.Function] = {}

    def make(
        self,
        name: str,
        module: str,
        *,
        timeout: Duration = API_TIMEOUT,
        memory_mb: int = 512,
        environment: Mapping[str, str] | None = None,
        security_group: ec2.ISecurityGroup | None = None,
        description: str = "",
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        """A function whose handler is `<module>.lambda_handler`; `reserved_concurrency` None reserves none."""
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=self.config.log_retention,
            removal_policy=self.config.removal_policy_for_kept,
        )
        function = lambda_.Function(
            self,
            name,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"{module}.lambda_handler",
            code=self.code,
            layers=[self.layer],
            timeout=timeout,
            memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=log_group,
            vpc=self.network.vpc,
            vpc_subnets=self.network.app_subnets,
            security_groups=[security_group or self.network.functions_sg],
            environment={**self.environment, **(environment or {})},
            description=description or f"Confab {name}",
            reserved_concurrent_executions=reserved_concurrency,
        )
        self.functions[name] = function
        return function
