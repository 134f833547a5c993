"""Alarms to one SNS topic, and one dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CfnOutput, Duration, Stack
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
# p99 latency that means requests are about to meet API Gateway's 29 s integration limit.
API_LATENCY_ALARM_MS = 25_000
# The oldest usage event unrecorded this long: the aggregator is stuck well before anything dead-letters (an hour).
QUEUE_AGE_ALARM_S = 900
DATABASE_CPU_ALARM_PERCENT = 80
# Free storage under this share of the initial allocation: autoscaling (at 10% free) did not grow the volume.
LOW_STORAGE_FRACTION = 0.05
GIB = 1024**3
# Average wait for a pooled connection (microseconds) that means the proxy's pool is used up; a query gives up at 10 s.
PROXY_BORROW_ALARM_US = 1_000_000
AT_OR_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


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
        # What to subscribe a pager, chat or another address to: without a subscription every alarm notifies nobody.
        CfnOutput(
            self,
            "AlarmTopicArn",
            key="AlarmTopicArn",
            value=self.topic.topic_arn,
            description="SNS topic every Confab alarm notifies (docs/operations.md, Alarms)",
        )
        action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(
            name: str,
            metric: cloudwatch.Metric,
            threshold: float,
            description: str,
            periods: int = 1,
            comparison: cloudwatch.ComparisonOperator = AT_OR_ABOVE,
        ) -> None:
            created = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=comparison,
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
        alarm(
            "ApiLatency",
            api.metric_latency(period=PERIOD, statistic="p99"),
            API_LATENCY_ALARM_MS,
            "API p99 latency near API Gateway's 29 s limit for 15 minutes: requests are about to be cut off (504).",
            periods=3,
        )
        alarm(
            "UsageQueueAge",
            queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            QUEUE_AGE_ALARM_S,
            "Usage events wait over 15 minutes to be recorded: the aggregator is failing or falling behind, and "
            "spend limits read stale totals.",
            periods=3,
        )
        alarm(
            "DatabaseCpu",
            instance.metric_cpu_utilization(period=PERIOD, statistic="Average"),
            DATABASE_CPU_ALARM_PERCENT,
            "Database CPU at or over 80% for 15 minutes: queries slow down (a burstable instance may also have spent "
            "its CPU credits).",
            periods=3,
        )
        alarm(
            "DatabaseStorage",
            instance.metric_free_storage_space(period=PERIOD, statistic="Minimum"),
            config.allocated_storage_gb * GIB * LOW_STORAGE_FRACTION,
            "Database free storage under 5% of its initial size: storage autoscaling did not keep up or reached its "
            "maximum (4x); writes fail when it runs out.",
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
        )
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
            proxy_name = proxy.db_proxy_name

            def proxy_metric(name: str, statistic: str) -> cloudwatch.Metric:
                dimensions = {"ProxyName": proxy_name}
                return cloudwatch.Metric(
                    namespace="AWS/RDS", metric_name=name, dimensions_map=dimensions, period=PERIOD, statistic=statistic
                )

            pinned = proxy_metric("DatabaseConnectionsCurrentlySessionPinned", "Maximum")
            alarm(
                "ProxyBorrowLatency",
                proxy_metric("DatabaseConnectionsBorrowLatency", "Average"),
                PROXY_BORROW_ALARM_US,
                "Queries wait over a second on average for a pooled database connection: the pool is used up (past "
                "10 s they fail as 503s). Reserve less concurrency for the busiest functions or a larger instance.",
                periods=3,
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
