"""Alarms to one SNS topic, and one dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.waf import RULE_NAMES as WAF_RULES

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StageConfig,
        api: apigw.RestApi,
        functions: Mapping[str, lambda_.Function],
        queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
        instance: rds.IDatabaseInstance,
        proxy: rds.DatabaseProxy | None,
        schedules: Sequence[events.IRule] = (),
        web_acl_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"Confab {config.stage} alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(name: str, metric: cloudwatch.Metric, threshold: float, description: str, periods: int = 1) -> None:
            created = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            self.alarms.append(created)

        alarm(
            "DeadLetters",
            dead_letters.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            1,
            "Usage events reached the dead-letter queue: totals are missing them until they are redriven.",
        )
        alarm("Api5xx", api.metric_server_error(period=PERIOD, statistic="Sum"), 5, "API answered 5xx.")
        for name, function in functions.items():
            alarm(f"{name}Errors", function.metric_errors(period=PERIOD, statistic="Sum"), 1, f"{name} failed.")
            alarm(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                1,
                f"{name} was throttled.",
            )
        for rule in schedules:
            # A run EventBridge could not deliver (after its retries) leaves no error in the function's metrics.
            alarm(
                f"{rule.node.id}ScheduleFailed",
                cloudwatch.Metric(
                    namespace="AWS/Events",
                    metric_name="FailedInvocations",
                    dimensions_map={"RuleName": rule.rule_name},
                    period=PERIOD,
                    statistic="Sum",
                ),
                1,
                f"The {rule.node.id} schedule could not invoke its function.",
            )
        pinned: cloudwatch.Metric | None = None
        if proxy is not None:
            pinned = cloudwatch.Metric(
                namespace="AWS/RDS",
                metric_name="DatabaseConnectionsCurrentlySessionPinned",
                dimensions_map={"ProxyName": proxy.db_proxy_name},
                period=PERIOD,
                statistic="Maximum",
            )
            alarm(
                "ProxyPinned",
                pinned,
                1,
                "RDS Proxy connections are pinned (session state or prepared statements): the pool is shrinking.",
                periods=3,
            )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"confab-{config.stage}")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[api.metric_count(period=PERIOD)],
                right=[api.metric_client_error(period=PERIOD), api.metric_server_error(period=PERIOD)],
            ),
            cloudwatch.GraphWidget(
                title="API latency (p90)", left=[api.metric_latency(period=PERIOD, statistic="p90")]
            ),
            cloudwatch.GraphWidget(
                title="Usage queue",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD),
                    queue.metric_approximate_age_of_oldest_message(period=PERIOD),
                ],
                right=[dead_letters.metric_approximate_number_of_messages_visible(period=PERIOD)],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Function errors",
                left=[function.metric_errors(period=PERIOD, label=name) for name, function in functions.items()],
            ),
            cloudwatch.GraphWidget(
                title="Database",
                left=[instance.metric_cpu_utilization(period=PERIOD)],
                right=[instance.metric_database_connections(period=PERIOD)] + ([pinned] if pinned is not None else []),
            ),
        )
        if web_acl_name is not None:
            # What the web ACL refused, per rule (infra/waf.py): a rising per-address line is one client or
            # attacker over the rate; no alarm, since bots make it routine.
            def blocked(rule: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace="AWS/WAFV2",
                    metric_name="BlockedRequests",
                    dimensions_map={"WebACL": web_acl_name, "Region": Stack.of(self).region, "Rule": rule},
                    period=PERIOD,
                    statistic="Sum",
                    label=rule,
                )

            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="WAF blocked requests",
                    left=[blocked(rule) for rule in ("ALL", *WAF_RULES)],
                )
            )
