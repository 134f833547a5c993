"""The deploy-time trigger that applies migrations straight to the database (never through the proxy).

A session advisory lock (shared.migrations) needs a session the proxy would pin, and the proxy may not
exist at all in dev. The trigger runs again whenever its code (and so `migrations/`) changes, and before
the route functions are updated, so new code never meets an old schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack, triggers
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import StageConfig
from infra.log_groups import TRIGGER_PROVIDER, log_provider_function

MIGRATE_TIMEOUT = Duration.minutes(5)


class MigrationTrigger(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StageConfig,
        function: lambda_.Function,
        execute_before: Sequence[Construct],
    ) -> None:
        super().__init__(scope, id)
        self.trigger = triggers.Trigger(
            self,
            "Trigger",
            handler=function,
            invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
            timeout=MIGRATE_TIMEOUT,
            execute_before=list(execute_before),
            execute_on_handler_change=True,
        )
        # The trigger's provider (CDK's, one per stack) invokes the function and logs each deploy's invocation.
        self.provider_logs = log_provider_function(Stack.of(self), TRIGGER_PROVIDER, config=config)
