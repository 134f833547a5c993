"""The usage queue and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import AGGREGATOR_TIMEOUT, MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT_FACTOR, StageConfig


class UsageQueue(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StageConfig) -> None:
        super().__init__(scope, id)
        # The DLQ keeps messages longer than the queue does, so a failed record outlives its original.
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            removal_policy=config.removal_policy_for_kept,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            retention_period=Duration.days(4),
            visibility_timeout=Duration.seconds(AGGREGATOR_TIMEOUT.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVE_COUNT),
            removal_policy=config.removal_policy_for_kept,
        )
