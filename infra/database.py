"""PostgreSQL 16 on RDS, its two roles' secrets and their rotation, and RDS Proxy (IAM authentication, TLS).

The master user owns the schema; only the migration trigger connects as it. Every other function connects as
the application role (APP_DB_USER), which may read and write rows and nothing else: the migration trigger
creates it from its secret (shared/app_role.py), and IAM lets functions reach the proxy as that user only.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import APP_DB_USER, DB_NAME, DB_USER, StageConfig
from infra.log_groups import log_rotation_function
from infra.network import Network

# A concrete minor (a bare "16" is refused for new instances); minor upgrades then apply automatically.
ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16_9)
PORT = 5432


class Database(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StageConfig, network: Network) -> None:
        super().__init__(scope, id)
        self.secret = rds.DatabaseSecret(self, "Secret", username=DB_USER)
        self.secret.apply_removal_policy(config.removal_policy_for_kept)
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=ENGINE,
            parameters={
                "rds.force_ssl": "1",
                "log_min_duration_statement": "1000",  # statements slower than 1 s reach the PostgreSQL log
            },
        )
        identifier = f"confab-{config.stage}"
        # The PostgreSQL log group made here (not by a log-retention custom resource) so it has our retention.
        postgres_logs = logs.LogGroup(
            self,
            "PostgresLogs",
            log_group_name=f"/aws/rds/instance/{identifier}/postgresql",
            retention=config.log_retention,
            removal_policy=config.removal_policy_for_kept,
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=ENGINE,
            instance_identifier=identifier,
            instance_type=config.instance_type,
            vpc=network.vpc,
            vpc_subnets=network.app_subnets,
            security_groups=[network.database_sg],
            credentials=rds.Credentials.from_secret(self.secret),
            database_name=DB_NAME,
            port=PORT,
            parameter_group=parameters,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.allocated_storage_gb * 4,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            multi_az=config.multi_az,
            iam_authentication=True,
            backup_retention=config.backup_retention,
            delete_automated_backups=not config.deletion_protection,
            deletion_protection=config.deletion_protection,
            removal_policy=config.removal_policy,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            enable_performance_insights=config.performance_insights,
            performance_insight_retention=(
                rds.PerformanceInsightRetention.DEFAULT if config.performance_insights else None
            ),
            publicly_accessible=False,
        )
        self.instance.node.add_dependency(postgres_logs)
        self.secret_rotation = self.instance.add_rotation_single_user(
            automatically_after=Duration.days(30),
            vpc_subnets=network.app_subnets,
            endpoint=network.endpoints["SecretsManager"],
            security_group=network.migrate_sg,
        )

        # The application role's secret, with the instance's host and port (what rotation needs). Rotation is
        # single-user (the role changes its own password) and waits for its schedule: the role exists only
        # once the migration trigger has run, after this stack.
        app_secret = rds.DatabaseSecret(self, "AppSecret", username=APP_DB_USER, dbname=DB_NAME)
        app_secret.apply_removal_policy(config.removal_policy_for_kept)
        self.app_secret = app_secret.attach(self.instance)
        self.app_secret_rotation = secretsmanager.SecretRotation(
            self,
            "AppSecretRotation",
            application=secretsmanager.SecretRotationApplication.POSTGRES_ROTATION_SINGLE_USER,
            secret=self.app_secret,
            target=self.instance,
            vpc=network.vpc,
            vpc_subnets=network.app_subnets,
            endpoint=network.endpoints["SecretsManager"],
            security_group=network.migrate_sg,
            automatically_after=Duration.days(30),
            rotate_immediately_on_update=False,
        )
        # Both rotation functions under names of ours, each logging to a group with the stage's retention.
        log_rotation_function(
            self,
            "MasterRotationLogs",
            self.secret_rotation,
            function_name=f"{identifier}-rotate-master-secret",
            config=config,
        )
        log_rotation_function(
            self,
            "AppRotationLogs",
            self.app_secret_rotation,
            function_name=f"{identifier}-rotate-app-secret",
            config=config,
        )

        self.proxy: rds.DatabaseProxy | None = None
        if config.use_proxy:
            self.proxy = rds.DatabaseProxy(
                self,
                "Proxy",
                proxy_target=rds.ProxyTarget.from_instance(self.instance),
                # Functions may connect only as the application role (their IAM policies name that user). The
                # master's secret stays too: a stack deployed before the application role existed keeps serving
                # as the master until the migration trigger has made the role and the functions are updated.
                secrets=[self.app_secret, self.secret],
                vpc=network.vpc,
                vpc_subnets=network.app_subnets,
                security_groups=[network.proxy_sg],
                iam_auth=True,
                require_tls=True,
                # Leave headroom for the migration trigger and an operator's direct session.
                max_connections_percent=90,
                # A query waits this long for a database connection when the pool is used up, then fails
                # (503 problem): AWS's default of 120 s would outlast every function (29 s).
                borrow_timeout=Duration.seconds(10),
                idle_client_timeout=Duration.minutes(30),
                debug_logging=False,
            )
            self.instance.connections.allow_default_port_from(network.proxy_sg, "RDS Proxy")
            network.proxy_sg.connections.allow_from(network.functions_sg, ec2.Port.tcp(PORT), "functions to proxy")
        else:
            self.instance.connections.allow_default_port_from(network.functions_sg, "functions (no proxy)")
        self.instance.connections.allow_default_port_from(network.migrate_sg, "migration trigger and rotation")

        # The JWT signing key: a random string, read by the functions through Powertools parameters.
        self.jwt_secret = secretsmanager.Secret(
            self,
            "JwtSecret",
            description="Confab JWT signing key (HS256)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
            removal_policy=config.removal_policy_for_kept,
        )

    @property
    def endpoint_for_functions(self) -> str:
        """Where route functions connect: the proxy when there is one, else the instance."""
        if self.proxy is not None:
            return str(self.proxy.endpoint)
        return str(self.instance.db_instance_endpoint_address)
