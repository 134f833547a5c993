"""EventBridge schedules: maintenance runs every hour (each run is bounded and safe to overlap)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

MAINTENANCE_RATE = Duration.hours(1)


class Schedules(Construct):
    def __init__(self, scope: Construct, id: str, *, maintenance: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        self.maintenance_rule = events.Rule(
            self,
            "Maintenance",
            description="Confab maintenance: expired AI cache, old anonymous chats, expired refresh tokens",
            schedule=events.Schedule.rate(MAINTENANCE_RATE),
        )
        self.maintenance_rule.add_target(
            targets.LambdaFunction(
                maintenance,
                retry_attempts=2,
                max_event_age=Duration.hours(1),
            )
        )
