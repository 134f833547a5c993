"""The VPC: functions and the database in subnets without internet access, endpoints for what functions call."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig

# Interface endpoints for the AWS APIs the functions call; S3 is a (free) gateway endpoint.
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "BedrockRuntime": ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
    "SagemakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
}


class Network(Construct):
    """VPC, endpoints and the security groups every other construct attaches to.

    The security groups live here (in the stateful stack) so the database can admit the functions
    without the stateless stack ever modifying a stateful resource (which would make the stacks cyclic).
    """

    def __init__(self, scope: Construct, id: str, *, config: StageConfig) -> None:
        super().__init__(scope, id)
        app_subnet_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if config.nat else ec2.SubnetType.PRIVATE_ISOLATED
        subnets = [ec2.SubnetConfiguration(name="app", subnet_type=app_subnet_type, cidr_mask=22)]
        if config.nat:
            subnets.insert(0, ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24))
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=2,
            nat_gateways=1 if config.nat else 0,
            subnet_configuration=subnets,
            restrict_default_security_group=False,
            flow_logs={
                # Rejected traffic only: the signal worth keeping, at a fraction of the ingestion cost.
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                        logs.LogGroup(
                            self,
                            "FlowLogs",
                            retention=config.log_retention,
                            removal_policy=config.removal_policy_for_kept,
                        )
                    ),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        self.app_subnets = ec2.SubnetSelection(subnet_type=app_subnet_type)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        endpoint_subnets = self.vpc.select_subnets(subnet_type=app_subnet_type).subnets[: config.endpoint_azs]
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {
            name: self.vpc.add_interface_endpoint(
                name, service=service, subnets=ec2.SubnetSelection(subnets=endpoint_subnets), private_dns_enabled=True
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        }

        # Route functions reach the proxy (or, without one, the database); the migration trigger reaches the
        # database itself; the proxy reaches the database. Nothing here has outbound rules beyond what it calls.
        self.functions_sg = ec2.SecurityGroup(
            self, "FunctionsSg", vpc=self.vpc, description="Confab Lambda functions", allow_all_outbound=True
        )
        self.migrate_sg = ec2.SecurityGroup(
            self,
            "MigrateSg",
            vpc=self.vpc,
            description="Direct database access: migration trigger, secret rotation",
            allow_all_outbound=True,
        )
        self.proxy_sg = ec2.SecurityGroup(
            self, "ProxySg", vpc=self.vpc, description="Confab RDS Proxy", allow_all_outbound=True
        )
        self.database_sg = ec2.SecurityGroup(
            self, "DatabaseSg", vpc=self.vpc, description="Confab PostgreSQL", allow_all_outbound=False
        )
